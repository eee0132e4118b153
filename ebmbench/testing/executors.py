"""Checks for executors: ``map`` yields every result of every task."""

from __future__ import annotations

from collections.abc import Iterator

from ..base import Executor
from .suite import Subject, check

__all__ = ["echo_task"]


def echo_task(task: int) -> Iterator[int]:
    """A picklable task function: yields ``task`` and ``10 * task``.

    >>> list(echo_task(3))
    [3, 30]
    """
    yield task
    yield 10 * task


@check("executor_map", ["executor"])
def check_executor_map(s: Subject) -> None:
    """``map(fn, tasks)`` yields every result of every task, and nothing for no task.

    ``fn`` is :func:`echo_task`, a top-level function (picklable, as the harness's
    ``execute_task`` is) yielding two results per task; order may differ.
    """
    executor: Executor = s.make()  # type: ignore[assignment]
    got = sorted(executor.map(echo_task, [1, 2, 3]))
    assert got == [1, 2, 3, 10, 20, 30], f"map(echo_task, [1, 2, 3]) yielded {got}"
    assert list(executor.map(echo_task, [])) == [], "map over no tasks yielded results"
