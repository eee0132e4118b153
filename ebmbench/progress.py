"""A sweep's progress: runs done of the total, the tasks running now, an ETA, failures.

:class:`SweepProgress` is the state, fed with each result row as the driver stores it; it
does no I/O, so it is tested directly. :func:`live_progress` shows it with rich on a
terminal: a bar with done/total, elapsed time and the ETA, one line per task running now,
and each failure printed above the bar the moment its row arrives.

Which tasks run now is inferred: every executor takes tasks in the order it is given them
and runs :meth:`Executor.concurrency <ebmbench.Executor.concurrency>` at once, so the
running ones are the first that many unfinished tasks. Exact for ``local`` and
``process``; an estimate for a cluster whose scheduler reorders jobs.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = ["SweepProgress", "live_progress", "PROBLEM_STATUSES"]

#: Statuses printed the moment a row with one arrives.
PROBLEM_STATUSES = ("failed", "diverged", "timeout")


def _duration(seconds: float) -> str:
    """``3725`` → ``'1:02:05'``; ``65`` → ``'1:05'``.

    >>> _duration(3725), _duration(65), _duration(0.4)
    ('1:02:05', '1:05', '0:00')
    """
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class SweepProgress:
    """The progress of a sweep, from the rows as they arrive.

    Args:
        tasks: The tasks handed to the executor, in order; each has ``specs`` with a
            ``run_id``, ``dataset``, ``method``, ``architecture`` and ``sampler``.
        concurrency: How many tasks the executor runs at once.
        clock: Seconds, monotonic (a fake one in tests).

    >>> from types import SimpleNamespace as NS
    >>> spec = lambda i, s: NS(run_id=f"r{i}{s}", dataset="d", method=f"m{i}",
    ...                        architecture="a", sampler=s)
    >>> tasks = [NS(specs=[spec(i, "ula"), spec(i, "mala")]) for i in range(3)]
    >>> now = [0.0]
    >>> p = SweepProgress(tasks, concurrency=2, clock=lambda: now[0])
    >>> p.running()
    ['d/m0/a (2 samplers)', 'd/m1/a (2 samplers)']
    >>> now[0] = 10.0
    >>> p.record({"run_id": "r0ula", "status": "ok"}), p.record({"run_id": "r0mala", "status": "failed"})
    (False, True)
    >>> p.done, p.total, p.eta()
    (2, 6, 20.0)
    >>> p.running()
    ['d/m1/a (2 samplers)', 'd/m2/a (2 samplers)']
    """

    def __init__(self, tasks: Sequence[Any], concurrency: int = 1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started = clock()
        self.concurrency = max(1, int(concurrency))
        self._tasks = list(tasks)
        self._left: list[set[str]] = [{s.run_id for s in t.specs} for t in self._tasks]
        self._task_of = {rid: i for i, left in enumerate(self._left) for rid in left}
        self._unfinished = list(range(len(self._tasks)))
        self.total = sum(len(left) for left in self._left)
        self.done = 0
        self.counts: Counter[str] = Counter()
        self.problems: list[dict[str, Any]] = []

    def record(self, row: dict[str, Any]) -> bool:
        """Count ``row``; returns whether it is a problem (failed, diverged, timed out)."""
        self.done += 1
        self.counts[row["status"]] += 1
        index = self._task_of.pop(row["run_id"], None)
        if index is not None:
            self._left[index].discard(row["run_id"])
            if not self._left[index]:
                self._unfinished.remove(index)
        problem = row["status"] in PROBLEM_STATUSES
        if problem:
            self.problems.append(row)
        return problem

    def elapsed(self) -> float:
        return self._clock() - self.started

    def eta(self) -> float | None:
        """Seconds left at the mean pace of the runs finished so far (None before the first)."""
        if not self.done:
            return None
        return self.elapsed() / self.done * (self.total - self.done)

    def running(self) -> list[str]:
        """A label per task running now: the first ``concurrency`` unfinished tasks."""
        labels = []
        for index in self._unfinished[: self.concurrency]:
            spec = self._tasks[index].specs[0]
            n = len(self._tasks[index].specs)
            what = f"{n} samplers" if n > 1 else spec.sampler
            labels.append(f"{spec.dataset}/{spec.method}/{spec.architecture} ({what})")
        return labels

    def summary(self) -> str:
        """``'12/40 runs, 2 failed · 1:05 elapsed · ETA 2:40'``."""
        bad = ", ".join(f"{self.counts[s]} {s}" for s in PROBLEM_STATUSES if self.counts[s])
        eta = self.eta()
        parts = [f"{self.done}/{self.total} runs" + (f", {bad}" if bad else ""),
                 f"{_duration(self.elapsed())} elapsed",
                 "ETA " + (_duration(eta) if eta is not None else "…")]
        return " · ".join(parts)


def describe_problem(row: dict[str, Any]) -> str:
    """One line for a failed, diverged or timed-out run."""
    reason = " ".join(str(row.get("reason", "")).split())
    if len(reason) > 160:
        reason = reason[:157] + "..."
    return (f"{row['status']}: {row['method']}/{row['sampler']}/{row['architecture']}/"
            f"{row['dataset']} seed {row['seed']}: {reason}")


@contextmanager
def live_progress(progress: SweepProgress, console: Any = None) -> Iterator[Callable[[dict], None]]:
    """Show ``progress`` live with rich; yields the function to call with each row.

    Args:
        progress: The state to show.
        console: A ``rich.console.Console`` (default: one on stderr).
    """
    from rich.console import Console, Group
    from rich.live import Live
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    console = console or Console(stderr=True)

    def render() -> Group:
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=max(progress.total, 1), completed=progress.done, width=40),
                    Text(progress.summary()))
        lines = [Text(f"  running: {label}", style="dim") for label in progress.running()]
        return Group(bar, *lines)

    with Live(render(), console=console, refresh_per_second=2, transient=False,
              get_renderable=render) as live:

        def on_row(row: dict[str, Any]) -> None:
            if progress.record(row):
                live.console.print(Text(describe_problem(row), style="red"))
            live.refresh()

        yield on_row
