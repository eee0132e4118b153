"""The results store: one SQLite file, one row per run, written as each run ends.

SQLite in WAL mode gives what a sweep needs: every row is its own committed transaction
(``synchronous=FULL``: a committed row survives a power cut, not only a killed process),
so a killed process loses nothing that finished and leaves no half-written row; several
processes may write the same file at once; the schema version is kept in
``PRAGMA user_version`` and checked on open.

What the store promises, and the tests that show it, are listed in docs/reliability.md:

* **A busy store is waited for, never given up on.** SQLite waits :data:`BUSY_TIMEOUT`
  seconds for a lock; past that, every operation is retried with backoff for as long as
  it takes, and ``on_wait`` is told once ("waiting for the store").
* **Failures are named.** A full disk or an I/O error is an
  :class:`~ebmbench.errors.EnvironmentFailure` (exit 1); a damaged, foreign, read-only or
  newer-version file is a :class:`~ebmbench.UserError` (exit 2). Neither is a traceback.
* **Reading never writes.** :meth:`ResultStore.open_existing` opens the file read-only
  (``mode=ro``, or ``immutable=1`` when nothing else has it open, so that no ``-wal`` or
  ``-shm`` file is created either), works on read-only media, and refuses a file that is
  not an ebmbench store without changing a byte of it.
* **Foreign files are left alone.** Opening for writing checks the file first, read-only:
  an SQLite file of another application is refused, never given a ``runs`` table.

Schema history: version 1 holds ``runs``; version 2 adds ``leases`` (see
:mod:`ebmbench.leases`); version 3 adds the runs' ``role`` (run, tuning trial, sampler
benchmark), ``trial``, ``compute`` and ``curve`` (see docs/protocol.md); version 4 adds
``uses_sampler`` and ``sample_values`` on ``runs`` and the ``not_applicable`` table (the
combinations that can never run, counted, not stored as runs). An older store is
migrated in place on its first write-open; reading one needs no migration (the missing
columns read as their defaults).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import pandas as pd

from .errors import EnvironmentFailure, UserError

__all__ = [
    "ResultStore", "SCHEMA_VERSION", "EXPORT_FORMATS", "BUSY_TIMEOUT", "REQUIRED_COLUMNS",
    "ROLES", "read_results", "write_export", "notice", "read_not_applicable",
]

#: 1: ``runs``. 2: ``leases``, the claims of overlapping sweeps. 3: ``role``, ``trial``,
#: ``compute`` and ``curve`` on ``runs``. 4: ``uses_sampler`` and ``sample_values`` on
#: ``runs``; ``not_applicable``.
SCHEMA_VERSION = 4
EXPORT_FORMATS = ("csv", "json", "parquet")

#: Seconds SQLite itself waits for a lock before the store's own retry loop takes over.
#: (Until schema 2 this was a hard 60 s limit, after which a sweep crashed.)
BUSY_TIMEOUT = 5.0
#: The longest pause between two tries of a busy store, in seconds.
MAX_BACKOFF = 5.0

_V1_SCALARS = (
    "run_id", "train_key", "method", "sampler", "architecture", "dataset", "seed", "budget",
    "status", "reason", "traceback", "train_seconds", "sample_seconds", "peak_memory_mb",
    "device", "host", "finished_at",
)
_V1_JSON = (
    "metrics", "directions", "cost_values", "reference_values", "hyperparams", "versions",
    "artifacts", "notes", "metric_errors", "sample_stats", "train_logs",
)
#: Columns added after schema 1, with the value an older store's rows read as.
_LATER_COLUMNS = {"trial": None, "role": "run", "compute": "{}", "curve": "[]",
                  "uses_sampler": None, "sample_values": "[]"}
# uses_sampler: the method trains with the run's sampler (NULL in older rows);
# sample_values: the metric values computed from samples (they depend on the sampler).
_SCALARS = (*_V1_SCALARS, "trial", "role", "uses_sampler")
_JSON = (*_V1_JSON, "compute", "curve", "sample_values")

_LISTS = ("cost_values", "reference_values", "curve", "sample_values")

#: What a row is: a ``run`` (ranked), a tuning ``trial``, or a ``sampler`` benchmark run.
ROLES = ("run", "trial", "sampler")

#: The columns a results file must have to be read as one (a store, or an export).
REQUIRED_COLUMNS = ("run_id", "method", "sampler", "architecture", "dataset", "seed", "status")

T = TypeVar("T")


def _sql_type(column: str) -> str:
    if column in ("seed", "trial", "uses_sampler"):
        return "INTEGER"
    return "REAL" if column.endswith(("_seconds", "_mb")) else "TEXT"


# Migrations replay history, so the first one creates the version-1 table.
_RUNS = f"""
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    {", ".join(f"{c} {_sql_type(c)}" for c in _V1_SCALARS[1:])},
    {", ".join(f"{c} TEXT NOT NULL DEFAULT '{{}}'" for c in _V1_JSON)}
);
CREATE INDEX IF NOT EXISTS runs_by_dataset ON runs (dataset, status);
"""

_LEASES = """
CREATE TABLE IF NOT EXISTS leases (
    run_id TEXT PRIMARY KEY,
    claimant TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_by_claimant ON leases (claimant);
"""

_PROTOCOL = """
ALTER TABLE runs ADD COLUMN trial INTEGER;
ALTER TABLE runs ADD COLUMN role TEXT NOT NULL DEFAULT 'run';
ALTER TABLE runs ADD COLUMN compute TEXT NOT NULL DEFAULT '{}';
ALTER TABLE runs ADD COLUMN curve TEXT NOT NULL DEFAULT '[]';
"""

_NOT_APPLICABLE = """
ALTER TABLE runs ADD COLUMN uses_sampler INTEGER;
ALTER TABLE runs ADD COLUMN sample_values TEXT NOT NULL DEFAULT '[]';
CREATE TABLE IF NOT EXISTS not_applicable (
    dataset TEXT NOT NULL, method TEXT NOT NULL, sampler TEXT NOT NULL,
    architecture TEXT NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (dataset, method, sampler, architecture)
);
"""

#: Version → the statements that bring a store of that version to the next one.
_MIGRATIONS = {0: _RUNS, 1: _LEASES, 2: _PROTOCOL, 3: _NOT_APPLICABLE}


def _nan_to_none(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _values(row: dict[str, Any]) -> list[Any]:
    """A row's column values, in :data:`_SCALARS` + :data:`_JSON` order."""
    values = [_nan_to_none(row.get(c)) for c in _SCALARS]
    values[_SCALARS.index("role")] = row.get("role") or "run"
    if values[_SCALARS.index("uses_sampler")] is not None:
        values[_SCALARS.index("uses_sampler")] = int(bool(values[_SCALARS.index("uses_sampler")]))
    values += [json.dumps(row.get(c) or ([] if c in _LISTS else {}), sort_keys=True)
               for c in _JSON]
    return values


def notice(message: str) -> None:
    """Tell the person at the terminal something on stderr (never on stdout, which
    scripts read)."""
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------- SQLite errors

_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26
_MESSAGES = {
    "database is locked": _BUSY, "database table is locked": _LOCKED,
    "database schema is locked": _LOCKED, "readonly database": _READONLY,
    "disk i/o error": _IOERR, "malformed": _CORRUPT, "disk is full": _FULL,
    "unable to open database": _CANTOPEN, "file is not a database": _NOTADB,
}


def _code(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code of ``exc`` (from the message on Pythons without it)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF
    text = str(exc).lower()
    return next((c for fragment, c in _MESSAGES.items() if fragment in text), None)


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` means "another connection holds the lock: try again"."""
    return isinstance(exc, sqlite3.OperationalError) and _code(exc) in (_BUSY, _LOCKED)


def _failure(path: Path, exc: sqlite3.Error, doing: str) -> Exception:
    """The one-line error for ``exc``, raised while ``doing`` something to the store.

    The error's ``problem`` and ``advice`` attributes hold its two halves, so that a caller
    can say what it did in between (the sweep: "the sweep stopped; the row is kept").
    """
    code, where = _code(exc), repr(str(path))
    error: Exception
    if code == _FULL:
        error = EnvironmentFailure()
        problem = f"cannot {doing} the results store {where}: the disk is full ({exc})"
        advice = "Free some space, then run the same command again"
    elif code == _IOERR:
        error = EnvironmentFailure()
        problem = f"cannot {doing} the results store {where}: {exc}"
        advice = "Check the disk, then run the same command again"
    elif code == _READONLY:
        error = UserError()
        problem = f"cannot {doing} the results store {where}: it is read-only ({exc})"
        advice = "Give a writable --results, or copy the store somewhere writable"
    elif code in (_CORRUPT, _NOTADB):
        error = UserError()
        problem = f"the results store {where} is damaged ({exc})"
        advice = (f"Keep a copy; `sqlite3 {path.name} .recover` may save its rows; or pass "
                  "another --results")
    elif code == _CANTOPEN:
        error = UserError()
        problem = f"cannot open the results store {where}: {exc}"
        advice = "Check the path and its permissions"
    else:
        error = EnvironmentFailure()
        problem = f"cannot {doing} the results store {where}: {exc}"
        advice = "Run the same command again; what was committed is intact"
    error.args = (f"{problem}; nothing was changed by this attempt. {advice}",)
    error.problem, error.advice = problem, advice  # type: ignore[attr-defined]
    return error


# ------------------------------------------------------------------- opening


def _uri(path: Path, **query: str | int) -> str:
    args = "&".join(f"{k}={v}" for k, v in query.items())
    return f"file:{quote(str(path.resolve()))}?{args}"


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _connect_read_only(path: Path) -> tuple[sqlite3.Connection, bool]:
    """A read-only connection that creates no file beside ``path``, and whether it is
    ``immutable``.

    Without a ``-wal`` file beside it, no connection has the store open and its main file
    holds every committed row: ``immutable=1`` reads it without creating the ``-wal`` and
    ``-shm`` files that ``mode=ro`` would (and could not, on read-only media). With one,
    a sweep is writing (or was killed): ``mode=ro`` shares its WAL and sees its newest rows.

    The file is only ever opened through SQLite: closing a descriptor of it opened any other
    way would drop the POSIX locks this process's other connections hold on it (SQLite's
    "How To Corrupt An SQLite Database File", 2.2).
    """
    if not _wal(path).exists():
        db = sqlite3.connect(_uri(path, mode="ro", immutable=1), uri=True,
                             timeout=BUSY_TIMEOUT, isolation_level=None)
        return db, True
    try:
        db = sqlite3.connect(_uri(path, mode="ro"), uri=True, timeout=BUSY_TIMEOUT,
                             isolation_level=None)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db, False
    except sqlite3.OperationalError as exc:
        if _code(exc) not in (_CANTOPEN, _READONLY):
            raise
        # Read-only media holding the WAL of a killed writer: read the main file alone.
        notice(f"note: {_wal(path).name} cannot be read on this read-only medium; the rows it "
               "holds are not shown")
        db = sqlite3.connect(_uri(path, mode="ro", immutable=1), uri=True,
                             timeout=BUSY_TIMEOUT, isolation_level=None)
        return db, True


def _not_a_store(path: Path, why: str) -> UserError:
    return UserError(
        f"{str(path)!r} is not an ebmbench results store ({why}); it was left unchanged. "
        "Pass the store `ebmbench run` wrote (default ebmbench-results/results.sqlite)"
    )


def _check_schema(path: Path, db: sqlite3.Connection, *, allow_new: bool) -> int:
    """The store's schema version, after checking the file is an ebmbench store.

    ``allow_new``: an SQLite file with no table at all (version 0) may become a store.
    """
    version = db.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if version == 0 and not tables:
        if allow_new:
            return 0
        raise _not_a_store(path, "an empty database: no run was ever written to it")
    if version > SCHEMA_VERSION and "runs" in tables:
        raise UserError(
            f"results store {str(path)!r} has schema {version}, newer than this "
            f"ebmbench's {SCHEMA_VERSION}: upgrade ebmbench"
        )
    if not 1 <= version <= SCHEMA_VERSION or "runs" not in tables:
        listed = ", ".join(sorted(tables)[:5]) or "none"
        raise _not_a_store(path, f"its tables: {listed}; user_version {version}")
    columns = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
    missing = [c for c in (*_V1_SCALARS, *_V1_JSON) if c not in columns]
    if missing:
        raise _not_a_store(path, f"its runs table lacks {', '.join(missing[:5])}")
    return version


def _inspect(path: Path, *, allow_new: bool, verify: bool = False) -> int:
    """Check, read-only, that ``path`` is an ebmbench store (or may become one)."""
    if path.is_dir():
        raise UserError(f"the results store {str(path)!r} is a folder; give a file path")
    if path.stat().st_size == 0:
        if allow_new:
            return 0
        raise _not_a_store(path, "an empty file")
    try:
        db, _ = _connect_read_only(path)
    except sqlite3.Error as exc:
        raise _failure(path, exc, "open") from None
    try:
        version = _check_schema(path, db, allow_new=allow_new)
        if verify and version:
            # Before a sweep adds to it: a damaged page found only when a row is written
            # would stop the sweep after work was done. quick_check reads every page once.
            problem = db.execute("PRAGMA quick_check(1)").fetchone()[0]
            if problem != "ok":
                problem = " ".join(problem.replace("*** in database main ***", "").split())
                raise sqlite3.DatabaseError(f"database disk image is malformed: {problem}")
        return version
    except sqlite3.DatabaseError as exc:
        if _code(exc) == _NOTADB:
            raise _not_a_store(path, "not an SQLite database") from None
        raise _failure(path, exc, "read") from None
    finally:
        db.close()


class ResultStore:
    """A SQLite results file.

    >>> import tempfile, os
    >>> with ResultStore.open(os.path.join(tempfile.mkdtemp(), "r.sqlite")) as store:
    ...     len(store.finished_ids())
    0
    """

    def __init__(
        self, path: Path, connection: sqlite3.Connection, *, read_only: bool = False,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.read_only = read_only
        self._db = connection
        self._on_wait = notice if on_wait is None else on_wait
        self._immutable = False

    @classmethod
    def open(
        cls, path: str | Path, *, on_wait: Callable[[str], None] | None = None,
        verify: bool = True,
    ) -> ResultStore:
        """Open ``path`` for writing, creating it (and its folder) if needed.

        An existing file is checked read-only first: a file that is not an ebmbench store
        is refused unchanged. A version-1 store is migrated to the current schema.

        Args:
            path: The store.
            on_wait: Told once, in one line, when the store is busy and the store starts
                waiting for it (default: printed on stderr).
            verify: Check every page of an existing store first (``PRAGMA quick_check``),
                so that a damaged store is refused before a sweep does any work.
        """
        path = Path(path)
        if path.exists():
            _inspect(path, allow_new=True, verify=verify)
            # SQLite would open it read-only and fail later, or fail to make its -wal file.
            for needed in (path, path.parent):
                if not os.access(needed, os.W_OK):
                    raise UserError(
                        f"cannot write the results store {str(path)!r}: {str(needed)!r} is "
                        "read-only. Give a writable --results, or copy the store somewhere "
                        "writable (reading it works: export, leaderboard)"
                    )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the folder of the results store {str(path)!r}: "
                            f"{exc.strerror}") from None
        try:
            db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None)
        except sqlite3.Error as exc:
            raise _failure(path, exc, "open") from None
        store = cls(path, db, on_wait=on_wait)
        try:
            store._call(lambda: db.execute("PRAGMA journal_mode=WAL").fetchone(), "open")
            db.execute("PRAGMA synchronous=FULL")
            store._migrate()
        except BaseException:
            db.close()
            raise
        return store

    @classmethod
    def open_existing(
        cls, path: str | Path, *, on_wait: Callable[[str], None] | None = None
    ) -> ResultStore:
        """Open ``path`` read-only; a missing file, or one that is not an ebmbench store, is
        a :class:`UserError`. Nothing is written: not the file, not a file beside it."""
        path = Path(path)
        if not path.exists():
            raise UserError(
                f"no results store at {str(path)!r}: run `ebmbench run` first or pass --results"
            )
        _inspect(path, allow_new=False)
        try:
            db, immutable = _connect_read_only(path)
        except sqlite3.Error as exc:
            raise _failure(path, exc, "open") from None
        store = cls(path, db, read_only=True, on_wait=on_wait)
        store._immutable = immutable
        from .journal import PendingRows

        pending = PendingRows(path).count()
        if pending:
            notice(f"note: {pending} computed run(s) wait in {PendingRows(path).path.name} beside "
                   "the store; the next `ebmbench run` on this store adds them")
        return store

    def _migrate(self) -> None:
        def migrate() -> None:
            # IMMEDIATE takes the write lock at once: it also proves the file is writable,
            # and two processes creating or migrating the same store take turns.
            with self._transaction():
                version = _check_schema(self.path, self._db, allow_new=True)
                for step in range(version, SCHEMA_VERSION):
                    for statement in _MIGRATIONS[step].split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                if version != SCHEMA_VERSION:
                    self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

        self._call(migrate, "open")

    # --------------------------------------------------------------- robustness

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _call(self, operation: Callable[[], T], doing: str) -> T:
        """Run ``operation``, retrying while the store is busy, for as long as it takes.

        SQLite has already waited :data:`BUSY_TIMEOUT` seconds before reporting "busy";
        from then on the pause doubles up to :data:`MAX_BACKOFF`. ``on_wait`` is told once
        when the waiting starts and once when it ends. Any other SQLite error becomes a
        one-line :class:`UserError` or :class:`EnvironmentFailure`.
        """
        waiting_since: float | None = None
        pause = 0.05
        while True:
            try:
                result = operation()
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                if not is_busy(exc):
                    raise _failure(self.path, exc, doing) from None
                if waiting_since is None:
                    waiting_since = time.monotonic()
                    self._on_wait(
                        f"waiting for the store {str(self.path)!r}: another process holds its "
                        "lock; retrying until it is free (nothing is lost meanwhile)"
                    )
                time.sleep(pause)
                pause = min(2 * pause, MAX_BACKOFF)
                continue
            if waiting_since is not None:
                waited = time.monotonic() - waiting_since + BUSY_TIMEOUT
                self._on_wait(f"the store is free again after about {waited:.0f} s")
            return result

    def transact(self, work: Callable[[sqlite3.Connection], T], doing: str = "write") -> T:
        """Run ``work(connection)`` in one write transaction (``BEGIN IMMEDIATE``), retried
        whole while the store is busy. For modules that keep tables of their own in the
        store (:mod:`ebmbench.leases`)."""
        def attempt() -> T:
            with self._transaction():
                return work(self._db)

        return self._call(attempt, doing)

    # --------------------------------------------------------------- writing

    def write(self, row: dict[str, Any], *, replace: bool = False,
              claimant: str | None = None) -> bool:
        """Store one finished run in its own transaction.

        A row whose ``run_id`` is already stored is ignored unless ``replace`` (used to
        re-run failures), so two sweeps racing on the same run never duplicate it. With
        ``claimant``, that sweep's lease on the run is released in the same transaction.

        Returns:
            Whether the row was written.

        Raises:
            EnvironmentFailure: The disk is full, or an I/O error (nothing half-written).
            UserError: The store is read-only or damaged.
        """
        values = _values(row)
        columns = ", ".join(_SCALARS + _JSON)
        marks = ", ".join("?" * len(values))
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"

        def insert(db: sqlite3.Connection) -> bool:
            written = db.execute(f"{verb} INTO runs ({columns}) VALUES ({marks})", values).rowcount
            if claimant is not None:
                db.execute("DELETE FROM leases WHERE run_id = ? AND claimant = ?",
                           (row["run_id"], claimant))
            return written > 0

        return self.transact(insert)

    def write_many(self, rows: Iterable[tuple[dict[str, Any], bool]]) -> int:
        """Store ``(row, replace)`` pairs in one transaction; return how many were written."""
        pairs = list(rows)
        columns = ", ".join(_SCALARS + _JSON)
        marks = ", ".join("?" * (len(_SCALARS) + len(_JSON)))

        def insert(db: sqlite3.Connection) -> int:
            written = 0
            for row, replace in pairs:
                verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
                written += db.execute(f"{verb} INTO runs ({columns}) VALUES ({marks})",
                                      _values(row)).rowcount
            return written

        return self.transact(insert)

    def update_tuning_records(self, records: dict[str, dict[str, Any]]) -> int:
        """Give stored runs the record of the study that chose their configuration
        (``hyperparams["tuning"]``): run id → record, in one transaction. Only the record
        changes, never a result: a run is found again when a later tuning of its study
        chose the same values (its id is a digest of them), e.g. after the choice gained
        its confirmation, and the record says how it was chosen now.

        Returns:
            How many rows changed (runs not stored, or with that record already, are left).
        """
        given = {run_id: json.loads(json.dumps(record, sort_keys=True, default=str))
                 for run_id, record in records.items()}

        def update(db: sqlite3.Connection) -> int:
            changed = 0
            for run_id, record in given.items():
                found = db.execute("SELECT hyperparams FROM runs WHERE run_id = ? AND role = 'run'",
                                   (run_id,)).fetchone()
                if found is None:
                    continue
                hyper = json.loads(found[0])
                if hyper.get("tuning") == record:
                    continue
                hyper["tuning"] = record
                db.execute("UPDATE runs SET hyperparams = ? WHERE run_id = ?",
                           (json.dumps(hyper, sort_keys=True), run_id))
                changed += 1
            return changed

        return self.transact(update)

    def record_not_applicable(self, combinations: Iterable[tuple[str, str, str, str, str]]) -> int:
        """Record (dataset, method, sampler, architecture, reason) combinations that can
        never run, in one transaction; a combination already recorded keeps one entry (with
        the latest reason). Seeds do not multiply them: a combination is not applicable at
        any seed.

        Returns:
            How many were given.
        """
        entries = list(combinations)

        def insert(db: sqlite3.Connection) -> int:
            db.executemany(
                "INSERT OR REPLACE INTO not_applicable (dataset, method, sampler, architecture, "
                "reason) VALUES (?, ?, ?, ?, ?)", entries)
            return len(entries)

        return self.transact(insert)

    def not_applicable(self) -> pd.DataFrame:
        """Combinations that can never run, counted: ``dataset``, ``reason``,
        ``combinations`` (distinct (method, sampler, architecture)); empty for a store
        older than schema 4."""
        columns = ["dataset", "reason", "combinations"]
        tables = {r[0] for r in self._fetch("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "not_applicable" not in tables:
            return pd.DataFrame(columns=columns)
        records = self._fetch(
            "SELECT dataset, reason, COUNT(*) FROM not_applicable GROUP BY dataset, reason "
            "ORDER BY dataset, COUNT(*) DESC, reason")
        return pd.DataFrame(records, columns=columns)

    # --------------------------------------------------------------- reading

    def finished_ids(self, statuses: Iterable[str] | None = None) -> set[str]:
        """Run ids already stored (optionally only with these statuses)."""
        if statuses is None:
            query, args = "SELECT run_id FROM runs", ()
        else:
            statuses = tuple(statuses)
            query = f"SELECT run_id FROM runs WHERE status IN ({','.join('?' * len(statuses))})"
            args = statuses
        return {r[0] for r in self._fetch(query, args)}

    def _select(self, where: str = "") -> str:
        """A query for every column, in :data:`_SCALARS` + :data:`_JSON` order; columns a
        store older than schema 3 lacks (read without migrating) read as their defaults."""
        present = {r[1] for r in self._fetch("PRAGMA table_info(runs)")}
        parts = [c if c in present or c not in _LATER_COLUMNS else
                 ("NULL" if _LATER_COLUMNS[c] is None else f"'{_LATER_COLUMNS[c]}'") + f" AS {c}"
                 for c in _SCALARS + _JSON]
        if where and "trial" not in present:
            where = "WHERE 0"
        return f"SELECT {', '.join(parts)} FROM runs {where} ORDER BY rowid"

    def _decode(self, record: tuple[Any, ...]) -> dict[str, Any]:
        row = dict(zip(_SCALARS + _JSON, record, strict=True))
        for c in _JSON:
            try:
                row[c] = json.loads(row[c])
            except (TypeError, ValueError):
                raise _not_a_store(self.path, f"run {row['run_id']!r} has a bad {c}") from None
        return row

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every stored run as a dict, JSON columns decoded."""
        for record in self._fetch(self._select()):
            yield self._decode(record)

    def tuning_draws(self) -> set[int]:
        """The tuning draws (``--tune-draw``) of the stored trials; a trial that records none
        is of draw 0. Read in SQL, without decoding the rows."""
        if "trial" not in {r[1] for r in self._fetch("PRAGMA table_info(runs)")}:
            return set()
        return {int(r[0]) for r in self._fetch(
            "SELECT DISTINCT COALESCE(json_extract(hyperparams, '$.tuning.draw'), 0) FROM runs "
            "WHERE trial IS NOT NULL")}

    def trial_rows(self) -> list[dict[str, Any]]:
        """Every stored tuning trial (rows whose ``trial`` is set), JSON decoded."""
        return [self._decode(r) for r in self._fetch(self._select("WHERE trial IS NOT NULL"))]

    def _fetch(self, query: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """``query``'s rows. An ``immutable`` read is checked afterwards: had a sweep started
        writing meanwhile (the file changed, a ``-wal`` appeared), it is read again through
        ``mode=ro``, which sees the sweep's commits consistently."""
        if not self._immutable:
            return self._call(lambda: self._db.execute(query, args).fetchall(), "read")

        def state() -> tuple[int, int, bool]:
            info = self.path.stat()
            return info.st_mtime_ns, info.st_size, _wal(self.path).exists()

        before = state()
        records = None
        try:
            records = self._db.execute(query, args).fetchall()
        except sqlite3.DatabaseError as exc:
            if state() == before:  # not a race with a writer: the file itself is bad
                raise _failure(self.path, exc, "read") from None
        if records is not None and state() == before:
            return records
        self._db.close()
        self._db, self._immutable = _connect_read_only(self.path)
        return self._fetch(query, args)

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


def _write_failure(out: Path, exc: OSError) -> Exception:
    import errno

    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
        return EnvironmentFailure(f"cannot write {str(out)!r}: {reason}. Free some space or "
                                  "choose another file, then try again")
    if exc.errno == errno.EEXIST and exc.filename:
        reason = f"{str(exc.filename)!r} is a file, not a folder"
    elif exc.errno == errno.ENOTDIR:
        reason = "a part of its folder path is a file, not a folder"
    return UserError(f"cannot write {str(out)!r}: {reason}. Choose another output file")


def write_export(frame: pd.DataFrame, fmt: str, out: str | Path) -> Path:
    """Write runs (a frame as :meth:`ResultStore.to_frame` or :func:`read_results` gives)
    to ``out`` as CSV, JSON (records) or Parquet; :func:`read_results` reads it back.

    The file is written beside ``out`` under a temporary name and renamed over it, so a
    failed export (a full disk) never leaves a truncated file behind.
    """
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"unknown export format {fmt!r}. Valid formats: {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise UserError(f"cannot write {str(out)!r}: it is a folder. Give a file name")
    if fmt != "json":
        frame = frame.copy()
        for c in _JSON:  # nested values as JSON text in flat formats
            if c in frame.columns and c != "metrics":
                frame[c] = frame[c].map(lambda v: json.dumps(v, sort_keys=True))
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UserError("parquet export needs pyarrow: pip install 'ebmbench[parquet]'") from None
    tmp: str | None = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        os.close(fd)
        if fmt == "json":
            frame.to_json(tmp, orient="records", indent=1)
        elif fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, out)
        tmp = None
    except OSError as exc:
        raise _write_failure(out, exc) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return out


def read_results(path: str | Path) -> pd.DataFrame:
    """Runs from a store (``.sqlite``) or from an export (``.csv``, ``.json``, ``.parquet``).

    Exports hold the nested columns as JSON text; they are decoded, so the frame is the
    same as :meth:`ResultStore.to_frame` gives and leaderboards render identically from
    either. A published export (a runs table ``results.csv`` beside its configurations,
    see :mod:`ebmbench.published`) is joined back into the same frame. A store is opened
    read-only; a file that is not results (bad JSON, a CSV without the run columns) is a
    :class:`UserError` naming what is wrong.
    """
    path = Path(path)
    from .published import is_published, read_published

    if is_published(path):
        return read_published(path)
    if path.suffix in (".csv", ".json", ".parquet"):
        if not path.is_file():
            raise UserError(f"no results file at {str(path)!r}")
        frame = _read_export(path)
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise UserError(
                f"{str(path)!r} is not an ebmbench results export: it has no column "
                f"{', '.join(missing)}. Export one with `ebmbench export`"
            )
        if path.suffix == ".json":
            return frame
        for c in _JSON:
            if c in frame.columns and c != "metrics":
                frame[c] = frame[c].map(_decoded)
        for c in ("reason", "traceback"):
            if c in frame.columns:
                frame[c] = frame[c].astype(object).where(frame[c].notna(), "")
        return frame
    with ResultStore.open_existing(path) as store:
        return store.to_frame()


def _decoded(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise UserError(f"a nested column holds text that is not JSON: {value[:60]!r}") from None


def _read_export(path: Path) -> pd.DataFrame:
    try:
        if path.suffix == ".json":
            frame = pd.read_json(path, orient="records", dtype=False)
        elif path.suffix == ".csv":
            frame = pd.read_csv(path, keep_default_na=True)
        else:
            frame = pd.read_parquet(path)
    except ImportError:
        raise UserError("reading parquet needs pyarrow: pip install 'ebmbench[parquet]'") from None
    except OSError as exc:
        raise UserError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except Exception as exc:  # pandas and pyarrow raise many kinds for a malformed file
        first = " ".join(str(exc).split())[:120]
        raise UserError(f"cannot read {str(path)!r} as {path.suffix[1:]}: {first}") from None
    if not isinstance(frame, pd.DataFrame):
        raise UserError(f"{str(path)!r} is not a table of runs")
    return frame


def read_not_applicable(path: str | Path) -> pd.DataFrame:
    """The not-applicable counts (``dataset``, ``reason``, ``combinations``) of a store or a
    published export; empty for other exports and for stores older than schema 4."""
    path = Path(path)
    from .published import is_published, read_published_not_applicable

    if is_published(path):
        return read_published_not_applicable(path)
    if path.suffix == ".sqlite" and path.is_file():
        with ResultStore.open_existing(path) as store:
            return store.not_applicable()
    return pd.DataFrame(columns=["dataset", "reason", "combinations"])
