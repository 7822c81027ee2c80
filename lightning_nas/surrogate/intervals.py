"""Prediction intervals of the surrogate's labels: Mondrian split-conformal, calibrated on held-out rows.

For each label (acc_1d, AVM, std) the held-out rows' residuals (measured - predicted) are grouped
by the prediction's level (``BINS`` bins between quantiles of the held-out predictions: "Mondrian"
conformal prediction, Vovk et al. 2005), and each bin's residual quantiles give the interval's
offsets: ``[prediction + low, prediction + high]`` holds the measured label with probability at
least ``level`` for a new architecture like the held-out ones (split conformal: the finite-sample
quantile ranks below), and the point prediction is recentred on the bin's median residual
(:func:`recentred`). Per bin, so that an interval is wider or shifted where the predictions err
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
MIN_SLOPE = 0.1
"""The recentred prediction rises at least this much per unit of the model's prediction."""


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
    low, high, shift, centre = [], [], [], []
    for b in range(bins):
        r = residual[which == b]
        if len(r) == 0:  # equal edges (many equal predictions): use every residual
            r = residual
        low.append(_rank_quantile(r, alpha / 2, upper=False))
        high.append(_rank_quantile(r, 1 - alpha / 2, upper=True))
        shift.append(float(np.median(r)))
        centre.append(float(np.median(predicted[which == b])) if (which == b).any() else float(np.median(predicted)))
    for b in range(1, bins):  # keep the recentred map increasing: its slope is 1 + d(shift)/d(prediction)
        gap = centre[b] - centre[b - 1]
        if gap <= 0:
            shift[b] = shift[b - 1]
        else:
            shift[b] = max(shift[b], shift[b - 1] - (1 - MIN_SLOPE) * gap)
    return {"level": level, "edges": edges, "low": low, "high": high, "shift": shift, "centre": centre}


def _bins(predicted: np.ndarray, cal: Mapping[str, Any]) -> np.ndarray:
    return np.searchsorted(np.asarray(cal["edges"], float), np.asarray(predicted, float), side="right")


def interval(predicted: np.ndarray, cal: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The (low, high) bounds of ``predicted`` (the model's own prediction) under calibration ``cal``."""
    predicted, which = np.asarray(predicted, float), _bins(predicted, cal)
    return predicted + np.asarray(cal["low"])[which], predicted + np.asarray(cal["high"])[which]


def recentred(predicted: np.ndarray, cal: Mapping[str, Any]) -> np.ndarray:
    """``predicted`` moved by the median held-out residual of predictions like it (``shift`` at each
    bin's median prediction, ``centre``; interpolated between them, constant beyond; none in
    calibrations made before it): where the model errs one way (a low predicted AVM is
    underpredicted), the point prediction moves to the middle of what such predictions measured. The
    map is continuous and increasing (slope at least :data:`MIN_SLOPE`), so it keeps the model's order."""
    if "shift" not in cal:
        return np.asarray(predicted, float)
    predicted = np.asarray(predicted, float)
    return predicted + np.interp(predicted, cal["centre"], cal["shift"])


def halves(keys: Sequence[str]) -> np.ndarray:
    """A fixed split of rows into two halves by the hash of their key: True for the first half."""
    return np.array([int(hashlib.sha256(f"halves:{k}".encode()).hexdigest()[:8], 16) % 2 == 0 for k in keys])


def measured_coverage(predicted: np.ndarray, measured: np.ndarray, keys: Sequence[str],
                      level: float = LEVEL) -> dict[str, float]:
    """Coverage and mean width of intervals calibrated on one half of the rows, checked on the other
    (both ways): what the intervals are worth on rows they were not calibrated on."""
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    first = halves(keys)
    inside, widths, errors, raw_errors = [], [], [], []
    for cal_rows in (first, ~first):
        if cal_rows.sum() < 2 or (~cal_rows).sum() < 1:
            continue
        cal = calibrate_intervals(predicted[cal_rows], measured[cal_rows], level)
        lo, hi = interval(predicted[~cal_rows], cal)
        inside.append((measured[~cal_rows] >= lo) & (measured[~cal_rows] <= hi))
        widths.append(hi - lo)
        errors.append(np.abs(measured[~cal_rows] - recentred(predicted[~cal_rows], cal)))
        raw_errors.append(np.abs(measured[~cal_rows] - predicted[~cal_rows]))
    if not inside:
        return {"coverage": float("nan"), "width": float("nan"), "rows": 0}
    return {"coverage": float(np.concatenate(inside).mean()), "width": float(np.concatenate(widths).mean()),
            "mae_recentred": float(np.concatenate(errors).mean()), "mae_raw": float(np.concatenate(raw_errors).mean()),
            "rows": int(len(predicted))}
