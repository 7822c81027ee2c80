"""Fitness landscapes with known optima, for testing and benchmarking search strategies.

Both are predictors (``predict(archs) -> {acc_1d, avm, std}``) usable as
``--predictor '{"class_path": "lightning_nas.search.landscapes.Deceptive"}' --task digits``.
Distances are L1 over the architecture's feature vector with a scale per field (one mutation
step moves 0.25 to 1), so the landscapes are smooth in the mutation neighbourhood.

* :class:`Target`: ``acc_1d = 100 - d(arch, optimum)``: one peak, unimodal.
* :class:`Deceptive`: the maximum of several cones ``height - slope * d(arch, peak)``; the
  global peak (100) is the narrowest, four local peaks (95.5 to 98) are broad, so a greedy
  search mostly climbs a local one and needs restarts or diversity to find the global one.

The default optima are under 100,000 parameters for digits (1 x 8 x 8, 10 classes), the
shipped search's budget. AVM grows with depth and lack of skips; std is constant (0.5 pp).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lightning_nas.space import SPACE, Architecture, Stage

SCALE = np.asarray(SPACE.feature_scale(), dtype=np.float64)  # one mutation step of each feature ~ 1

TARGET_OPTIMUM = Architecture(24, 5, (Stage(4, 2, "B", 1.5, True), Stage(3, 1, "A", 1.0, False)))
GLOBAL_PEAK = Architecture(16, 3, (Stage(6, 1, "A", 1.5, True), Stage(2, 2, "B", 2.0, True),
                                   Stage(3, 1, "B", 1.0, False)))
LOCAL_PEAKS = (
    (98.0, Architecture(48, 7, (Stage(12, 3, "B", 1.0, True),))),
    (97.0, Architecture(8, 5, (Stage(1, 4, "A", 3.0, False), Stage(10, 1, "B", 1.5, True)))),
    (96.5, Architecture(16, 3, (Stage(3, 2, "A", 1.0, True), Stage(3, 1, "A", 1.0, True),
                                Stage(3, 2, "B", 1.0, True), Stage(3, 1, "A", 1.0, True)))),
    (95.5, Architecture(12, 7, (Stage(8, 1, "B", 2.5, False), Stage(1, 3, "B", 1.0, False),
                                Stage(2, 1, "A", 1.0, True), Stage(5, 2, "B", 1.0, True),
                                Stage(1, 1, "A", 1.0, False)))),
)


def features(archs: Sequence[Architecture]) -> np.ndarray:
    return np.asarray([a.feature_vector() for a in archs], dtype=np.float64)


def distance(archs: Sequence[Architecture], peak: Architecture) -> np.ndarray:
    return (np.abs(features(archs) - np.asarray(peak.feature_vector())) / SCALE).sum(axis=1)


def analog_terms(archs: Sequence[Architecture]) -> dict[str, np.ndarray]:
    """AVM rises with depth and with stages without skips; std is a constant 0.5 pp."""
    avm = np.asarray([0.1 * sum(s.R for s in a.stages) + 0.5 * sum(not s.skip for s in a.stages) for a in archs])
    return {"avm": avm, "std": np.full(len(archs), 0.5)}


class Target:
    """One peak: ``acc_1d = 100 - d(arch, optimum)`` (optimum: an architecture dict or the default)."""

    optimum_value = 100.0

    def __init__(self, optimum: dict | None = None) -> None:
        self.optimum = Architecture.from_dict(optimum) if optimum else TARGET_OPTIMUM
        self.calls = 0

    def predict(self, archs: Sequence[Architecture]) -> dict[str, np.ndarray]:
        self.calls += 1
        return {"acc_1d": 100.0 - distance(archs, self.optimum), **analog_terms(archs)}


class Deceptive:
    """The global peak (100, slope ``global_slope``) among broad local peaks (slope 1)."""

    optimum_value = 100.0

    def __init__(self, global_slope: float = 1.0) -> None:
        self.optimum = GLOBAL_PEAK
        self.cones = [(100.0, global_slope, GLOBAL_PEAK)] + [(h, 1.0, p) for h, p in LOCAL_PEAKS]
        self.calls = 0

    def predict(self, archs: Sequence[Architecture]) -> dict[str, np.ndarray]:
        self.calls += 1
        acc = np.max([h - s * distance(archs, p) for h, s, p in self.cones], axis=0)
        return {"acc_1d": acc, **analog_terms(archs)}
