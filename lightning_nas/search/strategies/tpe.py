"""Bayesian optimisation: optuna's Tree-structured Parzen Estimator through its ask/tell interface,
over the conditional space (stage fields exist only for the stages an architecture has;
``multivariate`` and ``group`` model each sub-space jointly), maximising the fitness. Infeasible
architectures (over max_params: never predicted; or outside a constraint) are told the worst
value, which TPE (rank-based) puts in its "bad" group; optuna's ``constraints_func`` did the same
at several times the cost per trial. TPE's cost per trial grows with the number of trials (README: its time)."""

from __future__ import annotations

import math
import warnings
from typing import Any

from lightning_nas.search.core import Individual, SearchContext, Strategy
from lightning_nas.space import (B_RANGE, CONVBLOCKS, KERNEL0, MAX_STAGES, OUT_CHANNEL0, R_RANGE, WIDENFACTS,
                                 Architecture, Stage)


def suggest(trial: Any) -> Architecture:
    """An architecture from an optuna trial, defined by running: a stage's fields are suggested
    only if the architecture has that stage."""
    c0 = trial.suggest_categorical("out_channel0", list(OUT_CHANNEL0))
    k0 = trial.suggest_categorical("kernel0", list(KERNEL0))
    stages = []
    for i in range(trial.suggest_int("M", 1, MAX_STAGES)):
        stages.append(Stage(R=trial.suggest_int(f"stage{i}_R", *R_RANGE), B=trial.suggest_int(f"stage{i}_B", *B_RANGE),
                            convblock=trial.suggest_categorical(f"stage{i}_convblock", list(CONVBLOCKS)),
                            widenfact=trial.suggest_categorical(f"stage{i}_widenfact", list(WIDENFACTS)),
                            skip=trial.suggest_categorical(f"stage{i}_skip", [False, True])))
    return Architecture(c0, k0, tuple(stages))


WORST = -1e12


class TPE(Strategy):
    def __init__(self, n_startup_trials: int = 100, n_ei_candidates: int = 24, multivariate: bool = True,
                 seed: int = 0) -> None:
        if n_startup_trials < 1 or n_ei_candidates < 1:
            raise ValueError("n_startup_trials and n_ei_candidates must be >= 1")
        self.n_startup_trials, self.n_ei_candidates, self.multivariate = n_startup_trials, n_ei_candidates, multivariate
        self.seed = seed

    def setup(self, ctx: SearchContext) -> None:
        super().setup(ctx)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():  # multivariate and group are "experimental"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                n_startup_trials=self.n_startup_trials, n_ei_candidates=self.n_ei_candidates,
                multivariate=self.multivariate, group=self.multivariate, seed=self.seed)
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self.first = True
        self.trials: list[Any] = []

    def ask(self) -> list[Architecture]:
        n = self.ctx.cfg.population if self.first else self.ctx.cfg.batch
        self.first = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.trials = [self.study.ask() for _ in range(n)]
            return [suggest(t) for t in self.trials]

    def tell(self, archs: list[Architecture], individuals: list[Individual | None]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for trial, ind in zip(self.trials, individuals):
                feasible = ind is not None and ind.feasible and math.isfinite(ind.fitness)
                self.study.tell(trial, float(ind.fitness) if feasible else WORST)
