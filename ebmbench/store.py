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

__all__ = ["ResultStore", "SCHEMA_VERSION", "EXPORT_FORMATS", "ROLES", "read_results", "write_export",
           "read_not_applicable"]

SCHEMA_VERSION = 3
EXPORT_FORMATS = ("csv", "json", "parquet")

_SCALARS = (
    "run_id", "train_key", "method", "sampler", "architecture", "dataset", "seed", "budget",
    "status", "reason", "traceback", "train_seconds", "sample_seconds", "peak_memory_mb",
    "device", "host", "finished_at", "trial", "role", "uses_sampler",
)
_JSON = (
    "metrics", "directions", "cost_values", "reference_values", "hyperparams", "versions",
    "artifacts", "notes", "metric_errors", "sample_stats", "train_logs", "compute", "curve",
    "sample_values",
)

_LISTS = ("cost_values", "reference_values", "curve", "sample_values")

#: Combinations that can never run (an incompatibility the plugins declare) are not runs:
#: the sweep records each (dataset, method, sampler, architecture) here once, with the
#: reason, and leaderboards count them by reason. A skip for missing data stays a run row.
_CREATE_NOT_APPLICABLE = """
CREATE TABLE IF NOT EXISTS not_applicable (
    dataset TEXT NOT NULL, method TEXT NOT NULL, sampler TEXT NOT NULL,
    architecture TEXT NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (dataset, method, sampler, architecture)
);
"""

#: What each schema version adds to the one before (run in order on open).
_MIGRATIONS = {
    2: "ALTER TABLE runs ADD COLUMN trial INTEGER; "
       "ALTER TABLE runs ADD COLUMN role TEXT NOT NULL DEFAULT 'run'; "
       "ALTER TABLE runs ADD COLUMN compute TEXT NOT NULL DEFAULT '{}'; "
       "ALTER TABLE runs ADD COLUMN curve TEXT NOT NULL DEFAULT '[]';",
    # uses_sampler: the method trains with the run's sampler (NULL in older rows);
    # sample_values: the metric values computed from samples (they depend on the sampler).
    3: "ALTER TABLE runs ADD COLUMN uses_sampler INTEGER; "
       "ALTER TABLE runs ADD COLUMN sample_values TEXT NOT NULL DEFAULT '[]'; "
       + _CREATE_NOT_APPLICABLE,
}


#: What a row is: a ``run`` (ranked), a tuning ``trial``, or a ``sampler`` benchmark run.
ROLES = ("run", "trial", "sampler")


def _sql_type(column: str) -> str:
    if column in ("seed", "trial", "uses_sampler"):
        return "INTEGER"
    if column == "role":
        return "TEXT NOT NULL DEFAULT 'run'"
    return "REAL" if column.endswith(("_seconds", "_mb")) else "TEXT"


_CREATE = f"""
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    {", ".join(f"{c} {_sql_type(c)}" for c in _SCALARS[1:])},
    {", ".join(f"{c} TEXT NOT NULL DEFAULT '{'[]' if c in _LISTS else '{}'}'" for c in _JSON)}
);
CREATE INDEX IF NOT EXISTS runs_by_dataset ON runs (dataset, status);
""" + _CREATE_NOT_APPLICABLE


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
        elif version < SCHEMA_VERSION:
            self._upgrade()
        elif version > SCHEMA_VERSION:
            raise UserError(
                f"results store {str(self.path)!r} has schema {version}, newer than this "
                f"ebmbench's {SCHEMA_VERSION}: upgrade ebmbench"
            )

    def _upgrade(self) -> None:
        """Bring an older store to :data:`SCHEMA_VERSION`, under the write lock: the
        version is read again inside the transaction, so two processes opening the same
        old store upgrade it once."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in filter(str.strip, _MIGRATIONS[step].split(";")):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # --------------------------------------------------------------- writing

    def write(self, row: dict[str, Any], *, replace: bool = False) -> bool:
        """Store one finished run in its own transaction.

        A row whose ``run_id`` is already stored is ignored unless ``replace`` (used to
        re-run failures), so two sweeps racing on the same run never duplicate it.

        Returns:
            Whether the row was written.
        """
        values = [_nan_to_none(row.get(c)) for c in _SCALARS]
        values[_SCALARS.index("role")] = row.get("role") or "run"
        if values[_SCALARS.index("uses_sampler")] is not None:
            values[_SCALARS.index("uses_sampler")] = int(bool(values[_SCALARS.index("uses_sampler")]))
        values += [json.dumps(row.get(c) or ([] if c in _LISTS else {}), sort_keys=True)
                   for c in _JSON]
        columns = ", ".join(_SCALARS + _JSON)
        marks = ", ".join("?" * len(values))
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        cursor = self._db.execute(f"{verb} INTO runs ({columns}) VALUES ({marks})", values)
        return cursor.rowcount > 0

    def record_not_applicable(self, combinations: Iterable[tuple[str, str, str, str, str]]) -> int:
        """Record (dataset, method, sampler, architecture, reason) combinations that can
        never run, in one transaction; a combination already recorded keeps one entry (with
        the latest reason). Seeds do not multiply them: a combination is not applicable at
        any seed.

        Returns:
            How many were given.
        """
        entries = list(combinations)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO not_applicable (dataset, method, sampler, architecture, "
                "reason) VALUES (?, ?, ?, ?, ?)", entries)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return len(entries)

    def not_applicable(self) -> pd.DataFrame:
        """Combinations that can never run, counted: ``dataset``, ``reason``,
        ``combinations`` (distinct (method, sampler, architecture))."""
        cursor = self._db.execute(
            "SELECT dataset, reason, COUNT(*) FROM not_applicable GROUP BY dataset, reason "
            "ORDER BY dataset, COUNT(*) DESC, reason")
        return pd.DataFrame(cursor.fetchall(), columns=["dataset", "reason", "combinations"])

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

    def trial_rows(self) -> list[dict[str, Any]]:
        """Every stored tuning trial (rows whose ``trial`` is set), JSON decoded."""
        cursor = self._db.execute(
            f"SELECT {', '.join(_SCALARS + _JSON)} FROM runs WHERE trial IS NOT NULL ORDER BY rowid")
        return [self._decode(record) for record in cursor]

    @staticmethod
    def _decode(record: tuple[Any, ...]) -> dict[str, Any]:
        row = dict(zip(_SCALARS + _JSON, record, strict=True))
        for c in _JSON:
            row[c] = json.loads(row[c])
        return row

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every stored run as a dict, JSON columns decoded."""
        cursor = self._db.execute(f"SELECT {', '.join(_SCALARS + _JSON)} FROM runs ORDER BY rowid")
        for record in cursor:
            yield self._decode(record)

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
    either. A published export (a runs table ``results.csv`` beside its configurations,
    see :mod:`ebmbench.published`) is joined back into the same frame.
    """
    path = Path(path)
    from .published import is_published, read_published

    if is_published(path):
        return read_published(path)
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


def read_not_applicable(path: str | Path) -> pd.DataFrame:
    """The not-applicable counts (``dataset``, ``reason``, ``combinations``) of a store or a
    published export; empty for other exports and for stores older than schema 3."""
    path = Path(path)
    from .published import is_published, read_published_not_applicable

    if is_published(path):
        return read_published_not_applicable(path)
    if path.suffix == ".sqlite" and path.is_file():
        with ResultStore.open_existing(path) as store:
            return store.not_applicable()
    return pd.DataFrame(columns=["dataset", "reason", "combinations"])
