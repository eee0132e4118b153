"""The Python API: look plugins up, run a selection, load results.

Trained models (``train``, ``load_model``) are in :mod:`ebmbench.model`. This module imports
torch and pandas only inside the functions that need them, so that the command line can
read :data:`DEFAULT_RESULTS` without them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from .base import Architecture, Dataset, Executor, Method, Metric, Sampler

from .averaging import check_weight_average
from .early_stopping import check_rule
from .errors import UserError, shown
from .inputs import check_overrides, check_seeds, check_timeout, name_list
from .protocol_settings import DEFAULTS as PROTOCOL_DEFAULTS
from .schedules import check_lr_schedule


def get_plugin_manager() -> Any:
    from .plugins import get_plugin_manager as manager

    return manager()

__all__ = [
    "list_plugins",
    "get_method",
    "get_sampler",
    "get_architecture",
    "get_dataset",
    "get_metric",
    "get_executor",
    "run",
    "load_results",
    "DEFAULT_RESULTS",
]

#: Where results go unless ``results=`` / ``--results`` says otherwise.
DEFAULT_RESULTS = Path("ebmbench-results") / "results.sqlite"


def list_plugins(kind: str) -> list[str]:
    """Names of the registered plugins of ``kind`` (``"method"``, ``"sampler"``, ...).

    >>> "dsm" in list_plugins("method")
    True
    """
    if not isinstance(kind, str):
        raise UserError(f"bad plugin kind {shown(kind)}: give one of method, sampler, "
                        "architecture, dataset, metric, executor")
    return get_plugin_manager().registry(kind).names()


def _get(kind: str, name: str, budget: str, params: dict[str, Any]) -> Any:
    """An instance of plugin ``name``; every value is checked against its ``Param`` (type
    and bounds), so a bad one is a :class:`UserError` naming it."""
    cls = get_plugin_manager().info(kind, name).cls
    return cls(budget=budget, **params)


def get_method(name: str, *, budget: str = "quick", **params: Any) -> Method:
    """An instance of the method ``name`` with ``params`` over the budget's defaults."""
    return _get("method", name, budget, params)


def get_sampler(name: str, *, budget: str = "quick", **params: Any) -> Sampler:
    """An instance of the sampler ``name``."""
    return _get("sampler", name, budget, params)


def get_architecture(name: str, *, budget: str = "quick", **params: Any) -> Architecture:
    """An instance of the architecture ``name``; ``.build(shape)`` makes the module."""
    return _get("architecture", name, budget, params)


def get_dataset(name: str, *, budget: str = "quick", **params: Any) -> Dataset:
    """An instance of the dataset ``name``."""
    return _get("dataset", name, budget, params)


def get_metric(name: str, *, budget: str = "quick", **params: Any) -> Metric:
    """An instance of the metric ``name``."""
    return _get("metric", name, budget, params)


def get_executor(name: str, *, budget: str = "quick", **params: Any) -> Executor:
    """An instance of the executor ``name``."""
    return _get("executor", name, budget, params)


def run(
    *,
    all: bool = False,
    methods: Sequence[str] | None = None,
    samplers: Sequence[str] | None = None,
    architectures: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    seeds: Sequence[int] | str = (0,),
    budget: str = "quick",
    device: str = "auto",
    timeout: float | None = None,
    overrides: Mapping[str, Any] | None = None,
    executor: str = "local",
    executor_params: Mapping[str, Any] | None = None,
    results: str | os.PathLike[str] = DEFAULT_RESULTS,
    retry_failed: bool = False,
    progress: bool = False,
    tune: int = 0,
    train_flops: float | None = None,
    lr_schedule: str = PROTOCOL_DEFAULTS["lr_schedule"],
    checkpoint: str = PROTOCOL_DEFAULTS["checkpoint"],
    sampler_board: bool = False,
    checkpoints: bool = True,
    tune_draw: int = 0,
    weight_average: str = PROTOCOL_DEFAULTS["weight_average"],
) -> pd.DataFrame:
    """Train and evaluate every compatible combination of the selection.

    Each of ``methods``, ``samplers``, ``architectures``, ``datasets`` and ``metrics`` is a
    list of plugin names, or one name as a string (``"dsm"``; ``"dsm,nce"`` is two, as on
    the command line); ``None`` means all registered ones. ``all=True`` says so for every
    kind not named, as ``--all`` does. ``seeds`` is a list of distinct integers ≥ 0 (or a
    string such as ``"0-4"``); a bare integer is refused, since ``seeds=5`` could mean seed
    5 or five seeds. ``overrides`` maps ``"kind.name.param"`` to a value, as ``--set``
    does. Every value is checked before any run starts: a bad one is a
    :class:`~ebmbench.UserError` naming it. Results are written to the SQLite store at
    ``results`` as each run ends; finished runs already in the store are not run again.

    ``tune=N`` first runs N tuning trials per study (same N and compute for every method,
    scored on the validation split; see :mod:`ebmbench.tuning`), then the seeds with each
    study's chosen values. ``tune_draw=d`` (d > 0) repeats that tuning with other draws:
    its own TPE seeds and trial seeds, none of the runs' (as AlgoPerf repeats its tuning
    studies), to measure how much a choice owes to chance; give each draw its own
    ``results`` store. ``train_flops`` replaces the budget's training compute.
    ``lr_schedule`` (``constant``, ``linear`` or ``cosine``; :func:`ebmbench.lr_factor`)
    decays every optimiser's learning rate to zero over each run's and trial's progress; a
    decayed run is labelled with it (``dsm (lr_schedule=cosine)``) and ranked apart;
    ``tuned`` (with ``tune``) makes each study search ``constant`` or ``cosine`` with its
    method's hyper-parameters, and its runs train under the one it chose.
    ``checkpoint`` is the model each run reports (:mod:`ebmbench.early_stopping`):
    ``best``, its best learning-curve point on the validation split, or ``last``; a
    ``last`` run is labelled with it and ranked apart. ``weight_average`` is what each run's
    model, and every point of its learning curve, is (:mod:`ebmbench.averaging`):
    ``"best"`` (the default) takes, at each curve point, whichever of the iterate and the
    power-function EMA of the training's iterates validates better; ``"ema"`` always the
    average, ``"none"`` always the iterate. Runs that differ in it are labelled with it
    (``dsm (weight_average=none)``) and ranked apart; a board whose models all share it
    states it once instead.

    Every trained model is kept in ``checkpoints/`` beside the store, for
    :func:`ebmbench.load_model`, unless ``checkpoints=False``.

    ``sampler_board=True`` then also runs the sampler board (the selected samplers on the
    selected toy densities' true density and reference energy, at equal gradient budgets;
    see :mod:`ebmbench.sampler_board`), as ``ebmbench run`` does unless
    ``--no-sampler-board``. Its rows go to the same store with ``role = "sampler"``; read
    them with :func:`load_results`.

    Returns:
        One row per run of the selection (including earlier, resumed ones).
    """
    from .sweep import Selection, run_sweep

    if not isinstance(all, bool):
        raise UserError(f"bad all {shown(all)}: give True or False")
    if not isinstance(results, (str, os.PathLike)):
        raise UserError(f"bad results {shown(results)}: give the path of the results store")
    if not isinstance(progress, bool):
        raise UserError(f"bad progress {shown(progress)}: give True or False")
    if executor_params is not None and not isinstance(executor_params, Mapping):
        raise UserError(f"bad executor_params {shown(executor_params)}: give a dict")
    if train_flops is not None and (
        isinstance(train_flops, bool) or not isinstance(train_flops, (int, float))
        or not math.isfinite(train_flops) or train_flops <= 0
    ):
        raise UserError(f"bad train_flops {shown(train_flops)}: give a finite number > 0, or None")
    check_lr_schedule(lr_schedule, tuned=True)
    check_rule(checkpoint)
    check_weight_average(weight_average)
    selection = Selection(
        methods=name_list("method", methods),
        samplers=name_list("sampler", samplers),
        architectures=name_list("architecture", architectures),
        datasets=name_list("dataset", datasets),
        metrics=name_list("metric", metrics),
        seeds=check_seeds(seeds),
        budget=budget,
        overrides=check_overrides(overrides),
        train_flops=train_flops,
        lr_schedule=lr_schedule,
        checkpoint=checkpoint,
        weight_average=weight_average,
    )
    timeout = check_timeout(timeout)
    report = run_sweep(
        selection,
        results=Path(results),
        device=device,
        timeout=timeout,
        executor=executor,
        executor_params=dict(executor_params or {}),
        retry_failed=retry_failed,
        progress=progress,
        tune=tune,
        sampler_board=sampler_board,
        checkpoints=checkpoints,
        tune_draw=tune_draw,
    )
    return report.frame


def load_results(path: str | os.PathLike[str] = DEFAULT_RESULTS) -> pd.DataFrame:
    """Every run in a results store (``.sqlite``) or an export (``.csv``, ``.json``,
    ``.parquet``, such as the published ``leaderboards/results.csv``) as a DataFrame, one
    column per metric (``metric.<name>``); nested columns are decoded, so every source gives
    the same frame."""
    from .store import read_results

    if not isinstance(path, (str, os.PathLike)):
        raise UserError(f"bad path {shown(path)}: give the path of a results store or export")
    return read_results(Path(path))
