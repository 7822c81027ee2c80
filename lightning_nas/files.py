"""Result files: written to a temporary name in the same folder, then renamed over the target, so
a run that fails half-way never leaves a file cut mid-record (the old one stays whole)."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def csv_text(rows: Iterable[dict[str, Any]], columns: Optional[Sequence[str]] = None) -> str:
    """CSV with a header: ``columns`` (extra keys ignored), or every key in order of appearance."""
    rows = list(rows)
    if columns is None:
        columns = []
        for r in rows:
            columns += [c for c in r if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns) or ["arch_id"], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(path: str | Path, rows: Iterable[dict[str, Any]], columns: Optional[Sequence[str]] = None) -> Path:
    """Write ``rows`` as CSV (see :func:`csv_text`), atomically."""
    return write_text(path, csv_text(rows, columns))
