"""The ``ebmbench`` command line: list, run, leaderboard, export, data, new-plugin.

User errors (unknown names, bad values, missing files) print one short message naming the
bad value and the valid choices, and exit with code 2, never with a traceback. A failing
environment (a full disk, an I/O error) prints one line naming the file and what to do,
and exits with code 1.

Start-up is kept light (as pytest and llm do): this module imports click and the small
modules that define the choices; torch, pandas and the plugins are imported inside the
commands that need them, so ``ebmbench --help`` and a cached ``ebmbench list`` never load
torch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .api import DEFAULT_RESULTS
from .averaging import WEIGHT_AVERAGES
from .catalogue import KINDS as _KINDS
from .device import DEVICES
from .early_stopping import CHECKPOINT_RULES
from .errors import EnvironmentFailure, UserError, unknown_choice
from .inputs import parse_seeds, parse_timeout, parse_workers
from .params import BUDGETS
from .protocol_settings import DEFAULTS as PROTOCOL_DEFAULTS
from .schedules import LR_SCHEDULES, TUNED_LR_SCHEDULE

__all__ = ["main", "cli"]

#: The ``--plugins-dir`` folders of this invocation; added to the plugin manager only by
#: the commands that load plugins.
_plugins_dirs: list[str] = []


def _load_plugins_dirs() -> None:
    from .plugins import add_plugins_dir

    for folder in _plugins_dirs:
        add_plugins_dir(folder)


def _split(values: tuple[str, ...]) -> list[str] | None:
    """``--method a,b --method c`` → ``["a", "b", "c"]``; nothing given → None (all)."""
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    return names or None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ebmbench")
@click.option(
    "--plugins-dir", "plugins_dirs", multiple=True, metavar="DIR",
    type=click.Path(file_okay=False),
    help="Also load plugins from the .py files in DIR (repeatable).",
)
def cli(plugins_dirs: tuple[str, ...]) -> None:
    """ebmbench: train and rank energy-based-model methods, samplers and energies."""
    for folder in plugins_dirs:
        if not Path(folder).is_dir():
            raise UserError(f"--plugins-dir {folder!r} is not a directory")
    _plugins_dirs[:] = list(plugins_dirs)


@cli.command("list")
@click.argument("kind", required=False, type=click.Choice(_KINDS + tuple(k + "s" for k in _KINDS)))
@click.option("-v", "--verbose", is_flag=True, help="Show hyper-parameters and their defaults.")
@click.option("--refresh", is_flag=True,
              help="Load every plugin again instead of reading the cached list.")
def list_command(kind: str | None, verbose: bool, refresh: bool) -> None:
    """List registered plugins (of KIND), and any plugin that failed to load.

    The list is cached (see docs/cli.md) so that listing does not import torch; any
    install, upgrade or edit of a plugin file gives a fresh one.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .autoload import autoload_note
    from .catalogue import load_catalogue

    catalogue, _ = load_catalogue(list(_plugins_dirs), refresh=refresh)
    note = autoload_note()
    console = Console(width=max(Console().width, 120))
    kinds = [kind.rstrip("s")] if kind else list(_KINDS)
    empty = []
    for k in kinds:
        entries = catalogue["kinds"][k]
        if not entries:
            empty.append(k)
            console.print(f"[bold]{k}s[/bold]: none registered")
            continue
        table = Table(title=f"{k}s", title_justify="left", show_lines=verbose)
        table.add_column("name", style="bold")
        table.add_column("description")
        table.add_column("from")
        if verbose:
            table.add_column("hyper-parameters (quick default [smoke/full])")
        for entry in entries:
            cells = [entry["name"], entry["description"], f"{entry['source']} {entry['version']}"]
            if verbose:
                cells.append(entry["params"])
            table.add_row(*(escape(c) for c in cells))
        console.print(table)
    if empty and note:
        click.echo(f"why: {note}")
    elif empty:
        click.echo("why: no installed package registers one; see `ebmbench new-plugin --help`")
    elif note:
        click.echo(f"note: {note}")
    if catalogue["broken"]:
        click.echo("plugins that failed to load:")
        for b in catalogue["broken"]:
            click.echo(f"  {b['name']} ({b['source']}): {b['error']}")


@cli.command("run")
@click.option("--all", "run_all", is_flag=True,
              help="Every plugin of every kind not named by --method/--sampler/--architecture/"
                   "--dataset.")
@click.option("--method", "methods", multiple=True, metavar="A,B", help="Methods to run.")
@click.option("--sampler", "samplers", multiple=True, metavar="A,B", help="Samplers to run.")
@click.option("--architecture", "architectures", multiple=True, metavar="A,B", help="Energies.")
@click.option("--dataset", "datasets", multiple=True, metavar="A,B", help="Datasets.")
@click.option("--metric", "metrics", multiple=True, metavar="A,B", help="Metrics (default: all).")
@click.option("--seeds", default="0", show_default=True, help="Seeds: 0,1,2 or 0-4 or 0-2,7.")
@click.option("--budget", type=click.Choice(BUDGETS), default="quick", show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="auto takes CUDA when present.")
@click.option("--timeout", default=None, help="Seconds allowed per run (a number > 0).")
@click.option("--set", "overrides", multiple=True, metavar="KIND.NAME.PARAM=VALUE",
              help="Override a hyper-parameter; NAME may be * (repeatable).")
@click.option("--results", type=click.Path(dir_okay=False), default=str(DEFAULT_RESULTS),
              show_default=True, help="The SQLite results store.")
@click.option("--executor", default=None,
              help="Executor plugin [default: process with several workers (one per CPU core "
                   "on the CPU), local with one; ray with --address].")
@click.option("--workers", default=None, envvar="EBMBENCH_WORKERS",
              help="Worker processes [default: one per CPU core when running on the CPU, "
                   "else 1; 1 runs in this process]. Env: EBMBENCH_WORKERS.")
@click.option("--address", default=None, help="The Ray cluster to join (executor ray).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Where image datasets live (sets every dataset's data_dir).")
@click.option("--fid-weights", type=click.Path(dir_okay=False), default=None,
              help="Inception weights file for FID on MNIST/CIFAR-10.")
@click.option("--tune", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="First run N tuning trials per (method, architecture, dataset[, training "
                   "sampler]) on the validation split, then the seeds with the chosen values.")
@click.option("--tune-draw", type=click.IntRange(min=0), default=0, show_default=True,
              metavar="D", help="With --tune: repeat the tuning with other draws (D > 0: "
                                "other TPE and trial seeds, none of the runs'), to see how "
                                "much each choice owes to chance; use a store per draw.")
@click.option("--train-flops", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="FLOPS", help="Training compute per run, replacing the budget's.")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES + (TUNED_LR_SCHEDULE,)),
              default=PROTOCOL_DEFAULTS["lr_schedule"], show_default=True,
              help="Decay every training learning rate over the run's compute budget (to zero "
                   "at its end); a decayed run is labelled and ranked apart. With --tune, "
                   "'tuned' searches constant or cosine in each study, with its method's "
                   "hyper-parameters.")
@click.option("--checkpoint", type=click.Choice(CHECKPOINT_RULES), default=PROTOCOL_DEFAULTS["checkpoint"],
              show_default=True,
              help="The model each run reports: its best learning-curve point on the "
                   "validation split (early stopping), or its last; a last-model run is "
                   "labelled and ranked apart.")
@click.option("--weight-average", type=click.Choice(WEIGHT_AVERAGES),
              default=PROTOCOL_DEFAULTS["weight_average"],
              show_default=True,
              help="What each run evaluates and reports: at each curve point whichever of its "
                   "iterate and their power-function EMA validates better (best), always the "
                   "EMA (ema), or its iterates (none); runs that differ in it are labelled "
                   "and ranked apart.")
@click.option("--sampler-board/--no-sampler-board", default=True, show_default=True,
              help="After the runs, judge the selected samplers on the selected toy densities' "
                   "true density and reference energy at equal gradient budgets.")
@click.option("--retry-failed", is_flag=True, help="Run failed and timed-out runs again.")
@click.option("--leaderboard-out", type=click.Path(file_okay=False), default=None,
              help="Where to write the leaderboard [default: <results stem>-leaderboards/ "
                   "beside the results, e.g. ebmbench-results/results-leaderboards].")
@click.option("--no-leaderboard", is_flag=True, help="Do not render a leaderboard at the end.")
@click.option("--no-checkpoints", is_flag=True,
              help="Do not keep trained models (checkpoints/ beside the results): saves disk "
                   "in a big sweep; ebmbench.load_model then cannot load its runs.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show runs done, running now, an ETA and failures (on a terminal).")
def run_command(
    run_all: bool, methods: tuple[str, ...], samplers: tuple[str, ...],
    architectures: tuple[str, ...], datasets: tuple[str, ...], metrics: tuple[str, ...],
    seeds: str, budget: str, device: str, timeout: str | None, overrides: tuple[str, ...],
    results: str, executor: str | None, workers: str | None, address: str | None,
    data_dir: str | None,
    fid_weights: str | None, tune: int, tune_draw: int, train_flops: float | None, lr_schedule: str,
    checkpoint: str, weight_average: str, sampler_board: bool,
    retry_failed: bool, leaderboard_out: str | None, no_leaderboard: bool, no_checkpoints: bool,
    progress: bool,
) -> None:
    """Train and evaluate every compatible combination of the selection.

    Finished runs already in the results store are not run again, so the same command
    resumes an interrupted sweep.
    """
    from .device import default_workers
    from .grid import Selection
    from .inputs import parse_overrides
    from .sweep import default_leaderboard_dir, render_leaderboards, run_sweep

    _load_plugins_dirs()
    chosen = {"method": methods, "sampler": samplers, "architecture": architectures,
              "dataset": datasets}
    if not run_all and not any(chosen.values()):
        raise UserError("say what to run: --all, or some of --method/--sampler/--architecture/--dataset")
    seed_list = parse_seeds(seeds)
    time_limit = parse_timeout(timeout)
    source = click.get_current_context().get_parameter_source("workers")
    from_env = source is click.core.ParameterSource.ENVIRONMENT
    worker_count = parse_workers(
        workers, source="environment variable EBMBENCH_WORKERS" if from_env else "--workers")
    sets = parse_overrides(overrides)
    implied: dict[str, Any] = {}
    if data_dir is not None:
        implied["dataset.*.data_dir"] = data_dir
    if fid_weights is not None:
        if not Path(fid_weights).is_file():
            raise UserError(f"--fid-weights {fid_weights!r}: no such file")
        implied["metric.*.inception_weights"] = fid_weights
    if executor is not None or address is not None:
        # EBMBENCH_WORKERS only sizes the default executor, never one chosen by name.
        if from_env:
            worker_count = None
    elif worker_count is None:
        worker_count = default_workers(device)
    if executor is None:
        executor = "ray" if address else "process" if (worker_count or 1) > 1 else "local"
    executor_params: dict[str, Any] = {}
    if worker_count is not None and not (executor == "local" and worker_count == 1):
        executor_params["workers"] = worker_count
    if address is not None:
        executor_params["address"] = address
    # --all means every plugin of the kinds not named: `--all --dataset two_moons` runs
    # every method, sampler and architecture on two_moons (naming a kind narrows it).
    selection = Selection(
        methods=_split(methods),
        samplers=_split(samplers),
        architectures=_split(architectures),
        datasets=_split(datasets),
        metrics=_split(metrics),
        seeds=seed_list,
        budget=budget,
        overrides=sets,
        train_flops=train_flops,
        lr_schedule=lr_schedule,
        checkpoint=checkpoint,
        weight_average=weight_average,
        where_declared=implied,
    )
    _report_broken_plugins()
    try:
        report = run_sweep(
            selection, results=Path(results), device=device, timeout=time_limit,
            executor=executor, executor_params=executor_params, retry_failed=retry_failed,
            progress=progress, notify=lambda message: click.echo(message, err=True), tune=tune,
            sampler_board=sampler_board, checkpoints=not no_checkpoints, tune_draw=tune_draw,
        )
    except KeyboardInterrupt:
        click.echo(f"\nInterrupted. Every finished run is saved in {results}; run the same "
                   "command again to resume.", err=True)
        sys.exit(130)
    _print_summary(report)
    if not no_leaderboard and len(report.frame):
        out = Path(leaderboard_out) if leaderboard_out else default_leaderboard_dir(results)
        written = _writing(out, lambda: render_leaderboards(Path(results), out))
        if written is None:
            click.echo(f"leaderboard: {out / 'README.md'} (up to date: no run changed)")
        else:
            click.echo(f"leaderboard: {out / 'README.md'} ({len(written) - 1} dataset tables)")


def _report_broken_plugins() -> None:
    """One line on stderr per plugin that failed to load (``ebmbench list`` shows more)."""
    from .plugins import get_plugin_manager

    pm = get_plugin_manager()
    pm.load()
    for broken in pm.broken:
        click.echo(f"warning: plugin {broken.line()}", err=True)


def _writing(out: Path, write: Any) -> Any:
    """Run ``write()``, which writes into ``out``; a file-system refusal is one line."""
    import errno

    try:
        return write()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = exc.filename or out
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            raise EnvironmentFailure(f"cannot write {str(where)!r}: {reason}. Free some space, "
                                     "then try again") from None
        raise UserError(f"cannot write {str(where)!r}: {reason}. Choose another --out") from None


def _print_summary(report: Any) -> None:
    counts = report.counts
    parts = ", ".join(f"{counts[s]} {s}" for s in ("ok", "degenerate", "diverged", "failed", "timeout",
                                                   "skipped"))
    others = f", {report.by_others} run by another sweep" if report.by_others else ""
    click.echo(
        f"{len(report.frame)} runs: {parts} "
        f"({report.ran} run now, {report.resumed} already in {report.results}{others})"
    )
    if report.not_applicable:
        click.echo(f"{sum(report.not_applicable.values())} combinations not applicable (not runs; "
                   "counted by reason on the leaderboards)")
    if report.trials:
        click.echo(f"tuning: {report.trials} trials in the store (not ranked; see docs/protocol.md)")
    board = getattr(report, "sampler_board", None)
    if board is not None and len(board.frame):
        parts = ", ".join(f"{board.counts[s]} {s}" for s in ("ok", "diverged", "failed", "timeout")
                          if board.counts[s] or s == "ok")
        click.echo(f"sampler board: {len(board.frame)} rows: {parts} "
                   f"({board.ran} run now, {board.resumed} already in the store)")
    failed = report.frame[report.frame["status"].isin(["failed", "diverged", "timeout"])] \
        if len(report.frame) else []
    for _, row in list(failed.iterrows())[:10] if len(failed) else []:
        click.echo(
            f"  {row['status']}: {row['method']}/{row['sampler']}/{row['architecture']}/"
            f"{row['dataset']} seed {row['seed']}: {row['reason'][:160]}"
        )


@cli.command("leaderboard")
@click.option("--results", type=click.Path(dir_okay=False), default=str(DEFAULT_RESULTS),
              show_default=True, help="A results store (.sqlite) or export (.csv/.json/.parquet).")
@click.option("--out", type=click.Path(file_okay=False), default="leaderboards",
              show_default=True, help="Folder for the markdown tables and figures.")
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 if the tables in --out differ from a fresh render.")
@click.option("--html", type=click.Path(file_okay=False), default=None,
              help="Also write the interactive pages (sortable tables, plots) into this folder; "
                   "serve it over http to read them (needs itables and plotly).")
def leaderboard_command(results: str, out: str, check: bool, html: str | None) -> None:
    """Render one markdown leaderboard per dataset, and a summary, from the results."""
    from .leaderboard import check_leaderboards, write_leaderboards

    if check:
        problems = check_leaderboards(Path(results), Path(out))
        for problem in problems:
            click.echo(problem, err=True)
        if problems:
            sys.exit(1)
        click.echo(f"{out} matches {results}")
        return
    written = _writing(Path(out), lambda: write_leaderboards(
        Path(results), Path(out), html=Path(html) if html else None))
    for path in written:
        click.echo(str(path))
    if html:
        click.echo(str(Path(html) / "index.html"))


@cli.command("data")
@click.argument("names", nargs=-1)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Where image datasets live (sets every dataset's data_dir).")
@click.option("--download/--no-download", default=True, show_default=True,
              help="Download what is missing (needs the network), or only check.")
def data_command(names: tuple[str, ...], data_dir: str | None, download: bool) -> None:
    """Fetch the files datasets and metrics need (image sets, Inception weights).

    NAMES are datasets or metrics (default: every plugin that needs files). Where there is
    no network, says exactly which files to put where, and exits 1.
    """
    from .plugins import get_plugin_manager

    pm = get_plugin_manager()
    plugins = {info.name: info for kind in ("dataset", "metric") for info in pm.registry(kind)}
    for name in names:
        if name not in plugins:
            raise unknown_choice("dataset or metric name", name, plugins)
    missing = 0
    for name, info in plugins.items():
        if names and name not in names:
            continue
        params = {"data_dir": data_dir} if data_dir and "data_dir" in info.cls.params else {}
        try:
            found = info.cls(budget="full", **params).fetch(download=download)
        except UserError as exc:
            missing += 1
            click.echo(f"missing: {exc}")
            continue
        if found is not None:
            click.echo(f"ok: {found}")
        elif names:
            click.echo(f"ok: {name} needs no files (generated, or shipped with a package)")
    if missing:
        click.echo(f"{missing} missing; runs that need them are recorded as skipped", err=True)
        sys.exit(1)


@cli.command("new-plugin")
@click.argument("name")
@click.option("--kind", default="method", show_default=True, metavar="KIND[,KIND...]",
              help="The kind of plugin to generate: method, sampler, architecture, dataset, "
                   "metric or executor; several, comma-separated (method,sampler,dataset), "
                   "make one package holding a plugin of each.")
@click.option("--dest", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Folder in which to create the package folder.")
@click.option("--description", default=None, help="One-line description of the package.")
def new_plugin_command(name: str, kind: str, dest: str, description: str | None) -> None:
    """Generate a working plugin package NAME, with its conformance test."""
    from .template import create_plugin_package

    root = create_plugin_package(name, dest, kind, description=description)
    click.echo(f"created {root}: pip install {root} && pytest {root}")


@cli.command("export")
@click.option("--results", type=click.Path(dir_okay=False), default=str(DEFAULT_RESULTS),
              show_default=True, help="The SQLite results store.")
@click.option("--format", "fmt", type=click.Choice(("csv", "json", "parquet")), default="csv",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Output file [default: results.<format> beside the store].")
def export_command(results: str, fmt: str, output: str | None) -> None:
    """Export every stored run as CSV, JSON or Parquet."""
    from .store import ResultStore

    target = Path(output) if output else Path(results).with_suffix(f".{fmt}")
    with ResultStore.open_existing(results) as store:  # read-only: export writes only target
        click.echo(str(store.export(fmt, target)))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning a :class:`UserError` into exit code 2."""
    try:
        cli.main(args=argv, prog_name="ebmbench", standalone_mode=False)
    except UserError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except EnvironmentFailure as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
