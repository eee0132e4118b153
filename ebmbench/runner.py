"""Run one task: train once, then sample and evaluate for each of its specs.

:func:`execute_task` never raises for a run's own failure: every spec comes back as a
result row with a status (``ok``, ``diverged``, ``failed`` with the traceback, ``timeout``,
``skipped`` with the reason). It is a top-level function of plain-data arguments so that
any executor (a process pool, Ray, Slurm) can ship it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import platform
import resource
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import degenerate as degenerate_module
from .averaging import IterateAverage, take_curve_point
from .base import (
    UNRELIABLE_PREFIX,
    Combination,
    Dataset,
    EvalContext,
    Method,
    Metric,
    ToyDensity,
    TrainContext,
    is_finite,
)
from .budgets import (
    BUDGET_TOLERANCE,
    MAX_VALIDATION,
    VALIDATION_FRACTION,
    dataset_train_flops,
    skips_last_update,
    update_fits_budget,
)
from .checkpoint import model_payload, read_model_file, write_model_file
from .compute import ComputeMeter
from .degenerate import degenerate_notes, gaussian_nll
from .device import derive_seed, resolve_device, seed_everything
from .early_stopping import BestCheckpoint, point_rank
from .errors import RunDiverged, RunTimedOut, UserError
from .grid import RunSpec, Task
from .learning_curve import CURVE_FRACTIONS, LearningCurveProbe, run_progress
from .plugins import PluginManager, get_plugin_manager
from .protocol_settings import labelled as labelled_settings
from .protocol_settings import recorded as recorded_settings
from .schedules import LearningRateSchedule

__all__ = ["execute_task", "unfinished_rows", "train_model", "evaluate_spec", "TrainedRun",
           "EVAL_SAMPLES", "STATUSES", "checkpoint_path", "validation_split", "validation_reference_nll",
           "ENVIRONMENT_FAILURE", "out_of_space"]

#: Every status a result row can carry (``pruned``: a tuning trial stopped by the pruner;
#: ``degenerate``: finished, but the model or its samples collapsed, see
#: :mod:`ebmbench.degenerate`; shown on leaderboards, never ranked).
STATUSES = ("ok", "diverged", "failed", "timeout", "skipped", "pruned", "degenerate")

#: Evaluation samples drawn per sampler, by budget (a dataset may declare its own,
#: ``Dataset.eval_samples``). At quick, the 1000 that the ``mmd`` and ``c2st`` metrics compare
#: (their ``max_samples``): drawing more would cost sampling time that no ranked value reads.
EVAL_SAMPLES = {"smoke": 512, "quick": 1000, "full": 10_000}

#: Data batch used to check the trained energy is finite.
_CHECK_BATCH = 1024

#: The key a row carries when its run was stopped by the machine (a full disk), not by
#: anything the run did; the sweep then stores nothing for it and stops.
ENVIRONMENT_FAILURE = "environment_failure"


def out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` is the disk (or the quota) being full."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


@dataclass
class _Trained:
    energy: nn.Module
    method: Method
    train_seconds: float
    logs: dict[str, float]
    #: What the training spent (``TrainingCompute`` fields), the budget and why it stopped.
    compute: dict[str, Any]
    #: Learning-curve points (see :mod:`ebmbench.learning_curve`).
    curve: list[dict[str, float]]


@dataclass
class TrainedRun:
    """A trained model and what it was trained and is evaluated on, as the harness holds it
    between training and evaluation (``ebmbench.TrainedModel`` wraps one).

    ``train_data`` is the training split the model was fitted on (the validation split held
    out); ``test_data`` the held-out test split (for a tuning trial: the validation split,
    which is all a trial may read).
    """

    spec: RunSpec
    energy: nn.Module
    method: Method
    dataset: Dataset
    train_data: torch.Tensor
    test_data: torch.Tensor
    device: torch.device
    train_seconds: float
    logs: dict[str, float]
    compute: dict[str, Any]
    curve: list[dict[str, float]]
    validation: torch.Tensor


def checkpoint_path(results_dir: str | Path, train_key: str) -> Path:
    """Where a trained model is kept, for re-evaluation and ``ebmbench.load_model``."""
    return Path(results_dir) / "checkpoints" / f"{train_key}.pt"


def _checkpoint_file(task: Task, spec: RunSpec) -> Path | None:
    """The model file to restore from (if it exists) and to write after training."""
    if task.restore_from:
        return Path(task.restore_from)
    return checkpoint_path(task.results_dir, spec.train_key) if task.checkpoints else None


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
        # The energy's precision (its architecture's ``precision``; fp32 when it has none).
        "hyperparams": spec.params | {
            "metrics": task.metrics,
            "precision": (spec.params.get("architecture") or {}).get("precision", "fp32"),
        } | ({"tuning": spec.tuning} if spec.tuning else {})
          | _protocol_settings(spec),
        "versions": {},
        "artifacts": {},
        "metric_errors": {},
        "sample_stats": {},
        "train_logs": {},
        "compute": {},
        "curve": [],
        "trial": spec.trial,
        "role": "run" if spec.trial is None else "trial",
        "uses_sampler": getattr(spec, "uses_sampler", None),
        "sample_values": [],
        "host": platform.node(),
        "finished_at": "",
    }


def _protocol_settings(spec: Any) -> dict[str, Any]:
    """What enters a run's train key beyond its plugins' parameters (the training compute
    when the sweep set it, the protocol settings other than their legacy rule:
    :mod:`ebmbench.protocol_settings`), so that its row says how to rebuild it
    (:func:`ebmbench.load_model`). A sampler-board spec has none."""
    out: dict[str, Any] = {}
    if getattr(spec, "train_flops", None) is not None:
        out["train_flops"] = spec.train_flops
    return out | recorded_settings(spec)


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
    dataset: Any, train_data: torch.Tensor, validation: torch.Tensor,
) -> _Trained:
    method: Method = _build(pm, "method", spec)
    architecture = _build(pm, "architecture", spec)
    sampler = _build(pm, "sampler", spec)
    seed = derive_seed("train", spec.train_key)
    seed_everything(seed)
    energy = architecture.build(dataset.shape)
    architecture.initialise(energy, dataset)
    energy = energy.to(device)
    generator = torch.Generator(device).manual_seed(seed)
    data = train_data.to(device)
    method.setup(TrainContext(energy, sampler, dataset, data, device, generator))

    ckpt = _checkpoint_file(task, spec)
    if ckpt is not None and ckpt.exists():
        state = read_model_file(ckpt, map_location=device)
        energy.load_state_dict(state["energy"])
        method.load_state_dict(state["method"])
        return _Trained(energy, method, float(state["train_seconds"]), dict(state["logs"]),
                        dict(state.get("compute", {})), list(state.get("curve", [])))

    budget_flops = task.train_flops or dataset_train_flops(dataset, spec.budget)
    max_steps, batch_size = method.hparams["steps"], method.hparams["batch_size"]
    batch_gen = torch.Generator().manual_seed(derive_seed("batches", spec.train_key))
    # Curve points at fractions of the run's progress: of its compute budget, or of its step
    # cap where that binds first (an energy too cheap to spend the budget in the cap).
    points = list(CURVE_FRACTIONS)
    probe = LearningCurveProbe(dataset, validation, device, spec.budget, method)
    objective, reference_nll = _validation_rule(dataset, probe, train_data, validation)
    keeper = _checkpoint_keeper(spec, objective, reference_nll)
    pruner = None
    if task.pruning is not None:
        from .tuning import CurvePruner

        pruner = CurvePruner(task.pruning["objective"], task.pruning["history"],
                             task.pruning["trial"])
    # After setup, so that every optimiser the method made is scheduled.
    lr_schedule = LearningRateSchedule(spec.lr_schedule, method.optimizers())
    # What the curve scores and the run reports: the iterates, their average, or at each
    # point the one that validates better (ebmbench.averaging).
    averaging = getattr(spec, "weight_average", "none")
    average = (IterateAverage.of_optimizers(method.optimizers())
               if averaging != "none" else None)
    rank = (None if objective is None
            else functools.partial(point_rank, objective=objective, reference_nll=reference_nll))

    def take_point(progress: float) -> dict[str, float]:
        point = take_curve_point(probe, energy, compute, logs, progress, average,
                                 averaging, rank)
        with (average.swapped() if point.get("averaged") else contextlib.nullcontext()):
            keeper.offer(len(probe.points) - 1, point, energy, method)
        return point
    logs: dict[str, float] = {}
    energy.train()
    # The clock starts here, not before setup: one-off imports (the first optimiser pulls
    # in torch._dynamo, seconds) must not count against the run.
    start = time.perf_counter()
    deadline = None if task.timeout is None else start + task.timeout
    meter = ComputeMeter(energy)
    compute = meter.compute
    stopped_early = False  # before an update that would overshoot (skips_last_update)
    done = 0.0  # the run's progress after its last update (run_progress)
    try:
        # Train until the compute budget is spent: the step count is what it buys.
        while compute.steps < max_steps and compute.flops < budget_flops:
            if skips_last_update(compute.flops, meter.flops_per_step, budget_flops):
                stopped_early = True
                break
            if points and run_progress(compute.flops + (meter.flops_per_step or 0.0),
                                       compute.steps + 1, budget_flops, max_steps) >= points[0]:
                meter.probe_next()  # count exactly the step that reaches a curve point
            idx = torch.randint(len(data), (min(batch_size, len(data)),), generator=batch_gen)
            lr_schedule.at(done)
            with meter.step():
                logs = method.train_step(data[idx.to(device)])
                if average is not None:
                    average.update()
            if not is_finite(logs["loss"]):
                raise RunDiverged(f"loss became {logs['loss']} at step {compute.steps}")
            if spec.trial is not None and compute.steps == 2:
                _check_update_fits(meter.flops_per_step, budget_flops, compute, probe)
            done = run_progress(compute.flops, compute.steps, budget_flops, max_steps)
            if points and done >= points[0]:
                while points and done >= points[0]:
                    points.pop(0)
                with meter.paused():
                    point = take_point(done)
                if pruner is not None and pruner.should_stop(point):
                    raise _Pruned(
                        f"pruned by successive halving at {done:.1%} of the run "
                        f"({pruner.objective} {point.get(pruner.objective):.4g})",
                        _spent(compute, budget_flops, "pruner"),
                        probe.points,
                    )
            if deadline is not None and time.perf_counter() > deadline:
                raise RunTimedOut(
                    f"training passed the {task.timeout:g} s limit at step {compute.steps} "
                    f"({compute.flops / budget_flops:.0%} of the compute budget)"
                )
        if spec.trial is not None and compute.steps < 2:  # one update spent the budget
            _check_update_fits(meter.flops_per_step, budget_flops, compute, probe)
        if not probe.points or probe.points[-1]["step"] != compute.steps:
            with meter.paused():
                # The final model is always a point.
                take_point(run_progress(compute.flops, compute.steps, budget_flops, max_steps))
        if average is not None and probe.points[-1].get("averaged"):
            average.load()  # the final model is the average
    finally:
        meter.detach()
    spent = _spent(compute, budget_flops,
                   "budget" if compute.flops >= budget_flops or stopped_early else "max_steps")
    # The model the run reports (ebmbench.early_stopping): the compute stays what was spent.
    last = len(probe.points) - 1
    reported = last if keeper.index is None else keeper.index
    if reported != last:
        keeper.restore(energy, method)
    spent |= {"reported_point": reported,
              "reported_progress": probe.points[reported].get("progress"),
              "reported_step": probe.points[reported]["step"]}
    train_seconds = compute.wall_seconds
    energy.eval()
    with torch.no_grad():
        check = energy(data[:_CHECK_BATCH])
    if not is_finite(check):
        raise RunDiverged("the trained energy is not finite on the training data")
    if ckpt is not None:  # written atomically: a killed run never leaves half a file
        write_model_file(ckpt, model_payload(spec, energy, method.state_dict(),
                                             train_seconds=train_seconds, logs=logs,
                                             versions=_versions(pm, spec, {}),
                                             compute=spent, curve=probe.points))
    return _Trained(energy, method, train_seconds, logs, spent, probe.points)


def _validation_rule(dataset: Any, probe: LearningCurveProbe, train_data: torch.Tensor,
                     validation: torch.Tensor) -> tuple[str | None, float | None]:
    """(objective, reference NLL) by which curve points are compared on the validation
    split (:func:`ebmbench.early_stopping.point_rank`); (None, None) where the curve does
    not carry the dataset's tuning objective (images)."""
    objective = getattr(dataset, "tuning_objective", "") or ""
    if objective != "fisher_divergence" or probe.true_score is None:
        return None, None
    two_d = isinstance(dataset, ToyDensity) and getattr(dataset, "bounds", None) is not None
    return objective, (gaussian_nll(train_data, validation) if two_d else None)


def _checkpoint_keeper(spec: RunSpec, objective: str | None,
                       reference: float | None) -> BestCheckpoint:
    """What keeps the model a run reports (:mod:`ebmbench.early_stopping`): nothing under
    ``last``, or where the curve does not carry the dataset's tuning objective."""
    if getattr(spec, "checkpoint", "last") != "best" or objective is None:
        return BestCheckpoint(None, None)
    return BestCheckpoint(objective, reference)


def validation_split(train: torch.Tensor, spec: RunSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit, validation): the validation split held out from the training set.

    :data:`~ebmbench.budgets.VALIDATION_FRACTION` of the examples (at most
    :data:`~ebmbench.budgets.MAX_VALIDATION`), chosen by a permutation seeded from the
    dataset and the seed only, so every method and every tuning trial holds out the same
    examples. No run trains on them; tuning trials are scored on them.
    """
    n_val = min(MAX_VALIDATION, max(1, round(VALIDATION_FRACTION * len(train))))
    if len(train) < 2 * n_val:
        raise UserError(f"dataset {spec.dataset} has only {len(train)} training examples: "
                        f"too few to hold out a validation split")
    seed = derive_seed("validation", spec.dataset, spec.params["dataset"], spec.seed)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    return train[order[n_val:]], train[order[:n_val]]


def validation_reference_nll(spec: RunSpec) -> float:
    """The degenerate test's reference for a tuning trial of ``spec``: the NLL of the
    validation split under a Gaussian fitted to the rest of the training split (what
    :func:`~ebmbench.degenerate.gaussian_nll` is for a run, with the validation split in
    place of the test split, which a trial never reads). Deterministic in the dataset and
    seed, so the sweep computes it once per study instead of storing it with every trial.
    """
    dataset = _build(get_plugin_manager(), "dataset", spec)
    train, _ = _load_data(dataset, spec, read_test=False)
    fit, validation = validation_split(train, spec)
    return gaussian_nll(fit, validation)


def _spent(compute: Any, budget_flops: float, stopped_by: str) -> dict[str, Any]:
    """A row's ``compute``: what training spent, its budget, and why it stopped (``budget``,
    ``max_steps``, or for a tuning trial ``pruner`` or ``infeasible``)."""
    return compute.as_dict() | {"budget_flops": budget_flops,
                                "budget_fraction": compute.flops / budget_flops,
                                "stopped_by": stopped_by}


def _check_update_fits(update_cost: float | None, budget_flops: float, compute: Any,
                       probe: LearningCurveProbe) -> None:
    """Stop a tuning trial whose update is too coarse for equal compute: its configuration
    could not end within ±10 % of the budget (:func:`~ebmbench.budgets.update_fits_budget`),
    so it is not a candidate. Checked on the second update: the first may carry one-off
    work (a replay buffer filled from noise)."""
    if update_cost is None or update_fits_budget(update_cost, budget_flops):
        return
    raise _Pruned(
        f"infeasible at equal compute: one update costs {update_cost / budget_flops:.0%} of "
        f"the compute budget, more than the {2 * BUDGET_TOLERANCE:.0%} within which a run "
        f"ends ±{BUDGET_TOLERANCE:.0%} of it",
        _spent(compute, budget_flops, "infeasible"),
        probe.points,
    )


class _Pruned(Exception):
    """A tuning trial stopped by its pruner, with what it spent and its curve so far."""

    def __init__(self, reason: str, compute: dict[str, Any], curve: list[dict[str, float]]):
        super().__init__(reason)
        self.compute, self.curve = compute, curve


class _DataUnavailable(Exception):
    """The dataset could not be loaded for a reason outside the run (e.g. offline)."""


def _variant(pm: PluginManager, spec: RunSpec, declared_by: str = "variant_params") -> dict[str, Any]:
    """The method's and the architecture's variant-defining parameters
    (``variant_params``, or ``control_params`` with ``declared_by``) whose values differ
    from their declared defaults at the run's budget: the leaderboard labels the row with
    them, e.g. ``adversarial (α=0.1)`` or ``cd (start=truth)``."""
    out = {}
    for kind, name in (("method", spec.method), ("architecture", spec.architecture)):
        cls = pm.info(kind, name).cls
        for param in getattr(cls, declared_by, ()):
            declared = cls.params.get(param)
            value = spec.params[kind].get(param)
            if declared is not None and value != declared.for_budget(spec.budget):
                out[param] = value
    return out


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
            if out_of_space(exc):  # the machine's failure, not the metric's: stop the sweep
                raise
            row["metric_errors"][name] = f"{type(exc).__name__}: {exc}"
            continue
        row["metrics"].update({k: float(v) for k, v in values.items()})
        row["directions"].update(type(metric).higher_is_better)
        if metric.needs_samples:  # these depend on the sampler, not only on the model
            row["sample_values"] = sorted(set(row["sample_values"]) | set(values))
        for attr in ("cost_values", "reference_values"):
            row[attr] = sorted(set(row[attr]) | set(getattr(type(metric), attr)))
        for key, value in ctx.artifacts.items():
            if ctx.artifact_dir is not None and (ctx.artifact_dir / str(value)).is_file():
                row["artifacts"][key] = f"artifacts/{run_id}/{value}"
            else:
                row["notes"][key] = str(value)
        for value_name, reason in ctx.unreliable.items():
            row["notes"][f"{UNRELIABLE_PREFIX}{value_name}"] = str(reason)


def train_model(task: Task) -> TrainedRun:
    """Load the data and train the model of ``task.specs[0]``, as a sweep does.

    The same seeds, data (the validation split held out) and hyper-parameters as in a sweep,
    so the model is the one the sweep trains; when the task's checkpoint (or
    ``task.restore_from``) exists the model is restored from it instead of trained. A tuning
    trial never reads the test split. Raises what training raises (:class:`RunDiverged`,
    :class:`RunTimedOut`, a plugin's exception).
    """
    device = resolve_device(task.device)
    pm = _manager(task)
    spec = task.specs[0]
    dataset = _build(pm, "dataset", spec)
    trial = spec.trial is not None
    all_train, test_data = _load_data(dataset, spec, read_test=not trial)
    train_data, validation = validation_split(all_train, spec)
    if trial:
        test_data = validation  # trials are scored on the validation split, never the test
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trained = _train(pm, spec, task, device, dataset, train_data, validation)
    assert test_data is not None
    return TrainedRun(spec, trained.energy, trained.method, dataset, train_data, test_data,
                      device, trained.train_seconds, trained.logs, trained.compute,
                      trained.curve, validation)


def evaluate_spec(
    run: TrainedRun, spec: RunSpec, metrics: dict[str, Metric], row: dict[str, Any],
    shared: dict[str, Any], *, timeout: float | None = None, artifact_dir: Path | None = None,
) -> tuple[str, str]:
    """Sample ``run``'s model with ``spec``'s sampler and compute ``metrics`` into ``row``.

    Metrics that ignore samples depend only on the trained model: they are computed into
    ``shared`` the first time (when it is empty) and copied into every later row.

    Returns:
        The row's status and reason: ``ok``, ``diverged`` (non-finite samples),
        ``timeout`` (sampling took longer than ``timeout``) or ``degenerate`` (see
        :mod:`ebmbench.degenerate`).
    """
    pm = get_plugin_manager()
    dataset, device = run.dataset, run.device
    trial = spec.trial is not None
    row.update(train_seconds=run.train_seconds, train_logs=run.logs, compute=run.compute,
               curve=run.curve)
    sampler = _build(pm, "sampler", spec)
    combo = Combination(run.method, sampler, _build(pm, "architecture", spec), dataset)
    applicable = {n: m for n, m in metrics.items() if m.applies_to(combo)}
    ctx = EvalContext(
        energy=run.energy, method=run.method, dataset=dataset, sampler=sampler,
        samples=None, sample_stats={}, train_data=run.train_data, test_data=run.test_data,
        device=device, seed=spec.seed, budget=spec.budget,
        costs={"train_seconds": run.train_seconds,
               **{f"train_{k}": v for k, v in run.compute.items()
                  if k in ("flops", "energy_rows", "grad_rows", "cpu_seconds", "steps")}},
        artifact_dir=artifact_dir,
    )
    if not shared:
        shared.update(_empty_values())
        model_only = {n: m for n, m in applicable.items() if not m.needs_samples}
        _evaluate(model_only, ctx, shared, spec.run_id)
        if "test_nll" in shared["metrics"] and not trial:
            # The degenerate test's reference (see ebmbench.degenerate).
            shared["metrics"]["gaussian_nll"] = gaussian_nll(run.train_data, run.test_data)
            shared["directions"]["gaussian_nll"] = False
            shared["reference_values"] = sorted({*shared["reference_values"], "gaussian_nll"})
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
    result = sampler.sample(run.energy, x0.to(device), generator=gen)
    sample_seconds = time.perf_counter() - start
    row.update(sample_seconds=sample_seconds,
               sample_stats={k: float(v) for k, v in result.stats.items()})
    row["notes"].update({f"sampler_{k}": str(v) for k, v in getattr(result, "notes", {}).items()})
    if not is_finite(result.x):
        row["peak_memory_mb"] = _peak_memory_mb(device)
        return "diverged", f"sampler {spec.sampler} produced non-finite samples"
    ctx.samples = result.x.detach()
    ctx.sample_stats = row["sample_stats"]
    ctx.costs["sample_seconds"] = sample_seconds
    _evaluate({n: m for n, m in applicable.items() if m.needs_samples}, ctx, row, spec.run_id)
    row["peak_memory_mb"] = _peak_memory_mb(device)
    judged = not trial and spec.budget in degenerate_module.JUDGED_BUDGETS
    degenerate = {} if not judged else degenerate_notes(
        row["metrics"].get("test_nll"), row["metrics"].get("gaussian_nll"), ctx.samples,
        run.test_data)
    row["notes"].update(degenerate)
    if timeout is not None and sample_seconds > timeout:
        return "timeout", f"sampling took {sample_seconds:.1f} s, over the {timeout:g} s limit"
    if degenerate:
        return "degenerate", "; ".join(degenerate.values())
    return "ok", ""


def _load_data(dataset: Any, spec: RunSpec, read_test: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(train, test); a tuning trial never reads the test split (``read_test`` False)."""
    data_seed = derive_seed("data", spec.dataset, spec.params["dataset"], spec.seed)
    try:
        train = dataset.train_data(torch.Generator().manual_seed(data_seed))
        test = dataset.test_data(torch.Generator().manual_seed(data_seed + 1)) if read_test else None
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
            # A run under another protocol setting than today's default (a decayed lr, its
            # last model, its iterates alone) is a different training or report of the
            # method: labelled, ranked apart.
            if variant := _variant(pm, spec) | labelled_settings(spec):
                rows[spec.run_id]["hyperparams"]["variant"] = variant
            if control := _variant(pm, spec, "control_params"):
                rows[spec.run_id]["hyperparams"]["control"] = control
        run = train_model(task)
        metric_objs = {
            n: pm.info("metric", n).cls(budget=first.budget, **p) for n, p in task.metrics.items()
        }
        shared: dict[str, Any] = {}
        while pending:
            spec = pending[0]
            row = rows[spec.run_id]
            if not task.sample:  # a trial scored on its learning curve: nothing to sample
                row.update(train_seconds=run.train_seconds, train_logs=run.logs,
                           compute=run.compute, curve=run.curve,
                           peak_memory_mb=_peak_memory_mb(device))
                pending.pop(0)
                yield _finish(row, "ok")
                continue
            status, reason = evaluate_spec(
                run, spec, metric_objs, row, shared, timeout=task.timeout,
                artifact_dir=Path(task.results_dir) / "artifacts" / spec.run_id,
            )
            pending.pop(0)
            yield _finish(row, status, reason)
    except _DataUnavailable as exc:
        for spec in pending:
            yield _finish(rows[spec.run_id], "skipped", str(exc))
    except _Pruned as exc:
        for spec in pending:
            row = rows[spec.run_id]
            row.update(compute=exc.compute, curve=exc.curve,
                       train_seconds=exc.compute.get("wall_seconds", math.nan),
                       peak_memory_mb=_peak_memory_mb(device))
            yield _finish(row, "pruned", str(exc))
    except Exception as exc:
        status = _status_of(exc)
        tb = traceback.format_exc()
        for spec in pending:
            row = _finish(rows[spec.run_id], status, f"{type(exc).__name__}: {exc}", tb)
            if out_of_space(exc):
                # Not the run's failure: the driver stores nothing for it and stops the
                # sweep, so that the run is done again on resume instead of kept as failed.
                row[ENVIRONMENT_FAILURE] = f"{type(exc).__name__}: {exc}"
            yield row


def unfinished_rows(
    task: Task, done_run_ids: Iterable[str], status: str, reason: str, tb: str = "",
    *, peak_memory_mb: float = math.nan,
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
        peak_memory_mb: The worker's memory high-water mark as last seen by the executor
            (a lower bound of its peak), when it could watch it.

    Returns:
        One finished row per unfinished spec, in the task's order.
    """
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}. Valid statuses: {', '.join(STATUSES)}")
    from .sampler_board import SamplerTask, unfinished_sampler_rows  # it imports this module

    if isinstance(task, SamplerTask):
        return unfinished_sampler_rows(task, done_run_ids, status, reason, tb)

    def base_row(spec: RunSpec) -> dict[str, Any]:
        return _base_row(spec, task, task.device) | {"peak_memory_mb": peak_memory_mb}

    return finished_rows(task, done_run_ids, base_row, status, reason, tb)


def finished_rows(task: Any, done_run_ids: Iterable[str], base_row: Any, status: str,
                  reason: str, tb: str = "") -> list[dict[str, Any]]:
    """Final rows, from ``base_row(spec)``, for the specs of ``task`` not in ``done_run_ids``
    (shared by run tasks and sampler-board tasks)."""
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
        row = base_row(spec)
        try:
            row["versions"] = _versions(pm, spec, task.metrics)
        except Exception:  # a plugin this process does not have: the row is still final
            pass
        rows.append(_finish(row, status, reason, tb))
    return rows


def _empty_values() -> dict[str, Any]:
    return {"metrics": {}, "directions": {}, "cost_values": [], "reference_values": [],
            "artifacts": {}, "metric_errors": {}, "notes": {}, "sample_values": []}


def _build(pm: PluginManager, kind: str, spec: RunSpec) -> Any:
    cls = pm.info(kind, getattr(spec, kind)).cls
    return cls(budget=spec.budget, **spec.params[kind])
