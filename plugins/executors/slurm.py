"""Slurm through submitit: one job per task, submitted as a job array.

The driver submits every task as an element of one Slurm job array (at most
``array_parallelism`` running at once), polls the jobs and collects each finished one's
rows with ``job.results()``, writing them to the store as they come. Each job also appends
its rows to a spill file as its runs end, so that when a job dies (out of memory, a node
failure, its time limit) the runs it finished are still recorded; its unfinished runs
become ``timeout`` (Slurm state ``TIMEOUT``) or ``failed`` (any other end, with the state
and the job's error log).

``cluster="local"`` runs each job in a subprocess on this machine (submitit's
``LocalExecutor``, with the same time limit) and ``cluster="debug"`` runs them one by one
inside the driver (submitit's ``DebugExecutor``): both are for trying a sweep, and for
tests, without a cluster.

Jobs run on the cluster's nodes: they need the same Python environment (ebmbench and the
plugins installed) and the results folder, the submitit folder and the ``--plugins-dir``
folders on a shared file system. Jobs already submitted keep running if the driver dies; a
rerun of the same command submits the runs missing from the store again.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
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

__all__ = ["SlurmExecutor"]

T = TypeVar("T")
R = TypeVar("R")

#: Job time limit (minutes) when there is no --timeout to derive one from.
_DEFAULT_MINUTES = 240.0


def _job(fn: Callable[[Any], Iterable[Any]], task: Any, spill: str) -> dict[str, Any]:
    """What runs in a job: every row of ``fn(task)``, each also appended to ``spill``.

    Never raises (submitit's debug mode would open a debugger): a failure of ``fn``
    itself comes back as ``error``.
    """
    rows: list[Any] = []
    try:
        with open(spill, "ab") as out:
            for row in fn(task):
                rows.append(row)
                pickle.dump(row, out)
                out.flush()  # survives this process being killed right after
    except Exception:
        return {"rows": rows, "error": traceback.format_exc()}
    return {"rows": rows, "error": None}


def _read_spill(path: Path) -> list[Any]:
    """The rows a job wrote before it died (a torn last record is dropped)."""
    rows: list[Any] = []
    try:
        with open(path, "rb") as spill:
            while True:
                rows.append(pickle.load(spill))
    except FileNotFoundError:
        pass
    except (EOFError, pickle.UnpicklingError, ValueError, AttributeError):
        pass
    return rows


@dataclasses.dataclass
class _Flight:
    task: Any
    spill: Path
    submitted: float


class SlurmExecutor(Executor):
    """Runs each task as a Slurm job (an element of one job array) through submitit."""

    name = "slurm"
    description = "Slurm through submitit: one job array (also submitit's local and debug modes)"
    params = {
        "cluster": Param("auto", "where jobs run: slurm, local (a subprocess per job), debug "
                         "(one by one in the driver), auto (slurm if sbatch is here, else local)",
                         choices=("auto", "slurm", "local", "debug")),
        "partition": Param(None, "Slurm partition (none: the cluster's default)", type=str),
        "gpus_per_node": Param(-1, "GPUs per job (-1: 1 when --device is cuda, else 0)", low=-1),
        "cpus_per_task": Param(2, "CPUs per job", low=1),
        "mem_gb": Param(0.0, "memory per job in GiB (0: the partition's default)", low=0),
        "time": Param(0.0, "job time limit in minutes (0: timeout × (runs + 1) + grace from "
                      f"--timeout, else {_DEFAULT_MINUTES:g})", low=0),
        "array_parallelism": Param(64, "jobs running at once", low=1),
        "folder": Param(None, "submitit's folder for pickles and logs (none: <results>/submitit)",
                        type=str),
        "grace": Param(
            300.0,
            "seconds added to the derived time limit for job start-up, setup and metrics",
            smoke=60.0, full=900.0, low=0,
        ),
        "poll": Param(0.0, "seconds between checks of the jobs (0: 10 on Slurm, 0.2 locally)",
                      low=0),
        "sbatch": Param({}, 'more sbatch options as JSON, e.g. {"account": "proj", "qos": "high"}',
                        type=dict),
    }

    def map(self, fn: Callable[[T], Iterable[R]], tasks: Sequence[T]) -> Iterator[R]:
        try:
            import submitit
        except ImportError:
            raise UserError(
                "the slurm executor needs submitit: pip install 'ebmbench[slurm]'"
            ) from None
        tasks = [portable_task(t) for t in tasks]
        if not tasks:
            return
        hp = self.hparams
        cluster = hp["cluster"]
        if cluster == "auto":
            cluster = submitit.AutoExecutor.which()  # "slurm" where sbatch runs, else "local"
        if hp["folder"]:
            folder = Path(hp["folder"]).absolute()
        elif isinstance(tasks[0], Task):
            folder = Path(tasks[0].results_dir) / "submitit"
        else:  # not a sweep: nowhere obvious to keep logs
            folder = Path(tempfile.mkdtemp(prefix="ebmbench-submitit-"))
        spills = folder / "rows"
        spills.mkdir(parents=True, exist_ok=True)
        minutes = self._minutes(tasks)
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
        executor.update_parameters(**self._parameters(tasks, minutes, cluster))
        poll = hp["poll"] or (10.0 if cluster == "slurm" else 0.2)
        queue = list(tasks)
        running: dict[Any, _Flight] = {}

        def submit(batch: list[Any]) -> None:
            flights = [_Flight(t, spills / f"{uuid.uuid4().hex}.pkl", time.time()) for t in batch]
            if cluster == "slurm":
                with executor.batch():  # one job array
                    jobs = [executor.submit(_job, fn, f.task, str(f.spill)) for f in flights]
            else:
                jobs = [executor.submit(_job, fn, f.task, str(f.spill)) for f in flights]
            for job, flight in zip(jobs, flights, strict=True):
                if cluster != "slurm":
                    # Local files appear at once: do not wait submitit's 15 s (meant for
                    # network file systems) for the result of a job that died.
                    job._results_timeout_s = 0
                running[job] = flight

        try:
            if cluster == "slurm":
                submit(queue)
                queue = []
            while queue or running:
                free = hp["array_parallelism"] - len(running)
                if queue and free > 0:
                    submit(queue[:free])
                    queue = queue[free:]
                finished = [job for job in running if job.done()]
                for job in finished:
                    yield from self._collect(job, running.pop(job), minutes, cluster)
                if running and not finished:
                    time.sleep(poll)
        finally:
            for job in running:
                try:
                    job.cancel(check=False)
                except Exception:  # scancel missing or the job already over
                    pass

    def _minutes(self, tasks: Sequence[Any]) -> float:
        if self.hparams["time"] > 0:
            return float(self.hparams["time"])
        limits = [hard_time_limit(t, self.hparams["grace"]) for t in tasks]
        if any(limit is None for limit in limits):
            return _DEFAULT_MINUTES
        return max(limits) / 60  # type: ignore[type-var]

    def _parameters(self, tasks: Sequence[Any], minutes: float, cluster: str) -> dict[str, Any]:
        hp = self.hparams
        gpus = hp["gpus_per_node"]
        if gpus < 0:
            device = getattr(tasks[0], "device", "cpu")
            gpus = 1 if device.startswith("cuda") else 0
        params: dict[str, Any] = {
            "name": "ebmbench",
            "cpus_per_task": hp["cpus_per_task"],
            "gpus_per_node": gpus,
            # Slurm counts whole minutes; submitit's local mode takes fractions.
            "timeout_min": max(1, math.ceil(minutes)),
            "local_timeout_min": minutes,
            "slurm_array_parallelism": hp["array_parallelism"],
        }
        if hp["mem_gb"] > 0:
            params["mem_gb"] = hp["mem_gb"]
        if hp["partition"]:
            params["slurm_partition"] = hp["partition"]
        if hp["sbatch"]:
            params["slurm_additional_parameters"] = dict(hp["sbatch"])
        return params

    @staticmethod
    def _collect(job: Any, flight: _Flight, minutes: float, cluster: str) -> Iterator[Any]:
        """The rows of a finished job; rows for what it did not finish, with the reason."""
        task = flight.task
        try:
            outcome = job.results()[0]
        except Exception as exc:  # the job died, was killed, or timed out
            rows = _read_spill(flight.spill)
            yield from rows
            state = _state(job)
            log = str(exc)
            # Slurm says TIMEOUT; submitit's local mode just kills the job at its limit
            # (its jobs start at once, so the time since submission is the run time).
            elapsed = time.time() - flight.submitted
            timed_out = (
                state.startswith("TIMEOUT") or "timed-out" in log
                or (cluster == "local" and elapsed >= int(minutes * 60))
            )
            status = "timeout" if timed_out else "failed"
            if timed_out:
                reason = (f"job {job.job_id} passed its time limit of {minutes:.2f} min "
                          f"(state {state})")
            else:
                reason = (f"job {job.job_id} ended without a result (state {state}): "
                          "its process died")
            if not isinstance(task, Task):
                raise RuntimeError(f"{reason}\n{log}") from None
            yield from unfinished_rows(task, _run_ids(rows), status, reason, log[-8000:])
        else:
            yield from outcome["rows"]
            if outcome["error"] is not None:
                if not isinstance(task, Task):
                    raise RuntimeError(outcome["error"])
                yield from unfinished_rows(task, _run_ids(outcome["rows"]), "failed",
                                           "the task function raised in the job", outcome["error"])
        finally:
            flight.spill.unlink(missing_ok=True)


def _run_ids(rows: list[Any]) -> set[str]:
    return {r["run_id"] for r in rows if isinstance(r, dict) and "run_id" in r}


def _state(job: Any) -> str:
    try:
        return str(job.state)
    except Exception:
        return "UNKNOWN"
