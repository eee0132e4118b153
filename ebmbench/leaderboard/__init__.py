"""Leaderboards: aggregation (mean ± stderr over seeds, ranks) and markdown rendering."""

from __future__ import annotations

from pathlib import Path

from ..store import ResultStore
from .aggregate import COMBO, Board, aggregate
from .render import format_value, relative_link, render_board, render_index

__all__ = ["Board", "COMBO", "aggregate", "render_board", "render_index", "format_value",
           "write_leaderboards"]


def write_leaderboards(results: Path, out: Path) -> list[Path]:
    """Write ``<dataset>.md`` for every dataset in ``results``, and ``README.md``.

    Returns:
        The files written, the index last.
    """
    with ResultStore.open_existing(results) as store:
        frame = store.to_frame()
    boards = aggregate(frame)
    out.mkdir(parents=True, exist_ok=True)
    link_base = relative_link(Path(results).parent, out)
    written = []
    for board in boards:
        path = out / f"{board.dataset}.md"
        path.write_text(render_board(board, link_base), encoding="utf-8")
        written.append(path)
    index = out / "README.md"
    index.write_text(render_index(boards, frame), encoding="utf-8")
    written.append(index)
    return written
