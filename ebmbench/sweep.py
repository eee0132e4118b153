"""A sweep: expand the selection, skip what is stored, run the rest, write as runs end.

The driver process is the only writer of the store; executors only stream rows back. A
sweep started again with the same selection finds every finished run in the store and
does none of it again (``retry_failed`` re-runs ``failed`` and ``timeout`` rows).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .device import resolve_device
from .errors import UserError
from .grid import RunSpec, Selection, Task, expand, group_tasks
from .plugins import get_plugin_manager
from .progress import SweepProgress, live_progress
from .runner import STATUSES, _base_row, _finish, execute_task
from .store import ResultStore

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
    checkpoints: bool = True,
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
        checkpoints: Keep every trained model in ``checkpoints/`` beside the store (for
            re-evaluation and :func:`ebmbench.load_model`).
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
    with ResultStore.open(results) as store:
        done = store.finished_ids()
        if retry_failed:
            done -= store.finished_ids(RETRYABLE)
        run_ids = [s.run_id for s in specs]  # a hash each: computed once
        resumed = sum(r in done for r in run_ids)
        todo = [s for s, r in zip(specs, run_ids, strict=True) if r not in done]
        skipped = [s for s in todo if s.skip_reason]
        runnable = [s for s in todo if not s.skip_reason]
        for spec in skipped:
            task = _task([spec], metrics, device, timeout, results, plugins_dirs, checkpoints)
            store.write(_finish(_base_row(spec, task, device), "skipped", spec.skip_reason or ""),
                        replace=retry_failed)
            counts["skipped"] += 1
        tasks = [
            _task(group, metrics, device, timeout, results, plugins_dirs, checkpoints)
            for group in group_tasks(runnable)
        ]
        state = SweepProgress(tasks, executor_obj.concurrency())
        with _progress(progress and bool(tasks), state) as show:
            for row in executor_obj.map(execute_task, tasks):
                store.write(row, replace=retry_failed)
                counts[row["status"]] += 1
                if on_row:
                    on_row(row)
                if show:
                    show(row)
        frame = store.to_frame(set(run_ids))
    all_counts = Counter(frame["status"]) if len(frame) else Counter()
    for status in STATUSES:
        all_counts.setdefault(status, 0)
    return SweepReport(frame, all_counts, ran=len(runnable), resumed=resumed, results=results)


def _task(
    specs: list[RunSpec], metrics: dict[str, Any], device: str, timeout: float | None,
    results: Path, plugins_dirs: list[str], checkpoints: bool,
) -> Task:
    return Task(
        specs=specs, metrics=metrics, device=device, timeout=timeout,
        results_dir=str(results.parent), plugins_dirs=plugins_dirs, checkpoints=checkpoints,
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
