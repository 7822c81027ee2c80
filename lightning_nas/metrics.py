"""Analog drift metrics: names, units and how they are computed (the one place for them).

Accuracies are in percent (0-100). For drift times ``t_1 < ... < t_n`` and
``n_reps`` programming repetitions:

* ``analog/acc_<t>``: mean accuracy over the repetitions at time ``t``
  (``<t>`` is ``1s``, ``1h``, ``1d``, ``30d``; see :func:`time_label`);
* ``analog/acc_1d_std``: standard deviation over repetitions at the std time
  (1 day by default; the name follows that time);
* ``analog/avm``: accuracy variation over one month, ``acc(t_1) - acc(t_n)`` in
  percentage points (with the default times ``acc(1 s) - acc(30 d)``); positive
  means the accuracy drops over time;
* the *drift slope* (:func:`drift_slope`, not logged; a surrogate comparison target): the
  least-squares slope of the mean accuracy against ``log10(t)``, in percentage points per decade
  of time (negative when the accuracy drops).
"""

from __future__ import annotations

import math
import statistics
from typing import Mapping, Sequence

PREFIX = "analog/"
SECOND, HOUR, DAY = 1.0, 3600.0, 86400.0
DEFAULT_TIMES = (SECOND, HOUR, DAY, 30 * DAY)


def time_label(seconds: float) -> str:
    """``1`` -> ``1s``, ``3600`` -> ``1h``, ``86400`` -> ``1d``, ``2592000`` -> ``30d``."""
    for unit, size in (("d", DAY), ("h", HOUR), ("min", 60.0), ("s", SECOND)):
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def label_seconds(label: str) -> float:
    """The inverse of :func:`time_label`: ``1s`` -> 1, ``1h`` -> 3600, ``30d`` -> 2592000."""
    for unit, size in (("min", 60.0), ("d", DAY), ("h", HOUR), ("s", SECOND)):
        if label.endswith(unit):
            try:
                return float(label[: -len(unit)]) * size
            except ValueError:
                break
    raise ValueError(f"not a drift-time label: {label!r}")


def drift_slope(accuracy_by_time: Mapping[float, float]) -> float:
    """Least-squares slope (pp per decade of time) of the accuracy (%) against ``log10(seconds)``
    over at least two drift times."""
    if len(accuracy_by_time) < 2:
        raise ValueError("drift_slope needs at least two drift times")
    logs = [math.log10(t) for t in accuracy_by_time]
    accs = list(accuracy_by_time.values())
    mean_log, mean_acc = statistics.fmean(logs), statistics.fmean(accs)
    return (sum((u - mean_log) * (a - mean_acc) for u, a in zip(logs, accs))
            / sum((u - mean_log) ** 2 for u in logs))


def drift_summary(accuracies: Mapping[float, Sequence[float]], std_time: float = DAY,
                  prefix: str = PREFIX) -> dict[str, float]:
    """Summarise accuracies (percent) per drift time, one value per repetition.

    Returns ``{"analog/acc_<t>": mean, ..., "analog/acc_<std_time>_std": std, "analog/avm": avm}``.
    """
    times = sorted(accuracies)
    if not times or any(len(accuracies[t]) == 0 for t in times):
        raise ValueError("drift_summary needs at least one accuracy for every drift time")
    if std_time not in accuracies:
        raise ValueError(f"std_time {std_time} s is not one of the drift times {times}")
    out = {f"{prefix}acc_{time_label(t)}": float(statistics.fmean(accuracies[t])) for t in times}
    reps = accuracies[std_time]
    out[f"{prefix}acc_{time_label(std_time)}_std"] = float(statistics.stdev(reps)) if len(reps) > 1 else 0.0
    out[f"{prefix}avm"] = out[f"{prefix}acc_{time_label(times[0])}"] - out[f"{prefix}acc_{time_label(times[-1])}"]
    return out


def format_table(metrics: Mapping[str, float]) -> str:
    """A small text table of the drift metrics for terminals."""
    rows = [(k.split("/", 1)[-1], v) for k, v in metrics.items()]
    width = max(len(k) for k, _ in rows)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  -------"]
    lines += [f"{k.ljust(width)}  {v:7.2f}" for k, v in rows]
    return "\n".join(lines)
