"""Leases: overlapping sweeps on one store split the runs instead of repeating them.

Before a task goes to the executor, the driver *claims* its runs: a row per run in the
store's ``leases`` table (run id, claimant, host, pid, expiry), written in one
transaction, so two sweeps can never both hold a run. A run stored already, or held by
another live sweep, is left out of the task; a task left with no run is not started.

A claim lasts :data:`LEASE_SECONDS` and a heartbeat thread renews the sweep's claims
every quarter of that while its tasks run. A claim is taken over when it expired (its
sweep stopped renewing: killed, or its machine gone), or at once when its claimant ran on
this host and its process no longer exists. A run's row and the release of its lease are
one transaction. At the end, a sweep waits for the runs it left to others: each is
either stored by them, or taken over and run here when its claim is dropped or expires.

Expiry compares wall clocks, so machines sharing a store over a network file system
should keep their clocks within a few seconds (NTP). SQLite's own locking must work on
that file system for any of this to hold.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .grid import RunSpec

__all__ = ["LEASE_SECONDS", "Claimant", "Leases", "Heartbeat", "ClaimingTasks"]

#: How long a claim lasts without renewal, in seconds.
LEASE_SECONDS = 60.0
#: How often a sweep waiting for another's runs looks at the store again, at most.
POLL_SECONDS = 2.0


@dataclass(frozen=True)
class Claimant:
    """One sweep: a unique id, and the host and process it runs in."""

    id: str
    host: str
    pid: int

    @classmethod
    def here(cls) -> Claimant:
        host, pid = socket.gethostname(), os.getpid()
        return cls(f"{host}:{pid}:{uuid.uuid4().hex[:8]}", host, pid)

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}"


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError):  # someone else's live process
        return False
    return False


class Leases:
    """The claims of one sweep (``claimant``) in a store.

    Args:
        store: The :class:`~ebmbench.store.ResultStore`, open for writing.
        claimant: This sweep.
        redo: Statuses that do not count as done (``--retry-failed`` runs them again).
        lease_seconds: How long a claim lasts without renewal.
    """

    def __init__(self, store: Any, claimant: Claimant, *, redo: Sequence[str] = (),
                 lease_seconds: float = LEASE_SECONDS) -> None:
        self.store = store
        self.claimant = claimant
        self.redo = tuple(redo)
        self.lease_seconds = lease_seconds

    def _expired(self, host: str, pid: int, expires: float, now: float) -> bool:
        return expires < now or (host == self.claimant.host and pid != self.claimant.pid
                                 and _process_gone(pid))

    def _done(self, db: sqlite3.Connection, run_ids: Sequence[str]) -> set[str]:
        marks = ",".join("?" * len(run_ids))
        query = f"SELECT run_id, status FROM runs WHERE run_id IN ({marks})"
        return {r for r, status in db.execute(query, tuple(run_ids)) if status not in self.redo}

    def claim(self, run_ids: Sequence[str]) -> tuple[list[str], set[str], dict[str, str]]:
        """Claim what is free of ``run_ids``, in one transaction.

        Returns:
            The runs claimed now (in the given order), the runs stored meanwhile, and the
            runs held by other live sweeps (run id → who holds it).
        """
        if not run_ids:
            return [], set(), {}

        def work(db: sqlite3.Connection) -> tuple[list[str], set[str], dict[str, str]]:
            now = time.time()
            done = self._done(db, run_ids)
            marks = ",".join("?" * len(run_ids))
            held: dict[str, str] = {}
            mine: set[str] = set()
            for run_id, claimant, host, pid, expires in db.execute(
                f"SELECT run_id, claimant, host, pid, expires FROM leases WHERE run_id IN ({marks})",
                tuple(run_ids),
            ):
                if claimant == self.claimant.id:
                    mine.add(run_id)
                elif run_id not in done and not self._expired(host, pid, expires, now):
                    held[run_id] = f"process {pid} on {host}"
            claimed = [r for r in run_ids if r not in done and r not in held]
            expiry = now + self.lease_seconds
            c = self.claimant
            db.executemany(
                "INSERT OR REPLACE INTO leases (run_id, claimant, host, pid, expires) "
                "VALUES (?, ?, ?, ?, ?)",
                [(r, c.id, c.host, c.pid, expiry) for r in claimed],
            )
            return claimed, done, held

        return self.store.transact(work, "claim runs in")

    def renew(self) -> None:
        """Extend every claim of this sweep by :attr:`lease_seconds`."""
        expiry = time.time() + self.lease_seconds
        self.store.transact(lambda db: db.execute(
            "UPDATE leases SET expires = ? WHERE claimant = ?", (expiry, self.claimant.id)),
            "renew claims in")

    def release(self) -> None:
        """Drop every claim of this sweep (its unfinished runs become free at once)."""
        self.store.transact(lambda db: db.execute(
            "DELETE FROM leases WHERE claimant = ?", (self.claimant.id,)), "release claims in")

    def others(self, run_ids: Sequence[str]) -> tuple[set[str], dict[str, str]]:
        """Of ``run_ids``: those stored now, and those another live sweep holds."""
        if not run_ids:
            return set(), {}

        def work(db: sqlite3.Connection) -> tuple[set[str], dict[str, str]]:
            now = time.time()
            done = self._done(db, run_ids)
            marks = ",".join("?" * len(run_ids))
            held = {
                run_id: f"process {pid} on {host}"
                for run_id, claimant, host, pid, expires in db.execute(
                    f"SELECT run_id, claimant, host, pid, expires FROM leases "
                    f"WHERE run_id IN ({marks})", tuple(run_ids))
                if run_id not in done and claimant != self.claimant.id
                and not self._expired(host, pid, expires, now)
            }
            return done, held

        return self.store.transact(work, "read claims in")

    def wait_for_others(
        self, specs: Sequence[RunSpec], notify: Callable[[str], None],
        sleep: Callable[[float], None] = time.sleep,
    ) -> tuple[list[RunSpec], int]:
        """Wait until some of ``specs`` (left to other sweeps) are free to take over.

        Returns:
            The specs to run here now (their claim was dropped or expired; claim them
            again before running), and how many of ``specs`` others stored meanwhile.
        """
        told = False
        pause = 0.1
        pending = list(specs)
        stored = 0
        while pending:
            done, held = self.others([s.run_id for s in pending])
            stored += sum(s.run_id in done for s in pending)
            pending = [s for s in pending if s.run_id not in done]
            free = [s for s in pending if s.run_id not in held]
            if free:
                return free, stored
            if pending and not told:
                holders = sorted(set(held.values()))
                notify(f"waiting for {len(pending)} run(s) that another sweep ({', '.join(holders)}) "
                       "is running; they are taken over here if it stops")
                told = True
            if pending:
                sleep(pause)
                pause = min(2 * pause, POLL_SECONDS)
        return [], stored


class Heartbeat:
    """Renews a sweep's claims every ``lease_seconds / 4`` in a thread of its own, with a
    connection of its own, until :meth:`stop`."""

    def __init__(self, store_path: Path, claimant: Claimant, *,
                 lease_seconds: float = LEASE_SECONDS) -> None:
        self._path = store_path
        self._claimant = claimant
        self._lease_seconds = lease_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ebmbench-lease-heartbeat",
                                        daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _run(self) -> None:
        from .store import ResultStore

        try:
            store = ResultStore.open(self._path, on_wait=lambda message: None, verify=False)
        except Exception:  # the driver's own store calls report what is wrong
            return
        leases = Leases(store, self._claimant, lease_seconds=self._lease_seconds)
        try:
            while not self._stop.wait(self._lease_seconds / 4):
                try:
                    leases.renew()
                except Exception:  # a full disk: the driver stops at its next write
                    return
        finally:
            store.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class ClaimingTasks:
    """A sweep's tasks, each claimed when an executor takes it (not before).

    An executor that starts tasks as workers free up (``local``, ``process``) takes one at
    a time, so overlapping sweeps interleave their claims and split the work. One that
    lists every task first (``ray``, ``slurm``) claims them all at once; the others then
    wait for its runs, or take them over if it stops.

    ``len()`` is the number of tasks before claiming: an upper bound on what iterating
    yields. Indexing claims every task first.
    """

    groups: list[list[RunSpec]]
    make_task: Callable[[list[RunSpec]], Any]
    leases: Leases
    #: Specs left to other sweeps, and specs found stored while claiming.
    deferred: list[RunSpec] = field(default_factory=list)
    stored: int = 0
    _listed: list[Any] | None = None

    def __len__(self) -> int:
        return len(self.groups) if self._listed is None else len(self._listed)

    def __iter__(self) -> Iterator[Any]:
        if self._listed is not None:
            yield from self._listed
            return
        for group in self.groups:
            claimed, done, held = self.leases.claim([s.run_id for s in group])
            self.stored += len(done)
            self.deferred += [s for s in group if s.run_id in held]
            mine = set(claimed)
            specs = [s for s in group if s.run_id in mine]
            if specs:
                yield self.make_task(specs)

    def __getitem__(self, index: int) -> Any:
        if self._listed is None:
            self._listed = list(iter(self))
        return self._listed[index]
