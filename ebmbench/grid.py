"""Expand a selection of plugins into run specs, with compatibility and skip reasons.

A *run spec* is one (method, sampler, architecture, dataset, seed) at a budget with fully
resolved hyper-parameters. Specs whose method trains without a sampler share a *training
key* across samplers: the harness groups them into one :class:`Task` that trains once and
evaluates every sampler on the same model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import Combination, Plugin
from .errors import UserError, shown
from .inputs import OVERRIDE_KINDS, check_override_key, check_seeds, name_list, parse_overrides
from .params import check_budget
from .plugins import PluginManager, get_plugin_manager
from .protocol_settings import DEFAULTS as PROTOCOL_DEFAULTS
from .protocol_settings import LEGACY as PROTOCOL_LEGACY
from .protocol_settings import recorded as recorded_settings

__all__ = [
    "Selection", "RunSpec", "Task", "expand", "group_tasks", "parse_overrides",
    "check_overrides_reach", "hard_time_limit", "portable_task", "OVERRIDE_KINDS",
]

_GRID_KINDS = ("method", "sampler", "architecture", "dataset")


@dataclass(frozen=True)
class Selection:
    """What the user asked to run. ``None`` for a kind means every registered plugin."""

    methods: Sequence[str] | None = None
    samplers: Sequence[str] | None = None
    architectures: Sequence[str] | None = None
    datasets: Sequence[str] | None = None
    metrics: Sequence[str] | None = None
    seeds: tuple[int, ...] = (0,)
    budget: str = "quick"
    #: ``"kind.name.param"`` → value; ``name`` may be ``*`` for every selected plugin of
    #: that kind which declares ``param``. Each must reach a selected plugin: one naming a
    #: plugin that is not selected, or a ``*`` that no selected plugin declares, is an error.
    overrides: dict[str, Any] = field(default_factory=dict)
    #: Training FLOPs per run, overriding the budget's (see :mod:`ebmbench.budgets`).
    train_flops: float | None = None
    #: The learning rate's decay over every run's progress (:data:`ebmbench.LR_SCHEDULES`).
    lr_schedule: str = PROTOCOL_DEFAULTS["lr_schedule"]
    #: The model each run reports (:data:`ebmbench.early_stopping.CHECKPOINT_RULES`): its
    #: best learning-curve point on the validation split, or its last.
    checkpoint: str = PROTOCOL_DEFAULTS["checkpoint"]
    #: What each run evaluates (:data:`ebmbench.averaging.WEIGHT_AVERAGES`): at each curve
    #: point whichever of its iterate and their power-function EMA validates better (the
    #: default since 2026-12-01), always the EMA, or always the iterate.
    weight_average: str = PROTOCOL_DEFAULTS["weight_average"]
    #: ``"kind.*.param"`` → value, set on the selected plugins that declare ``param`` and
    #: on no other, never an error (what ``--data-dir`` and ``--fid-weights`` set).
    where_declared: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSpec:
    """One run, fully specified; plain data so it pickles to any executor."""

    method: str
    sampler: str
    architecture: str
    dataset: str
    seed: int
    budget: str
    #: kind → resolved hyper-parameters of that plugin.
    params: dict[str, dict[str, Any]]
    uses_sampler: bool
    skip_reason: str | None = None
    #: The tuning trial's number, or None for a run (see :mod:`ebmbench.tuning`). A trial
    #: trains on the training split less the validation split and is scored on the latter.
    trial: int | None = None
    #: For a tuning trial trained again, with its configuration, on another seed of the
    #: data to confirm it before it is chosen: 1, 2, ...; None otherwise (see
    #: :func:`ebmbench.tuning.confirmation_candidates`).
    replicate: int | None = None
    #: Training FLOPs overriding the budget's, or None.
    train_flops: float | None = None
    # The protocol settings (ebmbench.protocol_settings) default to their legacy rule, which
    # adds nothing to the run's keys; a sweep sets today's defaults (Selection).
    #: The learning rate's decay over the run (:func:`ebmbench.lr_factor`; None, as older
    #: model files say, is ``constant``).
    lr_schedule: str | None = PROTOCOL_LEGACY["lr_schedule"]
    #: The model the run reports (:mod:`ebmbench.early_stopping`): ``best`` or ``last``.
    checkpoint: str = PROTOCOL_LEGACY["checkpoint"]
    #: What the run evaluates (:mod:`ebmbench.averaging`): ``none`` (its iterates), ``ema``
    #: or ``best``.
    weight_average: str = PROTOCOL_LEGACY["weight_average"]
    #: A trial of a study that searches the learning-rate schedule (``--lr-schedule
    #: tuned``): part of its id, so that it never takes the id of another study's trial
    #: that trained the same configuration under the same schedule.
    searched_schedule: bool = False
    #: Tuning: for a trial, its study and number; for a tuned run, the study's record
    #: (trials, objective, chosen values). Kept in the row's ``hyperparams["tuning"]``;
    #: not part of the run's identity (the chosen values are, through ``params``).
    tuning: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.lr_schedule is None:
            self.lr_schedule = PROTOCOL_LEGACY["lr_schedule"]

    @property
    def hyperparams(self) -> dict[str, dict[str, Any]]:
        return self.params

    def _extra(self) -> tuple[Any, ...]:
        # Only what differs from a plain run enters the digest, so a run's id does not
        # depend on features it does not use.
        extra: dict[str, Any] = {}
        if self.trial is not None:
            extra["trial"] = self.trial
        if self.replicate is not None:
            extra["replicate"] = self.replicate
        if self.train_flops is not None:
            extra["train_flops"] = self.train_flops
        if self.searched_schedule:
            extra["searched_schedule"] = True
        # The protocol settings under their legacy rule add nothing (ebmbench.protocol_settings).
        extra |= recorded_settings(self)
        return (extra,) if extra else ()

    @property
    def train_key(self) -> str:
        """Identifies the trained model: the sampler counts only if training uses it."""
        parts = {k: [getattr(self, k), self.params[k]] for k in ("method", "architecture", "dataset")}
        if self.uses_sampler:
            parts["sampler"] = [self.sampler, self.params["sampler"]]
        return _digest(parts, self.seed, self.budget, *self._extra())

    @property
    def run_id(self) -> str:
        parts = {k: [getattr(self, k), self.params[k]] for k in _GRID_KINDS}
        return _digest(parts, self.seed, self.budget, *self._extra())


@dataclass
class Task:
    """The unit an executor runs: one training, then one evaluation per spec."""

    specs: list[RunSpec]
    metrics: dict[str, dict[str, Any]]
    device: str
    timeout: float | None
    results_dir: str
    #: ``--plugins-dir`` folders, so that a worker process loads the same plugins.
    plugins_dirs: list[str]
    #: Draw samples and evaluate the metrics after training (a tuning trial scored on its
    #: learning curve does not).
    sample: bool = True
    #: For a pruned tuning trial: ``{"objective": name, "history": [...]}`` (see
    #: :class:`ebmbench.tuning.CurvePruner`).
    pruning: dict[str, Any] | None = None
    #: Keep each trained model in ``checkpoints/<train_key>.pt`` under ``results_dir`` (and
    #: restore it from there instead of training again); ``--no-checkpoints`` turns it off.
    checkpoints: bool = True
    #: A model file to restore the first spec's model from instead of training
    #: (``ebmbench.load_model``); None: the checkpoint under ``results_dir``, if any.
    restore_from: str | None = None

    @property
    def train_flops(self) -> float | None:
        """Training FLOPs overriding the budget's (the same for every spec of a task)."""
        return self.specs[0].train_flops if self.specs else None


def hard_time_limit(task: Any, grace: float) -> float | None:
    """The wall-clock seconds a worker may spend on ``task`` before it is killed.

    ``--timeout`` bounds the training and each sampler's run separately (checked
    cooperatively by the harness), so a task of k specs gets ``timeout × (k + 1)`` plus
    ``grace`` for what is not timed: data loading, setup and the metrics. No timeout, no
    limit; anything that is not a :class:`Task` (an executor's ``map`` takes any picklable
    item) has no limit either. Every executor that runs tasks in workers uses this one rule.

    >>> hard_time_limit(Task([None, None], {}, "cpu", 2.0, ".", []), grace=10.0)
    16.0
    >>> hard_time_limit(3, grace=10.0) is None
    True
    """
    if not isinstance(task, Task) or task.timeout is None:
        return None
    return task.timeout * (len(task.specs) + 1) + grace


def portable_task(task: Any) -> Any:
    """``task`` with absolute paths, for a worker whose working directory is not the
    driver's; anything that is not a :class:`Task` is returned as it is."""
    if not isinstance(task, Task):
        return task
    return dataclasses.replace(
        task,
        results_dir=os.path.abspath(task.results_dir),
        plugins_dirs=[os.path.abspath(d) for d in task.plugins_dirs],
        restore_from=os.path.abspath(task.restore_from) if task.restore_from else None,
    )


def _digest(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _overrides_for(
    selection: Selection, kind: str, name: str, declared: dict[str, Any]
) -> dict[str, Any]:
    given: dict[str, Any] = {}
    for key, value in selection.where_declared.items():
        k, n, param = key.split(".", 2)
        if k == kind and n in ("*", name) and param in declared:
            given[param] = value
    for key, value in selection.overrides.items():
        k, n, param = key.split(".", 2)
        if k != kind:
            continue
        if n == name or (n == "*" and param in declared):
            given[param] = value
    return given


def _names(pm: PluginManager, kind: str, chosen: Sequence[str] | str | None) -> list[str]:
    if chosen is None:
        return pm.registry(kind).names()
    names = list(dict.fromkeys(name_list(kind, chosen) or []))
    for name in names:
        pm.info(kind, name)  # a "did you mean" UserError, listing plugins that failed to load
    return names


def check_overrides_reach(
    pm: PluginManager, overrides: dict[str, Any], kind: str, selected: Sequence[str]
) -> None:
    """Refuse an override of ``kind`` that would be silently ignored: one naming a plugin
    that is not selected, or a ``*`` whose parameter no selected plugin declares."""
    for key in overrides:
        k, name, param = key.split(".", 2)
        if k != kind:
            continue
        if name == "*":
            if not any(param in pm.info(kind, n).cls.params for n in selected):
                raise UserError(
                    f"--set {shown(key)}: no selected {kind} has a parameter {shown(param)} "
                    f"(selected {kind}s: {', '.join(selected) or 'none'})"
                )
        elif name not in selected:
            pm.info(kind, name)  # an unknown name: "did you mean"
            raise UserError(
                f"--set {shown(key)}: {kind} {name!r} is not selected, so the value would be "
                f"ignored. Selected {kind}s: {', '.join(selected) or 'none'}"
            )


def instantiate(
    pm: PluginManager, kind: str, name: str, selection: Selection,
    defaults: dict[str, Any] | None = None,
) -> Plugin:
    """Build plugin ``name`` of ``kind`` at the selection's budget with its overrides.

    ``defaults`` (a dataset's ``method_defaults``) apply where the plugin declares the
    parameter; the user's overrides win over them.
    """
    cls = pm.info(kind, name).cls
    given = {k: v for k, v in (defaults or {}).items() if k in cls.params}
    given.update(_overrides_for(selection, kind, name, cls.params))
    try:
        return cls(budget=selection.budget, **given)
    except UserError:
        raise
    except Exception as exc:  # a check in the plugin's constructor (a combination of values)
        raise UserError(
            f"{kind} {name!r} refused its hyper-parameters {shown(given, 200)}: "
            f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        ) from None


def expand(
    selection: Selection, pm: PluginManager | None = None
) -> tuple[list[RunSpec], dict[str, dict[str, Any]]]:
    """All run specs of ``selection`` (incompatible ones carry a skip reason).

    Returns:
        The specs, and the selected metrics with their resolved parameters.
    """
    pm = pm or get_plugin_manager()
    check_budget(selection.budget)
    seeds = check_seeds(selection.seeds)
    for key in [*selection.overrides, *selection.where_declared]:
        check_override_key(key)
    names = {
        "method": _names(pm, "method", selection.methods),
        "sampler": _names(pm, "sampler", selection.samplers),
        "architecture": _names(pm, "architecture", selection.architectures),
        "dataset": _names(pm, "dataset", selection.datasets),
    }
    for kind, chosen in names.items():
        if not chosen:
            from .autoload import autoload_note

            note = autoload_note()
            raise UserError(f"no {kind} is selected or registered; see `ebmbench list {kind}`"
                            + (f" ({note})" if note else ""))
    metric_names = _names(pm, "metric", selection.metrics)
    for kind, chosen in [*names.items(), ("metric", metric_names)]:
        check_overrides_reach(pm, selection.overrides, kind, chosen)
    plugins = {
        kind: {n: instantiate(pm, kind, n, selection) for n in chosen}
        for kind, chosen in names.items()
    }
    metrics = {n: instantiate(pm, "metric", n, selection).hparams for n in metric_names}
    specs = []
    for dataset in plugins["dataset"].values():
        tuned = type(dataset).method_defaults.get(selection.budget)
        methods = plugins["method"] if not tuned else {
            n: instantiate(pm, "method", n, selection, tuned) for n in names["method"]
        }
        for architecture in plugins["architecture"].values():
            for method in methods.values():
                for sampler in plugins["sampler"].values():
                    combo = Combination(method, sampler, architecture, dataset)  # type: ignore[arg-type]
                    reason = next(
                        (r for p in (dataset, architecture, method, sampler)
                         if (r := p.incompatibility(combo))),
                        None,
                    )
                    for seed in seeds:
                        specs.append(
                            RunSpec(
                                method=method.name,
                                sampler=sampler.name,
                                architecture=architecture.name,
                                dataset=dataset.name,
                                seed=int(seed),
                                budget=selection.budget,
                                params={
                                    "method": dict(method.hparams),
                                    "sampler": dict(sampler.hparams),
                                    "architecture": dict(architecture.hparams),
                                    "dataset": dict(dataset.hparams),
                                },
                                uses_sampler=type(method).uses_sampler,
                                skip_reason=reason,
                                train_flops=selection.train_flops,
                                lr_schedule=selection.lr_schedule,
                                checkpoint=selection.checkpoint,
                                weight_average=selection.weight_average,
                            )
                        )
    return specs, metrics


def group_tasks(specs: Iterable[RunSpec]) -> list[list[RunSpec]]:
    """Group runnable specs by training key, keeping the grid's order."""
    groups: dict[str, list[RunSpec]] = defaultdict(list)
    for spec in specs:
        groups[spec.train_key].append(spec)
    return list(groups.values())
