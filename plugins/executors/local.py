"""The in-process executor."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from ebmbench import Executor

__all__ = ["LocalExecutor"]

T = TypeVar("T")
R = TypeVar("R")


class LocalExecutor(Executor):
    """Runs tasks one after another in this process, streaming each result as it comes.

    The default of ``ebmbench.run``; ``ebmbench run`` uses it when it has one worker (one
    usable core, a GPU, or ``--workers 1``) and the ``process`` pool otherwise.

    Time limits are enforced cooperatively by the harness between training steps; a run
    stuck inside one native call needs a process-based executor to be cut off.
    """

    name = "local"
    description = "In-process, one run after another (the API's default; the CLI's with one worker)"

    def map(self, fn: Callable[[T], Iterable[R]], tasks: Sequence[T]) -> Iterator[R]:
        for task in tasks:
            yield from fn(task)
