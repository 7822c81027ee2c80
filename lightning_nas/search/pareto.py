"""Pareto fronts and hypervolume over the chosen objectives, with pymoo's non-dominated sorting
and hypervolume indicator (maintained implementations, not hand-written ones)."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from lightning_nas.search.core import Individual


def front_indices(points: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows of ``points`` (every column: lower is better)."""
    if len(points) == 0:
        return np.empty(0, dtype=int)
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    return np.asarray(NonDominatedSorting().do(points, only_non_dominated_front=True), dtype=int)


def pareto_front(individuals: Sequence[Individual], oriented: Callable[[Individual], list[float]]) -> list[Individual]:
    """The non-dominated individuals (``oriented(ind)``: objectives, lower is better), sorted by
    the first objective (best first); duplicates in objective space are all kept."""
    if not individuals:
        return []
    points = np.asarray([oriented(i) for i in individuals], dtype=np.float64)
    keep = front_indices(points)
    return sorted((individuals[k] for k in keep), key=lambda i: tuple(oriented(i)))


def hypervolume(points: np.ndarray, reference: Sequence[float], ideal: Optional[Sequence[float]] = None) -> float:
    """Hypervolume (pymoo's indicator) of ``points`` (lower is better) up to ``reference``; with
    ``ideal`` the objectives are first scaled to [0, 1] between ``ideal`` and ``reference`` (so
    the result is a fraction of the box). Points beyond the reference count nothing."""
    from pymoo.indicators.hv import HV

    points = np.asarray(points, dtype=np.float64).reshape(-1, len(reference))
    ref = np.asarray(reference, dtype=np.float64)
    if ideal is not None:
        low = np.asarray(ideal, dtype=np.float64)
        span = np.where(ref - low > 0, ref - low, 1.0)
        points, ref = (points - low) / span, np.ones_like(ref)
    inside = points[(points < ref).all(axis=1)]
    return float(HV(ref_point=ref)(inside)) if len(inside) else 0.0
