"""Leaderboards: aggregation (mean ± stderr over seeds, ranks), figures and markdown."""

from __future__ import annotations

from pathlib import Path

from ..store import read_results
from .aggregate import COMBO, Board, aggregate, summarize
from .figures import plot_heatmap, plot_pareto, primary_metric
from .render import format_value, relative_link, render_board, render_index, render_summary

__all__ = ["Board", "COMBO", "aggregate", "summarize", "render_board", "render_index",
           "render_summary", "format_value", "primary_metric", "write_leaderboards",
           "check_leaderboards", "PROVENANCE_FILE"]

#: The hand- or script-written record of how a published leaderboard was made (command,
#: hardware, versions); it sits beside the rendered pages and the check leaves it alone.
PROVENANCE_FILE = "RUN.md"


def write_leaderboards(
    results: Path, out: Path, *, figures: bool = True, links_from: Path | None = None
) -> list[Path]:
    """Write ``<dataset>.md`` (and its figures) for every dataset in ``results`` (a store
    or an export), and ``README.md`` with the cross-dataset summary.

    Args:
        results: A store or an export.
        out: The folder to write into.
        figures: Also draw the per-dataset figures.
        links_from: The folder the pages will be read from, if not ``out`` (for links).

    Returns:
        The markdown files written, the index last.
    """
    frame = read_results(results)
    if "role" in frame.columns:  # tuning trials and sampler-benchmark rows are not ranked here
        frame = frame[frame["role"].fillna("run") == "run"]
    boards = aggregate(frame)
    out.mkdir(parents=True, exist_ok=True)
    link_base = relative_link(Path(results).parent, links_from or out)
    written = []
    for board in boards:
        images: dict[str, str] = {}
        if figures and not board.table.empty:
            for caption, plot, suffix in (("cost vs quality", plot_pareto, "pareto"),
                                          ("method × sampler", plot_heatmap, "heatmap")):
                if plot(board, out / f"{board.dataset}-{suffix}.png"):
                    images[caption] = f"{board.dataset}-{suffix}.png"
        path = out / f"{board.dataset}.md"
        path.write_text(render_board(board, link_base, images), encoding="utf-8")
        written.append(path)
    index = out / "README.md"
    index.write_text(render_index(boards, frame, summarize(boards, frame)), encoding="utf-8")
    written.append(index)
    return written


def check_leaderboards(results: Path, out: Path) -> list[str]:
    """Re-render the markdown from ``results`` and list the files in ``out`` that differ.

    Figures are regenerated but not compared (their bytes depend on the matplotlib build).
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        fresh = write_leaderboards(results, Path(tmp), figures=False, links_from=out)
        problems = []
        for path in fresh:
            committed = out / path.name
            new_text = _without_figures(path.read_text(encoding="utf-8"))
            if not committed.is_file():
                problems.append(f"{committed} is missing")
            elif _without_figures(committed.read_text(encoding="utf-8")) != new_text:
                problems.append(f"{committed} differs from what {results} renders")
        expected = {p.name for p in fresh} | {PROVENANCE_FILE}
        problems += [f"{p} is not rendered from {results}" for p in sorted(out.glob("*.md"))
                     if p.name not in expected]
    return problems


def _without_figures(text: str) -> str:
    return "\n".join(
        line for line in text.splitlines() if line.strip() and not line.startswith("![")
    )
