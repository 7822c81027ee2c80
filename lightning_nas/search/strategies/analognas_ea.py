"""The AnalogNAS evolutionary algorithm (the default strategy), fixed so it does not stall.

As in AnalogNAS: a Latin-hypercube initial population; children are mutations (the width,
depth and other groups with probabilities ``p_width``, ``p_depth``, ``p_other``) of parents
chosen by ``selection`` (``tournament`` of ``tournament_size``, fitness-``proportional`` or
``youngest``); children over max_params or evaluated before are redrawn, never predicted.

The original loop kept the best ``survivors`` each generation (``replacement: elitist``,
``tournament_size: 5``, ``p_single: 0``, ``immigrants: false``). Measured on landscapes with known
optima (``benchmarks/search_quality.py``, docs/findings/search-quality.md) it converges on the first good basin: on a
deceptive landscape it ended on the broad local peak on every seed, and on converging it
produced no new children and stopped evaluating. The defaults here fix both:

* ``replacement: crowding`` (restricted tournament replacement): a child replaces the most
  similar of ``window`` random members only if it ranks higher, so niches around several optima
  survive side by side instead of one basin taking the whole population;
* ``p_single``: that share of the children are one single mutation (a small step), which
  finishes the climb to an optimum that multi-group mutations keep overshooting;
* ``immigrants``: a generation that can't find enough new children is filled with fresh samples
  of the space, so the search keeps evaluating until its budget;
* ``polish_after``: after that many rounds without a better feasible fitness, half of each round
  goes to untried one-mutation neighbours of the best member (a local search step), until it
  improves again.
"""

from __future__ import annotations

import random
from typing import Literal, Optional

import numpy as np

from lightning_nas.search.core import Individual, SearchContext, Strategy, rank_key
from lightning_nas.search.mutations import mutate, neighbours
from lightning_nas.space import Architecture

__all__ = ["AnalogNASEvolution", "rank_key"]


class AnalogNASEvolution(Strategy):
    def __init__(self, selection: Literal["tournament", "proportional", "youngest"] = "tournament",
                 tournament_size: int = 2, p_width: float = 0.8, p_depth: float = 0.8, p_other: float = 0.6,
                 p_single: float = 0.5, replacement: Literal["crowding", "elitist"] = "crowding",
                 window: int = 30, immigrants: bool = True, polish_after: Optional[int] = 3,
                 init: Literal["lhs", "uniform"] = "lhs", seed: Optional[int] = None) -> None:
        """
        Args:
            selection: how a parent is chosen: ``tournament`` (the best of ``tournament_size`` random
                members), fitness-``proportional`` or the ``youngest`` member.
            tournament_size: members in a tournament.
            p_width: probability that a child's mutation changes its width (branches B, stem channels, widenfact).
            p_depth: probability that it changes its depth (stages M, blocks R, convblock).
            p_other: probability that it changes the rest (skip, stem kernel).
            p_single: share of the children that are one single mutation (a small step).
            replacement: ``crowding``: a child replaces the most similar of ``window`` random members
                if it ranks higher; ``elitist``: the best ``survivors`` are kept (AnalogNAS's loop).
            window: members a child is compared with under ``crowding``.
            immigrants: fill a round that finds too few new children with fresh samples of the space.
            polish_after: rounds without a better feasible fitness after which half of each round
                tries one-mutation neighbours of the best member; null: never.
            init: the first population: a Latin hypercube (``lhs``) or ``uniform`` samples.
            seed: this strategy's seed; null: ``search.seed``.
        """
        if selection not in ("tournament", "proportional", "youngest"):
            raise ValueError(f"selection must be tournament, proportional or youngest, got {selection!r}")
        if replacement not in ("crowding", "elitist"):
            raise ValueError(f"replacement must be crowding or elitist, got {replacement!r}")
        if init not in ("lhs", "uniform"):
            raise ValueError(f"init must be lhs or uniform, got {init!r}")
        for name, p in (("p_width", p_width), ("p_depth", p_depth), ("p_other", p_other), ("p_single", p_single)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        if tournament_size < 1 or window < 1:
            raise ValueError(f"tournament_size and window must be >= 1, got {tournament_size} and {window}")
        self.selection, self.tournament_size, self.init = selection, tournament_size, init
        self.probs = {"width": p_width, "depth": p_depth, "other": p_other}
        if polish_after is not None and polish_after < 1:
            raise ValueError(f"polish_after must be >= 1 (or null), got {polish_after}")
        self.p_single, self.replacement, self.window, self.immigrants = p_single, replacement, window, immigrants
        self.polish_after, self.stalled, self.best = polish_after, 0, -np.inf
        self.seed = seed
        self.pop: list[Individual] = []
        self._kept: list[Individual] = []

    def setup(self, ctx: SearchContext) -> None:
        super().setup(ctx)
        self.rng = random.Random(self.run_seed)
        self.survivors = ctx.cfg.survivors
        # one mutation step of each feature is about one unit of distance (the table's scales)
        self.scale = np.asarray(ctx.space.feature_scale(), dtype=np.float64)
        self.vectors = np.empty((0, len(self.scale)))
        self._fresh = ctx.fresh(self.run_seed + 7919)  # immigrants: one seeded stream under the budget (lazy)

    def _scaled(self, arch: Architecture) -> np.ndarray:
        return np.asarray(self.ctx.space.features(arch)) / self.scale

    def population(self) -> list[Individual]:
        return self.pop

    # -- proposing --------------------------------------------------------------------------

    def _parent(self, pool: list[Individual]) -> Individual:
        if self.selection == "proportional":
            feasible = [i for i in pool if i.feasible] or pool
            fits = np.array([i.fitness for i in feasible])
            weights = fits - fits.min() + 1e-9
            return self.rng.choices(feasible, weights=weights.tolist())[0]
        if self.selection == "youngest" and self.replacement == "elitist":
            pool = self.pop
        contenders = [pool[self.rng.randrange(len(pool))] for _ in range(self.tournament_size)]
        return max(contenders, key=rank_key)

    def _child(self, parent: Architecture) -> Architecture:
        if self.rng.random() < self.p_single:  # one small step
            return mutate(parent, self.rng, {self.rng.choice(list(self.probs)): 1.0})
        return mutate(parent, self.rng, self.probs)

    def ask(self) -> list[Architecture]:
        cfg = self.ctx.cfg
        if not self.pop:
            return self.ctx.initial(cfg.population, self.init, self.run_seed)
        if self.replacement == "elitist":
            if self.selection == "youngest":
                self._kept = sorted(self.pop, key=lambda i: i.born)[-self.survivors:]
            else:
                self._kept = sorted(self.pop, key=rank_key, reverse=True)[: self.survivors]
            pool, n = self._kept, cfg.population - len(self._kept)
        else:
            pool, n = self.pop, cfg.batch
        children: list[Architecture] = []
        seen: set = set()
        if self.polish_after is not None and self.stalled >= self.polish_after:
            children = self._polish(n // 2, seen)  # half the round: the incumbent's untried neighbours
        for _ in range(5 * n):  # a converged population mostly yields duplicates: do not insist
            if len(children) == n:
                break
            child = self._child(self._parent(pool).arch)
            if child in seen or self.ctx.is_evaluated(child) or not self.ctx.within_budget(child):
                continue
            seen.add(child)
            children.append(child)
        if self.immigrants and len(children) < n:
            children += self.ctx.take_new(self._fresh, n - len(children), seen)  # immigrants
        return children

    def _polish(self, n: int, seen: set) -> list[Architecture]:
        """Untried one-mutation neighbours of the best feasible member (a local search step)."""
        best = max(self.pop, key=rank_key)
        out = []
        for arch in neighbours(best.arch, self.rng):
            if len(out) == n:
                break
            if arch not in seen and not self.ctx.is_evaluated(arch) and self.ctx.within_budget(arch):
                seen.add(arch)
                out.append(arch)
        return out

    # -- learning ---------------------------------------------------------------------------
    def tell(self, archs, individuals) -> None:
        new = [i for i in individuals if i is not None]
        best = max((i.fitness for i in new if i.feasible), default=-np.inf)
        if best > self.best:
            self.best, self.stalled = best, 0
        else:
            self.stalled += 1
        if not self.pop:
            self.pop = new
            self.vectors = np.asarray([self._scaled(i.arch) for i in new]).reshape(len(new), -1)
        elif self.replacement == "crowding":
            self._crowd(new)
        else:
            self.pop = self._kept + new

    def _crowd(self, new: list[Individual]) -> None:
        """Restricted tournament replacement: each child replaces the most similar of ``window``
        random members if it ranks higher."""
        for child in new:
            window = self.rng.sample(range(len(self.pop)), min(self.window, len(self.pop)))
            x = self._scaled(child.arch)
            distances = np.abs(self.vectors[window] - x).sum(axis=1)
            nearest = window[int(np.argmin(distances))]
            if rank_key(child) > rank_key(self.pop[nearest]):
                self.pop[nearest] = child
                self.vectors[nearest] = x
