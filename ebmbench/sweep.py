"""A sweep: expand the selection, skip what is stored, run the rest, write as runs end.

The driver process is the only writer of the store; executors only stream rows back. A
sweep started again with the same selection finds every finished run in the store and
does none of it again (``retry_failed`` re-runs ``failed`` and ``timeout`` rows).

Nothing computed is lost: a busy store is waited for (:mod:`ebmbench.store`); a row the
store cannot take (a full disk) goes to the pending-rows journal beside it
(:mod:`ebmbench.journal`) and the sweep stops cleanly; the next sweep merges the journal
first. Overlapping sweeps on one store claim each task before running it
(:mod:`ebmbench.leases`), so they split the runs instead of repeating them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from .device import resolve_device
from .errors import EnvironmentFailure, UserError, shown
from .grid import RunSpec, Selection, Task, check_overrides_reach, expand, group_tasks
from .inputs import check_timeout
from .journal import PendingRows
from .leases import Claimant, ClaimingTasks, Heartbeat, Leases
from .plugins import get_plugin_manager
from .progress import SweepProgress, live_progress
from .runner import ENVIRONMENT_FAILURE, STATUSES, execute_task, validation_reference_nll
from .schedules import LR_SCHEDULES, TUNED_LR_SCHEDULE
from .store import ResultStore, notice

__all__ = ["run_sweep", "SweepReport", "RETRYABLE", "default_leaderboard_dir",
           "render_leaderboards", "RENDERED_FILE"]

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
    #: Runs of the selection that an overlapping sweep ran and stored meanwhile.
    by_others: int = 0
    #: Rows merged from the pending-rows journal when the sweep started.
    merged: int = 0
    #: Tuning trials of the selection's studies now in the store (0 without ``tune``).
    trials: int = 0
    #: The sampler board's rows and counts (None when it did not run; see
    #: :mod:`ebmbench.sampler_board`).
    sampler_board: Any = None
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
    notify: Callable[[str], None] = notice,
    tune: int = 0,
    sampler_board: bool = False,
    checkpoints: bool = True,
    tune_draw: int = 0,
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
        progress: Show progress on stderr when it is a terminal (or a notebook): runs
            done, the tasks running now, an ETA, and each failure as it happens.
        on_row: Called with every row as it is written.
        notify: Told, in one line each, what the sweep waits for and what it merged
            (default: printed on stderr).
        tune: Tuning trials per study before the runs (0: none; see :mod:`ebmbench.tuning`).
        tune_draw: Which independent repetition of the tuning to run (0, the default, is
            the published one; see :func:`ebmbench.tuning.plan_studies`).
        sampler_board: After the runs, run the sampler board of the selected samplers on
            the selected toy densities (see :mod:`ebmbench.sampler_board`).
        checkpoints: Keep every trained model in ``checkpoints/`` beside the store (for
            re-evaluation and :func:`ebmbench.load_model`).

    Raises:
        UserError: A bad selection or value, before any run starts and before the store
            is touched.
        EnvironmentFailure: The store could not take a computed row (a full disk): the
            sweep stopped; the row is in the pending-rows journal when the journal could
            take it, and the same command resumes.
    """
    timeout = check_timeout(timeout)
    if isinstance(tune, bool) or not isinstance(tune, int) or tune < 0:
        raise UserError(f"bad tune {shown(tune)}: give the number of trials, an integer >= 0")
    if isinstance(tune_draw, bool) or not isinstance(tune_draw, int) or tune_draw < 0:
        raise UserError(f"bad tune_draw {shown(tune_draw)}: give the tuning draw, an integer >= 0")
    if tune_draw and not tune:
        raise UserError(f"tune_draw {tune_draw} repeats the tuning with other draws: give the "
                        "number of trials too (--tune N)")
    if selection.lr_schedule == TUNED_LR_SCHEDULE and not tune:
        raise UserError(f"lr_schedule {TUNED_LR_SCHEDULE!r} is chosen by each tuning study: give "
                        "the number of trials too (--tune N), or a schedule: "
                        + ", ".join(LR_SCHEDULES))
    if not isinstance(retry_failed, bool):
        raise UserError(f"bad retry_failed {shown(retry_failed)}: give True or False")
    if not isinstance(device, str):
        raise UserError(f"bad device {shown(device)}: give 'auto', 'cpu' or 'cuda'")
    resolve_device(device)  # fail early on a bad device, before any work
    pm = get_plugin_manager()
    specs, metrics = expand(selection, pm)
    if not isinstance(executor, str):
        raise UserError(f"bad executor {shown(executor)}: give an executor's name")
    executor_cls = pm.info("executor", executor).cls
    check_overrides_reach(pm, selection.overrides, "executor", [executor])
    given = {
        key.split(".", 2)[2]: value for key, value in selection.overrides.items()
        if key.startswith((f"executor.{executor}.", "executor.*."))
    }
    for name, value in (executor_params or {}).items():
        if name in given and given[name] != value:
            raise UserError(
                f"executor {executor!r} parameter {name!r} is given twice, {shown(given[name])} by "
                f"--set and {shown(value)} by an option (--workers, --address): give it once"
            )
        given[name] = value
    executor_obj = executor_cls(budget=selection.budget, **given)
    # Workers may run elsewhere (another process, a cluster node): give them an absolute path.
    results = Path(results).resolve()
    plugins_dirs = [str(Path(p).resolve()) for p in pm._plugins_dirs]
    counts: Counter[str] = Counter()
    journal = PendingRows(results)
    claimant = Claimant.here()
    with ResultStore.open(results, on_wait=notify) as store:
        merged = journal.merge_into(store.write_many)
        if merged:
            notify(f"added {merged} computed run(s) from {journal.path.name} to the store")
        trials = 0
        if tune:
            def make_task(group: list[RunSpec], task_metrics: dict[str, Any], **extra: Any) -> Task:
                # Trials keep no model file: only their rows matter, and there are many.
                return replace(_task(group, task_metrics, device, timeout, results, plugins_dirs,
                                     False), **extra)

            _check_one_draw(store, tune_draw)
            journal.reserve()
            specs, trials = _tune(specs, tune, selection, store, executor_obj, metrics, make_task,
                                  progress, on_row,
                                  lambda row: _commit(store, journal, row, False, None),
                                  tune_draw)
        done = store.finished_ids()
        if retry_failed:
            done -= store.finished_ids(RETRYABLE)
        # Combinations that can never run are counted, not stored as runs (a skip for
        # missing data is decided by the run itself and stays a row).
        not_applicable = sorted({(s.dataset, s.method, s.sampler, s.architecture, s.skip_reason or "")
                                 for s in specs if s.skip_reason})
        if not_applicable:
            store.record_not_applicable(not_applicable)
        na_counts = Counter((dataset, reason) for dataset, *_, reason in not_applicable)
        applicable = [s for s in specs if not s.skip_reason]
        run_ids = [s.run_id for s in applicable]  # a hash each: computed once
        if tune:  # runs found again keep their results, with today's tuning record
            store.update_tuning_records({r: s.tuning for s, r in zip(applicable, run_ids, strict=True)
                                         if s.tuning and r in done})
        resumed = sum(r in done for r in run_ids)
        runnable = [s for s, r in zip(applicable, run_ids, strict=True) if r not in done]
        leases = Leases(store, claimant, redo=RETRYABLE if retry_failed else ())
        heartbeat = Heartbeat(results, claimant)
        if runnable:
            journal.reserve()  # room for a row the store cannot take, should the disk fill
            heartbeat.start()
        by_others = 0
        ran = 0
        def make(group: list[RunSpec]) -> Task:
            return _task(group, metrics, device, timeout, results, plugins_dirs, checkpoints)

        try:
            groups = group_tasks(runnable)
            state = SweepProgress([make(g) for g in groups], executor_obj.concurrency())
            with _progress(progress and bool(groups), state) as show:
                while groups:
                    tasks = ClaimingTasks(groups, make, leases)
                    # closing(): a sweep that stops (a full disk, Ctrl-C) stops its workers now.
                    with _closing(executor_obj.map(execute_task, tasks)) as rows:
                        for row in rows:
                            _commit(store, journal, row, retry_failed, claimant.id)
                            ran += 1
                            counts[row["status"]] += 1
                            if on_row:
                                on_row(row)
                            if show:
                                show(row)
                    by_others += tasks.stored
                    # Runs another sweep holds: wait until it stores them, or take them
                    # over when it stops renewing its claim.
                    free, stored = leases.wait_for_others(tasks.deferred, notify)
                    by_others += stored
                    groups = group_tasks(free)
        finally:
            if runnable:
                heartbeat.stop()
            with contextlib.suppress(UserError, EnvironmentFailure):
                leases.release()
            journal.discard_if_empty()
        frame = store.to_frame({s.run_id for s in specs})
        board = None
        if sampler_board:  # after the runs: the reference energies' checkpoints exist then
            from .sampler_board import run_board

            board = run_board(selection, store=store, executor=executor_obj, device=device,
                              timeout=timeout, results=results, plugins_dirs=plugins_dirs,
                              retry_statuses=RETRYABLE if retry_failed else (),
                              progress=progress, on_row=on_row,
                              commit=lambda row, replace: _commit(store, journal, row, replace,
                                                                  None),
                              checkpoints=checkpoints)
    all_counts = Counter(frame["status"]) if len(frame) else Counter()
    for status in STATUSES:
        all_counts.setdefault(status, 0)
    by_dataset: dict[str, dict[str, int]] = defaultdict(dict)
    for (dataset, reason), n in sorted(na_counts.items()):
        by_dataset[dataset][reason] = n
    frame.attrs["not_applicable"] = dict(by_dataset)
    return SweepReport(frame, all_counts, ran=ran, resumed=resumed, results=results,
                       by_others=by_others, merged=merged, trials=trials, sampler_board=board,
                       not_applicable=na_counts)


def _fixed_params(selection: Selection) -> set[tuple[str, str]]:
    """(method or ``*``, parameter) pairs the user set with ``--set``: never searched."""
    return {(key.split(".")[1], key.split(".")[2]) for key in selection.overrides
            if key.startswith("method.")}


def _tune(
    specs: list[RunSpec], n_trials: int, selection: Selection, store: ResultStore,
    executor_obj: Any, metrics: dict[str, Any], make_task: Callable[..., Task],
    progress: bool, on_row: Callable[[dict[str, Any]], None] | None,
    commit: Callable[[dict[str, Any]], None], draw: int = 0,
) -> tuple[list[RunSpec], int]:
    """Run ``n_trials`` waves of tuning trials into ``store``; return the specs with each
    study's chosen values (and its record), and the number of trials stored."""
    from .tuning import (
        CONFIRMED_TRIALS,
        choose,
        confirmation_candidates,
        is_replicate,
        next_trial_params,
        plan_studies,
        pruning_history,
        replicate_seed,
        searched_values,
        trial_spec,
        tuned_spec,
    )

    pm = get_plugin_manager()
    studies = plan_studies(specs, pm, _fixed_params(selection), draw)
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

    def run_wave(tasks: list[Task]) -> None:
        with _closing(executor_obj.map(execute_task, tasks)) as rows:
            for row in rows:
                commit(row)
                if on_row:
                    on_row(row)
                if live:
                    live.update(job, advance=1, description=f"tuning {_label(row)}")

    def sample_task(spec: RunSpec, study: Any) -> Task:
        return (make_task([spec], {}, sample=False) if study.from_curve
                else make_task([spec], providers[study.objective]))

    drawn = {"draw": draw} if draw else {}
    confirmations = CONFIRMED_TRIALS if n_trials >= 2 else 0
    total = (n_trials + confirmations) * len(studies)
    bar = _bar(progress, total)
    with bar as live:
        job = live.add_task("tuning", total=total) if live else None
        for number in range(n_trials):
            by_study = stored()
            tasks = []
            for study in studies.values():
                rows = [r for r in by_study[study.key] if not is_replicate(r)]
                if any(r["trial"] == number for r in rows):
                    if live:
                        live.update(job, advance=1)
                    continue
                earlier = [r for r in rows if r["trial"] < number]
                spec = trial_spec(study, number, next_trial_params(study, earlier, number), pm)
                spec.tuning = {"study": study.key, "trial": number, "objective": study.objective,
                               **drawn}
                if study.from_curve:
                    tasks.append(make_task([spec], {}, sample=False, pruning={
                        "objective": study.objective, "history": pruning_history(study, earlier),
                        "trial": number}))
                else:
                    tasks.append(sample_task(spec, study))
            run_wave(tasks)
        # The last wave: the best sound trials trained again on another seed (never
        # pruned: a replicate is judged on its whole run, see ebmbench.tuning).
        by_study = stored()
        tasks = []
        references: dict[str, tuple[float | None, float | None]] = {}
        for key, study in studies.items():
            rows = [r for r in by_study[key] if r["trial"] < n_trials]
            references[key] = (_reference_nll(study, rows),
                               _reference_nll(study, rows, replicate_seed(study)))
            replicated = {r["trial"] for r in rows if is_replicate(r)}
            pending = [r for r in confirmation_candidates(study, rows, references[key][0])
                       if r["trial"] not in replicated]
            if live:
                live.update(job, advance=confirmations - len(pending))
            for row in pending:
                spec = replace(trial_spec(study, row["trial"], searched_values(study, row), pm),
                               replicate=1,
                               seed=replicate_seed(study))
                spec.tuning = {"study": key, "trial": row["trial"], "replicate": 1, **drawn,
                               "objective": study.objective}
                tasks.append(sample_task(spec, study))
        run_wave(tasks)
    by_study = stored()
    records = {}
    for key, study in studies.items():
        rows = [r for r in by_study[key] if r["trial"] < n_trials]
        chosen, record = choose(study, rows, *references[key])
        records[key] = chosen, ({**record, "draw": draw} if draw else record)
    study_of = {id(spec): key for key, study in studies.items() for spec in study.specs}
    tuned = []
    for spec in specs:
        key = study_of.get(id(spec))
        if key is None:
            tuned.append(spec)
            continue
        tuned.append(tuned_spec(spec, *records[key]))
    return tuned, sum(len(v) for k, v in by_study.items() if k in studies)


def _check_one_draw(store: ResultStore, draw: int) -> None:
    """Refuse a second tuning draw in a store: a tuned run found again takes the record of
    the sweep that finds it, so a second draw would overwrite the first's records."""
    other = store.tuning_draws() - {draw}
    if other:
        raise UserError(
            f"the results store holds tuning draw {min(other)}, and this is draw {draw}: give "
            "each draw its own store (--results), then compare them with "
            "scripts/tuning_draws.py")


def _reference_nll(study: Any, rows: list[dict[str, Any]], seed: int | None = None,
                   ) -> float | None:
    """The validation Gaussian's NLL for the degenerate test of ``study``'s trials (or of
    its replicates, on their ``seed``), when some trial's curve has a validation NLL to
    judge (2-D toys; building the data again is cheap there); else None."""
    from .tuning import validation_nll

    if not any(validation_nll(r) is not None for r in rows):
        return None
    return validation_reference_nll(replace(study.base, seed=study.seed if seed is None else seed))


@contextlib.contextmanager
def _closing(rows: Any) -> Any:
    """``rows``, closed on the way out when it can be (a generator's ``finally`` runs)."""
    try:
        yield rows
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()


def _commit(store: ResultStore, journal: PendingRows, row: dict[str, Any], replace: bool,
            claimant: str | None) -> None:
    """Commit ``row``; when the store cannot take it, keep it in the journal and stop."""
    if row.get(ENVIRONMENT_FAILURE):
        raise EnvironmentFailure(
            f"run {row['method']}/{row['sampler']}/{row['architecture']}/{row['dataset']} seed "
            f"{row['seed']} could not write its files beside the store: "
            f"{row[ENVIRONMENT_FAILURE]}. Everything committed is intact; free some space, "
            "then run the same command again"
        )
    try:
        store.write(row, replace=replace, claimant=claimant)
    except (UserError, EnvironmentFailure) as exc:
        try:
            journal.append(row, replace=replace)
        except OSError as journal_exc:
            kept = (f"this run's result could not be kept in {journal.path.name} either "
                    f"({journal_exc.strerror or journal_exc}), so it runs again on resume")
        else:
            kept = (f"this run's result is kept in {journal.path.name}, added by the next run "
                    "on this store")
        problem = getattr(exc, "problem", str(exc))
        advice = getattr(exc, "advice", "Then run the same command again")
        raise type(exc)(f"{problem}. The sweep stopped: every run committed before is intact "
                        f"and {kept}. {advice}") from None


def _task(
    specs: list[RunSpec], metrics: dict[str, Any], device: str, timeout: float | None,
    results: Path, plugins_dirs: list[str], checkpoints: bool,
) -> Task:
    return Task(
        specs=specs, metrics=metrics, device=device, timeout=timeout,
        results_dir=str(results.parent), plugins_dirs=plugins_dirs, checkpoints=checkpoints,
    )


def _label(row: dict[str, Any]) -> str:
    return f"{row['dataset']}/{row['method']}/{row['sampler']} {row['status']}"


def _bar(enabled: bool, total: int) -> Any:
    """A plain rich progress bar with an ETA on stderr (tuning waves, the sampler board)."""
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


def _progress(enabled: bool, state: SweepProgress) -> Any:
    """The live display of ``state`` when asked for and stderr is a terminal or a notebook."""
    if not enabled:
        return nullcontext(None)
    from rich.console import Console

    console = Console(stderr=True)
    if not (console.is_terminal or console.is_jupyter):
        return nullcontext(None)
    return live_progress(state, console)


# --------------------------------------------------------------------------- leaderboards

#: Written beside rendered pages: what they were rendered from, to skip an unchanged render.
RENDERED_FILE = ".rendered.json"


def default_leaderboard_dir(results: str | Path) -> Path:
    """Where ``ebmbench run`` writes the leaderboard of the store ``results``: a folder
    beside it named after it, so that two stores in one folder keep their own pages.

    >>> default_leaderboard_dir("ebmbench-results/results.sqlite").as_posix()
    'ebmbench-results/results-leaderboards'
    """
    results = Path(results)
    return results.parent / f"{results.stem}-leaderboards"


def _fingerprint(results: Path, out: Path) -> str:
    """A digest of what the pages of ``out`` depend on: every stored row's id, status and
    finish time (a re-run row gets a new one), the rendering code and where links point."""
    from . import leaderboard

    digest = hashlib.sha256()
    with ResultStore.open_existing(results) as store:
        for item in store.fingerprint_rows():
            digest.update(repr(item).encode())
    code = Path(leaderboard.__file__).parent
    for source in sorted(code.glob("*.py")):
        stat = source.stat()
        digest.update(f"{source.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    from . import __version__

    digest.update(f"{__version__}|{results.resolve()}|{out.resolve()}".encode())
    return digest.hexdigest()


def render_leaderboards(results: Path, out: Path, *, force: bool = False) -> list[Path] | None:
    """Write the leaderboard of ``results`` into ``out`` unless it is already there.

    The pages are rendered again only when a row was added or replaced, the rendering
    code changed, or a page is missing; a resumed sweep with nothing to do renders
    nothing (rendering every dataset's page and figures takes seconds).

    Returns:
        The pages written, or None when the existing ones were up to date.
    """
    from .leaderboard import write_leaderboards

    stamp = out / RENDERED_FILE
    fingerprint = _fingerprint(results, out)
    if not force and stamp.is_file():
        try:
            previous = json.loads(stamp.read_text(encoding="utf-8"))
        except ValueError:
            previous = {}
        files = previous.get("files", [])
        if previous.get("fingerprint") == fingerprint and files and all(
            (out / name).is_file() for name in files
        ):
            return None
    written = write_leaderboards(results, out)
    stamp.write_text(json.dumps({"fingerprint": fingerprint,
                                 "files": [p.name for p in written]}, indent=1),
                     encoding="utf-8")
    return written
