"""The sampler board: every sampler on fixed targets, at equal budgets of gradient evaluations.

The model board ranks trained models, and a model's sample metrics there mix the model with
the sampler that drew from it. Here the sampler alone is judged, on targets that do not
depend on any method:

- ``true_density``: the dataset's exact density (energy f = log p; exact samples from
  ``dataset.sample``), for every toy density;
- ``reference``: one fixed trained energy per 2-D toy, :data:`REFERENCE` (``dsm`` on the
  ``mlp`` energy, seed 0, at its declared defaults for the budget), trained by the harness's
  own training path, so it is the model the model board ranks and its checkpoint is reused
  when the sweep has one. Its exact samples come from a fine grid (:class:`GridDensity2D`),
  whose resolution and truncation errors every row records. Above 2-D there is no exact
  sampler of a learned energy, so the reference target is 2-D only.

Every sampler gets the same budget per chain (:data:`GRAD_BUDGET`): gradient evaluations, or
energy evaluations for a sampler that takes no gradients (``mh``). The steps it buys are
planned from the evaluations the sampler itself reports on a probe (``grad_evals`` and
``energy_evals`` of a 1-step and a 2-step call), so an HMC step of L leapfrog steps buys
1/L of a MALA step, warm-up included. Chains start from noise (``dataset.init_noise``) and
from held-out data (the test split), the same starting points for every sampler.

A row measures, from :data:`CHAINS` chains run once for the planned steps: MMD and C2ST of
their final states against exact samples (the ``mmd`` and ``c2st`` metric plugins, with the
target as their density), and the cost (``grad_evals``, ``energy_evals``,
``sample_seconds``). From :data:`TRACE_CHAINS` more chains run for the same steps, it records
the second half of each trajectory (thinned to at most :data:`MAX_DRAWS` draws) and computes
with ArviZ (:mod:`ebmbench.chain_diagnostics`) the bulk ESS and R-hat of every coordinate:
``ess_per_grad`` = min over coordinates of the bulk ESS / (chains × evaluations each chain
spent over the recorded span), ``rhat`` = max over coordinates. See docs/samplers.md.

Rows have ``role = "sampler"`` and live in the same store as the runs; a sweep started again
finds them by ``run_id`` and does none again.
"""

from __future__ import annotations

import math
import platform
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .base import EvalContext, Sampler, ToyDensity, is_finite
from .chain_diagnostics import bulk_ess, rank_rhat
from .device import derive_seed, resolve_device
from .exact_sampling import ExactLogDensity, GridDensity2D
from .grid import RunSpec, Selection, Task, _digest, _names, expand, instantiate
from .plugins import PluginManager, get_plugin_manager
from .protocol_settings import DEFAULTS as PROTOCOL_DEFAULTS
from .runner import (
    _base_row,
    _evaluate,
    _finish,
    _load_data,
    _manager,
    _peak_memory_mb,
    _status_of,
    _train,
    checkpoint_path,
    finished_rows,
    validation_split,
)
from .schedules import TUNED_LR_SCHEDULE
from .store import ResultStore

__all__ = [
    "GRAD_BUDGET", "CHAINS", "TRACE_CHAINS", "MAX_DRAWS", "GRID_CELLS", "TARGETS", "INITS",
    "REFERENCE", "BOARD_METRICS", "SamplerSpec", "SamplerTask", "BudgetPlan", "BoardReport",
    "plan_board", "group_board_tasks", "board_metrics", "plan_budget", "record_trace",
    "execute_sampler_task",
    "unfinished_sampler_rows", "run_board",
]

#: Evaluations per chain each sampler gets, by budget: gradient evaluations of f, or
#: evaluations of f for a sampler that takes no gradients.
GRAD_BUDGET = {"smoke": 40, "quick": 200, "full": 2000}
#: Chains per row; their final states are the samples that MMD and C2ST compare.
CHAINS = {"smoke": 128, "quick": 384, "full": 4000}
#: Chains per row whose trajectories are recorded for ESS and R-hat.
TRACE_CHAINS = {"smoke": 8, "quick": 16, "full": 32}
#: Most draws kept per traced chain (from the second half of its trajectory).
MAX_DRAWS = {"smoke": 32, "quick": 200, "full": 1000}
#: Cells per axis of the grid that samples a learned 2-D energy exactly.
GRID_CELLS = {"smoke": 128, "quick": 512, "full": 1024}
#: Draws of the grid density used to estimate its total-variation error.
GRID_TV_DRAWS = 4096

TARGETS = ("true_density", "reference")
INITS = ("noise", "data")
#: The fixed trained energy per dataset: this method on this architecture, this seed, at
#: the method's and architecture's declared defaults for the budget (``--set`` on them and
#: ``--tune`` do not change it; dataset and sampler settings do, as for any run).
REFERENCE = {"method": "dsm", "architecture": "mlp", "seed": 0}
#: The sample-quality metric plugins a row reports (with the selection's settings).
BOARD_METRICS = ("mmd", "c2st")
#: Part of every row's identity: raise it when what a row measures changes.
BOARD_VERSION = 1

_COSTS = ("grad_evals", "energy_evals", "sample_seconds")
_DIRECTIONS = {"ess_per_grad": True, "ess_bulk": True, "rhat": False, "grad_evals": False,
               "energy_evals": False, "sample_seconds": False}
_REFERENCE_VALUES = ("ess_bulk", "rhat")


# ------------------------------------------------------------------------------ specs


@dataclass
class SamplerSpec:
    """One sampler-board row, fully specified; plain data so it pickles to any executor.

    ``params`` holds the sampler's declared hyper-parameters (without ``steps``: the budget
    sets the chain length) and the dataset's. ``reference`` is the reference model's run
    spec for the ``reference`` target, else None.
    """

    sampler: str
    dataset: str
    target: str
    init: str
    seed: int
    budget: str
    params: dict[str, dict[str, Any]]
    grad_budget: int
    chains: int
    trace_chains: int
    max_draws: int
    reference: RunSpec | None = None
    #: What :func:`~ebmbench.runner._base_row` reads: a board row is no tuning trial.
    trial: None = None
    tuning: None = None

    @property
    def method(self) -> str:
        """The target, in the store's ``method`` column."""
        return self.target

    @property
    def architecture(self) -> str:
        return "exact" if self.reference is None else self.reference.architecture

    @property
    def train_key(self) -> str:
        """The reference model's training key ("" for the true density)."""
        return "" if self.reference is None else self.reference.train_key

    @property
    def run_id(self) -> str:
        return _digest(
            {"board": BOARD_VERSION, "sampler": [self.sampler, self.params["sampler"]],
             "dataset": [self.dataset, self.params["dataset"]], "target": self.target,
             "reference": self.train_key, "init": self.init, "grad_budget": self.grad_budget,
             "chains": [self.chains, self.trace_chains, self.max_draws]},
            self.seed, self.budget,
        )

    def record(self) -> dict[str, Any]:
        """``hyperparams["sampler_board"]`` as the spec fixes it (the row adds the plan)."""
        ref = self.reference
        return {
            "init": self.init,
            "grad_budget": self.grad_budget,
            "reference": None if ref is None else {
                "method": ref.method, "architecture": ref.architecture, "run_id": ref.run_id,
                "train_key": ref.train_key, "seed": ref.seed},
            "chains": self.chains,
            "trace_chains": self.trace_chains,
            "version": BOARD_VERSION,
        }


@dataclass
class SamplerTask(Task):
    """Sampler-board specs that share a target: one dataset and target (and, for the true
    density, one sampler). A :class:`~ebmbench.Task`, so executors apply the same hard time
    limit and record what a dead worker left unfinished (:func:`unfinished_sampler_rows`)."""


@dataclass
class BoardReport:
    """What the sampler board did: its rows in the store and counts by status."""

    frame: pd.DataFrame
    counts: Counter[str] = field(default_factory=Counter)
    ran: int = 0
    resumed: int = 0


# ------------------------------------------------------------------------- planning


def _toy_datasets(pm: PluginManager, selection: Selection) -> list[ToyDensity]:
    datasets = [instantiate(pm, "dataset", n, selection)
                for n in _names(pm, "dataset", selection.datasets)]
    return [d for d in datasets if isinstance(d, ToyDensity)]


def _reference_specs(
    pm: PluginManager, selection: Selection, datasets: list[ToyDensity], samplers: list[str]
) -> dict[tuple[str, str], RunSpec]:
    """(dataset, sampler) → the reference model's run spec, for the 2-D toys it applies to."""
    eligible = [d.name for d in datasets if d.dim == 2 and d.bounds is not None]
    if (not eligible or REFERENCE["method"] not in pm.registry("method")
            or REFERENCE["architecture"] not in pm.registry("architecture")):
        return {}
    kept = {k: v for k, v in selection.overrides.items() if k.startswith(("dataset.", "sampler."))}
    ref_selection = Selection(
        methods=[REFERENCE["method"]], samplers=samplers, architectures=[REFERENCE["architecture"]],
        datasets=eligible, metrics=[], seeds=(REFERENCE["seed"],), budget=selection.budget,
        overrides=kept, train_flops=selection.train_flops,
        # The reference is trained untuned: a schedule tuned per study is the default's.
        lr_schedule=(PROTOCOL_DEFAULTS["lr_schedule"] if selection.lr_schedule == TUNED_LR_SCHEDULE
                     else selection.lr_schedule),
        checkpoint=selection.checkpoint, weight_average=selection.weight_average,
    )
    specs, _ = expand(ref_selection, pm)
    return {(s.dataset, s.sampler): s for s in specs if not s.skip_reason}


def plan_board(selection: Selection, pm: PluginManager | None = None) -> list[SamplerSpec]:
    """Every sampler-board row of ``selection``: selected samplers × selected toy densities
    × targets × inits × seeds (the reference target on 2-D toys only)."""
    pm = pm or get_plugin_manager()
    budget = selection.budget
    samplers = {n: instantiate(pm, "sampler", n, selection)
                for n in _names(pm, "sampler", selection.samplers)}
    datasets = _toy_datasets(pm, selection)
    references = _reference_specs(pm, selection, datasets, list(samplers))
    specs = []
    for dataset in datasets:
        for name, sampler in samplers.items():
            declared = {k: v for k, v in sampler.hparams.items() if k != "steps"}
            reference = references.get((dataset.name, name))
            for target in TARGETS:
                if target == "reference" and reference is None:
                    continue
                for init in INITS:
                    for seed in selection.seeds:
                        specs.append(SamplerSpec(
                            sampler=name, dataset=dataset.name, target=target, init=init,
                            seed=int(seed), budget=budget,
                            params={"sampler": declared, "dataset": dict(dataset.hparams)},
                            grad_budget=GRAD_BUDGET[budget], chains=CHAINS[budget],
                            trace_chains=TRACE_CHAINS[budget], max_draws=MAX_DRAWS[budget],
                            reference=reference if target == "reference" else None,
                        ))
    return specs


def group_board_tasks(specs: Iterable[SamplerSpec]) -> list[list[SamplerSpec]]:
    """Specs grouped into tasks, keeping their order: one per (dataset, reference target),
    so the reference model is loaded (or trained) and gridded once; one per (dataset,
    sampler) for the true density, whose exact log-density can be slow (``pinwheel``), so
    that workers share it."""
    groups: dict[tuple[str, ...], list[SamplerSpec]] = defaultdict(list)
    for spec in specs:
        key = (spec.dataset, spec.target) if spec.reference is not None else (
            spec.dataset, spec.target, spec.sampler)
        groups[key].append(spec)
    return list(groups.values())


# --------------------------------------------------------------------------- budgets


@dataclass(frozen=True)
class BudgetPlan:
    """The chain length a budget buys a sampler, from the cost the sampler reports.

    A call of n steps costs ``per_call + per_step · n`` evaluations of ``unit``
    (``grad_evals``, or ``energy_evals`` for a sampler that takes no gradients); ``steps``
    is the largest n within ``budget``, so the cost is within one step of it.
    """

    unit: str
    per_call: float
    per_step: float
    steps: int
    budget: int

    @property
    def cost(self) -> float:
        return self.per_call + self.per_step * self.steps


def plan_budget(
    make_sampler: Callable[[], Sampler], energy: Callable[[Tensor], Tensor], x: Tensor,
    budget: int, generator: torch.Generator | None = None,
) -> BudgetPlan:
    """Measure a sampler's cost on a 1-step and a 2-step call from ``x`` (a few chains) and
    plan the steps ``budget`` evaluations per chain buy.

    Each probe call uses a fresh sampler from ``make_sampler``, so no state carries over;
    the probes are not part of the row's chains. A sampler whose cost per step is not
    constant (one that adapts its trajectory length) is planned from its first steps.

    Raises:
        ValueError: when the sampler reports no evaluations, or the budget buys < 2 steps.
    """
    costs = []
    for n in (1, 2):
        stats = make_sampler().sample(energy, x, n, generator=generator).stats
        costs.append((float(stats.get("grad_evals", 0.0)), float(stats.get("energy_evals", 0.0))))
    unit = "grad_evals" if costs[1][0] > costs[0][0] else "energy_evals"
    i = 0 if unit == "grad_evals" else 1
    per_step = costs[1][i] - costs[0][i]
    per_call = costs[0][i] - per_step
    if per_step <= 0:
        raise ValueError("the sampler reports no gradient or energy evaluations per step "
                         "(SampleResult.stats grad_evals / energy_evals): it cannot be budgeted")
    steps = int(math.floor((budget - per_call) / per_step + 1e-9))
    if steps < 2:
        raise ValueError(f"a budget of {budget} {unit} buys {steps} steps of this sampler "
                         f"({per_step:g} per step + {per_call:g} per call); at least 2 are needed")
    return BudgetPlan(unit, per_call, per_step, steps, budget)


def record_trace(
    make_sampler: Callable[[], Sampler], energy: Callable[[Tensor], Tensor], x0: Tensor,
    steps: int, max_draws: int, generator: torch.Generator | None = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """Run the chains ``x0`` for ``steps`` steps and keep the second half, thinned.

    The first ``burn_in`` steps run in one call; then ``draws`` calls of ``thin`` steps
    each record the chains' states, with draws × thin ≤ steps/2 as large as allowed by
    ``draws`` ≤ ``max_draws``. The calls continue one run: ``make_sampler`` should return a
    sampler whose state (adapted step size, warm-up count) carries over between calls
    (``persistent=True`` for an :class:`~ebmbench.MarkovChainSampler`); each call
    re-evaluates what the kernel caches at its start, which is why these chains are not the
    ones whose cost is reported.

    Returns:
        (draws, shaped (chains, draws, d), float64; {"burn_in", "thin", "draws"}).
    """
    tail = steps - steps // 2
    thin = max(1, math.ceil(tail / max_draws))
    n_draws = tail // thin
    burn_in = steps - n_draws * thin
    sampler = make_sampler()
    x = x0
    if burn_in:
        x = sampler.sample(energy, x, burn_in, generator=generator).x
    draws = np.empty((len(x0), n_draws, x0[0].numel()), dtype=np.float64)
    for j in range(n_draws):
        x = sampler.sample(energy, x, thin, generator=generator).x
        draws[:, j] = x.detach().reshape(len(x), -1).to("cpu", torch.float64).numpy()
    return draws, {"burn_in": burn_in, "thin": thin, "draws": n_draws}


# -------------------------------------------------------------------------- targets


@dataclass
class _Target:
    """What the samplers run on (``energy``) and where exact samples come from (``exact``:
    anything with ``sample(n, generator)``, as the sample metrics read it)."""

    energy: nn.Module
    exact: Any
    record: dict[str, Any]


class _BoxRestricted(nn.Module):
    """f on the box B, −∞ outside: the density exp(f) 1_B that the grid samples exactly.

    The harness already reads a learned 2-D density on its dataset's box (log Z and NLL by
    quadrature over it); restricting the target there also makes it proper whatever f does
    far from the data. Metropolis-adjusted kernels reject every proposal outside B (their
    accept ratio is −∞ or NaN there), so they stay exact for the restricted target; the
    score outside B is 0.
    """

    def __init__(self, energy: nn.Module, bounds: Any) -> None:
        super().__init__()
        self.energy = energy
        self.register_buffer("lo", torch.tensor([float(b[0]) for b in bounds]))
        self.register_buffer("hi", torch.tensor([float(b[1]) for b in bounds]))

    def forward(self, x: Tensor) -> Tensor:
        inside = ((x >= self.lo) & (x <= self.hi)).all(dim=1)
        return torch.where(inside, self.energy(x), torch.full((), -math.inf, device=x.device))


def _reference_target(
    pm: PluginManager, spec: SamplerSpec, task: SamplerTask, device: torch.device,
    dataset: ToyDensity,
) -> _Target:
    ref = spec.reference
    assert ref is not None
    had_checkpoint = checkpoint_path(task.results_dir, ref.train_key).exists()
    all_train, _ = _load_data(dataset, ref, read_test=False)
    train, validation = validation_split(all_train, ref)
    ref_task = Task([ref], {}, task.device, task.timeout, task.results_dir, task.plugins_dirs,
                    checkpoints=task.checkpoints)
    trained = _train(pm, ref, ref_task, device, dataset, train, validation)
    energy = trained.energy.eval()
    cells = GRID_CELLS[spec.budget]
    grid = GridDensity2D(energy, dataset.bounds, cells, device=device)
    tv_gen = torch.Generator().manual_seed(derive_seed("sampler_board", "grid_tv", ref.train_key))
    record = {
        "kind": "grid", "cells": cells, "log_z_box": grid.log_z,
        "tv_error": grid.tv_error(GRID_TV_DRAWS, tv_gen), "mass_outside_box": grid.mass_outside(),
        "checkpoint": "reused" if had_checkpoint else "trained",
    }
    return _Target(_BoxRestricted(energy, dataset.bounds).to(device), grid, record)


def _target(
    pm: PluginManager, spec: SamplerSpec, task: SamplerTask, device: torch.device,
    dataset: ToyDensity,
) -> _Target:
    if spec.target == "true_density":
        return _Target(ExactLogDensity(dataset), dataset, {"kind": "dataset.sample"})
    return _reference_target(pm, spec, task, device, dataset)


# ------------------------------------------------------------------------ execution


def _versions(pm: PluginManager, spec: SamplerSpec, metrics: Iterable[str]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    out = {"ebmbench": __version__, "torch": torch.__version__, "python": platform.python_version()}
    try:
        out["arviz-stats"] = version("arviz-stats")
    except PackageNotFoundError:
        pass
    plugins = [("sampler", spec.sampler), ("dataset", spec.dataset)]
    plugins += [("metric", n) for n in metrics]
    if spec.reference is not None:
        plugins += [("method", spec.reference.method), ("architecture", spec.reference.architecture)]
    for kind, name in plugins:
        info = pm.info(kind, name)
        out[f"{kind}:{info.name}"] = f"{info.source}=={info.version}"
    return out


def _row(spec: SamplerSpec, task: SamplerTask, device: str) -> dict[str, Any]:
    row = _base_row(spec, task, device)  # type: ignore[arg-type]
    row["role"] = "sampler"
    row["hyperparams"] = {"sampler": dict(spec.params["sampler"]),
                          "dataset": dict(spec.params["dataset"]),
                          "metrics": task.metrics, "sampler_board": spec.record()}
    return row


def _starts(dataset: ToyDensity, spec: SamplerSpec, n: int, held_out: Tensor | None) -> Tensor:
    """n starting points, the same for every sampler and target of (dataset, init, seed)."""
    gen = torch.Generator().manual_seed(derive_seed(
        "sampler_board", "starts", spec.dataset, spec.params["dataset"], spec.init, spec.seed))
    if spec.init == "noise":
        return dataset.init_noise(n, gen)
    assert held_out is not None
    if len(held_out) >= n:
        return held_out[torch.randperm(len(held_out), generator=gen)[:n]]
    return held_out[torch.randint(len(held_out), (n,), generator=gen)]


def _measure(
    pm: PluginManager, spec: SamplerSpec, task: SamplerTask, device: torch.device,
    dataset: ToyDensity, target: _Target, metrics: dict[str, Any], row: dict[str, Any],
    held_out: dict[int, Tensor],
) -> tuple[str, str]:
    """Run ``spec`` into ``row``; return (status, reason)."""
    cls = pm.info("sampler", spec.sampler).cls
    declared = spec.params["sampler"]

    def make(**extra: Any) -> Sampler:
        return cls(budget=spec.budget, **(declared | extra))

    # Continue one run across the trace's calls (warm-up count, adapted step size).
    make_traced = (lambda: make(persistent=True)) if "persistent" in cls.params else make
    if spec.init == "data" and spec.seed not in held_out:
        held_out[spec.seed] = _load_data(dataset, spec, read_test=True)[1]  # type: ignore[arg-type]
    starts = _starts(dataset, spec, spec.chains + spec.trace_chains, held_out.get(spec.seed))
    x0, x0_trace = starts[: spec.chains].to(device), starts[spec.chains :].to(device)

    def generator(purpose: str) -> torch.Generator:
        return torch.Generator(device).manual_seed(derive_seed("sampler_board", purpose, spec.run_id))

    board = row["hyperparams"]["sampler_board"]
    board["exact_samples"] = target.record
    plan = plan_budget(make, target.energy, x0[:2], spec.grad_budget, generator("probe"))
    board.update(cost_unit=plan.unit, steps=plan.steps, cost_per_step=plan.per_step,
                 cost_per_call=plan.per_call)

    sampler = make()
    start = time.perf_counter()
    result = sampler.sample(target.energy, x0, plan.steps, generator=generator("chains"))
    seconds = time.perf_counter() - start
    stats = {k: float(v) for k, v in result.stats.items()}
    row.update(sample_seconds=seconds, sample_stats=stats)
    if not is_finite(result.x):
        return "diverged", f"sampler {spec.sampler} produced non-finite samples"

    draws, trace = record_trace(make_traced, target.energy, x0_trace, plan.steps, spec.max_draws,
                                generator("trace"))
    board["trace"] = trace
    if not np.isfinite(draws).all():
        return "diverged", f"sampler {spec.sampler}'s traced chains became non-finite"
    ess = float(bulk_ess(draws).min()) if trace["draws"] >= 4 else math.nan
    rhat = float(rank_rhat(draws).max()) if trace["draws"] >= 4 else math.nan
    span = spec.trace_chains * trace["draws"] * trace["thin"] * plan.per_step
    values = {
        "ess_per_grad": ess / span, "ess_bulk": ess, "rhat": rhat,
        "grad_evals": stats.get(plan.unit, math.nan), "energy_evals": stats.get("energy_evals", math.nan),
        "sample_seconds": seconds,
    }
    row["metrics"].update(values)
    row["directions"].update(_DIRECTIONS)
    row["cost_values"] = sorted(set(row["cost_values"]) | set(_COSTS))
    row["reference_values"] = sorted(set(row["reference_values"]) | set(_REFERENCE_VALUES))

    ctx = EvalContext(
        energy=target.energy, method=None, dataset=target.exact, sampler=sampler,  # type: ignore[arg-type]
        samples=result.x.detach(), sample_stats=stats, train_data=torch.empty(0, *dataset.shape),
        test_data=held_out.get(spec.seed, torch.empty(0, *dataset.shape)), device=device,
        seed=spec.seed, budget=spec.budget, costs={"sample_seconds": seconds},
    )
    _evaluate(metrics, ctx, row, spec.run_id)
    if task.timeout is not None and seconds > task.timeout:
        return "timeout", f"sampling took {seconds:.1f} s, over the {task.timeout:g} s limit"
    return "ok", ""


def execute_sampler_task(task: SamplerTask) -> Iterator[dict[str, Any]]:
    """Measure every spec of ``task``; yield one result row per spec, never raise.

    The target is built once (the reference model loaded from its checkpoint or trained,
    and gridded); a failure there fails every row with its status (``diverged``,
    ``timeout``, ``failed``), a failure of one sampler only its row.
    """
    shared = {(s.dataset, repr(s.params["dataset"]), s.target, s.train_key) for s in task.specs}
    if len(shared) > 1:
        raise ValueError("a sampler-board task's specs must share their dataset and target "
                         "(see group_board_tasks)")
    device = resolve_device(task.device)
    rows = {spec.run_id: _row(spec, task, str(device)) for spec in task.specs}
    pending = list(task.specs)
    try:
        pm = _manager(task)
        for spec in task.specs:
            rows[spec.run_id]["versions"] = _versions(pm, spec, task.metrics)
        first = task.specs[0]
        dataset = pm.info("dataset", first.dataset).cls(budget=first.budget, **first.params["dataset"])
        target = _target(pm, first, task, device, dataset)
        metrics = {n: pm.info("metric", n).cls(budget=first.budget, **p) for n, p in task.metrics.items()}
        held_out: dict[int, Tensor] = {}
        while pending:
            spec = pending.pop(0)
            row = rows[spec.run_id]
            try:
                status, reason = _measure(pm, spec, task, device, dataset, target, metrics, row, held_out)
                tb = ""
            except Exception as exc:
                status, reason, tb = _status_of(exc), f"{type(exc).__name__}: {exc}", traceback.format_exc()
            row["peak_memory_mb"] = _peak_memory_mb(device)
            yield _finish(row, status, reason, tb)
    except Exception as exc:
        what = "" if task.specs[0].reference is None else (
            f"reference energy {REFERENCE['method']}/{REFERENCE['architecture']}: ")
        status = _status_of(exc)
        tb = traceback.format_exc()
        for spec in pending:
            yield _finish(rows[spec.run_id], status, f"{what}{type(exc).__name__}: {exc}", tb)


def unfinished_sampler_rows(
    task: SamplerTask, done_run_ids: Iterable[str], status: str, reason: str, tb: str = ""
) -> list[dict[str, Any]]:
    """Final rows for the specs of ``task`` a dead or killed worker did not finish (what
    :func:`ebmbench.unfinished_rows` returns for a :class:`SamplerTask`)."""
    return finished_rows(task, done_run_ids, lambda spec: _row(spec, task, task.device),
                         status, reason, tb)


# ----------------------------------------------------------------------- the driver


def board_metrics(selection: Selection, pm: PluginManager) -> dict[str, dict[str, Any]]:
    """:data:`BOARD_METRICS` that are registered, with the selection's settings."""
    registered = pm.registry("metric")
    return {n: instantiate(pm, "metric", n, selection).hparams for n in BOARD_METRICS if n in registered}


def run_board(
    selection: Selection, *, store: ResultStore, executor: Any, device: str,
    timeout: float | None, results: Path, plugins_dirs: list[str], retry_statuses: Iterable[str] = (),
    progress: bool = False, on_row: Callable[[dict[str, Any]], None] | None = None,
    commit: Callable[[dict[str, Any], bool], None] | None = None, checkpoints: bool = True,
) -> BoardReport:
    """Run the sampler board of ``selection`` through ``executor`` into ``store``.

    Rows already stored are not run again, except those whose status is in
    ``retry_statuses`` (``--retry-failed``). ``commit(row, replace)`` stores a row (the
    sweep's, which keeps a row the store cannot take in the pending-rows journal; default
    :meth:`ResultStore.write`). ``checkpoints=False`` keeps no model file of the
    reference energies (each task then trains its reference in memory).
    """
    from .sweep import _bar, _closing, _label

    pm = get_plugin_manager()
    specs = plan_board(selection, pm)
    retry = tuple(retry_statuses)
    done = store.finished_ids()
    if retry:
        done -= store.finished_ids(retry)
    todo = [s for s in specs if s.run_id not in done]
    metrics = board_metrics(selection, pm)
    tasks = [SamplerTask(specs=group, metrics=metrics, device=device, timeout=timeout,  # type: ignore[arg-type]
                         results_dir=str(results.parent), plugins_dirs=plugins_dirs,
                         checkpoints=checkpoints)
             for group in group_board_tasks(todo)]
    counts: Counter[str] = Counter()
    with _bar(progress, len(todo)) as live:
        job = live.add_task("sampler board", total=len(todo)) if live else None
        with _closing(executor.map(execute_sampler_task, tasks)) as rows:
            for row in rows:
                if commit is None:
                    store.write(row, replace=bool(retry))
                else:
                    commit(row, bool(retry))
                counts[row["status"]] += 1
                if on_row:
                    on_row(row)
                if live:
                    live.update(job, advance=1, description=f"sampler board {_label(row)}")
    frame = store.to_frame({s.run_id for s in specs})
    all_counts = Counter(frame["status"]) if len(frame) else Counter()
    return BoardReport(frame, all_counts, ran=len(todo), resumed=len(specs) - len(todo))
