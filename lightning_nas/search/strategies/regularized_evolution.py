"""Regularized (aging) evolution, Real et al., AAAI 2019: each child is a mutation of the best of
``sample_size`` random members; the oldest member dies for each child added."""

from __future__ import annotations

import random
from collections import deque
from typing import Optional

from lightning_nas.search.core import SearchContext, Strategy, rank_key
from lightning_nas.search.mutations import mutate


class RegularizedEvolution(Strategy):
    def __init__(self, sample_size: int = 25, p_width: float = 0.8, p_depth: float = 0.8, p_other: float = 0.6,
                 seed: Optional[int] = None) -> None:
        """
        Args:
            sample_size: random members whose best is a child's parent.
            p_width: probability that a child's mutation changes its width (branches B, stem channels, widenfact).
            p_depth: probability that it changes its depth (stages M, blocks R, convblock).
            p_other: probability that it changes the rest (skip, stem kernel).
            seed: this strategy's seed; null: ``search.seed``.
        """
        if sample_size < 1:
            raise ValueError(f"sample_size must be >= 1, got {sample_size}")
        self.sample_size = sample_size
        self.probs = {"width": p_width, "depth": p_depth, "other": p_other}
        self.seed = seed
        self.pop: deque = deque()

    def setup(self, ctx: SearchContext) -> None:
        super().setup(ctx)
        self.rng = random.Random(self.run_seed)
        self.pop = deque(maxlen=ctx.cfg.population)  # appending beyond it drops the oldest

    def population(self) -> list:
        return list(self.pop)

    def ask(self):
        if not self.pop:
            return self.ctx.initial(self.ctx.cfg.population, "uniform", self.run_seed)
        children, seen = [], set()
        members = list(self.pop)
        for _ in range(5 * self.ctx.cfg.batch):
            if len(children) == self.ctx.cfg.batch:
                break
            parent = max(self.rng.sample(members, min(self.sample_size, len(members))), key=rank_key)
            child = mutate(parent.arch, self.rng, self.probs)
            if child in seen or self.ctx.is_evaluated(child) or not self.ctx.within_budget(child):
                continue
            seen.add(child)
            children.append(child)
        return children

    def tell(self, archs, individuals) -> None:
        self.pop.extend(i for i in individuals if i is not None)
