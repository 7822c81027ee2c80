"""Surrogate training data: feature matrix and targets from a campaign's rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lightning_nas.analog import AnalogConfig
from lightning_nas.errors import UserError
from lightning_nas.space import Architecture, feature_names

ANALOG_FEATURES = tuple(AnalogConfig().features())  # the hardware features, defined in one place
TARGETS = {"acc_1d": "acc_1d", "avm": "avm", "std": "acc_1d_std"}  # predictor key -> row metric


def all_feature_names() -> list[str]:
    return feature_names() + [f"analog_{name}" for name in ANALOG_FEATURES]


def features(archs: Sequence[Architecture], analog: dict[str, float]) -> np.ndarray:
    hw = [float(analog[name]) for name in ANALOG_FEATURES]
    return np.asarray([a.features() + hw for a in archs], dtype=np.float32)


def load_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows with status ``ok`` from a campaign store (``.sqlite``) or its CSV export."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"surrogate data {path} does not exist; run build-dataset first or fix the path")
    if path.suffix == ".csv":
        with path.open() as f:
            rows = []
            for rec in csv.DictReader(f):
                if rec["status"] != "ok":
                    continue
                rows.append({"arch": _arch_from_csv(rec),
                             "analog": {k: float(rec[f"analog.{k}"]) for k in ANALOG_FEATURES},
                             "metrics": {k: float(rec[f"metrics.{k}"]) for k in TARGETS.values()}})
        return rows
    from lightning_nas.campaign.store import RowStore

    with RowStore(path) as store:
        return store.rows("ok")


def _arch_from_csv(rec: dict[str, str]) -> dict[str, Any]:
    return {"out_channel0": int(rec["arch.out_channel0"]), "kernel0": int(rec["arch.kernel0"]),
            "stages": json.loads(rec["arch.stages"])}


def matrix(rows: list[dict[str, Any]]) -> tuple[np.ndarray, dict[str, np.ndarray], list[Architecture]]:
    if len(rows) < 10:
        raise UserError(f"only {len(rows)} usable rows (status ok); a surrogate needs at least 10")
    archs = [Architecture.from_dict(r["arch"]) for r in rows]
    x = np.asarray([a.features() + [float(r["analog"][k]) for k in ANALOG_FEATURES] for a, r in zip(archs, rows)],
                   dtype=np.float32)
    y = {key: np.asarray([r["metrics"][metric] for r in rows], dtype=np.float64) for key, metric in TARGETS.items()}
    return x, y, archs
