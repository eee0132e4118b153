"""A sweep: expand the selection, skip what is stored, run the rest, write as runs end.

The driver process is the only writer of the store; executors only stream rows back. A
sweep started again with the same selection finds every finished run in the store and
does none of it again (``retry_failed`` re-runs ``failed`` and ``timeout`` rows).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from .device import resolve_device
from .errors import UserError
from .grid import RunSpec, Selection, Task, expand, group_tasks
from .plugins import get_plugin_manager
from .runner import STATUSES, execute_task
from .store import ResultStore

__all__ = ["run_sweep", "SweepReport", "RETRYABLE"]

#: Statuses re-run by ``--retry-failed``.
RETRYABLE = ("failed", "timeout")


@dataclass
class SweepReport:
    """What a sweep did: the selection's rows and counts by status."""

    frame: pd.DataFrame
    counts: Counter[str] = field(default_factory=Counter)
    ran: int = 0
    resumed: int = 0
    results: Path = Path()
    #: Tuning trials of the selection's studies now in the store (0 without ``tune``).
    trials: int = 0
    #: (dataset, reason) → combinations of the selection that can never run (an
    #: incompatibility a plugin declares). They are not runs: the store keeps them apart
    #: (``ResultStore.not_applicable``) and leaderboards count them in each page's header.
    not_applicable: Counter[tuple[str, str]] = field(default_factory=Counter)


def run_sweep(
    selection: Selection,
    *,
    results: Path,
    device: str = "auto",
    timeout: float | None = None,
    executor: str = "local",
    executor_params: dict[str, Any] | None = None,
    retry_failed: bool = False,
    progress: bool = False,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    tune: int = 0,
) -> SweepReport:
    """Run ``selection`` into the store at ``results`` and report.

    Args:
        selection: What to run.
        results: The SQLite store (created if missing).
        device: ``auto``, ``cpu`` or ``cuda``.
        timeout: Seconds allowed per run (training and each sampling), or None.
        executor: Name of the executor plugin.
        executor_params: Its hyper-parameters.
        retry_failed: Run ``failed`` and ``timeout`` runs again.
        progress: Show a progress bar with an ETA on stderr.
        on_row: Called with every row as it is written.
        tune: Tuning trials per study before the runs (0: none; see :mod:`ebmbench.tuning`).
    """
    if timeout is not None and timeout <= 0:
        raise UserError(f"--timeout must be positive, got {timeout}")
    resolve_device(device)  # fail early on a bad device, before any work
    pm = get_plugin_manager()
    specs, metrics = expand(selection, pm)
    executor_cls = pm.info("executor", executor).cls
    given = {
        key.split(".", 2)[2]: value for key, value in selection.overrides.items()
        if key.startswith((f"executor.{executor}.", "executor.*."))
        and key.split(".", 2)[2] in executor_cls.params
    }
    given.update(executor_params or {})
    executor_obj = executor_cls(budget=selection.budget, **given)
    # Workers may run elsewhere (another process, a cluster node): give them an absolute path.
    results = Path(results).resolve()
    plugins_dirs = [str(Path(p).resolve()) for p in pm._plugins_dirs]
    counts: Counter[str] = Counter()

    def make_task(group: list[RunSpec], task_metrics: dict[str, Any], **extra: Any) -> Task:
        return replace(_task(group, task_metrics, device, timeout, results, plugins_dirs), **extra)

    trials = 0
    with ResultStore.open(results) as store:
        if tune:
            specs, trials = _tune(specs, tune, selection, store, executor_obj, metrics, make_task,
                                  progress, on_row)
        done = store.finished_ids()
        if retry_failed:
            done -= store.finished_ids(RETRYABLE)
        # Combinations that can never run are counted, not stored as runs (a skip for
        # missing data is decided by the run itself and stays a row).
        not_applicable = sorted({(s.dataset, s.method, s.sampler, s.architecture, s.skip_reason or "")
                                 for s in specs if s.skip_reason})
        store.record_not_applicable(not_applicable)
        na_counts = Counter((dataset, reason) for dataset, *_, reason in not_applicable)
        applicable = [s for s in specs if not s.skip_reason]
        resumed = sum(s.run_id in done for s in applicable)
        runnable = [s for s in applicable if s.run_id not in done]
        tasks = [
            _task(group, metrics, device, timeout, results, plugins_dirs)
            for group in group_tasks(runnable)
        ]
        bar = _progress(progress, len(runnable))
        with bar as live:
            job = live.add_task("runs", total=len(runnable)) if live else None
            for row in executor_obj.map(execute_task, tasks):
                store.write(row, replace=retry_failed)
                counts[row["status"]] += 1
                if on_row:
                    on_row(row)
                if live:
                    live.update(job, advance=1, description=_label(row))
        frame = store.to_frame({s.run_id for s in specs})
    all_counts = Counter(frame["status"]) if len(frame) else Counter()
    for status in STATUSES:
        all_counts.setdefault(status, 0)
    by_dataset: dict[str, dict[str, int]] = defaultdict(dict)
    for (dataset, reason), n in sorted(na_counts.items()):
        by_dataset[dataset][reason] = n
    frame.attrs["not_applicable"] = dict(by_dataset)
    return SweepReport(frame, all_counts, ran=len(runnable), resumed=resumed, results=results,
                       trials=trials, not_applicable=na_counts)


def _fixed_params(selection: Selection) -> set[tuple[str, str]]:
    """(method or ``*``, parameter) pairs the user set with ``--set``: never searched."""
    return {(key.split(".")[1], key.split(".")[2]) for key in selection.overrides
            if key.startswith("method.")}


def _tune(
    specs: list[RunSpec], n_trials: int, selection: Selection, store: ResultStore,
    executor_obj: Any, metrics: dict[str, Any], make_task: Callable[..., Task],
    progress: bool, on_row: Callable[[dict[str, Any]], None] | None,
) -> tuple[list[RunSpec], int]:
    """Run ``n_trials`` waves of tuning trials into ``store``; return the specs with each
    study's chosen values (and its record), and the number of trials stored."""
    from .tuning import choose, next_trial_params, plan_studies, pruning_history, trial_spec

    pm = get_plugin_manager()
    studies = plan_studies(specs, pm, _fixed_params(selection))
    providers: dict[str, dict[str, Any]] = {}
    for study in studies.values():
        if study.from_curve or study.objective in providers:
            continue
        providers[study.objective] = {
            n: p for n, p in metrics.items()
            if study.objective in pm.info("metric", n).cls.higher_is_better
        }
        if not providers[study.objective]:
            raise UserError(
                f"tuning {study.label} minimises {study.objective!r}, which no selected metric "
                f"reports: add the metric that does (see `ebmbench list metric -v`)"
            )

    def stored() -> dict[str, list[dict[str, Any]]]:
        by_study: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in store.trial_rows():
            by_study[(row["hyperparams"].get("tuning") or {}).get("study")].append(row)
        return by_study

    bar = _progress(progress, n_trials * len(studies))
    with bar as live:
        job = live.add_task("tuning", total=n_trials * len(studies)) if live else None
        for number in range(n_trials):
            by_study = stored()
            tasks = []
            for study in studies.values():
                rows = by_study[study.key]
                if any(r["trial"] == number for r in rows):
                    if live:
                        live.update(job, advance=1)
                    continue
                earlier = [r for r in rows if r["trial"] < number]
                spec = trial_spec(study, number, next_trial_params(study, earlier, number), pm)
                spec.tuning = {"study": study.key, "trial": number, "objective": study.objective}
                if study.from_curve:
                    tasks.append(make_task([spec], {}, sample=False, pruning={
                        "objective": study.objective, "history": pruning_history(study, earlier)}))
                else:
                    tasks.append(make_task([spec], providers[study.objective]))
            for row in executor_obj.map(execute_task, tasks):
                store.write(row)
                if on_row:
                    on_row(row)
                if live:
                    live.update(job, advance=1, description=f"tuning {_label(row)}")
    by_study = stored()
    records = {key: choose(study, [r for r in by_study[key] if r["trial"] < n_trials])
               for key, study in studies.items()}
    study_of = {id(spec): key for key, study in studies.items() for spec in study.specs}
    tuned = []
    for spec in specs:
        key = study_of.get(id(spec))
        if key is None:
            tuned.append(spec)
            continue
        chosen, record = records[key]
        params = {k: dict(v) for k, v in spec.params.items()}
        params["method"].update(chosen)
        tuned.append(replace(spec, params=params, tuning=record))
    return tuned, sum(len(v) for k, v in by_study.items() if k in studies)


def _task(
    specs: list[RunSpec], metrics: dict[str, Any], device: str, timeout: float | None,
    results: Path, plugins_dirs: list[str],
) -> Task:
    return Task(
        specs=specs, metrics=metrics, device=device, timeout=timeout,
        results_dir=str(results.parent), plugins_dirs=plugins_dirs,
    )


def _label(row: dict[str, Any]) -> str:
    return f"{row['dataset']}/{row['method']}/{row['sampler']} {row['status']}"


def _progress(enabled: bool, total: int) -> Any:
    if not enabled or total == 0:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description:<48}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
