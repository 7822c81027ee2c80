"""Result files: written to a temporary name in the same folder, then renamed over the target, so
a run that fails half-way never leaves a file cut mid-record (the old one stays whole)."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make results readable by their owner only
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


def check_writable(directory: str | Path, what: str = "output directory") -> Path:
    """Create ``directory`` and prove a file can be written there, before any long work starts."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        from lightning_nas.errors import UserError

        raise UserError(f"{what} {directory} is not writable ({exc.strerror or exc}); choose another one or fix "
                        "its permissions") from None
    return directory


@contextlib.contextmanager
def staged_directory(out: str | Path) -> Iterator[Path]:
    """Write a set of result files into a staging folder inside ``out``; when all are written, move
    each into place (files and folders replace their old versions whole). A failure while writing
    (disk full, an exception) leaves every old output as it was and removes the staging folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging.", dir=out))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    trash = Path(tempfile.mkdtemp(prefix=".old.", dir=out))
    try:
        for entry in sorted(stage.iterdir()):
            target = out / entry.name
            if target.is_dir() and not target.is_symlink():
                target.rename(trash / entry.name)  # an old folder (winners/) goes whole: no old winner stays
            os.replace(entry, target)
    finally:
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(stage, ignore_errors=True)
