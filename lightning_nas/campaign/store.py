"""Crash-safe store of campaign rows: SQLite, one transaction per finished architecture.

A row is written whole or not at all (SQLite's journal), so a campaign killed at any
moment, ``kill -9`` included, keeps every finished row and no half-written one. The
architecture id is the primary key: a row can't be stored twice. Rows of cheaper rungs
(:mod:`lightning_nas.campaign.fidelity`) and replicates have tables of their own, keyed by
architecture and fidelity or seed.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, TextIO

from lightning_nas.campaign.train import Row
from lightning_nas.errors import UserError
from lightning_nas.files import write_csv

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    arch_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    row TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS replicates (
    arch_id TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    row TEXT NOT NULL,
    PRIMARY KEY (arch_id, seed)
);
CREATE TABLE IF NOT EXISTS fidelity_rows (
    arch_id TEXT NOT NULL,
    fidelity TEXT NOT NULL,
    status TEXT NOT NULL,
    row TEXT NOT NULL,
    PRIMARY KEY (arch_id, fidelity)
);
"""


class RowStore:
    """The rows of one campaign in an SQLite file.

    ``readonly=True`` opens an existing store for reading only (what ``fit-surrogate`` needs; a
    store on a read-only file system or shipped read-only works). A file that is not a readable
    store is refused with a :class:`UserError` naming it; it is never modified.
    """

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock: Optional[TextIO] = None
        if readonly and not self.path.is_file():
            raise UserError(f"no campaign store at {self.path}; run build-dataset first or fix the path")
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = self._connect()
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path} is not a readable campaign store ({exc}); it was left as it is: "
                            "move it aside or choose another store path") from None

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            for flags in ("mode=ro", "mode=ro&immutable=1"):  # immutable: a WAL store in a read-only place
                conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?{flags}", uri=True, timeout=60)
                try:
                    conn.execute("SELECT COUNT(*) FROM rows").fetchone()
                    conn.execute("SELECT COUNT(*) FROM meta").fetchone()
                    return conn
                except sqlite3.OperationalError as exc:
                    conn.close()
                    if "no such table" in str(exc):
                        raise sqlite3.DatabaseError("no campaign tables") from None
                    error = exc
            raise error
        conn = sqlite3.connect(self.path, timeout=60)
        for attempt in range(50):  # a store created by two processes at once: the loser waits
            try:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if tables and not {"meta", "rows"} <= tables:
                    conn.close()
                    raise sqlite3.DatabaseError(f"an SQLite file of something else, tables {', '.join(sorted(tables))}")
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")  # both tables or none, for others
                return conn
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    conn.close()
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def lock(self) -> None:
        """Hold the store for one campaign (until :meth:`close` or the process ends, ``kill -9``
        included): a second campaign on the same store is refused instead of training the same
        architectures twice."""
        import fcntl

        lock_path = self.path.with_name(self.path.name + ".lock")
        handle = open(lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UserError(f"store {self.path} is in use by a running campaign ({holder}); wait for it to "
                            "finish or use another store path") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._lock = handle

    def close(self) -> None:
        self.conn.close()
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def __enter__(self) -> "RowStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- campaign identity -------------------------------------------------------------
    def bind(self, identity: dict[str, Any],
             upgrade: Callable[[dict[str, Any]], dict[str, Any]] = lambda old: old) -> None:
        """Record what this store holds (task, analog config, training); refuse a different one.
        ``upgrade`` turns a stored identity of an older format into today's: when that equals
        ``identity`` the store is migrated (the new identity recorded, the old one kept as
        ``identity_previous``) and its rows resume."""
        text = json.dumps(identity, sort_keys=True)
        with self.conn:  # two processes binding a fresh store at once: the first identity wins
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('identity', ?)", (text,))
        found = self.conn.execute("SELECT value FROM meta WHERE key='identity'").fetchone()
        if found[0] == text:
            return
        old = upgrade(json.loads(found[0]))
        if old != identity:
            raise UserError(f"store {self.path} holds a campaign with a different {describe_difference(old, identity)}; "
                            "use another store path for a new campaign or restore the original config")
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('identity_previous', ?)", (found[0],))
            self.conn.execute("UPDATE meta SET value = ? WHERE key = 'identity'", (text,))

    def set_task(self, task: dict[str, Any]) -> None:
        """Record the task (:class:`lightning_nas.task.TaskInfo` as a dict) the rows were trained on."""
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('task', ?)", (json.dumps(task, sort_keys=True),))

    def task(self) -> Optional[dict[str, Any]]:
        """The recorded task; for a store written before tasks were recorded, what its identity says
        (datamodule class and arguments, no split sizes), or ``None``."""
        found = self.conn.execute("SELECT value FROM meta WHERE key='task'").fetchone()
        if found is not None:
            return json.loads(found[0])
        found = self.conn.execute("SELECT value FROM meta WHERE key='identity'").fetchone()
        if found is None:
            return None
        identity = json.loads(found[0])
        from lightning_nas.classpath import instantiate_typed
        from lightning_nas.data import TaskDataModule

        dm = instantiate_typed(TaskDataModule, {"class_path": identity["task"], "init_args": identity.get("task_args", {})},
                               "data")
        return dm.task_info().to_dict()

    # -- rows ----------------------------------------------------------------------------
    def add(self, row: "Row | dict[str, Any]") -> bool:
        """Store ``row`` (a :class:`~lightning_nas.campaign.train.Row` or its JSON form) atomically;
        False if its architecture is already stored. A stored ``failed`` row (a retry) is replaced;
        ``ok`` and ``diverged`` rows never are."""
        record = Row.from_dict(row)
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO rows VALUES (?, ?, ?) ON CONFLICT(arch_id) DO UPDATE SET "
                "status = excluded.status, row = excluded.row WHERE rows.status = 'failed'",
                (record.arch_id, record.status, record.to_json()))
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

    # -- replicates: architectures of the campaign trained again with other seeds ----------
    def add_replicate(self, row: "Row | dict[str, Any]") -> bool:
        """Store a replicate row (key: architecture and training seed); a ``failed`` one is replaced."""
        record = Row.from_dict(row)
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO replicates VALUES (?, ?, ?, ?) ON CONFLICT(arch_id, seed) DO UPDATE SET "
                "status = excluded.status, row = excluded.row WHERE replicates.status = 'failed'",
                (record.arch_id, int(record.seed), record.status, record.to_json()))
        return cur.rowcount == 1

    def replicate_keys(self, statuses: tuple[str, ...] = ("ok", "diverged")) -> set[tuple[str, int]]:
        marks = ",".join("?" * len(statuses))
        return {(r[0], r[1]) for r in self._optional_table(f"SELECT arch_id, seed FROM replicates WHERE status IN ({marks})",
                                                       statuses)}

    def replicate_rows(self, status: str | None = "ok") -> list[dict[str, Any]]:
        query = "SELECT row FROM replicates" + (" WHERE status = ?" if status else "") + " ORDER BY rowid"
        return [json.loads(r[0]) for r in self._optional_table(query, (status,) if status else ())]

    # -- rows of cheaper rungs (fidelities) -----------------------------------------------
    def add_fidelity(self, row: "Row | dict[str, Any]") -> bool:
        """Store a row of a cheaper rung (key: architecture and the row's ``fidelity``); a ``failed``
        one is replaced."""
        from lightning_nas.campaign.fidelity import key

        record = Row.from_dict(row)
        if not record.fidelity:
            raise ValueError(f"row {record.arch_id} has no fidelity: store it with add()")
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO fidelity_rows VALUES (?, ?, ?, ?) ON CONFLICT(arch_id, fidelity) DO UPDATE SET "
                "status = excluded.status, row = excluded.row WHERE fidelity_rows.status = 'failed'",
                (record.arch_id, key(record.fidelity), record.status, record.to_json()))
        return cur.rowcount == 1

    def fidelity_ids(self, fidelity: dict[str, Any], statuses: tuple[str, ...] = ("ok", "diverged")) -> set[str]:
        """The architectures with a row of ``fidelity`` of one of ``statuses``."""
        from lightning_nas.campaign.fidelity import key

        marks = ",".join("?" * len(statuses))
        return {r[0] for r in self._optional_table(
            f"SELECT arch_id FROM fidelity_rows WHERE fidelity = ? AND status IN ({marks})", (key(fidelity), *statuses))}

    def fidelity_rows(self, fidelity: Optional[dict[str, Any]] = None, status: Optional[str] = None) -> list[dict[str, Any]]:
        """Rows of cheaper rungs: of ``fidelity`` (None: all), of ``status`` (None: any)."""
        from lightning_nas.campaign.fidelity import key

        where = [(c, v) for c, v in (("fidelity", key(fidelity) if fidelity else None), ("status", status)) if v]
        query = ("SELECT row FROM fidelity_rows" + (" WHERE " + " AND ".join(f"{c} = ?" for c, _ in where) if where
                                                    else "") + " ORDER BY rowid")
        return [json.loads(r[0]) for r in self._optional_table(query, tuple(v for _, v in where))]

    def _optional_table(self, query: str, args: tuple) -> list[tuple]:
        """``query``'s result; none when its table is missing (a store from before replicates or
        fidelities, opened read-only)."""
        try:
            return self.conn.execute(query, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise


_UNSET = object()  # a field one identity does not record (e.g. a batch size left at the task's default)


def describe_difference(old: Any, new: Any, prefix: str = "") -> str:
    """The fields in which two identities differ, with both values: ``budget.lr (0.1 stored, 0.05 now)``;
    a field one side does not record reads ``default``."""
    if isinstance(old, dict) and isinstance(new, dict):
        parts = [describe_difference(old.get(k, _UNSET), new.get(k, _UNSET), f"{prefix}{k}.")
                 for k in sorted(set(old) | set(new), key=str) if old.get(k, _UNSET) != new.get(k, _UNSET)]
        return ", ".join(parts)
    shown = ["default" if v is _UNSET else json.dumps(v) for v in (old, new)]
    return f"{prefix.rstrip('.')} ({shown[0]} stored, {shown[1]} now)"


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

