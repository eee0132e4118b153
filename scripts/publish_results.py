"""Publish a sweep under leaderboards/: the compiled results (a runs table, a configurations
table, the learning curves and the not-applicable counts), the rendered pages and figures, and
RUN.md recording the command, hardware and library versions.

Run it with the interpreter of the environment the sweep ran in, so the versions recorded
are the ones that ran::

    .venv/bin/ebmbench run --all --workers 2 --results /tmp/sweep/results.sqlite
    .venv/bin/python scripts/publish_results.py /tmp/sweep/results.sqlite \\
        --command "ebmbench run --all --workers 2" --wall-seconds 1234

Afterwards ``ebmbench leaderboard --results leaderboards/results.csv --out leaderboards
--check`` (tox env ``leaderboard-check``, and tests/test_published_leaderboard.py in CI)
passes until the rendering code or the committed results change.

Nothing published names this machine: tracebacks are dropped, and every absolute path in a
reason, a note, a hyper-parameter or a command is cut to its last part
(:func:`ebmbench.published.scrub_paths`). No per-run picture is published: each 2-D dataset
gets one gallery figure, drawn here from the runs' gallery data in the sweep's results folder.

With ``--onto``, the sweep's rows are merged into the publication already in ``--out``
instead of replacing it (:func:`ebmbench.published.merge_published`): every published run of
a (dataset, energy) the sweep ran, and every sampler-board row of a dataset it judged, is
replaced by the sweep's; the rest stays as published. RUN.md keeps its commands and notes
and gains the new ones. A gallery is drawn again where the sweep replaced every model of the
dataset (the older rows' gallery data is not published), and kept otherwise. With
``--onto --methods dsm`` the slice is one method's runs on each (dataset, energy): for a
change to that method's code alone, the sweep reruns that method (``ebmbench run --all
--method dsm ...``) and every other method's rows stay as published. So a
publication can be brought forward a slice at a time, by anyone, from the published files
alone::

    .venv/bin/ebmbench run --all --tune 8 --seeds 0-2 --dataset rings --results s/results.sqlite
    .venv/bin/python scripts/publish_results.py s/results.sqlite --onto --commit abc1234 \\
        --command "ebmbench run --all --tune 8 --seeds 0-2 --dataset rings --results results.sqlite"
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
from importlib import metadata
from pathlib import Path

import pandas as pd
import torch

from ebmbench.leaderboard import PROVENANCE_FILE, aggregate, write_leaderboards
from ebmbench.leaderboard.figures import plot_gallery
from ebmbench.published import (
    is_published,
    merge_published,
    published_files,
    read_published,
    read_published_not_applicable,
    replaced_slices,
    scrub_frame,
    scrub_paths,
    write_published,
)
from ebmbench.store import read_not_applicable, read_results

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("torch", "torchvision", "torch-fidelity", "pluggy", "numpy", "pandas",
             "scikit-learn", "scipy", "zuko", "matplotlib", "tabulate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="the sweep's results store (.sqlite)")
    parser.add_argument("--out", type=Path, default=ROOT / "leaderboards")
    parser.add_argument("--command", required=True, action="append",
                        help="the exact command the sweep ran (repeat, in order, for a sweep "
                             "resumed or extended by further commands into the same store)")
    parser.add_argument("--install", default="python3 -m venv .venv && "
                        ".venv/bin/pip install . ./examples/ebmbench-example",
                        help="how the environment was made")
    parser.add_argument("--wall-seconds", type=float,
                        help="the sweep's wall-clock time (all its commands together)")
    parser.add_argument("--commit", help="the ebmbench commit the sweep ran")
    parser.add_argument("--note", action="append", default=[],
                        help="a line to add under the command (repeatable)")
    parser.add_argument("--onto", action="store_true",
                        help="merge the sweep's rows into the publication already in --out: they "
                             "replace every published run of the (dataset, energy) pairs they "
                             "cover and every sampler-board row of their datasets")
    parser.add_argument("--methods", metavar="A,B",
                        help="with --onto: the sweep reran these methods alone, after a change to "
                             "their code only; their runs replace the published runs of the same "
                             "methods on each (dataset, energy) it covers, and every other "
                             "method's runs there stay as published")
    parser.add_argument("--trials", action="store_true",
                        help="also publish the tuning trials' rows (by default only the record of each "
                             "study, kept with its runs in hyperparams['tuning'], is published)")
    args = parser.parse_args()

    # First: a bad store leaves the published folder as it is.
    frame = read_results(args.results)
    not_applicable = read_not_applicable(args.results)
    out: Path = args.out
    if args.methods and not args.onto:
        raise SystemExit("--methods merges one method's rows into a publication: it needs --onto")
    if args.onto:
        onto(frame, not_applicable, args)
        return
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "results.csv"
    for stale in [*out.glob("*.md"), *out.glob("*.png"), *published_files(csv).values()]:
        stale.unlink(missing_ok=True)
    shutil.rmtree(out / "artifacts", ignore_errors=True)  # per-run figures of earlier layouts

    # Tracebacks name the publisher's paths and add megabytes; status and reason stay. Tuning
    # trials are never ranked, and each run keeps its study's record: their rows stay home.
    export = _without_trials(frame, args.trials)
    export = scrub_frame(export.drop(columns=["traceback"], errors="ignore"))
    write_published(export, csv, scrub_frame(not_applicable))
    galleries = draw_galleries(frame, not_applicable, args.results.parent, out)
    write_leaderboards(csv, out)
    (out / PROVENANCE_FILE).write_text(provenance(frame, args), encoding="utf-8")
    print(f"published {len(export)} runs ({galleries} gallery figures) to {out}")


def draw_galleries(frame: pd.DataFrame, not_applicable: pd.DataFrame, results_dir: Path, out: Path,
                   datasets: set[str] | None = None) -> int:
    """One gallery figure per 2-D dataset (of ``datasets``, if given), from the runs'
    gallery data (not published)."""
    drawn = 0
    for boards in aggregate(frame, not_applicable):
        if datasets is None or boards.dataset in datasets:
            drawn += plot_gallery(boards, results_dir, out / f"{boards.dataset}-gallery.png") is not None
    return drawn


def _without_trials(frame: pd.DataFrame, keep: bool) -> pd.DataFrame:
    if keep or "role" not in frame:
        return frame
    return frame[frame["role"].fillna("run") != "trial"]


def onto(frame: pd.DataFrame, not_applicable: pd.DataFrame, args: argparse.Namespace) -> None:
    """Merge the sweep ``frame`` into the publication in ``args.out`` (see the module)."""
    out: Path = args.out
    csv = out / "results.csv"
    if not is_published(csv):
        raise SystemExit(f"--onto: no publication in {out} to merge into (no results.csv with "
                         "its configurations beside it)")
    base = read_published(csv)
    new = scrub_frame(_without_trials(frame, args.trials).drop(columns=["traceback"], errors="ignore"))
    if not len(new):
        raise SystemExit(f"--onto: {args.results} holds no run to publish")
    by_method = bool(args.methods)
    if by_method:
        methods = {m.strip() for m in args.methods.split(",") if m.strip()}
        ran = set(new.loc[new["role"].fillna("run") == "run", "method"])
        if not ran <= methods:
            raise SystemExit(f"--methods {args.methods}: the sweep also holds runs of "
                             f"{', '.join(sorted(ran - methods))}; merge it without --methods")
    models, boards = replaced_slices(new, by_method)
    merged = merge_published(base, new, by_method)
    # A dataset's gallery is drawn again only where every model on it is the sweep's.
    runs = base[base["role"].fillna("run") == "run"]
    published = set(zip(runs["dataset"], runs["architecture"], strict=True))
    # A one-method merge never replaces every model of a dataset.
    whole = set() if by_method else {
        d for d, _ in models if {p for p in published if p[0] == d} <= models}
    base_na = read_published_not_applicable(csv)
    na = scrub_frame(not_applicable)
    seen = set(zip(base_na["dataset"], base_na["reason"], strict=True))
    extra = na[[(d, r) not in seen for d, r in zip(na["dataset"], na["reason"], strict=True)]]
    merged_na = pd.concat([base_na, extra], ignore_index=True) if len(extra) else base_na
    old_provenance = (out / PROVENANCE_FILE).read_text(encoding="utf-8")
    write_published(merged, csv, merged_na)
    galleries = draw_galleries(frame, not_applicable, args.results.parent, out, whole)
    write_leaderboards(csv, out)
    # Only 2-D datasets have a gallery: the others have none to keep.
    kept = sorted(d for d in {key[0] for key in models} - whole
                  if (out / f"{d}-gallery.png").is_file())
    (out / PROVENANCE_FILE).write_text(
        merged_provenance(old_provenance, merged, frame, args, models, boards, kept),
        encoding="utf-8")
    replaced = len(base) + len(new) - len(merged)
    print(f"merged {len(new)} runs onto {out}: {replaced} published rows replaced, "
          f"{galleries} gallery figures drawn again")


def merged_provenance(old: str, merged: pd.DataFrame, frame: pd.DataFrame,
                      args: argparse.Namespace, models: set[tuple[str, ...]], boards: set[str],
                      kept_galleries: list[str]) -> str:
    """RUN.md of a merged publication: the old commands and notes, then the new ones; the
    lines that count rows are counted again on the merged rows."""
    head, _, _ = old.partition("\n## Hardware")
    lines = head.rstrip("\n").split("\n")
    fence = [i for i, line in enumerate(lines) if line.startswith("```")]
    block = lines[fence[0] + 1:fence[1]] + [f".venv/bin/{scrub_paths(c)}" for c in args.command]
    recounted = ("- Runs finished between", "- Sampler-board rows by status", "- Runs by status",
                 "- Published on", "- ebmbench commit:", "- Wall-clock time of the sweep:")
    notes = [line for line in lines[fence[1] + 1:]
             if line.startswith("- ") and not line.startswith(recounted)]
    commit = next((line for line in lines if line.startswith("- ebmbench commit:")), "")
    wall = next((line for line in lines if line.startswith("- Wall-clock time of the sweep:")), "")
    if args.methods:
        by_pair: dict[tuple[str, str], list[str]] = {}
        for d, a, m in sorted(models):
            by_pair.setdefault((d, a), []).append(m)
        slices = ", ".join(f"{'/'.join(ms)} on {d} ({a})" for (d, a), ms in sorted(by_pair.items()))
        flag = f" --methods {args.methods}"
    else:
        slices, flag = ", ".join(f"{d} ({a})" for d, a in sorted(models)), ""
    added = [f"- The last {len(args.command)} command(s) ran into a new store and were merged "
             f"onto the publication with `scripts/publish_results.py --onto{flag}`: their rows "
             f"replaced every published run of {slices}"
             + (f" and every sampler-board row of {', '.join(sorted(boards))}" if boards else "")
             + "; every other row is as published before."]
    if kept_galleries:
        added.append(f"- The gallery figures of {', '.join(kept_galleries)} predate the merge "
                     "(they show the models published before it).")
    trials = frame[frame["role"].fillna("run") == "trial"] if "role" in frame else frame.iloc[:0]
    if len(trials):
        added.append(f"- Their tuning trials by status: {_by_status(trials)} (not published).")
    added += [f"- {scrub_paths(note)}" for note in args.note]
    role = merged["role"].fillna("run")
    finished = pd.to_datetime(merged["finished_at"].dropna(), errors="coerce", utc=True)
    counts = [f"- Runs finished between {finished.min():%Y-%m-%d %H:%M} and "
              f"{finished.max():%Y-%m-%d %H:%M} UTC."]
    if commit:
        old_commits = commit.split("`")[1] if "`" in commit else commit
        counts.append(f"- ebmbench commit: `{old_commits}, then {args.commit or 'unknown'}`.")
    if wall and args.wall_seconds:
        minutes = float(wall.split(":")[1].split()[0]) + args.wall_seconds / 60
        counts.append(f"- Wall-clock time of the sweep: {minutes:.1f} min.")
    board = merged[role == "sampler"]
    if len(board):
        counts.append(f"- Sampler-board rows by status: {_by_status(board)}.")
    counts += ["- Runs by status: " + _by_status(merged[role == "run"]) + ".",
               f"- Published on {dt.date.today():%Y-%m-%d} with `scripts/publish_results.py`."]
    body = ["\n".join(lines[:fence[0] + 1]), *block, "```", "", counts[0], *notes, *added, *counts[1:]]
    tail = provenance(frame, args).partition("\n## Hardware")[2]
    return "\n".join(body) + "\n\n## Hardware" + tail


def _by_status(rows: pd.DataFrame) -> str:
    return ", ".join(f"{s} {n}" for s, n in rows["status"].value_counts().sort_index().items())


def provenance(frame: pd.DataFrame, args: argparse.Namespace) -> str:
    role = frame["role"].fillna("run") if "role" in frame else pd.Series("run", index=frame.index)
    plugin_versions = sorted({
        version for versions in frame.get("versions", []) if isinstance(versions, dict)
        for key, version in versions.items() if ":" in key
    })
    finished = pd.to_datetime(frame["finished_at"].dropna(), errors="coerce", utc=True)
    lines = [
        "# How these leaderboards were made",
        "",
        "## Command",
        "",
        "```bash",
        args.install,
        *(f".venv/bin/{scrub_paths(command)}" for command in args.command),
        "```",
        "",
        f"- Runs finished between {finished.min():%Y-%m-%d %H:%M} and "
        f"{finished.max():%Y-%m-%d %H:%M} UTC." if len(finished) else "- No run finished.",
    ]
    lines += [f"- {scrub_paths(note)}" for note in args.note]
    if args.commit:
        lines.append(f"- ebmbench commit: `{args.commit}`.")
    if args.wall_seconds:
        lines.append(f"- Wall-clock time of the sweep: {args.wall_seconds / 60:.1f} min.")
    trials = frame[role == "trial"]
    if len(trials):
        kept = "published" if args.trials else "not published"
        lines.append(f"- Tuning trials by status: {_by_status(trials)} ({kept}; each run records its "
                     "study's trials, choice and score in `hyperparams['tuning']`).")
    board = frame[role == "sampler"]
    if len(board):
        lines.append(f"- Sampler-board rows by status: {_by_status(board)}.")
    lines += ["- Runs by status: " + _by_status(frame[role == "run"]) + ".",
              f"- Published on {dt.date.today():%Y-%m-%d} with `scripts/publish_results.py`.",
              "", "## Hardware", ""]
    lines += [f"- {key}: {value}" for key, value in hardware().items()]
    lines += ["", "## Versions", "", f"- Python {platform.python_version()}"]
    for name in LIBRARIES:
        try:
            lines.append(f"- {name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    lines += ["", "Plugin distributions, as each run recorded them:", ""]
    lines += [f"- {scrub_paths(v)}" for v in plugin_versions]
    return "\n".join(lines) + "\n"


def hardware() -> dict[str, str]:
    info = {"Machine": platform.machine(), "OS": platform.platform()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                     if line.startswith("model name"))
        info["CPU"] = model
    except (OSError, StopIteration):
        info["CPU"] = platform.processor() or "unknown"
    info["Cores available"] = str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                  else os.cpu_count())
    try:
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))
        info["Memory"] = f"{kib / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        pass
    info["GPU"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU only)"
    return info


if __name__ == "__main__":
    main()
