"""Random search: fresh architectures of the space under the parameter budget.

``method: stagewise`` (the default) draws like ``uniform`` but redraws only a stage that takes the
network over max_params (:func:`lightning_nas.space.iter_sample`), instead of rejecting whole
architectures: under the digits budget of 100,000 parameters about 15 uniform draws were
rejected for each one kept."""

from __future__ import annotations

from typing import Literal, Optional

from lightning_nas.search.core import SearchContext, Strategy, best_of


class RandomSearch(Strategy):
    def __init__(self, method: Literal["stagewise", "uniform"] = "stagewise", seed: Optional[int] = None) -> None:
        """
        Args:
            method: ``stagewise`` redraws only a stage that takes a sample over max_params;
                ``uniform`` redraws the whole architecture.
            seed: this strategy's seed; null: ``search.seed``.
        """
        if method not in ("stagewise", "uniform"):
            raise ValueError(f"method must be stagewise or uniform, got {method!r}")
        self.method, self.seed = method, seed
        self.first = True

    def setup(self, ctx: SearchContext) -> None:
        super().setup(ctx)
        self.stream = ctx.fresh(self.run_seed, self.method)
        self.best: list = []

    def population(self) -> list:
        return self.best

    def ask(self):
        n = self.ctx.cfg.population if self.first else self.ctx.cfg.batch
        self.first = False
        return [next(self.stream) for _ in range(n)]

    def tell(self, archs, individuals) -> None:
        self.best = best_of(self.best + [i for i in individuals if i is not None], self.ctx.cfg.population)
