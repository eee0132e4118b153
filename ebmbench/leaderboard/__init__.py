"""Leaderboards: boards per dataset (models, samples, samplers), ranks, figures, pages.

Markdown pages (``<dataset>.md``, ``README.md``) for reading on GitHub, with static figures;
interactive HTML pages (sortable tables, plots) for the documentation site
(:mod:`ebmbench.leaderboard.interactive`). Both are rendered from the results alone.
"""

from __future__ import annotations

from pathlib import Path

from ..store import read_not_applicable, read_results
from .aggregate import (
    COMBO,
    EVALUATION_SAMPLERS,
    MODEL_KEY,
    SAMPLE_KEY,
    SAMPLER_KEY,
    Board,
    DatasetBoards,
    aggregate,
    evaluation_sampler,
    model_label,
    summarize,
)
from .figures import draw_figures
from .render import facts_line, format_value, render_dataset, render_index, render_rules

__all__ = [
    "Board",
    "DatasetBoards",
    "COMBO",
    "MODEL_KEY",
    "SAMPLE_KEY",
    "SAMPLER_KEY",
    "EVALUATION_SAMPLERS",
    "aggregate",
    "summarize",
    "model_label",
    "evaluation_sampler",
    "render_dataset",
    "render_index",
    "render_rules",
    "format_value",
    "write_leaderboards",
    "check_leaderboards",
    "load_boards",
    "PROVENANCE_FILE",
]

#: The hand- or script-written record of how a published leaderboard was made (command,
#: hardware, versions); it sits beside the rendered pages and the check leaves it alone.
PROVENANCE_FILE = "RUN.md"


def load_boards(results: Path) -> tuple[list[DatasetBoards], dict, object]:
    """(boards, summaries, frame) of a store or an export."""
    frame = read_results(results)
    boards = aggregate(frame, read_not_applicable(results))
    summaries = {"models": summarize(boards, "models")}
    if any(b.samplers for b in boards):
        summaries["samplers"] = summarize(boards, "samplers")
    return boards, summaries, frame


def write_leaderboards(
    results: Path,
    out: Path,
    *,
    figures: bool = True,
    html: Path | None = None,
) -> list[Path]:
    """Write ``<dataset>.md`` for every dataset in ``results`` (a store or an export),
    ``README.md`` with the summaries across datasets, and the figures.

    Args:
        results: A store or an export.
        out: The folder to write into.
        figures: Also draw the figures (learning curves, cost vs quality; the 2-D gallery
            when the runs' gallery data is in the results folder). A figure that cannot be
            drawn from these results (no gallery data in an export) is left as it is.
        html: Also write the interactive pages into this folder.

    Returns:
        The markdown files written, the index last.
    """
    boards, summaries, frame = load_boards(results)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    facts = facts_line(frame)
    for board in boards:
        images = draw_figures(board, Path(results).parent, out) if figures else {}
        # Link every figure the folder holds, drawn now or earlier (the markdown must not
        # depend on whether this render could draw it: the check renders without figures).
        for caption, suffix in _FIGURES:
            if (out / f"{board.dataset}-{suffix}.png").is_file():
                images.setdefault(caption, f"{board.dataset}-{suffix}.png")
        path = out / f"{board.dataset}.md"
        path.write_text(render_dataset(board, images, facts), encoding="utf-8")
        written.append(path)
    index = out / "README.md"
    index.write_text(render_index(boards, frame, summaries), encoding="utf-8")
    written.append(index)
    if html is not None:
        from .interactive import write_interactive

        write_interactive(boards, summaries, frame, html, figures_from=out)
    return written


#: (caption, file suffix) of the per-dataset figures, in page order.
_FIGURES = (("learning curves", "curves"), ("cost vs quality", "pareto"), ("gallery", "gallery"))


def check_leaderboards(results: Path, out: Path) -> list[str]:
    """Re-render the markdown from ``results`` and list the files in ``out`` that differ.

    Figures are not compared (their bytes depend on the matplotlib build), nor are the
    lines that show them.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        fresh = write_leaderboards(results, Path(tmp), figures=False)
        problems = []
        for path in fresh:
            committed = out / path.name
            new_text = _without_figures(path.read_text(encoding="utf-8"))
            if not committed.is_file():
                problems.append(f"{committed} is missing")
            elif _without_figures(committed.read_text(encoding="utf-8")) != new_text:
                problems.append(f"{committed} differs from what {results} renders")
        expected = {p.name for p in fresh} | {PROVENANCE_FILE}
        problems += [
            f"{p} is not rendered from {results}" for p in sorted(out.glob("*.md")) if p.name not in expected
        ]
    return problems


def _without_figures(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.strip() and not line.startswith("!["))
