"""The results store: one SQLite file, one row per run, written as each run ends.

SQLite in WAL mode gives what a sweep needs: every row is its own committed transaction,
so a killed process loses nothing that finished and leaves no half-written row; several
processes may write the same file at once (writers wait on the lock); the schema version
is kept in ``PRAGMA user_version`` and checked on open.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from .errors import UserError

__all__ = ["ResultStore", "SCHEMA_VERSION", "EXPORT_FORMATS", "read_results", "write_export"]

SCHEMA_VERSION = 1
EXPORT_FORMATS = ("csv", "json", "parquet")

_SCALARS = (
    "run_id", "train_key", "method", "sampler", "architecture", "dataset", "seed", "budget",
    "status", "reason", "traceback", "train_seconds", "sample_seconds", "peak_memory_mb",
    "device", "host", "finished_at",
)
_JSON = (
    "metrics", "directions", "cost_values", "reference_values", "hyperparams", "versions",
    "artifacts", "notes", "metric_errors", "sample_stats", "train_logs",
)

_LISTS = ("cost_values", "reference_values")

def _sql_type(column: str) -> str:
    if column == "seed":
        return "INTEGER"
    return "REAL" if column.endswith(("_seconds", "_mb")) else "TEXT"


_CREATE = f"""
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    {", ".join(f"{c} {_sql_type(c)}" for c in _SCALARS[1:])},
    {", ".join(f"{c} TEXT NOT NULL DEFAULT '{{}}'" for c in _JSON)}
);
CREATE INDEX IF NOT EXISTS runs_by_dataset ON runs (dataset, status);
"""


def _nan_to_none(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


class ResultStore:
    """A SQLite results file.

    >>> import tempfile, os
    >>> with ResultStore.open(os.path.join(tempfile.mkdtemp(), "r.sqlite")) as store:
    ...     len(store.finished_ids())
    0
    """

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection

    @classmethod
    def open(cls, path: str | Path) -> ResultStore:
        """Open ``path``, creating it (and its folder) if needed."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=60, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cannot open results store {str(path)!r}: {exc}") from None
        store = cls(path, db)
        store._migrate()
        return store

    @classmethod
    def open_existing(cls, path: str | Path) -> ResultStore:
        """Open ``path`` for reading; a missing file is a :class:`UserError`."""
        if not Path(path).is_file():
            raise UserError(
                f"no results store at {str(path)!r}: run `ebmbench run` first or pass --results"
            )
        return cls.open(path)

    def _migrate(self) -> None:
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{str(self.path)!r} is not an ebmbench results store: {exc}") from None
        if version == 0:
            # IF NOT EXISTS keeps two processes creating the same new store harmless.
            self._db.executescript(
                f"BEGIN IMMEDIATE; {_CREATE} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
            )
        elif version > SCHEMA_VERSION:
            raise UserError(
                f"results store {str(self.path)!r} has schema {version}, newer than this "
                f"ebmbench's {SCHEMA_VERSION}: upgrade ebmbench"
            )

    # --------------------------------------------------------------- writing

    def write(self, row: dict[str, Any], *, replace: bool = False) -> bool:
        """Store one finished run in its own transaction.

        A row whose ``run_id`` is already stored is ignored unless ``replace`` (used to
        re-run failures), so two sweeps racing on the same run never duplicate it.

        Returns:
            Whether the row was written.
        """
        values = [_nan_to_none(row.get(c)) for c in _SCALARS]
        values += [json.dumps(row.get(c) or ([] if c in _LISTS else {}), sort_keys=True)
                   for c in _JSON]
        columns = ", ".join(_SCALARS + _JSON)
        marks = ", ".join("?" * len(values))
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        cursor = self._db.execute(f"{verb} INTO runs ({columns}) VALUES ({marks})", values)
        return cursor.rowcount > 0

    # --------------------------------------------------------------- reading

    def finished_ids(self, statuses: Iterable[str] | None = None) -> set[str]:
        """Run ids already stored (optionally only with these statuses)."""
        if statuses is None:
            query, args = "SELECT run_id FROM runs", ()
        else:
            statuses = tuple(statuses)
            query = f"SELECT run_id FROM runs WHERE status IN ({','.join('?' * len(statuses))})"
            args = statuses
        return {r[0] for r in self._db.execute(query, args)}

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every stored run as a dict, JSON columns decoded."""
        cursor = self._db.execute(f"SELECT {', '.join(_SCALARS + _JSON)} FROM runs ORDER BY rowid")
        for record in cursor:
            row = dict(zip(_SCALARS + _JSON, record, strict=True))
            for c in _JSON:
                row[c] = json.loads(row[c])
            yield row

    def fingerprint_rows(self) -> Iterator[tuple[str, str, str]]:
        """(run_id, status, finished_at) of every run, by run id: what changes when a row
        is added or replaced, read without decoding the JSON columns."""
        yield from self._db.execute("SELECT run_id, status, finished_at FROM runs ORDER BY run_id")

    def to_frame(self, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Runs as a DataFrame: one ``metric.<name>`` column per metric value."""
        wanted = None if run_ids is None else set(run_ids)
        records = []
        for row in self.rows():
            if wanted is not None and row["run_id"] not in wanted:
                continue
            flat = {c: row[c] for c in _SCALARS}
            flat.update({f"metric.{k}": v for k, v in row["metrics"].items()})
            for c in _JSON:
                if c != "metrics":
                    flat[c] = row[c]
            records.append(flat)
        frame = pd.DataFrame.from_records(records, columns=None if records else list(_SCALARS))
        return frame

    def export(self, fmt: str, out: str | Path) -> Path:
        """Write every run to ``out`` as CSV, JSON (records) or Parquet."""
        return write_export(self.to_frame(), fmt, out)

    # --------------------------------------------------------------- lifecycle

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def write_export(frame: pd.DataFrame, fmt: str, out: str | Path) -> Path:
    """Write runs (a frame as :meth:`ResultStore.to_frame` or :func:`read_results` gives)
    to ``out`` as CSV, JSON (records) or Parquet; :func:`read_results` reads it back."""
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"unknown export format {fmt!r}. Valid formats: {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        frame.to_json(out, orient="records", indent=1)
        return out
    frame = frame.copy()
    for c in _JSON:  # nested values as JSON text in flat formats
        if c in frame.columns and c != "metrics":
            frame[c] = frame[c].map(lambda v: json.dumps(v, sort_keys=True))
    if fmt == "csv":
        frame.to_csv(out, index=False)
    else:
        try:
            frame.to_parquet(out, index=False)
        except ImportError:
            raise UserError("parquet export needs pyarrow: pip install 'ebmbench[parquet]'") from None
    return out


def read_results(path: str | Path) -> pd.DataFrame:
    """Runs from a store (``.sqlite``) or from an export (``.csv``, ``.json``, ``.parquet``).

    Exports hold the nested columns as JSON text; they are decoded, so the frame is the
    same as :meth:`ResultStore.to_frame` gives and leaderboards render identically from
    either.
    """
    path = Path(path)
    if path.suffix in (".csv", ".json", ".parquet"):
        if not path.is_file():
            raise UserError(f"no results file at {str(path)!r}")
        if path.suffix == ".json":
            return pd.read_json(path, orient="records", dtype=False)
        frame = pd.read_csv(path, keep_default_na=True) if path.suffix == ".csv" else pd.read_parquet(path)
        for c in _JSON:
            if c in frame.columns and c != "metrics":
                frame[c] = frame[c].map(lambda v: json.loads(v) if isinstance(v, str) else v)
        for c in ("reason", "traceback"):
            if c in frame.columns:
                frame[c] = frame[c].astype(object).where(frame[c].notna(), "")
        return frame
    with ResultStore.open_existing(path) as store:
        return store.to_frame()
