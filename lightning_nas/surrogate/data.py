"""Surrogate training data: feature rows and targets from a campaign's rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import numpy as np

from lightning_nas.analog import HARDWARE_FEATURES
from lightning_nas.errors import UserError
from lightning_nas.space import Architecture, feature_names

TARGETS = {"acc_1d": "acc_1d", "avm": "avm", "std": "acc_1d_std"}  # predictor key -> row metric
MIN_ROWS = 10


def all_feature_names() -> list[str]:
    """The surrogate's inputs: the architecture's features, then the hardware's."""
    return feature_names() + [f"analog_{name}" for name in HARDWARE_FEATURES]


def feature_row(arch: Architecture, hardware: Mapping[str, float]) -> list[float]:
    """One surrogate input row (the order of :func:`all_feature_names`)."""
    return arch.feature_vector() + [float(hardware[name]) for name in HARDWARE_FEATURES]


def feature_matrix(archs: Sequence[Architecture], hardware: Mapping[str, float]) -> np.ndarray:
    """Input rows of ``archs``, all on the same ``hardware``."""
    return np.asarray([feature_row(a, hardware) for a in archs], dtype=np.float32)


class TrainingSet(NamedTuple):
    """Inputs, targets (by predictor key, see :data:`TARGETS`) and architectures of usable rows."""

    x: np.ndarray
    y: dict[str, np.ndarray]
    archs: list[Architecture]


def inputs(rows: Sequence[dict[str, Any]]) -> tuple[list[Architecture], np.ndarray]:
    """The architectures of campaign rows and their surrogate input rows (each on its own hardware)."""
    archs = [Architecture.from_dict(r["arch"]) for r in rows]
    return archs, np.asarray([feature_row(a, r["analog"]) for a, r in zip(archs, rows)], dtype=np.float32)


def training_set(rows: Sequence[dict[str, Any]]) -> TrainingSet:
    if len(rows) < MIN_ROWS:
        raise UserError(f"only {len(rows)} usable rows (status ok); a surrogate needs at least {MIN_ROWS}")
    archs, x = inputs(rows)
    y = {key: np.asarray([r["metrics"][metric] for r in rows], dtype=np.float64) for key, metric in TARGETS.items()}
    return TrainingSet(x, y, archs)


def comparison_targets(rows: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Other ways to predict AVM, for the report's comparison: ``acc_1s`` and ``acc_30d`` (AVM as
    their difference) when every row has them, and ``drift_slope`` (pp per decade of time over all
    the rows' drift times, :func:`lightning_nas.metrics.drift_slope`) with ``avm_per_slope`` (the
    factor that turns a slope into the AVM between the first and the last time) when every row has
    the same three or more drift times, all after 0 s (otherwise no slope comparison)."""
    from lightning_nas.metrics import drift_slope, label_seconds

    out: dict[str, np.ndarray] = {}
    if all("acc_1s" in r["metrics"] and "acc_30d" in r["metrics"] for r in rows):
        out.update({k: np.asarray([r["metrics"][k] for r in rows], dtype=np.float64) for k in ("acc_1s", "acc_30d")})
    labels = [set(k[len("acc_"):] for k in r["metrics"] if k.startswith("acc_") and not k.endswith("_std"))
              for r in rows]
    if labels and all(ls == labels[0] for ls in labels) and len(labels[0]) >= 3:
        try:
            times = sorted((label_seconds(label), label) for label in labels[0])
        except ValueError:  # a metric named like acc_<something else>
            return out
        if times[0][0] <= 0:  # a drift time of 0 s has no logarithm
            return out
        out["drift_slope"] = np.asarray([drift_slope({t: r["metrics"][f"acc_{label}"] for t, label in times})
                                         for r in rows], dtype=np.float64)
        out["avm_per_slope"] = np.full(len(rows), -(np.log10(times[-1][0]) - np.log10(times[0][0])))
    return out


LEARNED_METRIC = "acc_1s"


def default_learned_threshold(num_classes: int) -> float:
    """Accuracy (%) an architecture must reach to count as having learned: a quarter of the way from
    chance to 100 % (32.5 % for 10 classes, 62.5 % for 2)."""
    chance = 100.0 / num_classes
    return round(chance + 0.25 * (100.0 - chance), 2)


def learned_mask(rows: Sequence[dict[str, Any]], threshold: float) -> np.ndarray:
    """Which rows learned: the programmed network's accuracy at 1 s (``acc_1s``) is at least
    ``threshold`` %. A network near chance has an AVM and a 1-day std of nothing but noise, so the
    AVM and std models are fitted and scored on these rows only. ``threshold`` 0: every row."""
    if threshold <= 0:
        return np.ones(len(rows), dtype=bool)
    missing = [r.get("arch_id", "?") for r in rows if LEARNED_METRIC not in r["metrics"]]
    if missing:
        raise UserError(f"{len(missing)} rows have no {LEARNED_METRIC} (e.g. {missing[0]}), needed to tell which "
                        "architectures learned; rebuild them with build-dataset, or set learned_threshold: 0")
    return np.asarray([float(r["metrics"][LEARNED_METRIC]) >= threshold for r in rows], dtype=bool)


def load_rows(path: str | Path, status: str = "ok") -> list[dict[str, Any]]:
    """Rows with ``status`` from a campaign store (``.sqlite``) or its CSV export: ``ok`` rows with their
    metrics, or e.g. ``diverged`` ones (a NaN loss: architecture and hardware only, no metrics; the
    learned classifier counts them as architectures that did not learn)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"surrogate data {path} does not exist; run build-dataset first or fix the path")
    if path.suffix == ".csv":
        with path.open() as f:
            rows = []
            for rec in csv.DictReader(f):
                if rec["status"] != status:
                    continue
                row = {"arch_id": rec["arch_id"], "status": status, "arch": _arch_from_csv(rec), "task": rec.get("task", ""),
                       "analog": {k: float(rec[f"analog.{k}"]) for k in HARDWARE_FEATURES}}
                if status == "ok":  # every drift metric the export holds (acc_1s tells which rows learned)
                    row["metrics"] = {k.removeprefix("metrics."): float(v) for k, v in rec.items()
                                      if k.startswith("metrics.") and v not in ("", None)}
                rows.append(row)
        return rows
    from lightning_nas.campaign.store import RowStore

    with RowStore(path, readonly=True) as store:
        return store.rows(status)


def load_replicates(path: str | Path) -> list[dict[str, Any]]:
    """The replicate rows (all statuses) of a campaign store; none from a CSV export."""
    path = Path(path)
    if path.suffix == ".csv" or not path.is_file():
        return []
    from lightning_nas.campaign.store import RowStore

    with RowStore(path, readonly=True) as store:
        return store.replicate_rows(status=None)


def _arch_from_csv(rec: dict[str, str]) -> dict[str, Any]:
    return {"out_channel0": int(rec["arch.out_channel0"]), "kernel0": int(rec["arch.kernel0"]),
            "stages": json.loads(rec["arch.stages"])}


def load_task(path: str | Path, rows: Sequence[dict[str, Any]] = ()) -> Optional[dict[str, Any]]:
    """The task the rows at ``path`` were trained on (:class:`lightning_nas.task.TaskInfo` as a dict):
    recorded in a store; for a CSV export, the datamodule class of the rows' ``task`` column (its
    default input shape); ``None`` when unknown. Rows of several tasks are refused."""
    path = Path(path)
    if path.suffix != ".csv":
        from lightning_nas.campaign.store import RowStore

        with RowStore(path, readonly=True) as store:
            return store.task()
    names = {r.get("task") for r in rows} - {None, ""}
    if len(names) > 1:
        raise UserError(f"{path} holds rows of several tasks ({', '.join(sorted(names))}); fit one surrogate per task")
    if not names:
        return None
    from lightning_nas.data import datamodules
    from lightning_nas.task import task_of

    name = next(iter(names))
    return task_of(name).to_dict() if name in datamodules() else None  # the task's default arguments
