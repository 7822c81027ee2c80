"""Bayesian optimisation with a Tree-structured Parzen Estimator (Bergstra et al. 2011; optuna's
TPE design), over the space's genome and batched: each round fits two densities over the
evaluated architectures, ``l`` over the best ``gamma(n)`` (min(10 %, 25), optuna's default) and
``g`` over the others (the last ``history`` of them: a bounded cost per round), draws
``n_ei_candidates`` candidates from ``l`` per proposal and proposes the one with the highest
``l / g`` among those that are under max_params and new (the sampled space is constrained up
front: no proposal is wasted over the budget or on an architecture evaluated before).

The space is conditional: the global fields, the number of stages and the first stage's fields
form one group, each further stage's fields another (optuna's ``group``), modelled only on the
architectures that have that stage; ``multivariate`` models a group's fields jointly (one product
kernel per architecture), otherwise field by field. Infeasible architectures (outside a
constraint) are in the bad group. The first ``n_startup_trials`` architectures are a Latin
hypercube under max_params, then, while fewer than that are evaluated, fresh samples; a round
whose candidates are all old or over the budget is filled with fresh samples too.

Earlier versions asked optuna's ``TPESampler`` one trial at a time: its cost per trial grows with
the trials (about 0.1 s at 500) and half its proposals were over max_params, so the default
budget of 4,100 evaluations took many minutes (docs/findings/search-quality.md).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from lightning_nas.search.core import Individual, SearchContext, Strategy, best_of
from lightning_nas.search.parzen import ParzenEstimator, gamma, recency_weights
from lightning_nas.space import Architecture


class TPE(Strategy):
    def __init__(self, n_startup_trials: int = 100, n_ei_candidates: int = 24, multivariate: bool = True,
                 history: int = 1000, seed: Optional[int] = None) -> None:
        """
        Args:
            n_startup_trials: architectures evaluated (a Latin hypercube, then fresh samples) before
                the Parzen estimators propose.
            n_ei_candidates: candidates drawn from the good density per proposal (the best ``l / g`` is proposed).
            multivariate: model a group's fields jointly (one product kernel per architecture), else field by field.
            history: the newest "bad" architectures the bad density is fitted on (bounds a round's cost).
            seed: this strategy's seed; null: ``search.seed``.
        """
        if n_startup_trials < 1 or n_ei_candidates < 1 or history < 1:
            raise ValueError("n_startup_trials, n_ei_candidates and history must be >= 1")
        self.n_startup_trials, self.n_ei_candidates, self.multivariate = n_startup_trials, n_ei_candidates, multivariate
        self.history, self.seed = history, seed

    def setup(self, ctx: SearchContext) -> None:
        super().setup(ctx)
        space = self.space = ctx.space
        self.rng = np.random.default_rng(self.run_seed)
        self.first = True
        self.rows: list[list[int]] = []  # choice indices of every evaluated architecture (absent stages: 0)
        self.values: list[float] = []
        self.seen: set[int] = set()  # evaluation indices already recorded
        self.best: list[Individual] = []
        self._fresh = ctx.fresh(self.run_seed + 7919)  # fresh samples under the budget (lazy)
        # groups of genes: the global fields, the depth and stage 0; then each further stage
        self.groups = [[g.position for g in space.genome if g.stage in (None, 0)]]
        self.groups += [[g.position for g in space.stage_genes(i)] for i in range(1, space.max_stages)]
        self.depth_at = next(g.position for g in space.genome if g.dim is space.depth)

    def population(self) -> list[Individual]:
        return self.best

    # -- proposing ---------------------------------------------------------------------

    def _estimators(self, rows: np.ndarray, weights: np.ndarray) -> list[tuple[ParzenEstimator, np.ndarray]]:
        """One estimator per group of genes, over the rows that have that group (and their mask)."""
        stages = np.asarray(self.space.depth.choices)[rows[:, self.depth_at]]
        out = []
        for i, genes in enumerate(self.groups):
            has = stages > i
            dims = [self.space.genome[p].dim for p in genes]
            out.append((ParzenEstimator(dims, rows[has][:, genes], weights[has], self.multivariate), has))
        return out

    def _candidates(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        """``m`` genomes drawn from the good density and their ``log l - log g``."""
        rows, values = np.asarray(self.rows, dtype=np.int64), np.asarray(self.values)
        order = np.argsort(-values, kind="stable")
        n_good = gamma(len(values))
        good, bad = np.sort(order[:n_good]), np.sort(order[n_good:])[-self.history:]
        below = self._estimators(rows[good], recency_weights(len(good)))
        above = self._estimators(rows[bad], recency_weights(len(bad)))
        x = np.zeros((m, len(self.space.genome)), dtype=np.int64)
        for genes, (estimator, _) in zip(self.groups, below):
            x[:, genes] = estimator.sample(m, self.rng)
        stages = np.asarray(self.space.depth.choices)[x[:, self.depth_at]]
        score = np.zeros(m)
        for i, (genes, (l_est, _), (g_est, _)) in enumerate(zip(self.groups, below, above)):
            has = stages > i
            if has.any():
                score[has] += l_est.log_pdf(x[has][:, genes]) - g_est.log_pdf(x[has][:, genes])
        return x, score

    def _propose(self, n: int) -> list[Architecture]:
        """Per proposal, the best of its ``n_ei_candidates`` candidates that is new and under the budget."""
        x, score = self._candidates(n * self.n_ei_candidates)
        out: list[Architecture] = []
        taken: set = set()
        for j in range(n):
            pool = np.arange(j * self.n_ei_candidates, (j + 1) * self.n_ei_candidates)
            for k in pool[np.argsort(-score[pool], kind="stable")]:
                arch = self.space.decode(x[k].tolist())
                if arch not in taken and not self.ctx.is_evaluated(arch) and self.ctx.within_budget(arch):
                    taken.add(arch)
                    out.append(arch)
                    break
        return out + self.ctx.take_new(self._fresh, n - len(out), taken)

    def ask(self) -> list[Architecture]:
        cfg = self.ctx.cfg
        if self.first:
            self.first = False
            return self.ctx.initial(cfg.population, "lhs", self.run_seed)
        if len(self.values) < self.n_startup_trials:
            return self.ctx.take_new(self._fresh, cfg.batch, set())
        return self._propose(cfg.batch)

    # -- learning ----------------------------------------------------------------------
    def tell(self, archs: list[Architecture], individuals: list[Optional[Individual]]) -> None:
        new = [i for i in individuals if i is not None and i.born not in self.seen]
        for ind in new:
            self.seen.add(ind.born)
            self.rows.append([0 if v is None else v for v in self.space.encode(ind.arch)])
            good = ind.feasible and math.isfinite(ind.fitness)
            self.values.append(ind.fitness if good else -math.inf)
        self.best = best_of(self.best + new, self.ctx.cfg.population)
