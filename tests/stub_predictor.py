"""Synthetic predictors for search tests (importable by class_path)."""

import numpy as np

from lightning_nas.space import SPACE, Architecture, Stage, n_params

TARGET = Architecture(24, 5, (Stage(4, 2, "B", 2.0, True), Stage(3, 1, "A", 1.5, False), Stage(2, 3, "A", 2.5)))


class TargetPredictor:
    """acc_1d = 100 - distance of the feature vector to TARGET's: a known optimum."""

    def __init__(self, avm_per_stage: float = 1.0) -> None:
        self.target = np.asarray(TARGET.feature_vector())
        self.scale = np.asarray(SPACE.feature_scale(), dtype=float)
        self.avm_per_stage = avm_per_stage
        self.calls = 0

    def predict(self, archs):
        self.calls += 1
        x = np.asarray([a.feature_vector() for a in archs])
        dist = np.abs((x - self.target) / self.scale).sum(axis=1)
        return {"acc_1d": 100.0 - dist, "avm": np.asarray([self.avm_per_stage * a.M for a in archs], float),
                "std": np.full(len(archs), 0.5)}


class SaturatedPredictor(TargetPredictor):
    """A surrogate whose accuracy saturates (every architecture within 15 of the optimum ties
    at the top) and whose AVM grows with the parameter count: winners must be the ties' best."""

    def predict(self, archs):
        out = super().predict(archs)
        out["acc_1d"] = np.minimum(out["acc_1d"], 85.0)
        out["avm"] = np.asarray([n_params(a, (1, 8, 8), 10) / 1e5 for a in archs], float)
        return out


def crash_for_small_stem(job):
    """A campaign 'train' function for worker-crash tests: the worker dies on architectures
    with an 8-channel stem, any other returns a row at once."""
    import os

    arch = job.arch
    if arch.out_channel0 == 8:
        os._exit(1)
    return {"arch_id": arch.id, "status": "ok", "message": ""}


def total_depth(archs, values):
    """A custom search objective (search.objectives with source: stub_predictor.total_depth)."""
    return [sum(s.R for s in a.stages) for a in archs]


class FlooredPredictor(TargetPredictor):
    """A predictor whose metadata records a std floor (as a fit-surrogate directory does), with
    predicted stds below it."""

    meta = {"std_floor": 0.7}

    def predict(self, archs):
        out = super().predict(archs)
        out["std"] = np.linspace(-0.5, 1.5, len(archs))
        return out


class ReportedPredictor(TargetPredictor):
    """A predictor whose metadata holds a fit-surrogate report's held-out errors (AVM and std only)."""

    meta = {"metrics": {"holdout": {"xgb_avm_regressor": {"mae": 1.25, "r2": 0.5},
                                    "xgb_std_regressor": {"mae": 0.5}, "xgb_acc_1d_ranker": {"kendall_tau": 0.7}}}}
