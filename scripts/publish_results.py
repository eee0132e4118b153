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
from ebmbench.published import published_files, scrub_frame, scrub_paths, write_published
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
    parser.add_argument("--trials", action="store_true",
                        help="also publish the tuning trials' rows (by default only the record of each "
                             "study, kept with its runs in hyperparams['tuning'], is published)")
    args = parser.parse_args()

    # First: a bad store leaves the published folder as it is.
    frame = read_results(args.results)
    not_applicable = read_not_applicable(args.results)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "results.csv"
    for stale in [*out.glob("*.md"), *out.glob("*.png"), *published_files(csv).values()]:
        stale.unlink(missing_ok=True)
    shutil.rmtree(out / "artifacts", ignore_errors=True)  # per-run figures of earlier layouts

    # Tracebacks name the publisher's paths and add megabytes; status and reason stay. Tuning
    # trials are never ranked, and each run keeps its study's record: their rows stay home.
    export = frame if args.trials or "role" not in frame else frame[frame["role"].fillna("run") != "trial"]
    export = scrub_frame(export.drop(columns=["traceback"], errors="ignore"))
    write_published(export, csv, scrub_frame(not_applicable))
    galleries = draw_galleries(frame, not_applicable, args.results.parent, out)
    write_leaderboards(csv, out)
    (out / PROVENANCE_FILE).write_text(provenance(frame, args), encoding="utf-8")
    print(f"published {len(export)} runs ({galleries} gallery figures) to {out}")


def draw_galleries(frame: pd.DataFrame, not_applicable: pd.DataFrame, results_dir: Path, out: Path) -> int:
    """One gallery figure per 2-D dataset, from the runs' gallery data (not published)."""
    drawn = 0
    for boards in aggregate(frame, not_applicable):
        drawn += plot_gallery(boards, results_dir, out / f"{boards.dataset}-gallery.png") is not None
    return drawn


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
