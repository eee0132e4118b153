"""Run one task: train once, then sample and evaluate for each of its specs.

:func:`execute_task` never raises for a run's own failure: every spec comes back as a
result row with a status (``ok``, ``diverged``, ``failed`` with the traceback, ``timeout``,
``skipped`` with the reason). It is a top-level function of plain-data arguments so that
any executor (a process pool, Ray, Slurm) can ship it.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import sys
import time
import traceback
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .base import UNRELIABLE_PREFIX, Combination, EvalContext, Method, Metric, TrainContext, is_finite
from .device import derive_seed, resolve_device, seed_everything
from .errors import RunDiverged, RunTimedOut, UserError
from .grid import RunSpec, Task
from .plugins import PluginManager, get_plugin_manager

__all__ = ["execute_task", "unfinished_rows", "EVAL_SAMPLES", "STATUSES", "checkpoint_path"]

#: Every status a result row can carry.
STATUSES = ("ok", "diverged", "failed", "timeout", "skipped")

#: Evaluation samples drawn per sampler, by budget.
EVAL_SAMPLES = {"smoke": 512, "quick": 2000, "full": 10_000}

#: Data batch used to check the trained energy is finite.
_CHECK_BATCH = 1024


@dataclass
class _Trained:
    energy: nn.Module
    method: Method
    train_seconds: float
    logs: dict[str, float]


def checkpoint_path(results_dir: str | Path, train_key: str) -> Path:
    """Where a sampler-free training's weights are kept for re-evaluation."""
    return Path(results_dir) / "checkpoints" / f"{train_key}.pt"


def _manager(task: Task) -> PluginManager:
    pm = get_plugin_manager()
    for folder in task.plugins_dirs:
        pm.add_plugins_dir(folder)
    return pm


def _versions(pm: PluginManager, spec: RunSpec, metrics: dict[str, Any]) -> dict[str, str]:
    from . import __version__

    out = {"ebmbench": __version__, "torch": torch.__version__, "python": platform.python_version()}
    for kind in ("method", "sampler", "architecture", "dataset"):
        info = pm.info(kind, getattr(spec, kind))
        out[f"{kind}:{info.name}"] = f"{info.source}=={info.version}"
    for name in metrics:
        info = pm.info("metric", name)
        out[f"metric:{name}"] = f"{info.source}=={info.version}"
    return out


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is the process's high-water mark (KiB on Linux, bytes on macOS).
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def _base_row(spec: RunSpec, task: Task, device: str) -> dict[str, Any]:
    return {
        "run_id": spec.run_id,
        "train_key": spec.train_key,
        "method": spec.method,
        "sampler": spec.sampler,
        "architecture": spec.architecture,
        "dataset": spec.dataset,
        "seed": spec.seed,
        "budget": spec.budget,
        "status": "failed",
        "reason": "",
        "traceback": "",
        "metrics": {},
        "directions": {},
        "cost_values": [],
        "reference_values": [],
        "notes": {},
        "train_seconds": math.nan,
        "sample_seconds": math.nan,
        "peak_memory_mb": math.nan,
        "device": device,
        "hyperparams": spec.params | {"metrics": task.metrics},
        "versions": {},
        "artifacts": {},
        "metric_errors": {},
        "sample_stats": {},
        "train_logs": {},
        "host": platform.node(),
        "finished_at": "",
    }


def _finish(row: dict[str, Any], status: str, reason: str = "", tb: str = "") -> dict[str, Any]:
    row.update(status=status, reason=reason, traceback=tb)
    row["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return row


def _status_of(exc: BaseException) -> str:
    if isinstance(exc, RunDiverged):
        return "diverged"
    if isinstance(exc, RunTimedOut):
        return "timeout"
    return "failed"


def _train(
    pm: PluginManager, spec: RunSpec, task: Task, device: torch.device,
    dataset: Any, train_data: torch.Tensor,
) -> _Trained:
    method: Method = _build(pm, "method", spec)
    architecture = _build(pm, "architecture", spec)
    sampler = _build(pm, "sampler", spec)
    seed = derive_seed("train", spec.train_key)
    seed_everything(seed)
    energy = architecture.build(dataset.shape).to(device)
    generator = torch.Generator(device).manual_seed(seed)
    data = train_data.to(device)
    method.setup(TrainContext(energy, sampler, dataset, data, device, generator))

    ckpt = checkpoint_path(task.results_dir, spec.train_key)
    if not spec.uses_sampler and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        energy.load_state_dict(state["energy"])
        method.load_state_dict(state["method"])
        return _Trained(energy, method, float(state["train_seconds"]), dict(state["logs"]))

    steps, batch_size = method.hparams["steps"], method.hparams["batch_size"]
    batch_gen = torch.Generator().manual_seed(derive_seed("batches", spec.train_key))
    logs: dict[str, float] = {}
    energy.train()
    start = time.perf_counter()
    # The clock starts here, not before setup: one-off imports (the first optimiser pulls
    # in torch._dynamo, seconds) must not count against the run.
    deadline = None if task.timeout is None else start + task.timeout
    for step in range(steps):
        idx = torch.randint(len(data), (min(batch_size, len(data)),), generator=batch_gen)
        logs = method.train_step(data[idx.to(device)])
        if not is_finite(logs["loss"]):
            raise RunDiverged(f"loss became {logs['loss']} at step {step}")
        if deadline is not None and time.perf_counter() > deadline:
            raise RunTimedOut(f"training passed the {task.timeout:g} s limit at step {step}/{steps}")
    train_seconds = time.perf_counter() - start
    energy.eval()
    with torch.no_grad():
        check = energy(data[:_CHECK_BATCH])
    if not is_finite(check):
        raise RunDiverged("the trained energy is not finite on the training data")
    if not spec.uses_sampler:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        # A name of its own per writer: two sweeps may train the same model at once.
        tmp = ckpt.with_name(f"{ckpt.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        torch.save(
            {"energy": energy.state_dict(), "method": method.state_dict(),
             "train_seconds": train_seconds, "logs": logs},
            tmp,
        )
        tmp.replace(ckpt)  # atomic: a killed run never leaves a half-written checkpoint
    return _Trained(energy, method, train_seconds, logs)


class _DataUnavailable(Exception):
    """The dataset could not be loaded for a reason outside the run (e.g. offline)."""


def _evaluate(metrics: dict[str, Metric], ctx: EvalContext, row: dict[str, Any], run_id: str) -> None:
    """Compute ``metrics`` into ``row``; a failing metric is noted, never fatal to the run."""
    if ctx.artifact_dir is not None:
        ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
    for name, metric in metrics.items():
        ctx.artifacts = {}
        ctx.unreliable = {}
        try:
            values = metric.compute(ctx)
        except Exception as exc:
            row["metric_errors"][name] = f"{type(exc).__name__}: {exc}"
            continue
        row["metrics"].update({k: float(v) for k, v in values.items()})
        row["directions"].update(type(metric).higher_is_better)
        for attr in ("cost_values", "reference_values"):
            row[attr] = sorted(set(row[attr]) | set(getattr(type(metric), attr)))
        for key, value in ctx.artifacts.items():
            if ctx.artifact_dir is not None and (ctx.artifact_dir / str(value)).is_file():
                row["artifacts"][key] = f"artifacts/{run_id}/{value}"
            else:
                row["notes"][key] = str(value)
        for value_name, reason in ctx.unreliable.items():
            row["notes"][f"{UNRELIABLE_PREFIX}{value_name}"] = str(reason)


def _load_data(dataset: Any, spec: RunSpec) -> tuple[torch.Tensor, torch.Tensor]:
    data_seed = derive_seed("data", spec.dataset, spec.params["dataset"], spec.seed)
    try:
        train = dataset.train_data(torch.Generator().manual_seed(data_seed))
        test = dataset.test_data(torch.Generator().manual_seed(data_seed + 1))
    except UserError as exc:  # e.g. an image set that is not on disk while offline
        raise _DataUnavailable(str(exc)) from None
    return train, test


def execute_task(task: Task) -> Iterator[dict[str, Any]]:
    """Train once and evaluate each spec of ``task``; yield one result row per spec."""
    device = resolve_device(task.device)
    rows = {spec.run_id: _base_row(spec, task, str(device)) for spec in task.specs}
    pending = list(task.specs)
    try:
        pm = _manager(task)
        first = task.specs[0]
        for spec in task.specs:
            rows[spec.run_id]["versions"] = _versions(pm, spec, task.metrics)
        dataset = _build(pm, "dataset", first)
        train_data, test_data = _load_data(dataset, first)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        trained = _train(pm, first, task, device, dataset, train_data)
        metric_objs = {
            n: pm.info("metric", n).cls(budget=first.budget, **p) for n, p in task.metrics.items()
        }
        shared: dict[str, Any] | None = None
        while pending:
            spec = pending[0]
            row = rows[spec.run_id]
            row.update(train_seconds=trained.train_seconds, train_logs=trained.logs)
            sampler = _build(pm, "sampler", spec)
            combo = Combination(trained.method, sampler, _build(pm, "architecture", spec), dataset)
            applicable = {n: m for n, m in metric_objs.items() if m.applies_to(combo)}
            ctx = EvalContext(
                energy=trained.energy, method=trained.method, dataset=dataset, sampler=sampler,
                samples=None, sample_stats={}, train_data=train_data, test_data=test_data,
                device=device, seed=spec.seed, budget=spec.budget,
                costs={"train_seconds": trained.train_seconds},
                artifact_dir=Path(task.results_dir) / "artifacts" / spec.run_id,
            )
            # Metrics that ignore samples depend only on the trained model: computed once,
            # shared by every sampler's row.
            if shared is None:
                shared = _empty_values()
                model_only = {n: m for n, m in applicable.items() if not m.needs_samples}
                _evaluate(model_only, ctx, shared, spec.run_id)
            for key in ("metrics", "directions", "artifacts", "metric_errors", "notes"):
                row[key].update(shared[key])
            for key in ("cost_values", "reference_values"):
                row[key] = list(shared[key])

            sample_seed = derive_seed("sample", spec.run_id)
            n_eval = type(dataset).eval_samples.get(spec.budget, EVAL_SAMPLES[spec.budget])
            row["hyperparams"]["eval_samples"] = n_eval
            x0 = dataset.init_noise(n_eval, torch.Generator().manual_seed(sample_seed))
            gen = torch.Generator(device).manual_seed(sample_seed)
            start = time.perf_counter()
            result = sampler.sample(trained.energy, x0.to(device), generator=gen)
            sample_seconds = time.perf_counter() - start
            row.update(sample_seconds=sample_seconds,
                       sample_stats={k: float(v) for k, v in result.stats.items()})
            pending.pop(0)
            if not is_finite(result.x):
                row["peak_memory_mb"] = _peak_memory_mb(device)
                yield _finish(row, "diverged", f"sampler {spec.sampler} produced non-finite samples")
                continue
            ctx.samples = result.x.detach()
            ctx.sample_stats = row["sample_stats"]
            ctx.costs["sample_seconds"] = sample_seconds
            _evaluate({n: m for n, m in applicable.items() if m.needs_samples}, ctx, row, spec.run_id)
            row["peak_memory_mb"] = _peak_memory_mb(device)
            if task.timeout is not None and sample_seconds > task.timeout:
                yield _finish(row, "timeout",
                              f"sampling took {sample_seconds:.1f} s, over the {task.timeout:g} s limit")
            else:
                yield _finish(row, "ok")
    except _DataUnavailable as exc:
        for spec in pending:
            yield _finish(rows[spec.run_id], "skipped", str(exc))
    except Exception as exc:
        status = _status_of(exc)
        tb = traceback.format_exc()
        for spec in pending:
            yield _finish(rows[spec.run_id], status, f"{type(exc).__name__}: {exc}", tb)


def unfinished_rows(
    task: Task, done_run_ids: Iterable[str], status: str, reason: str, tb: str = ""
) -> list[dict[str, Any]]:
    """Result rows for the specs of ``task`` that a worker could not finish.

    Executors that run tasks out of process call this when a worker dies (a segfault, an
    out-of-memory kill, ``os._exit``) or is killed at its hard time limit: every spec
    whose row did not come back gets a final row with ``status`` (``failed`` or
    ``timeout``) and ``reason``, so that the sweep records it and goes on.

    Args:
        task: The task the worker was running.
        done_run_ids: Run ids whose rows already came back (they get no new row).
        status: One of :data:`STATUSES`, normally ``failed`` or ``timeout``.
        reason: Why, in one line (e.g. the worker's exit code).
        tb: A traceback or log excerpt, if there is one.

    Returns:
        One finished row per unfinished spec, in the task's order.
    """
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}. Valid statuses: {', '.join(STATUSES)}")
    done = set(done_run_ids)
    # The caller (the driver) has the task's plugins loaded already: versions make the row
    # re-runnable. Adding the task's plugin folders again could load them twice.
    pm = get_plugin_manager()
    rows = []
    for spec in task.specs:
        if spec.run_id in done:
            continue
        row = _base_row(spec, task, task.device)
        try:
            row["versions"] = _versions(pm, spec, task.metrics)
        except Exception:  # a plugin this process does not have: the row is still final
            pass
        rows.append(_finish(row, status, reason, tb))
    return rows


def _empty_values() -> dict[str, Any]:
    return {"metrics": {}, "directions": {}, "cost_values": [], "reference_values": [],
            "artifacts": {}, "metric_errors": {}, "notes": {}}


def _build(pm: PluginManager, kind: str, spec: RunSpec) -> Any:
    cls = pm.info(kind, getattr(spec, kind)).cls
    return cls(budget=spec.budget, **spec.params[kind])
