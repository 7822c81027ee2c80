"""Prediction intervals of the surrogate's labels: Mondrian split-conformal, calibrated on held-out rows.

For each label (acc_1d, AVM, std) the held-out rows' residuals (measured - predicted) are grouped
by the prediction's level (``BINS`` bins between quantiles of the held-out predictions: "Mondrian"
conformal prediction, Vovk et al. 2005), and each bin's residual quantiles give the interval's
offsets: ``[prediction + low, prediction + high]`` holds the measured label with probability at
least ``level`` for a new architecture like the held-out ones (split conformal: the finite-sample
quantile ranks below). Per bin, so that an interval is wider or shifted where the predictions err
more or err one way: a search that selects low predicted AVM selects the bin where AVM is
underpredicted, and that bin's interval says so.

How well that holds is measured, not assumed: the held-out rows are split in two halves (by the
hash of their id); intervals calibrated on one half are checked on the other, both ways, and the
share of measured labels inside is reported as ``coverage`` (and in ``report.md``).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Mapping, Sequence

import numpy as np

LEVEL = 0.8
"""The nominal coverage of the intervals."""
BINS = 3
"""Bins of the prediction's level (fewer when the rows are few: at least :data:`MIN_PER_BIN` each)."""
MIN_PER_BIN = 20


def _rank_quantile(values: np.ndarray, q: float, upper: bool) -> float:
    """The split-conformal quantile: the ``ceil((n + 1) q)``-th smallest (upper tail) or
    ``floor((n + 1) q)``-th smallest (lower tail) of ``values``, clipped to the sample."""
    s = np.sort(values)
    n = len(s)
    k = math.ceil((n + 1) * q) if upper else math.floor((n + 1) * q)
    return float(s[min(max(k, 1), n) - 1])


def calibrate_intervals(predicted: np.ndarray, measured: np.ndarray, level: float = LEVEL) -> dict[str, Any]:
    """Bin edges and each bin's residual offsets (``low``, ``high``) from held-out predictions."""
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    bins = max(1, min(BINS, len(predicted) // MIN_PER_BIN))
    edges = [float(e) for e in np.quantile(predicted, np.linspace(0, 1, bins + 1)[1:-1])]
    which = np.searchsorted(edges, predicted, side="right")
    residual = measured - predicted
    alpha = 1 - level
    low, high = [], []
    for b in range(bins):
        r = residual[which == b]
        if len(r) == 0:  # equal edges (many equal predictions): use every residual
            r = residual
        low.append(_rank_quantile(r, alpha / 2, upper=False))
        high.append(_rank_quantile(r, 1 - alpha / 2, upper=True))
    return {"level": level, "edges": edges, "low": low, "high": high}


def interval(predicted: np.ndarray, cal: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The (low, high) bounds of ``predicted`` under calibration ``cal``."""
    predicted = np.asarray(predicted, float)
    which = np.searchsorted(np.asarray(cal["edges"], float), predicted, side="right")
    return predicted + np.asarray(cal["low"])[which], predicted + np.asarray(cal["high"])[which]


def halves(keys: Sequence[str]) -> np.ndarray:
    """A fixed split of rows into two halves by the hash of their key: True for the first half."""
    return np.array([int(hashlib.sha256(f"halves:{k}".encode()).hexdigest()[:8], 16) % 2 == 0 for k in keys])


def measured_coverage(predicted: np.ndarray, measured: np.ndarray, keys: Sequence[str],
                      level: float = LEVEL) -> dict[str, float]:
    """Coverage and mean width of intervals calibrated on one half of the rows, checked on the other
    (both ways): what the intervals are worth on rows they were not calibrated on."""
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    first = halves(keys)
    inside, widths = [], []
    for cal_rows in (first, ~first):
        if cal_rows.sum() < 2 or (~cal_rows).sum() < 1:
            continue
        cal = calibrate_intervals(predicted[cal_rows], measured[cal_rows], level)
        lo, hi = interval(predicted[~cal_rows], cal)
        inside.append((measured[~cal_rows] >= lo) & (measured[~cal_rows] <= hi))
        widths.append(hi - lo)
    if not inside:
        return {"coverage": float("nan"), "width": float("nan"), "rows": 0}
    return {"coverage": float(np.concatenate(inside).mean()), "width": float(np.concatenate(widths).mean()),
            "rows": int(len(predicted))}
