"""Evolutionary search (AnalogNAS defaults) and the baselines, over any predictor.

A predictor is any object with ``predict(archs) -> {"acc_1d": array, "avm": array,
"std": array}``. Each generation is one ``predict`` call over the whole batch of new
architectures; an architecture is never evaluated twice (cache by id).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, Sequence

import numpy as np

from lightning_nas.errors import UserError
from lightning_nas.search.mutations import mutate
from lightning_nas.space import Architecture, n_params, sample


class Predictor(Protocol):
    def predict(self, archs: Sequence[Architecture]) -> dict[str, np.ndarray]: ...


@dataclass
class SearchConfig:
    population: int = 100
    iterations: int = 200
    survivors: int = 80
    """Individuals kept per generation (the rest of the population are new children)."""
    time_limit_s: float = 3600.0
    max_params: int = 1_000_000
    """Constraint T_p: n_params(arch) < max_params."""
    max_avm: Optional[float] = None
    """Constraint T_AVM: predicted AVM < max_avm (percentage points); None = no limit."""
    fitness: str = "acc"
    """``acc`` (predicted 1-day accuracy), ``acc_over_std`` (acc / predicted std) or a
    dotted path ``pkg.module.function(pred: dict, archs) -> array``."""
    policy: str = "tournament"
    """Parent selection: ``tournament``, ``proportional`` (fitness-proportionate) or
    ``youngest`` (aging / regularized evolution: the oldest individuals die)."""
    tournament_size: int = 5
    p_width: float = 0.8
    p_depth: float = 0.8
    p_other: float = 0.6
    init: str = "lhs"
    seed: int = 0


@dataclass
class Individual:
    arch: Architecture
    n_params: int
    pred: dict[str, float]
    fitness: float
    feasible: bool
    generation: int
    born: int  # evaluation index, for aging


@dataclass
class SearchResult:
    population: list[Individual]
    history: list[Individual] = field(default_factory=list)
    best_so_far: list[tuple[int, float]] = field(default_factory=list)  # (evaluations, best feasible fitness)
    evaluations: int = 0
    predict_s: float = 0.0
    total_s: float = 0.0
    generations: int = 0

    def feasible(self) -> list[Individual]:
        return sorted((i for i in self.history if i.feasible), key=lambda i: -i.fitness)


def fitness_function(name: str) -> Callable[[dict[str, np.ndarray], Sequence[Architecture]], np.ndarray]:
    if name == "acc":
        return lambda pred, archs: np.asarray(pred["acc_1d"], dtype=np.float64)
    if name == "acc_over_std":
        return lambda pred, archs: np.asarray(pred["acc_1d"], np.float64) / np.maximum(
            np.asarray(pred["std"], np.float64), 1e-3)
    if "." in name:
        from lightning_nas.classpath import resolve

        return resolve(name)
    raise UserError(f"unknown fitness {name!r}; use acc, acc_over_std or a dotted path to a function")


class Evaluator:
    """Batched, cached evaluation of architectures under the constraints."""

    def __init__(self, predictor: Predictor, cfg: SearchConfig, in_shape: Sequence[int], n_classes: int) -> None:
        self.predictor, self.cfg = predictor, cfg
        self.in_shape, self.n_classes = tuple(in_shape), n_classes
        self.fitness = fitness_function(cfg.fitness)
        self.cache: dict[str, Individual] = {}
        self.evaluated: set[Architecture] = set()
        self._params: dict[Architecture, int] = {}
        self.result = SearchResult(population=[])
        self.best = -math.inf

    def params(self, arch: Architecture) -> int:
        if arch not in self._params:
            self._params[arch] = n_params(arch, self.in_shape, self.n_classes)
        return self._params[arch]

    def __call__(self, archs: Sequence[Architecture], generation: int) -> list[Individual]:
        new = []
        seen_now: set[str] = set()
        for a in archs:
            if a.id not in self.cache and a.id not in seen_now:
                seen_now.add(a.id)
                new.append(a)
        if new:
            start = time.perf_counter()
            pred = self.predictor.predict(new)
            self.result.predict_s += time.perf_counter() - start
            fit = self.fitness(pred, new)
            for k, a in enumerate(new):
                p = {key: float(np.asarray(pred[key])[k]) for key in ("acc_1d", "avm", "std")}
                ok = self.cfg.max_avm is None or p["avm"] < self.cfg.max_avm
                ind = Individual(a, self.params(a), p, float(fit[k]), ok, generation, self.result.evaluations)
                self.result.evaluations += 1
                self.cache[a.id] = ind
                self.evaluated.add(a)
                self.result.history.append(ind)
                if ok and ind.fitness > self.best:
                    self.best = ind.fitness
                self.result.best_so_far.append((self.result.evaluations, self.best))
        return [self.cache[a.id] for a in archs]


def _rank_key(ind: Individual) -> tuple:
    return (ind.feasible, ind.fitness)


def select_parent(pop: list[Individual], cfg: SearchConfig, rng: random.Random) -> Individual:
    if cfg.policy == "proportional":
        feasible = [i for i in pop if i.feasible] or pop
        fits = np.array([i.fitness for i in feasible])
        weights = fits - fits.min() + 1e-9
        return rng.choices(feasible, weights=weights.tolist())[0]
    contenders = [pop[rng.randrange(len(pop))] for _ in range(cfg.tournament_size)]
    return max(contenders, key=_rank_key)


def _children(parents: list[Individual], n: int, ev: Evaluator, cfg: SearchConfig,
              rng: random.Random) -> list[Architecture]:
    probs = {"width": cfg.p_width, "depth": cfg.p_depth, "other": cfg.p_other}
    out: list[Architecture] = []
    seen: set[Architecture] = set()  # dataclass hashing: cheaper than computing ids
    for _ in range(5 * n):  # a converged population mostly yields duplicates: do not insist
        if len(out) == n:
            break
        child = mutate(select_parent(parents, cfg, rng).arch, rng, probs)
        if child in ev.evaluated or child in seen or ev.params(child) >= cfg.max_params:
            continue  # evaluated already, or infeasible by size: rejected before prediction
        seen.add(child)
        out.append(child)
    return out


def check_config(cfg: SearchConfig) -> None:
    if cfg.population < 2 or cfg.iterations < 0:
        raise UserError("search.population must be >= 2 and search.iterations >= 0")
    if not 1 <= cfg.survivors < cfg.population:
        raise UserError(f"search.survivors must be in 1..population-1 ({cfg.population - 1}), got {cfg.survivors}")
    if cfg.policy not in ("tournament", "proportional", "youngest"):
        raise UserError(f"unknown search.policy {cfg.policy!r}; use tournament, proportional or youngest")
    if cfg.init not in ("lhs", "uniform"):
        raise UserError(f"unknown search.init {cfg.init!r}; use lhs or uniform")
    for name in ("p_width", "p_depth", "p_other"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise UserError(f"search.{name} must be a probability in [0, 1]")


def evolve(predictor: Predictor, cfg: SearchConfig, in_shape: Sequence[int], n_classes: int,
           progress: Optional[Callable[[int, SearchResult, list[Individual]], None]] = None) -> SearchResult:
    """Run the evolutionary search; ``progress(generation, result, population)`` after each generation."""
    check_config(cfg)
    rng = random.Random(cfg.seed)
    ev = Evaluator(predictor, cfg, in_shape, n_classes)
    start = time.perf_counter()
    try:
        init = sample(cfg.population, seed=cfg.seed, method=cfg.init, max_params=cfg.max_params - 1,
                      in_shape=in_shape, n_classes=n_classes)
    except UserError:
        raise UserError(f"no architecture of the space has fewer than max_params={cfg.max_params} parameters "
                        f"for input {tuple(in_shape)}; raise search.max_params") from None
    pop = ev(init, 0)
    if progress:
        progress(0, ev.result, pop)
    for gen in range(1, cfg.iterations + 1):
        if time.perf_counter() - start > cfg.time_limit_s:
            break
        if cfg.policy == "youngest":
            keep = sorted(pop, key=lambda i: i.born)[-cfg.survivors:]
        else:
            keep = sorted(pop, key=_rank_key, reverse=True)[: cfg.survivors]
        kids = _children(pop if cfg.policy == "youngest" else keep, cfg.population - len(keep), ev, cfg, rng)
        pop = keep + ev(kids, gen)
        ev.result.generations = gen
        if progress:
            progress(gen, ev.result, pop)
    ev.result.population = pop
    ev.result.total_s = time.perf_counter() - start
    return ev.result


def random_search(predictor: Predictor, cfg: SearchConfig, in_shape: Sequence[int], n_classes: int,
                  evaluations: int) -> SearchResult:
    """Baseline: ``evaluations`` uniform samples under the size constraint, same predictor."""
    ev = Evaluator(predictor, cfg, in_shape, n_classes)
    start = time.perf_counter()
    archs = sample(evaluations, seed=cfg.seed, method="uniform", max_params=cfg.max_params - 1,
                   in_shape=in_shape, n_classes=n_classes)
    for k in range(0, len(archs), cfg.population):  # batched like the EA
        ev(archs[k: k + cfg.population], k // cfg.population)
    ev.result.population = list(ev.cache.values())
    ev.result.total_s = time.perf_counter() - start
    return ev.result


def pareto_front(individuals: Sequence[Individual]) -> list[Individual]:
    """Non-dominated set over (acc_1d up, AVM down, n_params down), best accuracy first."""
    order = sorted(individuals, key=lambda i: (-i.pred["acc_1d"], i.pred["avm"], i.n_params))
    front: list[Individual] = []
    kept = np.empty((0, 3))
    for ind in order:
        p = np.array([ind.pred["acc_1d"], -ind.pred["avm"], -ind.n_params])
        if len(kept):
            ge = (kept >= p).all(axis=1)
            gt = (kept > p).any(axis=1)
            if (ge & gt).any():
                continue
        front.append(ind)
        kept = np.vstack([kept, p])
    return front


def as_row(ind: Individual) -> dict[str, Any]:
    return {"arch_id": ind.arch.id, "describe": ind.arch.describe(), "n_params": ind.n_params,
            "pred_acc_1d": ind.pred["acc_1d"], "pred_avm": ind.pred["avm"], "pred_std": ind.pred["std"],
            "fitness": ind.fitness, "feasible": ind.feasible, "generation": ind.generation,
            "architecture": ind.arch.to_json()}
