"""Ray: run tasks on a Ray cluster (or a local Ray started for the sweep).

Each task is one Ray task, a streaming generator: it yields a start marker, then every
result row as its run ends, so rows reach the driver (the store's only writer) as they
come (``ray.wait`` on the generators). A task past its hard time limit is cancelled with
``ray.cancel(force=True)``, which kills its worker process; a worker that dies (a
segfault, ``os._exit``, Ray's out-of-memory monitor) makes the task's unfinished runs
``failed`` with Ray's error. Ray never retries a task (``max_retries=0``): a run that
crashes its worker would crash it again.

On a cluster, every node needs the same Python environment with ebmbench and the plugins
installed, and the ``--plugins-dir`` folders and the results folder (checkpoints, figures)
on a shared file system at the same absolute paths. Plugins registered programmatically
with :func:`ebmbench.register_plugin` exist only in the driver.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from ebmbench import (
    Executor,
    Param,
    Task,
    UserError,
    hard_time_limit,
    portable_task,
    unfinished_rows,
)

__all__ = ["RayExecutor"]

T = TypeVar("T")
R = TypeVar("R")


def _run_task(fn: Callable[[Any], Iterable[Any]], task: Any) -> Iterator[tuple[str, Any]]:
    """The remote generator: a start marker (the hard limit counts from it), then rows."""
    yield ("start", time.time())
    for row in fn(task):
        yield ("row", row)


@dataclasses.dataclass
class _Flight:
    """A submitted task and what has come back from it."""

    task: Any
    limit: float | None
    started: float | None = None
    done: set[str] = dataclasses.field(default_factory=set)


class RayExecutor(Executor):
    """Runs each task as a Ray task; rows stream back as runs end.

    With no Ray initialised in this process yet, the executor starts one: it joins
    ``address``, or starts a local Ray with ``num_cpus`` CPUs. That Ray stays up until the
    process exits (Ray shuts it down then), so later sweeps in the same process (a
    notebook, a test session) do not pay its start-up again; an initialised Ray, however
    started, is used as it is.
    """

    name = "ray"
    description = "Ray: a local Ray or a cluster (--address); hard time limits, crashes isolated"
    params = {
        "address": Param(None, "cluster to join (auto, ray://head:10001, ...); none: a local Ray",
                         type=str),
        "num_cpus": Param(0, "CPUs of a local Ray (0: every core)", low=0),
        "connect_timeout": Param(10.0, "seconds to wait for the head node's port to answer",
                                 positive=True),
        "cpus_per_task": Param(1.0, "CPUs each task asks for", low=0),
        "num_gpus": Param(-1.0, "GPUs each task asks for (-1: gpu_fraction when it runs on "
                          "CUDA, else 0)", low=-1),
        "gpu_fraction": Param(1.0, "share of a GPU each run on CUDA asks for: 1 = one run per "
                              "GPU, 0.5 = two, 0.25 = four", positive=True, high=1),
        "grace": Param(
            60.0,
            "seconds added to a task's hard limit, timeout × (runs + 1), for setup and metrics",
            smoke=20.0, full=600.0, low=0,
        ),
    }

    def map(self, fn: Callable[[T], Iterable[R]], tasks: Sequence[T]) -> Iterator[R]:
        try:
            import ray
        except ImportError:
            raise UserError(
                "the ray executor needs Ray: pip install 'ebmbench[ray]'"
            ) from None
        tasks = [portable_task(t) for t in tasks]
        if not tasks:
            return
        if not ray.is_initialized():
            address = self.hparams["address"] or None
            _probe(address, self.hparams["connect_timeout"])
            try:
                ray.init(
                    address=address,
                    num_cpus=None if address else self.hparams["num_cpus"] or None,
                    include_dashboard=False,
                    # Runs print little; their warnings still reach the driver's terminal.
                    log_to_driver=True,
                )
            except (ConnectionError, ValueError) as exc:  # no cluster there, a bad address
                raise UserError(
                    f"cannot start or join Ray at --address {address!r}: {exc}"
                ) from None
        flights: dict[Any, _Flight] = {}
        try:
            remote = ray.remote(_run_task)
            has_gpus = ray.cluster_resources().get("GPU", 0) > 0
            for task in tasks:
                options = {
                    "num_returns": "streaming",
                    "max_retries": 0,
                    "num_cpus": self.hparams["cpus_per_task"],
                    "num_gpus": self._gpus(task, has_gpus),
                }
                generator = remote.options(**options).remote(fn, task)
                flights[generator] = _Flight(task, hard_time_limit(task, self.hparams["grace"]))
            while flights:
                pending = list(flights)
                ready, _ = ray.wait(pending, num_returns=1, timeout=_next_wakeup(flights))
                if ready:  # take everything that is ready, not one item per pass
                    ready, _ = ray.wait(pending, num_returns=len(pending), timeout=0)
                for generator in ready:
                    yield from self._advance(ray, generator, flights)
                now = time.time()
                for generator, flight in list(flights.items()):
                    if flight.started is None or flight.limit is None:
                        continue
                    elapsed = now - flight.started
                    if elapsed > flight.limit:
                        ray.cancel(generator, force=True)
                        del flights[generator]
                        task = flight.task
                        reason = (
                            f"hard time limit: the task ran {elapsed:.1f} s, past its "
                            f"{flight.limit:g} s (timeout {task.timeout:g} s × "
                            f"({len(task.specs)} runs + 1) + grace {self.hparams['grace']:g} s); "
                            "Ray killed its worker"
                        )
                        yield from _lost(flight, "timeout", reason)
        finally:
            for generator in flights:
                try:
                    ray.cancel(generator, force=True)
                except Exception:  # already finished or the cluster is gone
                    pass

    def _gpus(self, task: Any, has_gpus: bool) -> float:
        """The GPUs a task asks Ray for; Ray then sets its CUDA_VISIBLE_DEVICES."""
        wanted = self.hparams["num_gpus"]
        if wanted >= 0:
            return wanted
        fraction = self.hparams["gpu_fraction"]
        if not 0 < fraction <= 1:
            raise UserError(f"gpu_fraction must be in (0, 1], got {fraction!r}")
        device = getattr(task, "device", "cpu")
        return fraction if device.startswith("cuda") or (device == "auto" and has_gpus) else 0.0

    @staticmethod
    def _advance(ray: Any, generator: Any, flights: dict[Any, _Flight]) -> Iterator[Any]:
        """Take the next item of a ready generator: a row, the start marker, or its end."""
        flight = flights[generator]
        try:
            ref = next(generator)
        except StopIteration:
            del flights[generator]
            if isinstance(flight.task, Task) and len(flight.done) < len(flight.task.specs):
                yield from _lost(flight, "failed", "the Ray task ended without every row")
            return
        try:
            kind, payload = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # ``fn`` raised (execute_task never does)
            del flights[generator]
            yield from _lost(flight, "failed", "the task function raised on a Ray worker", str(exc))
            return
        except ray.exceptions.RayError as exc:  # the worker died: crash, OOM kill, node lost
            del flights[generator]
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            reason = f"the Ray worker died while running it ({type(exc).__name__}: {first})"
            yield from _lost(flight, "failed", reason, str(exc))
            return
        if kind == "start":
            flight.started = time.time()  # the driver's clock: no skew between nodes
        else:
            if isinstance(payload, dict) and "run_id" in payload:
                flight.done.add(payload["run_id"])
            yield payload


def _lost(flight: _Flight, status: str, reason: str, tb: str = "") -> Iterator[Any]:
    if not isinstance(flight.task, Task):
        raise RuntimeError(f"{reason}\n{tb}")
    yield from unfinished_rows(flight.task, flight.done, status, reason, tb)


def _next_wakeup(flights: dict[Any, _Flight]) -> float:
    now = time.time()
    deadlines = [f.started + f.limit - now for f in flights.values()
                 if f.started is not None and f.limit is not None]
    return max(0.01, min([1.0, *deadlines]))


def _probe(address: str | None, timeout: float) -> None:
    """Fail fast, with the address in the message, when a ``host:port`` address does not
    answer: ``ray.init`` itself retries an unreachable head for a long time.

    ``auto``, no address and anything without a port are left to Ray.

    >>> _probe(None, 1.0)
    >>> _probe("auto", 1.0)
    """
    if not address or address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise UserError(
            f"cannot reach Ray at --address {address!r}: {exc or type(exc).__name__}. Is the head "
            "node running, and is its port open from here? (--address auto joins a cluster "
            "started on this machine; no --address starts a local Ray)"
        ) from None

