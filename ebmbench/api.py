"""The Python API: look plugins up, run a selection, load results.

Trained models (``train``, ``load_model``) are in :mod:`ebmbench.model`. This module imports
torch and pandas only inside the functions that need them, so that the command line can
read :data:`DEFAULT_RESULTS` without them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from .base import Architecture, Dataset, Executor, Method, Metric, Sampler


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
    return get_plugin_manager().registry(kind).names()


def _get(kind: str, name: str, budget: str, params: dict[str, Any]) -> Any:
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
    seeds: Sequence[int] = (0,),
    budget: str = "quick",
    device: str = "auto",
    timeout: float | None = None,
    overrides: Mapping[str, Any] | None = None,
    executor: str = "local",
    executor_params: Mapping[str, Any] | None = None,
    results: str | os.PathLike[str] = DEFAULT_RESULTS,
    retry_failed: bool = False,
    progress: bool = False,
    checkpoints: bool = True,
) -> pd.DataFrame:
    """Train and evaluate every compatible combination of the selection.

    Each of ``methods``, ``samplers``, ``architectures`` and ``datasets`` is a list of
    plugin names; ``None`` means all registered ones (``all=True`` says so explicitly).
    ``overrides`` maps ``"kind.name.param"`` to a value, as ``--set`` does. Results are
    written to the SQLite store at ``results`` as each run ends; finished runs already in
    the store are not run again. Every trained model is kept in ``checkpoints/`` beside the
    store, for :func:`ebmbench.load_model`, unless ``checkpoints=False``.

    Returns:
        One row per run of the selection (including earlier, resumed ones).
    """
    from .sweep import Selection, run_sweep

    selection = Selection(
        methods=None if all else methods,
        samplers=None if all else samplers,
        architectures=None if all else architectures,
        datasets=None if all else datasets,
        metrics=metrics,
        seeds=tuple(seeds),
        budget=budget,
        overrides=dict(overrides or {}),
    )
    report = run_sweep(
        selection,
        results=Path(results),
        device=device,
        timeout=timeout,
        executor=executor,
        executor_params=dict(executor_params or {}),
        retry_failed=retry_failed,
        progress=progress,
        checkpoints=checkpoints,
    )
    return report.frame


def load_results(path: str | os.PathLike[str] = DEFAULT_RESULTS) -> pd.DataFrame:
    """Every run in a results store (``.sqlite``) or an export (``.csv``, ``.json``,
    ``.parquet``, such as the published ``leaderboards/results.csv``) as a DataFrame, one
    column per metric (``metric.<name>``); nested columns are decoded, so every source gives
    the same frame."""
    from .store import read_results

    return read_results(Path(path))
