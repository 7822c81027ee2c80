"""Crash-safe store of campaign rows: SQLite, one transaction per finished architecture.

A row is written whole or not at all (SQLite's journal), so a campaign killed at any
moment, ``kill -9`` included, keeps every finished row and no half-written one. The
architecture id is the primary key: a row can't be stored twice.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Iterable

from lightning_nas.errors import UserError
from lightning_nas.files import write_csv

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    arch_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    row TEXT NOT NULL
);
"""


class RowStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=60)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "RowStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- campaign identity -------------------------------------------------------------
    def bind(self, identity: dict[str, Any]) -> None:
        """Record what this store holds (task, analog config, budget); refuse a different one."""
        text = json.dumps(identity, sort_keys=True)
        found = self.conn.execute("SELECT value FROM meta WHERE key='identity'").fetchone()
        if found is None:
            with self.conn:
                self.conn.execute("INSERT INTO meta VALUES ('identity', ?)", (text,))
        elif found[0] != text:
            old = json.loads(found[0])
            diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
            raise UserError(f"store {self.path} holds a campaign with different {', '.join(diff)}; "
                            "use another store path for a new campaign or restore the original config")

    # -- rows ----------------------------------------------------------------------------
    def add(self, row: dict[str, Any]) -> bool:
        """Store ``row`` atomically; False if its architecture is already stored. A stored
        ``failed`` row (a retry) is replaced; ``ok`` and ``diverged`` rows never are."""
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO rows VALUES (?, ?, ?) ON CONFLICT(arch_id) DO UPDATE SET "
                "status = excluded.status, row = excluded.row WHERE rows.status = 'failed'",
                (row["arch_id"], row["status"], json.dumps(row, sort_keys=True)))
        return cur.rowcount == 1

    def ids(self, statuses: tuple[str, ...] | None = None) -> set[str]:
        if statuses is None:
            return {r[0] for r in self.conn.execute("SELECT arch_id FROM rows")}
        marks = ",".join("?" * len(statuses))
        return {r[0] for r in self.conn.execute(f"SELECT arch_id FROM rows WHERE status IN ({marks})", statuses)}

    def rows(self, status: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT row FROM rows" + (" WHERE status = ?" if status else "") + " ORDER BY rowid"
        return [json.loads(r[0]) for r in self.conn.execute(query, (status,) if status else ())]

    def __len__(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0]


def flatten(row: dict[str, Any]) -> dict[str, Any]:
    """One flat record for CSV: nested mappings become ``outer.inner`` columns."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            for k, v in flatten(value).items():
                out[f"{key}.{k}"] = v
        elif isinstance(value, (list, tuple)):
            out[key] = json.dumps(value)
        else:
            out[key] = value
    return out


def export(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as CSV (``.csv``) or Parquet (``.parquet``, needs pandas + pyarrow)."""
    path = Path(path)
    flat = [flatten(r) for r in rows]
    if path.suffix == ".csv":
        write_csv(path, flat)
    elif path.suffix == ".parquet":
        try:
            import pandas as pd
        except ImportError:
            raise UserError("exporting Parquet needs pandas and pyarrow (pip install pandas pyarrow); "
                            "or export to .csv") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(flat).to_parquet(path)
    else:
        raise UserError(f"unknown export format {path.suffix!r}; use a .csv or .parquet path")
    return path

