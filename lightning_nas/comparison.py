"""The comparison table of retrained architectures (``retrain``'s ``comparison.csv`` / ``.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from lightning_nas.files import write_csv, write_text

COLUMNS = ("name", "arch_id", "n_params", "acc_1s", "acc_1h", "acc_1d", "acc_30d", "acc_1d_std", "avm",
           "tiles", "latency_us", "energy_uj")
"""Accuracies in %, AVM in percentage points; the analog cost of one inference
(:mod:`lightning_nas.hardware_cost`) in tiles, microseconds and microjoules."""


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = ""
    for r in rows:
        values = [r.get(c, "") for c in COLUMNS]  # drift times outside the defaults: empty cells
        cells = [f"{v:.2f}" if isinstance(v, float) else (f"{v:,}" if c in ("n_params", "tiles") and v != "" else str(v))
                 for c, v in zip(COLUMNS, values)]
        body += "| " + " | ".join(cells) + " |\n"
    return head + body


def write_comparison(out_dir: str | Path, rows: Sequence[dict[str, Any]]) -> list[Path]:
    """``comparison.csv`` and ``comparison.md`` in ``out_dir`` (each replaced whole)."""
    out_dir = Path(out_dir)
    return [write_csv(out_dir / "comparison.csv", rows, COLUMNS), write_text(out_dir / "comparison.md", markdown(rows))]
