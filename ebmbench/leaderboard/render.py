"""Render leaderboards as GitHub markdown tables with tabulate."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from .aggregate import COMBO, Board

__all__ = ["render_board", "render_index", "render_summary", "format_value", "relative_link"]


def format_value(mean: float, se: float) -> str:
    """``mean ± se`` with 4 significant digits; ``–`` for missing values.

    >>> format_value(1.23456, 0.0123), format_value(2.0, float("nan")), format_value(float("nan"), 0)
    ('1.235 ± 0.012', '2', '–')
    """
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if se is None or (isinstance(se, float) and math.isnan(se)):
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {se:.2g}"


def _header(value: str, board: Board) -> str:
    if value in board.reference:
        return f"{value} (ref.)"
    return f"{value} {'↑' if board.directions[value] else '↓'}"


def render_board(
    board: Board, link_base: str | None = None, figures: dict[str, str] | None = None
) -> str:
    """A markdown page: the ranked table, then the runs that did not finish ``ok``.

    Args:
        board: The aggregated leaderboard.
        link_base: Path from the page's folder to the results folder, for figure links.
        figures: Caption → image path relative to the page, shown under the table.
    """
    lines = [f"# {board.dataset}", ""]
    if board.table.empty:
        lines.append("No run finished ok on this dataset.")
    else:
        shown = [v for v in board.directions if v in board.table.columns]
        # Quality first (what the rank reads), then references, then cost.
        values = [*board.ranked, *(v for v in shown if v in board.reference),
                  *(v for v in shown if v not in board.ranked and v not in board.reference)]
        headers = ["rank", *COMBO, *(_header(v, board) for v in values), "runs"]
        has_links = link_base is not None and any(board.links.values())
        if has_links:
            headers.append("figures")
        body = []
        for _, row in board.table.iterrows():
            cells = [row["rank"], *(row[c] for c in COMBO)]
            cells += [format_value(row[v], row.get(f"{v}_se", math.nan)) for v in values]
            cells.append(row["runs"])
            if has_links:
                run_figures = board.links.get(tuple(row[c] for c in COMBO), {})
                cells.append(" ".join(
                    f"[{name}]({link_base}/{path})" for name, path in sorted(run_figures.items())
                ))
            body.append(cells)
        lines.append(tabulate(body, headers=headers, tablefmt="github", disable_numparse=True))
        lines += [
            "",
            "Values are the mean ± standard error over seeds. ↑: higher is better, ↓: lower is "
            f"better. The rank averages the per-metric ranks of: {', '.join(board.ranked) or 'none'} "
            "(cost columns are not ranked; (ref.) columns are references, such as a floor).",
        ]
        for caption, image in (figures or {}).items():
            lines += ["", f"![{caption}]({image})"]
    not_ok = board.not_ok if board.not_ok is not None else pd.DataFrame(columns=["status"])
    unfinished = not_ok[not_ok["status"] != "skipped"]
    if not unfinished.empty:
        lines += ["", "## Runs that did not finish ok", ""]
        rows = unfinished.sort_values([*COMBO, "seed"])
        lines.append(tabulate(
            [[*r[[*COMBO, "seed", "status"]], _short(r["reason"])] for _, r in rows.iterrows()],
            headers=[*COMBO, "seed", "status", "reason"], tablefmt="github", disable_numparse=True,
        ))
    skipped = not_ok[not_ok["status"] == "skipped"]
    if not skipped.empty:
        # Skips are by design (incompatible combinations, missing data): one line per reason.
        lines += ["", "## Skipped", ""]
        reasons = skipped.groupby("reason", sort=False).size().sort_values(ascending=False, kind="stable")
        lines.append(tabulate(
            [[n, _short(reason)] for reason, n in reasons.items()],
            headers=["runs", "reason"], tablefmt="github", disable_numparse=True,
        ))
    return "\n".join(lines) + "\n"


def _short(reason: str, limit: int = 140) -> str:
    reason = " ".join(str(reason).split()).replace("|", "\\|")
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def render_summary(summary: pd.DataFrame) -> str:
    """The cross-dataset tables: one per scope (see :func:`summarize`), widest first."""
    lines = ["## Across datasets", ""]
    if summary.empty:
        return "\n".join(lines + ["No two datasets share a set of complete combinations yet.", ""])
    lines += [
        "Average rank over a set of datasets, among the combinations that finished ok on all of "
        "them (and on every other dataset they were not skipped on), re-ranked among "
        "themselves on each dataset. A combination appears under every set it covers.", "",
    ]
    for _, scope in summary.groupby("scope", sort=True):
        first = scope.iloc[0]
        lines += [f"### {first['datasets']} datasets, {len(scope)} combinations", "",
                  f"{first['scope_datasets']}", ""]
        body = [[i + 1, *(r[c] for c in COMBO), f"{r['average_rank']:.2f}"]
                for i, (_, r) in enumerate(scope.iterrows())]
        lines.append(tabulate(body, headers=["#", *COMBO, "average rank"],
                              tablefmt="github", disable_numparse=True))
        lines.append("")
    return "\n".join(lines)


def render_index(boards: list[Board], frame: pd.DataFrame, summary: pd.DataFrame | None = None) -> str:
    """The leaderboards' front page: what ran, then one line per dataset, with run counts."""
    lines = ["# ebmbench leaderboards", ""]
    ran = frame[frame["status"] != "skipped"]
    facts = [(label, [str(v) for v in sorted(set(ran[column].dropna()))])
             for label, column in (("budget", "budget"), ("seeds", "seed"), ("device", "device"))
             if column in ran.columns]
    if any(values for _, values in facts):
        lines += [" · ".join(f"{label}: {', '.join(values)}" for label, values in facts if values), ""]
    body = []
    for board in boards:
        rows = frame[frame["dataset"] == board.dataset]
        counts = rows["status"].value_counts()
        best = board.table.iloc[0] if not board.table.empty else None
        body.append([
            f"[{board.dataset}]({board.dataset}.md)",
            len(rows),
            ", ".join(f"{n} {s}" for s, n in counts.items()),
            "/".join(best[c] for c in COMBO) if best is not None else "–",
        ])
    lines.append(tabulate(body, headers=["dataset", "runs", "status", "rank 1"],
                          tablefmt="github", disable_numparse=True))
    if summary is not None:
        lines += ["", render_summary(summary)]
    return "\n".join(lines) + "\n"


def relative_link(results_dir: Path, out_dir: Path) -> str:
    """Path from ``out_dir`` to ``results_dir``, with forward slashes."""
    return Path(os.path.relpath(results_dir.resolve(), out_dir.resolve())).as_posix()
