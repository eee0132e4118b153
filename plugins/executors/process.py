"""A local pool of worker processes: hard time limits and crash isolation.

Each task runs in a worker process started with the ``spawn`` (or ``forkserver``) method:
forking a process that has initialised torch (its thread pools, CUDA) is unsafe. A worker
streams every result row back over a pipe as soon as the run ends. The driver watches each
worker's pipe and process sentinel:

* a worker past its task's hard time limit is killed (SIGKILL) and the task's unfinished
  runs are recorded as ``timeout``;
* a worker that dies (``os._exit``, a segfault, the kernel's out-of-memory killer) has its
  unfinished runs recorded as ``failed`` with the exit code;
* either way a fresh worker takes its place and the sweep goes on.

Workers load plugins from the entry points and from the task's ``--plugins-dir`` folders.
Plugins registered programmatically with :func:`ebmbench.register_plugin` exist only in the
driver process: their runs fail in a worker with "unknown method ...". Put such plugins in
a ``--plugins-dir`` folder (or a package with an entry point) to run them in a pool.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

from ebmbench import (
    Executor,
    Param,
    Task,
    UserError,
    hard_time_limit,
    portable_task,
    unfinished_rows,
    usable_cpu_cores,
)

__all__ = ["ProcessPoolExecutor", "describe_exit", "gpu_slots"]

T = TypeVar("T")
R = TypeVar("R")

#: How often a worker checks that its driver is still alive (seconds).
_ORPHAN_POLL = 0.5
#: A worker dying this many times in a row before it is ready means a broken environment.
_MAX_START_FAILURES = 3


def describe_exit(code: int | None) -> str:
    """Say how a worker process ended, naming the signal when it was killed by one.

    >>> describe_exit(3)
    'the worker process died with exit code 3'
    >>> describe_exit(-9)
    'the worker process was killed by SIGKILL (exit code -9; the out-of-memory killer?)'
    """
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = "; the out-of-memory killer?" if -code == signal.SIGKILL else ""
        return f"the worker process was killed by {name} (exit code {code}{hint})"
    return f"the worker process died with exit code {code}"


# ------------------------------------------------------------------------ the worker


def _watch_parent(parent: int) -> None:
    # A driver killed with SIGKILL cannot stop its workers; they stop themselves, so that
    # a run stuck in a native call does not outlive the sweep.
    while True:
        time.sleep(_ORPHAN_POLL)
        if os.getppid() != parent:
            os._exit(1)


def _worker_main(conn: Connection, plugins_dirs: list[str], threads: int,
                 cuda_device: str | None) -> None:
    """A worker: load the plugins once, then run tasks sent over ``conn``."""
    parent = os.getppid()  # the driver (spawn) or the fork server (which dies with it)
    # Ctrl-C reaches the whole process group; only the driver acts on it (and then
    # stops its workers), so that an interrupted sweep does not record runs as failed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if cuda_device is not None:  # read by CUDA at its first use, which is later
        os.environ["CUDA_VISIBLE_DEVICES"] = cuda_device

    import torch

    import ebmbench

    torch.set_num_threads(threads)
    # The first optimiser imports torch._dynamo (seconds): pay it now, not in a timed task.
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])
    for folder in plugins_dirs:
        ebmbench.add_plugins_dir(folder)
    ebmbench.list_plugins("method")  # load every plugin now, not inside the first timed task
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the driver is gone
            return
        if message is None:
            return
        fn, task = message
        try:
            for row in fn(task):
                conn.send(("row", row))
        except Exception:
            conn.send(("error", traceback.format_exc()))
        else:
            conn.send(("done", None))


# ------------------------------------------------------------------------ the driver


@dataclasses.dataclass
class _Slot:
    """One worker process and what it is doing."""

    process: Any
    conn: Connection
    ready: bool = False
    task: Any = None
    started: float = 0.0
    limit: float | None = None
    done: set[str] = dataclasses.field(default_factory=set)
    #: The worker's resident-memory high-water mark, read while it runs (MiB): what a
    #: row lost with a killed worker reports as its peak memory.
    peak_mb: float = float("nan")

    @property
    def busy(self) -> bool:
        return self.task is not None


class ProcessPoolExecutor(Executor):
    """Runs each task in a pool of worker processes; crashes and hangs cost one task.

    Results stream back as each run ends. See the module docstring for how workers are
    started, killed at their hard time limit (:func:`hard_time_limit`) and replaced.
    """

    name = "process"
    description = "A local pool of worker processes: hard time limits, crashes isolated"
    params = {
        "workers": Param(0, "worker processes (0: one per CPU core)", low=0),
        "grace": Param(
            60.0,
            "seconds added to a task's hard limit, timeout × (runs + 1), for setup and metrics",
            smoke=20.0, full=600.0, low=0,
        ),
        "threads": Param(0, "torch threads per worker (0: CPU cores / workers, at least 1)", low=0),
        "start_method": Param("spawn", "how workers start (never fork: torch is not fork-safe)",
                              choices=("spawn", "forkserver")),
        "spread_gpus": Param(True, "pin each worker to one visible GPU (tasks on CUDA)"),
        "gpu_fraction": Param(1.0, "share of a GPU each run may use: 1 = one run per GPU, "
                              "0.5 = two, 0.25 = four (caps the workers on GPUs)"),
    }

    def map(self, fn: Callable[[T], Iterable[R]], tasks: Sequence[T]) -> Iterator[R]:
        # Tasks are taken one at a time, when a worker is free to start one: a sweep
        # claims a task as it is taken, so overlapping sweeps split the work.
        source = iter(tasks)
        first = next(source, None)
        if first is None:
            return
        queue: deque[Any] = deque([portable_task(first)])
        exhausted = False

        def take() -> Any:
            nonlocal exhausted
            if queue:
                return queue.popleft()
            if not exhausted:
                task = next(source, None)
                if task is not None:
                    return portable_task(task)
                exhausted = True
            return None

        def more() -> bool:
            return bool(queue) or not exhausted

        cores = usable_cpu_cores()
        # Every task of a sweep has the same plugin folders and device: the first says.
        n_tasks = len(tasks) if hasattr(tasks, "__len__") else None  # an upper bound
        gpus = self.placement([first], n_tasks)
        workers = len(gpus)
        threads = self.hparams["threads"] or max(1, cores // workers)
        plugins_dirs = sorted(set(first.plugins_dirs)) if isinstance(first, Task) else []
        context = mp.get_context(self.hparams["start_method"])
        slots: list[Any] = []  # a _Slot, or None for a worker lost and not replaced
        start_failures = 0

        def spawn(index: int) -> _Slot:
            ours, theirs = context.Pipe()
            cuda = gpus[index]
            process = context.Process(
                target=_worker_main, name=f"ebmbench-worker-{index}",
                args=(theirs, plugins_dirs, threads, cuda), daemon=True,
            )
            process.start()
            theirs.close()
            return _Slot(process, ours)

        try:
            slots = [spawn(i) for i in range(workers)]
            while more() or any(s.busy for s in slots):
                for slot in slots:
                    if slot.ready and not slot.busy:
                        task = take()
                        if task is None:
                            break
                        slot.task, slot.done, slot.started = task, set(), time.monotonic()
                        slot.limit = hard_time_limit(task, self.hparams["grace"])
                        slot.peak_mb = float("nan")
                        try:
                            slot.conn.send((fn, task))
                        except OSError:  # it died just now: noticed below, its task lost
                            pass
                if not slots:
                    break
                for slot in slots:  # before waiting: a worker may die before the next look
                    if slot.busy:
                        slot.peak_mb = _peak_rss_mb(slot.process.pid, slot.peak_mb)
                waitables = [s.conn for s in slots] + [s.process.sentinel for s in slots]
                wait(waitables, timeout=_next_wakeup(slots))
                for index, slot in enumerate(slots):
                    if slot.busy:
                        slot.peak_mb = _peak_rss_mb(slot.process.pid, slot.peak_mb)
                    yield from self._drain(slot)
                    if not slot.process.is_alive() or slot.conn.closed:
                        slot.process.join()
                        code = slot.process.exitcode
                        if slot.busy:
                            reason = describe_exit(code) + " while running it"
                            yield from _lost(slot, "failed", reason)
                        elif not slot.ready:
                            start_failures += 1
                            if start_failures >= _MAX_START_FAILURES:
                                raise RuntimeError(
                                    f"worker processes keep dying before they are ready: "
                                    f"{describe_exit(code)} (a script that runs a sweep with this "
                                    "executor needs an `if __name__ == '__main__':` guard)"
                                )
                        slots[index] = spawn(index) if more() else None
                    elif slot.busy and slot.limit is not None:
                        elapsed = time.monotonic() - slot.started
                        if elapsed > slot.limit:
                            _kill(slot)
                            task = slot.task
                            reason = (
                                f"hard time limit: the task ran {elapsed:.1f} s, past its "
                                f"{slot.limit:g} s (timeout {task.timeout:g} s × "
                                f"({len(task.specs)} runs + 1) + grace "
                                f"{self.hparams['grace']:g} s); its worker was killed"
                            )
                            yield from _lost(slot, "timeout", reason)
                            slots[index] = spawn(index) if more() else None
                    elif slot.ready:
                        start_failures = 0
                # A worker lost when no task is left waiting is not replaced.
                slots = [s for s in slots if s is not None]
        finally:
            for slot in slots:
                _stop(slot)

    def placement(self, tasks: Sequence[Any], n_tasks: int | None | Any = ...) -> list[str | None]:
        """One entry per worker to start: the GPU id it is pinned to, or None.

        ``tasks`` are (some of) the tasks, all with the same device; ``n_tasks`` is how many
        there are in all (default ``len(tasks)``; None with tasks given lazily: no cap).

        Tasks on the CPU (or ``spread_gpus`` off, or no GPU): ``workers`` workers (0: one
        per core), unpinned. Tasks that may use CUDA, with GPUs visible: each GPU
        ⌊1/``gpu_fraction``⌋ times (:func:`gpu_slots`), at most ``workers`` of them: the
        declared fraction, not the cores, caps how many runs share a GPU. Never more
        workers than tasks.
        """
        gpus = gpu_slots(_gpu_ids(tasks), self.hparams["gpu_fraction"]) \
            if self.hparams["spread_gpus"] else []
        wanted = self.hparams["workers"] or len(gpus) or usable_cpu_cores()
        if n_tasks is ...:
            n_tasks = len(tasks)
        cap = wanted if n_tasks is None else min(wanted, n_tasks)
        if gpus:
            return list(gpus[: max(1, cap)])
        return [None] * max(1, cap)

    @staticmethod
    def _drain(slot: _Slot) -> Iterator[Any]:
        """Yield the rows ``slot``'s worker has sent; update its state from its messages."""
        while not slot.conn.closed:
            try:
                if not slot.conn.poll():
                    return
                kind, payload = slot.conn.recv()
            except (EOFError, OSError):  # the worker died; rows sent before are all read
                slot.conn.close()
                return
            if kind == "ready":
                slot.ready = True
            elif kind == "row":
                if isinstance(payload, dict) and "run_id" in payload:
                    slot.done.add(payload["run_id"])
                yield payload
            elif kind == "done":
                slot.task = None
            elif kind == "error":  # ``fn`` itself raised (execute_task never does)
                yield from _lost(slot, "failed", "the task function raised in the worker",
                                 payload)


def _lost(slot: _Slot, status: str, reason: str, tb: str = "") -> Iterator[Any]:
    """Rows for what the slot's task did not finish; the slot becomes idle."""
    task, slot.task = slot.task, None
    if not isinstance(task, Task):
        raise RuntimeError(f"{reason}\n{tb}")
    yield from unfinished_rows(task, slot.done, status, reason, tb, peak_memory_mb=slot.peak_mb)


def _peak_rss_mb(pid: int | None, known: float) -> float:
    """A live process's resident-memory high-water mark in MiB (``VmHWM`` on Linux), or
    ``known`` where it cannot be read (another OS, a process already gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return known


def _next_wakeup(slots: list[_Slot]) -> float:
    """Seconds until the earliest hard deadline (at most one)."""
    now = time.monotonic()
    deadlines = [s.started + s.limit - now for s in slots if s.busy and s.limit is not None]
    return max(0.01, min([1.0, *deadlines]))


def _kill(slot: _Slot) -> None:
    slot.process.kill()
    slot.process.join()
    slot.conn.close()


def _stop(slot: _Slot) -> None:
    """Stop a worker: politely when idle, by SIGKILL when it is running something."""
    if slot.process.is_alive() and not slot.busy and slot.ready:
        try:
            slot.conn.send(None)
        except OSError:
            pass
        slot.process.join(timeout=2)
    if slot.process.is_alive():
        slot.process.kill()
        slot.process.join()
    slot.conn.close()


def gpu_slots(gpu_ids: Sequence[str], fraction: float) -> list[str]:
    """The GPU of each worker: every GPU ⌊1/fraction⌋ times, in turn (one run per GPU at
    ``fraction`` 1, two at 0.5, ...), so that fewer workers still spread over every GPU.

    >>> gpu_slots(["0", "1"], 0.5)
    ['0', '1', '0', '1']
    >>> gpu_slots(["3"], 1.0)
    ['3']
    """
    if not 0 < fraction <= 1:
        raise UserError(f"gpu_fraction must be in (0, 1], got {fraction!r}")
    per_gpu = max(1, math.floor(1 / fraction + 1e-9))
    return [gpu for _ in range(per_gpu) for gpu in gpu_ids]


def _visible_gpus() -> list[str]:
    """The ids of the GPUs this process sees (as CUDA_VISIBLE_DEVICES names them)."""
    import torch

    count = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    return ids[:count] if ids else [str(i) for i in range(count)]


def _gpu_ids(tasks: Sequence[Any]) -> list[str]:
    """The visible GPU ids to hand out, unless every task runs on the CPU."""
    if all(isinstance(t, Task) and t.device == "cpu" for t in tasks):
        return []
    return _visible_gpus()
