"""Render leaderboards as GitHub markdown: page templates (``templates/*.md.j2``) filled
with tables made by tabulate."""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import jinja2
import pandas as pd
from tabulate import tabulate

from .aggregate import COMBO, MODEL_KEY, SAMPLE_KEY, Board, DatasetBoards, protocol_text
from .ranking import BOOTSTRAP_SAMPLES

__all__ = [
    "render_dataset",
    "render_index",
    "render_rules",
    "format_value",
    "format_rank",
    "value_header",
    "sample_header",
    "facts_line",
    "UNRELIABLE_MARK",
]

#: The compute columns the markdown models table shows (the interactive page has them all).
MARKDOWN_COSTS = ("train_flops", "train_seconds", "flops_to_target")
#: Appended to a value its run flagged unreliable (shown, not ranked).
UNRELIABLE_MARK = "†"
_HEADERS = {"training_sampler": "training sampler", "rank_range": "range", "target_reached": "reached",
            "reported_model": "reported model"}


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("ebmbench.leaderboard", "templates"),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
    )


def _page(template: str, **values: Any) -> str:
    text = _templates().get_template(template).render(**values)
    # One blank line between blocks, whatever the template's conditionals left.
    lines, blank = [], False
    for line in text.splitlines():
        if not line.strip():
            if not blank and lines:
                lines.append("")
            blank = True
        else:
            lines.append(line.rstrip())
            blank = False
    return "\n".join(lines).rstrip() + "\n"


def render_rules() -> str:
    """The ranking rules paragraph every page carries."""
    return _templates().get_template("rules.md.j2").render(bootstrap=BOOTSTRAP_SAMPLES).strip()


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


def format_rank(row: pd.Series | dict[str, Any]) -> tuple[str, str]:
    """(rank, range) cells of a ranked row.

    >>> format_rank({"rank": 1, "rank_lo": 1, "rank_hi": 3})
    ('1', '1–3')
    >>> format_rank({"rank": 2, "rank_lo": 2, "rank_hi": 2})
    ('2', '2')
    """
    rank, lo, hi = (row.get(c) for c in ("rank", "rank_lo", "rank_hi"))
    if _missing(rank):
        return "–", "–"
    span = f"{int(lo)}" if int(lo) == int(hi) else f"{int(lo)}–{int(hi)}"
    return f"{int(rank)}", span


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def value_header(value: str, board: Board) -> str:
    """A value's column heading: its direction, or (ref.) / (cost)."""
    if value in board.reference:
        return f"{value} (ref.)"
    if value in board.costs:
        return f"{value} (cost)"
    return f"{value} {'↑' if board.directions.get(value) else '↓'}"


def sample_header(value: str, boards: DatasetBoards) -> str:
    """A samples-table column heading."""
    role = boards.sample_values[value]
    if role != "quality":
        return f"{value} ({'ref.' if role == 'reference' else 'cost'})"
    return f"{value} {'↑' if boards.models.directions.get(value) else '↓'}"


def _cell(row: pd.Series, value: str, flagged: set[str]) -> str:
    text = format_value(row.get(value, math.nan), row.get(f"{value}_se", math.nan))
    return f"{text} {UNRELIABLE_MARK}" if value in flagged and text != "–" else text


def _table(rows: list[list[Any]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _board_table(board: Board, table: pd.DataFrame, ranked: bool, extra: tuple[str, ...] = ()) -> str:
    headers = ([("rank", "rank"), ("range", "rank_range")] if ranked else []) + [
        (_HEADERS.get(c, c), c)
        for c in board.key
        if not (board.kind == "samplers" and c in ("target", "init"))
    ]
    if ranked:
        headers.append(("score", "score"))
    shown_costs = MARKDOWN_COSTS if board.kind == "models" else board.costs
    values = [v for v in board.values if v not in board.costs or v in shown_costs]
    headers += [(value_header(v, board), v) for v in values]
    headers += [(_HEADERS.get(c, c), c) for c in extra]
    headers += [("runs", "runs")] + ([] if ranked else [("why not ranked", "why")])
    body = []
    for _, row in table.iterrows():
        flagged = board.unreliable.get(tuple(row[c] for c in board.key), set())
        rank, span = format_rank(row) if ranked else ("", "")
        cells = []
        for _, column in headers:
            if column == "rank":
                cells.append(rank)
            elif column == "rank_range":
                cells.append(span)
            elif column == "score":
                cells.append(f"{row['score']:.3f}")
            elif column in values:
                cells.append(_cell(row, column, flagged))
            elif column == "why":
                cells.append(_short(row["why"]))
            else:
                cells.append("–" if _missing(row.get(column)) or row.get(column) == "" else str(row[column]))
        body.append(cells)
    return _table(body, [h for h, _ in headers])


def _text(value: Any) -> bool:
    """A non-empty string (a missing cell is NaN after a merge)."""
    return isinstance(value, str) and bool(value)


def _flagged_any(board: Board) -> bool:
    return any(board.unreliable.values())


def render_dataset(boards: DatasetBoards, figures: dict[str, str] | None = None, facts: str = "") -> str:
    """One dataset's markdown page.

    Args:
        boards: The dataset's boards.
        figures: Caption → image path relative to the page, shown under the models table.
        facts: A line saying what ran (budget, seeds).
    """
    models = boards.models
    na = boards.not_applicable
    extra = ("target_reached",) if boards.target else ()
    # Ranked models first, then those shown but not ranked: a degenerate model's tuned
    # configuration is as much a finding as a ranked one's.
    columns = [c for c in ("configuration", "reported_model")
               if c in models.table or c in models.unranked]
    configurations = (
        pd.concat([t[[*MODEL_KEY, *(c for c in columns if c in t)]]
                   for t in (models.table, models.unranked) if "configuration" in t],
                  ignore_index=True)
        if "configuration" in columns
        else None
    )
    configurations_table, shown = "", []
    tuned = configurations is not None and (configurations["configuration"].fillna("") != "defaults").any()
    # Which checkpoint each run reports, where any run reports one that is not its last.
    early = (configurations is not None and "reported_model" in configurations
             and (configurations["reported_model"].fillna("last") != "last").any())
    if configurations is not None and len(configurations) and (tuned or early):
        shown = ["configuration"] + (["reported_model"] if early else [])
        configurations_table = _table(
            [[*(r[c] for c in MODEL_KEY), *(r[c] if _text(r[c]) else "–" for c in shown)]
             for _, r in configurations.iterrows()],
            [*(_HEADERS.get(c, c) for c in MODEL_KEY), *(_HEADERS.get(c, c) for c in shown)],
        )
    samples = boards.samples
    samples_table = ""
    if len(samples) and boards.sample_values:
        body = []
        for _, r in samples.iterrows():
            cells = [*(r[c] for c in SAMPLE_KEY)]
            cells += [
                format_value(r.get(v, math.nan), r.get(f"{v}_se", math.nan)) for v in boards.sample_values
            ]
            cells.append(r["runs"] + (" ⚠" if r.get("collapsed") else ""))
            body.append(cells)
        headers = [
            *(_HEADERS.get(c, c) for c in SAMPLE_KEY),
            *(sample_header(v, boards) for v in boards.sample_values),
            "runs",
        ]
        samples_table = _table(body, headers)
    sampler_boards = [
        {
            "title": b.title,
            "notes": " ".join(b.notes),
            "table": _board_table(b, b.table, ranked=True) if len(b.table) else "No sampler finished.",
            "unranked": _board_table(b, b.unranked, ranked=False) if len(b.unranked) else "",
        }
        for b in boards.samplers
    ]
    not_ok = boards.not_ok
    unfinished = not_ok[not_ok["status"] != "skipped"]
    skipped = not_ok[not_ok["status"] == "skipped"]
    target = ""
    if boards.target:
        name, threshold = boards.target
        target = f"{name} ≤ {threshold:g}"
    return _page(
        "dataset.md.j2",
        dataset=boards.dataset,
        facts=facts,
        not_applicable=_table(
            [[int(r["combinations"]), _short(r["reason"])] for _, r in na.iterrows()],
            ["combinations", "reason"],
        )
        if len(na)
        else "",
        not_applicable_total=int(na["combinations"].sum()) if len(na) else 0,
        models_on_samples=bool(boards.evaluation_sampler),
        models_notes=" ".join(models.notes),
        models_ranked=", ".join(models.ranked) or "no value",
        models_table=_board_table(models, models.table, ranked=True, extra=extra)
        if len(models.table)
        else "No model finished ok on this dataset.",
        unreliable_footnote="flagged unreliable by its run (for example an importance-sampling estimate "
        "with too small an effective sample size): shown, not ranked."
        if _flagged_any(models) or any(_flagged_any(b) for b in boards.samplers)
        else "",
        rules=render_rules(),
        target=target,
        unranked_table=_board_table(models, models.unranked, ranked=False) if len(models.unranked) else "",
        configurations_table=configurations_table,
        reported_column="reported_model" in shown,
        figures=sorted((figures or {}).items()),
        samples_table=samples_table,
        collapsed=bool(
            len(samples) and samples.get("collapsed", pd.Series(dtype=int)).fillna(0).astype(int).any()
        ),
        sampler_boards=sampler_boards,
        not_ok_table=_table(
            [
                [*r[[*COMBO, "seed", "status"]], _short(r["reason"])]
                for _, r in unfinished.sort_values([*COMBO, "seed"]).iterrows()
            ],
            [*COMBO, "seed", "status", "reason"],
        )
        if len(unfinished)
        else "",
        skipped_table=_table(
            [
                [n, _short(reason)]
                for reason, n in skipped.groupby("reason", sort=False)
                .size()
                .sort_values(ascending=False, kind="stable")
                .items()
            ],
            ["runs", "reason"],
        )
        if len(skipped)
        else "",
    )


def _short(reason: Any, limit: int = 140) -> str:
    reason = " ".join(str(reason).split()).replace("|", "\\|")
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


def facts_line(frame: pd.DataFrame) -> str:
    """Budget, seeds and device of the runs that ran."""
    ran = frame[frame["status"] != "skipped"] if "status" in frame else frame
    facts = [
        (label, [str(v) for v in sorted(set(ran[column].dropna()))])
        for label, column in (("budget", "budget"), ("seeds", "seed"), ("device", "device"))
        if column in ran.columns
    ]
    return " · ".join(f"{label}: {', '.join(values)}" for label, values in facts if values)


def render_index(
    boards: list[DatasetBoards], frame: pd.DataFrame, summaries: dict[str, pd.DataFrame] | None = None
) -> str:
    """The front page: what ran, a line per dataset, and the summaries across datasets."""
    body = []
    for b in boards:
        rows = frame[frame["dataset"] == b.dataset]
        counts = rows["status"].value_counts()
        best = b.models.table[b.models.table["rank"] == 1] if len(b.models.table) else b.models.table
        na = int(b.not_applicable["combinations"].sum()) if len(b.not_applicable) else 0
        body.append(
            [
                f"[{b.dataset}]({b.dataset}.md)",
                len(rows),
                ", ".join(f"{n} {s}" for s, n in counts.items()),
                na,
                protocol_text(frame, b.dataset),
                ", ".join("/".join(str(r[c]) for c in MODEL_KEY if r[c] != "–") for _, r in best.iterrows())
                or "–",
            ]
        )
    summary_blocks = []
    for kind, summary in (summaries or {}).items():
        title = "Models" if kind == "models" else "Samplers"
        key = MODEL_KEY if kind == "models" else ["target_kind", "init", "sampler"]
        scopes = []
        for _, scope in summary.groupby("scope", sort=True):
            first = scope.iloc[0]
            rows = [
                [i + 1, *(r[c] for c in key), f"{r['average_rank']:.2f}"]
                for i, (_, r) in enumerate(scope.iterrows())
            ]
            scopes.append(
                {
                    "heading": f"{first['datasets']} datasets, {len(scope)} rows",
                    "datasets": first["scope_datasets"],
                    "table": _table(rows, ["#", *(_HEADERS.get(c, c) for c in key), "average rank"]),
                }
            )
        summary_blocks.append(
            {
                "title": title,
                "scopes": scopes,
                "text": "Average rank over a set of datasets, among the rows ranked on all of them (and not "
                "shown-but-unranked on any other), re-ranked among themselves on each dataset by the "
                "rules above. A row appears under every set it covers.",
                "empty": "No two datasets share a set of ranked rows yet.",
            }
        )
    return _page(
        "index.md.j2",
        facts=facts_line(frame),
        datasets_table=_table(
            body, ["dataset", "runs", "status", "not applicable", "protocol", "rank 1 (models)"]
        ),
        rules=render_rules(),
        summaries=summary_blocks,
    )
