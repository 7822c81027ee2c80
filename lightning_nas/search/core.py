"""The search loop, shared by every strategy: ask a strategy for architectures, evaluate them in one
batched, cached predictor call under the constraints, tell the strategy what they scored.

A predictor is any object with ``predict(archs) -> {"acc_1d": array, "avm": array, "std": array,
...}``. An architecture is never evaluated twice (cache by id); one over the parameter budget is
never sent to the predictor (it comes back infeasible, not counted as an evaluation).
A strategy (:class:`Strategy`, :mod:`lightning_nas.search.strategies`) only proposes and learns.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Protocol, Sequence

import numpy as np

from lightning_nas.errors import UserError
from lightning_nas.hardware_cost import ChipConfig, hardware_cost
from lightning_nas.search.objectives import ObjectiveSet
from lightning_nas.space import SPACE, Architecture, SearchSpace, iter_sample, n_params, sample


class Predictor(Protocol):
    """What a search asks: ``predict(archs)`` -> ``{"acc_1d": array, "avm": array, "std": array, ...}``
    for a sequence of :class:`~lightning_nas.space.Architecture`. A protocol, not a base class: any
    class with such a method is a predictor (``--predictor {class_path, init_args}``); its annotations
    are ``Any`` so that jsonargparse accepts implementations that write none."""

    def predict(self, archs: Any) -> Any: ...


class Strategy:
    """A search strategy: :meth:`ask` proposes architectures, :meth:`tell` hands back what they
    scored (``None`` where an architecture was over max_params). Subclasses set
    ``multi_objective = True`` when they optimise all of ``search.objectives``."""

    multi_objective = False
    seed: Optional[int] = None
    """The strategy's own seed; ``None`` (every built-in strategy's default): ``search.seed``."""

    def setup(self, ctx: SearchContext) -> None:
        self.ctx = ctx

    @property
    def run_seed(self) -> int:
        """The seed of this run: the strategy's ``seed``, else the search's (``search.seed``)."""
        return self.ctx.cfg.seed if self.seed is None else self.seed

    def ask(self) -> list[Architecture]:
        raise NotImplementedError

    def tell(self, archs: list[Architecture], individuals: list[Optional[Individual]]) -> None:
        raise NotImplementedError

    def population(self) -> list[Individual]:
        """The strategy's current population (for progress reports); default: none."""
        return []


DEFAULT_STRATEGY = "lightning_nas.search.strategies.analognas_ea.AnalogNASEvolution"
"""``analognas_ea``, the default ``search.strategy``."""


@dataclass
class SearchConfig:
    population: int = 100
    """Architectures evaluated first (the initial population of evolutionary strategies)."""
    iterations: int = 200
    """Ask/tell rounds after the first batch."""
    survivors: int = 80
    """Each round asks for ``population - survivors`` architectures (AnalogNAS: 80 of 100 survive)."""
    max_evaluations: Optional[int] = None
    """Stop after this many predictor evaluations; ``None`` = population + iterations x (population - survivors)."""
    time_limit_s: float = 3600.0
    max_params: int = 1_000_000
    """Constraint T_p: n_params(arch) < max_params (checked before prediction)."""
    max_avm: Optional[float] = None
    """Constraint T_AVM: predicted AVM < max_avm (percentage points); None = no limit."""
    constraints: list[dict[str, Any]] = field(default_factory=list)
    """More bounds on any objective, e.g. ``[{name: tiles, max: 64}, {name: latency_us, max: 500}]``."""
    objectives: list[Any] = field(default_factory=lambda: ["acc_1d", "avm", "energy_uj"])
    """What multi-objective strategies optimise and ``pareto.csv`` sorts by: names or
    ``{name, direction, source}`` (:mod:`lightning_nas.search.objectives`)."""
    fitness: str = "acc_1d"
    """What single-objective strategies maximise and winners are ranked by: an objective name,
    ``acc_over_std`` or a dotted path ``function(archs, values) -> array``."""
    std_floor: Optional[float] = None
    """Floor (pp) of the predicted std in ``acc_over_std``; ``None`` = the surrogate's recorded floor."""
    pick_by: Optional[str] = None
    """Rank the winners by this objective instead of the fitness, e.g. ``acc_1d_low`` (the lower
    bound of the surrogate's 80 % interval: a pessimistic final pick after a search whose fitness
    may be optimistic, ``acc_1d_high``); None: by the fitness."""
    strategy: Optional[Strategy] = field(default_factory=lambda: {"class_path": DEFAULT_STRATEGY})
    """A strategy name (:data:`lightning_nas.search.strategies.STRATEGIES`), a :class:`Strategy` subclass
    (name or class path) or ``{class_path, init_args}``; ``--search.strategy.init_args.NAME VALUE``
    sets one argument. Held as its ``{class_path, init_args}`` mapping (what ``summary.json``
    records); :func:`~lightning_nas.search.strategies.build_strategy` makes the strategy. (Optional
    only so that switching classes can reset it; null is an error.)"""
    chip: dict[str, Any] = field(default_factory=dict)
    """The chip of the hardware cost (:class:`lightning_nas.hardware_cost.ChipConfig` fields)."""
    fit_chip: bool = True
    """Constraint: an architecture's tiles fit the chip (``tiles <= chip.n_tiles``); ``false`` lifts
    it (winners may then need more tiles than the chip has: ``fits_chip`` in the outputs says so)."""
    seed: int = 0

    @property
    def batch(self) -> int:
        return self.population - self.survivors

    @property
    def evaluation_budget(self) -> int:
        return self.max_evaluations if self.max_evaluations is not None else self.population + self.iterations * self.batch


@dataclass
class Individual:
    arch: Architecture
    n_params: int
    values: dict[str, float]
    """Predictor outputs, ``n_params``, hardware figures and custom objectives by name."""
    fitness: float
    feasible: bool
    generation: int
    born: int  # evaluation index, for aging

    @property
    def pred(self) -> dict[str, float]:
        return {k: self.values[k] for k in ("acc_1d", "avm", "std")}


def rank_key(ind: Individual) -> tuple:
    """Feasible before infeasible, then higher fitness."""
    return (ind.feasible, ind.fitness)


def best_of(individuals: Iterable[Individual], n: int) -> list[Individual]:
    """The ``n`` best distinct individuals (by :func:`rank_key`; ties keep their order)."""
    unique = {i.arch: i for i in individuals}
    return sorted(unique.values(), key=rank_key, reverse=True)[:n]


@dataclass
class SearchResult:
    population: list[Individual] = field(default_factory=list)
    history: list[Individual] = field(default_factory=list)
    best_so_far: list[tuple[int, float]] = field(default_factory=list)  # (evaluations, best feasible fitness)
    evaluations: int = 0
    rejected_params: int = 0
    """Proposed architectures over max_params (never predicted)."""
    predict_s: float = 0.0
    total_s: float = 0.0
    generations: int = 0
    strategy: str = ""
    evaluator: Any = None
    """The :class:`Evaluator` of the run (its objectives and hardware costs, for the outputs)."""

    def feasible(self) -> list[Individual]:
        """The feasible individuals, best fitness first. Equal fitness (a tree surrogate predicts
        the same top accuracy for many architectures) is broken by the search's objectives in
        their order (e.g. lower AVM, then lower energy), then by the order of evaluation."""
        tie_break = self.evaluator.objectives.oriented_of if self.evaluator is not None else (lambda i: [])
        pick = self.evaluator.objectives.pick if self.evaluator is not None else None
        if pick is not None:  # search.pick_by
            return sorted((i for i in self.history if i.feasible),
                          key=lambda i: (-pick.sign * i.values[pick.name], -i.fitness, *tie_break(i)))
        return sorted((i for i in self.history if i.feasible), key=lambda i: (-i.fitness, *tie_break(i)))

    @property
    def best(self) -> float:
        return self.best_so_far[-1][1] if self.best_so_far else -math.inf


class Evaluator:
    """Batched, cached evaluation of architectures under the constraints."""

    def __init__(self, predictor: Predictor, cfg: SearchConfig, in_shape: Sequence[int], n_classes: int,
                 tile_size: int = 512, std_floor: Optional[float] = None) -> None:
        self.predictor, self.cfg = predictor, cfg
        self.in_shape, self.n_classes, self.tile_size = tuple(in_shape), n_classes, tile_size
        from lightning_nas.hardware_cost import chip_from

        self.chip: ChipConfig = chip_from(cfg.chip)
        self.objectives = ObjectiveSet(cfg.objectives, cfg.constraints, cfg.fitness,
                                       cfg.std_floor if cfg.std_floor is not None else std_floor,
                                       cfg.max_params, cfg.max_avm, cfg.pick_by,
                                       max_tiles=self.chip.n_tiles if cfg.fit_chip else None)
        self.steering = self.objectives  # run() narrows it to what its strategy needs while searching
        self.cache: dict[Architecture, Individual] = {}
        self._params: dict[Architecture, int] = {}
        self._costs: dict[Architecture, dict[str, Any]] = {}
        self.result = SearchResult()
        self.best = -math.inf

    def params(self, arch: Architecture) -> int:
        if arch not in self._params:
            self._params[arch] = n_params(arch, self.in_shape, self.n_classes)
        return self._params[arch]

    def cost(self, arch: Architecture) -> dict[str, Any]:
        if arch not in self._costs:
            self._costs[arch] = hardware_cost(arch, self.in_shape, self.n_classes, self.tile_size, self.chip).summary()
        return self._costs[arch]

    def within_budget(self, arch: Architecture) -> bool:
        return self.params(arch) < self.cfg.max_params

    def is_evaluated(self, arch: Architecture) -> bool:
        return arch in self.cache

    @property
    def budget_left(self) -> int:
        return self.cfg.evaluation_budget - self.result.evaluations

    def __call__(self, archs: Sequence[Architecture], generation: int) -> list[Optional[Individual]]:
        """The individuals of ``archs`` (``None`` for one over max_params), predicting the new ones in one call."""
        new, seen = [], set()
        for a in archs:
            if a in self.cache or a in seen:
                continue
            if not self.within_budget(a):
                self.result.rejected_params += 1
                continue
            seen.add(a)
            new.append(a)
        new = new[: max(self.budget_left, 0)]
        if new:
            start = time.perf_counter()
            pred = self.predictor.predict(new)
            self.result.predict_s += time.perf_counter() - start
            if not isinstance(pred, dict):
                raise UserError(f"the predictor's predict() returned a {type(pred).__name__}, not a mapping "
                                "{acc_1d, avm, std} of arrays")
            costs = [self.cost(a) for a in new] if self.steering.uses_hardware else None
            values, fit, ok = self.steering.compute(new, pred, [self.params(a) for a in new], costs)
            keys = list(values)
            for k, a in enumerate(new):
                ind = Individual(a, self.params(a), {key: float(values[key][k]) for key in keys}, float(fit[k]),
                                 bool(ok[k]), generation, self.result.evaluations)
                self.result.evaluations += 1
                self.cache[a] = ind
                self.result.history.append(ind)
                if ind.feasible and ind.fitness > self.best:
                    self.best = ind.fitness
                self.result.best_so_far.append((self.result.evaluations, self.best))
        return [self.cache.get(a) for a in archs]


class SearchContext:
    """What a strategy may use: the space (its genome, encodings, features: strategies read it
    instead of rebuilding it), the config, the task, the evaluator's cache and parameter counts."""

    def __init__(self, evaluator: Evaluator, space: SearchSpace = SPACE) -> None:
        self.evaluator = evaluator
        self.space = space
        self.cfg = evaluator.cfg
        self.in_shape, self.n_classes = evaluator.in_shape, evaluator.n_classes
        self.objectives = evaluator.objectives.objectives

    def params(self, arch: Architecture) -> int:
        return self.evaluator.params(arch)

    def within_budget(self, arch: Architecture) -> bool:
        return self.evaluator.within_budget(arch)

    def is_evaluated(self, arch: Architecture) -> bool:
        return self.evaluator.is_evaluated(arch)

    def oriented(self, ind: Individual) -> list[float]:
        """The objectives of ``ind`` as "lower is better" numbers."""
        return self.evaluator.objectives.oriented(ind.values)

    def fresh(self, seed: int, method: str = "stagewise") -> Iterator[Architecture]:
        """An endless seeded stream of distinct architectures under max_params
        (:func:`~lightning_nas.space.iter_sample`; ``stagewise`` redraws only a stage over the budget)."""
        return iter_sample(10 ** 12, seed=seed, method=method, max_params=self.cfg.max_params - 1,
                           in_shape=self.in_shape, n_classes=self.n_classes)

    def take_new(self, stream: Iterator[Architecture], n: int, taken: set) -> list[Architecture]:
        """The next ``n`` architectures of ``stream`` that are not in ``taken`` nor evaluated before."""
        out: list[Architecture] = []
        for arch in stream:
            if len(out) == n:
                break
            if arch not in taken and not self.is_evaluated(arch):
                out.append(arch)
        return out

    def initial(self, n: int, method: str = "lhs", seed: Optional[int] = None) -> list[Architecture]:
        """``n`` distinct architectures under max_params (the first population)."""
        try:
            return sample(n, seed=self.cfg.seed if seed is None else seed, method=method,
                          max_params=self.cfg.max_params - 1, in_shape=self.in_shape, n_classes=self.n_classes)
        except UserError:
            raise UserError(f"no architecture of the space has fewer than max_params={self.cfg.max_params} "
                            f"parameters for input {self.in_shape}; raise search.max_params") from None




def check_config(cfg: SearchConfig) -> None:
    if cfg.population < 2 or cfg.iterations < 0:
        raise UserError("search.population must be >= 2 and search.iterations >= 0")
    if not 1 <= cfg.survivors < cfg.population:
        raise UserError(f"search.survivors must be in 1..population-1 ({cfg.population - 1}), got {cfg.survivors}")
    if cfg.max_evaluations is not None and cfg.max_evaluations < 1:
        raise UserError(f"search.max_evaluations must be >= 1 (or null), got {cfg.max_evaluations}")
    if not cfg.time_limit_s > 0:
        raise UserError(f"search.time_limit_s must be > 0, got {cfg.time_limit_s}")
    if cfg.max_params < 2:
        raise UserError(f"search.max_params must be >= 2, got {cfg.max_params}")


def run(strategy: Strategy, predictor: Predictor, cfg: SearchConfig, in_shape: Sequence[int], n_classes: int,
        progress: Optional[Callable[[int, SearchResult, list[Individual]], None]] = None, tile_size: int = 512,
        std_floor: Optional[float] = None) -> SearchResult:
    """Run ``strategy`` until the evaluation budget, ``iterations`` rounds or the time limit;
    ``progress(round, result, population)`` after each round."""
    check_config(cfg)
    ev = Evaluator(predictor, cfg, in_shape, n_classes, tile_size, std_floor)
    ev.result.strategy = type(strategy).__name__
    ev.steering = ev.objectives.steering(strategy.multi_objective)
    start = time.perf_counter()
    strategy.setup(SearchContext(ev))
    idle = 0
    for round_ in range(cfg.iterations + 1):
        if ev.budget_left <= 0 or (round_ and time.perf_counter() - start > cfg.time_limit_s):
            break
        archs = strategy.ask()
        before = ev.result.evaluations
        individuals = ev(archs, round_)
        strategy.tell(archs, individuals)
        ev.result.generations = round_
        if progress:
            progress(round_, ev.result, strategy.population())
        idle = idle + 1 if ev.result.evaluations == before else 0
        if idle >= 50:  # the strategy proposes nothing new any more
            break
    ev.result.population = strategy.population()
    ev.result.total_s = time.perf_counter() - start
    if ev.steering is not ev.objectives:  # the objectives only the Pareto front and outputs need
        history = ev.result.history
        ev.objectives.fill([i.arch for i in history], [i.values for i in history], [ev.cost(i.arch) for i in history])
    ev.result.evaluator = ev
    return ev.result


def as_row(ind: Individual, cost: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    row = {"arch_id": ind.arch.id, "describe": ind.arch.describe(), "n_params": ind.n_params,
           "pred_acc_1d": round(ind.values["acc_1d"], 4), "pred_avm": round(ind.values["avm"], 4),
           "pred_std": round(ind.values["std"], 4)}
    if cost is not None:
        row.update({k: v for k, v in cost.items()})
    row.update({k: round(v, 6) for k, v in ind.values.items()
                if k not in ("acc_1d", "avm", "std", "n_params") and (cost is None or k not in cost)})
    row.update({"fitness": round(ind.fitness, 6), "feasible": ind.feasible, "generation": ind.generation,
                "architecture": ind.arch.to_json()})
    return row
