"""Leaderboards: aggregation (mean ± stderr over seeds, ranks), figures and markdown."""

from __future__ import annotations

from pathlib import Path

from ..store import ResultStore
from .aggregate import COMBO, Board, aggregate, summarize
from .figures import plot_heatmap, plot_pareto, primary_metric
from .render import format_value, relative_link, render_board, render_index, render_summary

__all__ = ["Board", "COMBO", "aggregate", "summarize", "render_board", "render_index",
           "render_summary", "format_value", "primary_metric", "write_leaderboards"]


def write_leaderboards(results: Path, out: Path, *, figures: bool = True) -> list[Path]:
    """Write ``<dataset>.md`` (and its figures) for every dataset in ``results``, and
    ``README.md`` with the cross-dataset summary.

    Returns:
        The markdown files written, the index last.
    """
    with ResultStore.open_existing(results) as store:
        frame = store.to_frame()
    boards = aggregate(frame)
    out.mkdir(parents=True, exist_ok=True)
    link_base = relative_link(Path(results).parent, out)
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
