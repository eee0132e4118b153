"""The pending-rows journal: computed runs the store could not take, kept beside it.

When a finished run's row cannot be committed (the disk is full, an I/O error, the store
turned read-only), the sweep appends it to ``<store>.pending.jsonl``, one JSON line per
row, fsynced, and stops. The next sweep on the store merges the journal in one
transaction and deletes it, so the run is not computed again. Read commands never merge
(they write nothing); they say the journal is there.

A full disk is the usual reason a row cannot be committed, and then a new file could not
be written either: a sweep therefore *reserves* :data:`RESERVE_BYTES` for the journal
when it starts (a file of zero bytes, allocated up front) and writes rows into that space.
Rows end at the first NUL byte. On copy-on-write file systems (btrfs, ZFS) a reservation
does not guarantee the space; there a row the disk cannot take is reported as lost and
its run is computed again on resume.

Appends and merges lock the file (``flock``), so overlapping sweeps share one journal.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: one sweep per store, no lock needed
    fcntl = None  # type: ignore[assignment]

__all__ = ["PendingRows", "RESERVE_BYTES", "SUFFIX"]

#: The journal's name is the store's plus this.
SUFFIX = ".pending.jsonl"
#: Space a sweep reserves for the journal when it starts: dozens of rows.
RESERVE_BYTES = 256 * 1024


def _fsync_dir(folder: Path) -> None:
    """Make a file's creation or removal in ``folder`` survive a power cut."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class PendingRows:
    """The journal beside the store at ``store_path``.

    >>> import tempfile
    >>> journal = PendingRows(Path(tempfile.mkdtemp()) / "r.sqlite")
    >>> journal.append({"run_id": "a", "status": "ok"}, replace=False)
    >>> journal.read()
    [({'run_id': 'a', 'status': 'ok'}, False)]
    """

    def __init__(self, store_path: str | os.PathLike[str]) -> None:
        store = Path(store_path)
        self.path = store.with_name(store.name + SUFFIX)

    @contextlib.contextmanager
    def _locked(self, *, create: bool) -> Iterator[int | None]:
        """The journal's descriptor, locked; ``None`` when there is no journal to lock.

        A merge deletes the journal while holding the lock: whoever waited for the lock on
        the deleted file opens the path again.
        """
        while True:
            try:
                flags = os.O_RDWR | (os.O_CREAT if create else 0)
                fd = os.open(self.path, flags, 0o644)
            except FileNotFoundError:
                yield None
                return
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink == 0:  # removed by a merge while we waited
                os.close(fd)
                continue
            try:
                yield fd
            finally:
                os.close(fd)  # also releases the lock
            return

    @staticmethod
    def _content(fd: int) -> bytes:
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0) if size else b""
        end = data.find(b"\0")
        return data if end < 0 else data[:end]

    def reserve(self) -> None:
        """Allocate :data:`RESERVE_BYTES` for the journal, if it has no space yet.

        Best effort: a disk already too full for the reservation is not an error here (the
        store's own writes will fail and say so).
        """
        with contextlib.suppress(OSError):
            existed = self.path.exists()
            with self._locked(create=True) as fd:
                if fd is None:
                    return
                size = os.fstat(fd).st_size
                if size < RESERVE_BYTES:
                    os.pwrite(fd, b"\0" * (RESERVE_BYTES - size), size)
                    os.fsync(fd)
            if not existed:
                _fsync_dir(self.path.parent)

    def append(self, row: dict[str, Any], *, replace: bool) -> None:
        """Add one row, durably (fsynced) before returning.

        Raises:
            OSError: The journal could not be written either.
        """
        line = json.dumps({"replace": replace, "row": row}, default=str).encode() + b"\n"
        existed = self.path.exists()
        with self._locked(create=True) as fd:
            assert fd is not None
            end = len(self._content(fd))
            written = os.pwrite(fd, line, end)
            if written != len(line):
                raise OSError(f"short write to {self.path}")
            os.fsync(fd)
        if not existed:
            _fsync_dir(self.path.parent)

    def read(self) -> list[tuple[dict[str, Any], bool]]:
        """Every complete row in the journal (a line cut by a crash is skipped)."""
        with self._locked(create=False) as fd:
            return [] if fd is None else self._rows(self._content(fd))

    def count(self) -> int:
        """How many rows wait in the journal, read without taking the lock."""
        try:
            data = self.path.read_bytes()
        except OSError:
            return 0
        end = data.find(b"\0")
        return len(self._rows(data if end < 0 else data[:end]))

    @staticmethod
    def _rows(data: bytes) -> list[tuple[dict[str, Any], bool]]:
        rows = []
        for line in data.split(b"\n"):
            try:
                entry = json.loads(line)
                rows.append((dict(entry["row"]), bool(entry["replace"])))
            except (ValueError, KeyError, TypeError):
                continue  # empty, or cut short by a crash mid-write
        return rows

    def merge_into(self, write_many: Any) -> int:
        """Hand every row to ``write_many`` (one transaction), then delete the journal.

        The journal is deleted only after ``write_many`` returned, under the lock: a failed
        merge leaves it whole for the next try.

        Returns:
            How many rows the journal held.
        """
        with self._locked(create=False) as fd:
            if fd is None:
                return 0
            rows = self._rows(self._content(fd))
            if rows:
                write_many(rows)
            os.unlink(self.path)
        _fsync_dir(self.path.parent)
        return len(rows)

    def discard_if_empty(self) -> None:
        """Delete the journal when it holds no row (a sweep's unused reservation)."""
        with contextlib.suppress(OSError), self._locked(create=False) as fd:
            if fd is not None and not self._content(fd).strip():
                os.unlink(self.path)
