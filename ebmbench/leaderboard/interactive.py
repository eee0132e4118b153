"""Interactive leaderboard pages (HTML) for the documentation site, built offline.

Tables are itables (DataTables, its JavaScript bundled with the package) and plots plotly,
both loaded from one shared ``assets/`` folder that :func:`write_interactive` copies from the
installed packages: nothing is fetched from the network, and the repository holds none of it
(the pages are built with the site, see ``docs/hooks/leaderboards.py``). A page is readable on a
laptop screen: each table shows the rank, the model's identity and one metric at a time (a
chooser switches the metric, or shows every column), with a search box and a method filter.

The tables load the bundle as an ES module, which browsers only allow over http(s): serve
the built site (``mkdocs serve``, or any static server such as ``python -m http.server``).
"""

from __future__ import annotations

import html
import json
import math
import re
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from ..errors import UserError
from .aggregate import MODEL_KEY, SAMPLE_KEY, Board, DatasetBoards, protocol_text
from .figures import curve_lines, curve_value, model_name, pareto_points
from .render import facts_line, render_rules, sample_header, value_header

__all__ = ["write_interactive", "copy_assets", "ASSETS"]

#: The shared files every page loads, from the folder ``assets/`` beside the pages.
ASSETS = ("dt_bundle.js", "dt_bundle.css", "plotly.min.js", "leaderboard.js", "leaderboard.css")
_HEADERS = {
    "training_sampler": "training sampler",
    "rank_range": "range",
    "target_reached": "reached",
    "reported_model": "reported model",
    "target_kind": "target",
}
_DT_URL = "./assets/dt_bundle.js"


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("ebmbench.leaderboard", "templates"),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        undefined=jinja2.StrictUndefined,
    )


def copy_assets(out: Path) -> list[Path]:
    """Copy the JavaScript and CSS the pages load into ``out/assets``."""
    import itables
    import plotly

    sources = {
        "dt_bundle.js": Path(itables.__file__).parent / "html" / "dt_bundle.js",
        "dt_bundle.css": Path(itables.__file__).parent / "html" / "dt_bundle.css",
        "plotly.min.js": Path(plotly.__file__).parent / "package_data" / "plotly.min.js",
        "leaderboard.js": Path(__file__).parent / "templates" / "leaderboard.js",
        "leaderboard.css": Path(__file__).parent / "templates" / "leaderboard.css",
    }
    folder = out / "assets"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, source in sources.items():
        shutil.copyfile(source, folder / name)
        written.append(folder / name)
    return written


def _markdown_inline(text: str) -> str:
    """The few inline marks the shared rules paragraph uses, as HTML."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"\*(.+?)\*", r"<i>\1</i>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _number_renderer(flags_col: int | None, name: str) -> Any:
    """A DataTables ``render`` for a value column: 4 significant digits, "–" when missing,
    † when the row's run flagged it unreliable; the raw number for sorting."""
    from itables import JavascriptFunction

    flag = (
        f"if (row[{flags_col}] && row[{flags_col}].split('|').includes({json.dumps(name)})) s += ' †';"
        if flags_col is not None
        else ""
    )
    return JavascriptFunction(
        "function (data, type, row) { if (type !== 'display') return data;"
        " if (data === null || data === undefined || Number.isNaN(data)) return '–';"
        " const x = Number(data); let s = (x !== 0 && (Math.abs(x) >= 1e5 || Math.abs(x) < 1e-3))"
        " ? x.toExponential(2) : String(parseFloat(x.toPrecision(4))); " + flag + " return s; }"
    )


def _datatable(
    frame: pd.DataFrame, table_id: str, numeric: list[str], order: list | None, flags: str | None = None
) -> str:
    import itables

    columns = list(frame.columns)
    flags_col = columns.index(flags) if flags else None
    defs: list[dict[str, Any]] = []
    for name in numeric:
        i = columns.index(name)
        defs.append(
            {
                "targets": [i],
                "type": "numlast",
                "className": "dt-right",
                "render": _number_renderer(flags_col, name),
            }
        )
    if flags_col is not None:
        defs.append({"targets": [flags_col], "visible": False, "searchable": False})
    return itables.to_html_datatable(
        frame,
        table_id=table_id,
        connected=True,
        dt_url=_DT_URL,
        showIndex=False,
        maxBytes=0,
        paging=False,
        display_logo_when_loading=False,
        columnDefs=defs,
        order=order or [],
        layout={"topStart": None, "topEnd": "search", "bottomStart": "info", "bottomEnd": None},
        classes=["display", "compact", "hover"],
        autoWidth=False,
        text_in_header_can_be_selected=False,
    )


def _controls(
    table_id: str, metrics: list[dict[str, Any]], primary: str | None, methods: list[str] | None
) -> str:
    parts = ['<div class="controls">']
    if metrics:
        options = "".join(
            f'<option value="{html.escape(m["name"])}"{" selected" if m["name"] == primary else ""}>'
            f"{html.escape(m['label'])}</option>"
            for m in metrics
        )
        parts.append(
            f'<label>Metric <select id="{table_id}-metric">{options}'
            f'<option value="*">all columns</option></select></label>'
        )
    if methods:
        options = "".join(f'<option value="{html.escape(m)}">{html.escape(m)}</option>' for m in methods)
        parts.append(
            f'<label>Method <select id="{table_id}-method"><option value="">all</option>'
            f"{options}</select></label>"
        )
    parts.append("</div>")
    return "".join(parts)


def _meta_script(meta: dict[str, Any]) -> str:
    """The table's description for leaderboard.js, as a JSON script element."""
    text = json.dumps(meta).replace("</", "<\\/")
    return f'<script type="application/json" class="table-meta">{text}</script>'


def _board_frame(
    board: Board, table: pd.DataFrame, ranked: bool, extra: tuple[str, ...] = ()
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(the display frame, its value columns, its extra columns hidden by default)."""
    key = [c for c in board.key if not (board.kind == "samplers" and c in ("target", "init"))]
    data: dict[str, Any] = {}
    if ranked:
        data["rank"] = [None if pd.isna(r) else int(r) for r in table["rank"]]
        data["range"] = [
            ("–" if pd.isna(lo) else f"{int(lo)}" if int(lo) == int(hi) else f"{int(lo)}–{int(hi)}")
            for lo, hi in zip(table["rank_lo"], table["rank_hi"], strict=True)
        ]
    for c in key:
        data[_HEADERS.get(c, c)] = list(table[c])
    values, hidden = [], []
    for v in board.values:
        header = value_header(v, board)
        data[header] = pd.to_numeric(
            table.get(v, pd.Series(math.nan, index=table.index)), errors="coerce"
        ).tolist()
        data[f"{header} ±"] = pd.to_numeric(
            table.get(f"{v}_se", pd.Series(math.nan, index=table.index)), errors="coerce"
        ).tolist()
        values.append(v)
    if ranked:
        data["score"] = pd.to_numeric(table["score"], errors="coerce").tolist()
        hidden.append("score")
    for c in extra:
        data[_HEADERS.get(c, c)] = [("" if pd.isna(x) else str(x)) for x in table.get(c, [""] * len(table))]
        hidden.append(_HEADERS.get(c, c))
    data["runs"] = list(table["runs"])
    hidden.append("runs")
    if not ranked:
        data["why not ranked"] = list(table["why"])
    data["flags"] = [
        "|".join(sorted(board.unreliable.get(tuple(r[c] for c in board.key), set())))
        for _, r in table.iterrows()
    ]
    return pd.DataFrame(data), values, hidden


def _board_html(
    board: Board, table: pd.DataFrame, table_id: str, ranked: bool, extra: tuple[str, ...] = ()
) -> dict[str, str]:
    frame, values, hidden = _board_frame(board, table, ranked, extra)
    numeric = [c for v in values for c in (value_header(v, board), f"{value_header(v, board)} ±")]
    numeric += ["score"] if ranked else []
    columns = list(frame.columns)
    metrics = [
        {
            "name": v,
            "label": value_header(v, board),
            "col": columns.index(value_header(v, board)),
            "se": columns.index(f"{value_header(v, board)} ±"),
            "higher": bool(board.directions.get(v)),
        }
        for v in values
    ]
    primary = board.primary if board.primary in values else (values[0] if values else None)
    order = [[0, "asc"]] if ranked else []
    method_col = columns.index("method") if "method" in columns else columns.index("sampler")
    methods = sorted(set(frame.iloc[:, method_col]))
    meta = {
        "table": table_id,
        "metrics": metrics,
        "extra": [columns.index(c) for c in hidden],
        "method_col": method_col,
        "order": order[0] if order else None,
    }
    script = _meta_script(meta)
    return {
        "html": _datatable(frame, table_id, numeric, order, flags="flags") + script,
        "controls": _controls(table_id, metrics, primary, methods),
    }


def _plots(boards: DatasetBoards) -> list[dict[str, Any]]:
    import plotly.graph_objects as go

    plots = []
    value = curve_value(boards.curves, boards.target)
    if value is not None:
        fig = go.Figure()
        for key, line in curve_lines(boards.curves, value).items():
            fig.add_trace(
                go.Scatter(x=line["flops"], y=line[value], mode="lines+markers", name=model_name(key))
            )
        if boards.target and boards.target[0] == value:
            fig.add_hline(
                y=boards.target[1], line_dash="dash", annotation_text=f"target {boards.target[1]:g}"
            )
        fig.update_xaxes(type="log", title="training FLOPs")
        fig.update_yaxes(type="log", title=f"{value} (validation split, lower is better)")
        fig.update_layout(
            height=480, margin={"l": 60, "r": 20, "t": 30, "b": 50}, legend={"font": {"size": 10}}
        )
        plots.append(
            {
                "title": "Learning curves",
                "id": f"{boards.dataset}-curves",
                "figure": fig,
                "note": "Quality on the validation split against training compute, one line per model "
                "(median over seeds), as benchopt draws convergence curves. Click a legend entry "
                "to hide a line.",
            }
        )
    points = pareto_points(boards)
    metric = boards.models.primary
    if len(points) and metric:
        fig = go.Figure()
        fig.add_trace(
            go.Scatter(
                x=points["cost"],
                y=points["quality"],
                mode="markers+text",
                text=points["name"],
                textposition="top center",
                name="models",
                textfont={"size": 9},
            )
        )
        front = points[points["front"]].sort_values("cost")
        fig.add_trace(
            go.Scatter(
                x=front["cost"],
                y=front["quality"],
                mode="lines",
                name="Pareto front",
                line={"dash": "dash", "color": "black"},
            )
        )
        fig.update_xaxes(type="log", title="training FLOPs")
        fig.update_yaxes(
            title=f"{metric} ({'higher' if boards.models.directions.get(metric) else 'lower'} is better)"
        )
        fig.update_layout(height=460, margin={"l": 60, "r": 20, "t": 30, "b": 50})
        plots.append(
            {
                "title": "Cost vs quality",
                "id": f"{boards.dataset}-pareto",
                "figure": fig,
                "note": "Each ranked model's mean training FLOPs against its mean primary value; the "
                "dashed line joins the models no other beats on both.",
            }
        )
    for plot in plots:
        plot["html"] = plot.pop("figure").to_html(
            full_html=False, include_plotlyjs=False, div_id=plot["id"], config={"responsive": True}
        )
    return plots


def _page(template: str, **values: Any) -> str:
    return _templates().get_template(template).render(**values)


def write_interactive(
    boards: list[DatasetBoards],
    summaries: dict[str, pd.DataFrame],
    frame: pd.DataFrame,
    out: Path,
    figures_from: Path | None = None,
) -> list[Path]:
    """Write ``index.html`` and one ``<dataset>.html`` per dataset into ``out``, with the
    shared assets; the gallery images are copied from ``figures_from`` (the markdown folder)
    where they exist. Returns the pages written, the index last."""
    try:
        import itables  # noqa: F401
        import plotly  # noqa: F401
    except ImportError:
        raise UserError(
            "the interactive pages need itables and plotly: pip install 'ebmbench[docs]'"
        ) from None
    out.mkdir(parents=True, exist_ok=True)
    copy_assets(out)
    names = [b.dataset for b in boards]
    facts = facts_line(frame)
    rules = _markdown_inline(render_rules())
    written = []
    for b in boards:
        models = b.models
        extra = ("configuration", "target_reached") if b.target else ("configuration",)
        reported = models.table.get("reported_model", pd.Series(dtype=object)).fillna("last")
        if (reported != "last").any():
            extra = (*extra, "reported_model")
        ranked_html = _board_html(models, models.table, f"{b.dataset}-models", True, extra)
        unranked = (
            _board_html(models, models.unranked, f"{b.dataset}-unranked", False,
                        ("configuration",))
            if len(models.unranked)
            else None
        )
        samples = None
        if len(b.samples) and b.sample_values:
            samples = _samples_html(b)
        sampler_boards = []
        for i, sb in enumerate(b.samplers):
            block = _board_html(sb, sb.table, f"{b.dataset}-samplers-{i}", True)
            sampler_boards.append({"title": sb.title, "note": " ".join(sb.notes), **block})
        gallery = None
        source = (figures_from / f"{b.dataset}-gallery.png") if figures_from else None
        if source is not None and source.is_file():
            shutil.copyfile(source, out / source.name)
            gallery = source.name
        note = " ".join(models.notes) or (
            "One row per trained model, ranked on what the model is, with no sampler involved: "
            f"{', '.join(models.ranked) or 'no value'}."
        )
        target = f"{b.target[0]} ≤ {b.target[1]:g}" if b.target else ""
        path = out / f"{b.dataset}.html"
        path.write_text(
            _page(
                "dataset.html.j2",
                title=b.dataset,
                datasets=names,
                dataset=b.dataset,
                facts=facts,
                not_applicable=[
                    (r["reason"], int(r["combinations"])) for _, r in b.not_applicable.iterrows()
                ],
                not_applicable_total=int(b.not_applicable["combinations"].sum())
                if len(b.not_applicable)
                else 0,
                models_note=note,
                models=_markup(ranked_html),
                rules=jinja2.utils.markupsafe.Markup(rules),
                target=target,
                unranked=_markup(unranked) if unranked else None,
                plots=[_markup(p) for p in _plots(b)],
                gallery=gallery,
                samples=_markup(samples) if samples else None,
                sampler_boards=[_markup(s) for s in sampler_boards],
            ),
            encoding="utf-8",
        )
        written.append(path)
    index = out / "index.html"
    index.write_text(
        _page(
            "index.html.j2",
            title="All datasets",
            datasets=names,
            facts=facts,
            datasets_table=jinja2.utils.markupsafe.Markup(_datasets_table(boards, frame)),
            rules=jinja2.utils.markupsafe.Markup(rules),
            summaries=_summaries(summaries),
        ),
        encoding="utf-8",
    )
    written.append(index)
    return written


def _markup(block: dict[str, Any]) -> dict[str, Any]:
    """Mark a block's HTML as safe for the autoescaping templates."""
    Markup = jinja2.utils.markupsafe.Markup
    return {k: Markup(v) if k in ("html", "controls") else v for k, v in block.items()}


def _samples_html(b: DatasetBoards) -> dict[str, str]:
    table = b.samples
    data: dict[str, Any] = {_HEADERS.get(c, c): list(table[c]) for c in SAMPLE_KEY}
    numeric, metrics = [], []
    for v in b.sample_values:
        header = sample_header(v, b)
        data[header] = pd.to_numeric(table.get(v), errors="coerce").tolist()
        data[f"{header} ±"] = pd.to_numeric(table.get(f"{v}_se"), errors="coerce").tolist()
        numeric += [header, f"{header} ±"]
    data["runs"] = [
        r + (" ⚠ collapsed" if c else "")
        for r, c in zip(table["runs"], table.get("collapsed", [0] * len(table)), strict=True)
    ]
    frame = pd.DataFrame(data)
    columns = list(frame.columns)
    for v in b.sample_values:
        header = sample_header(v, b)
        metrics.append(
            {
                "name": v,
                "label": header,
                "col": columns.index(header),
                "se": columns.index(f"{header} ±"),
                "higher": bool(b.models.directions.get(v)),
            }
        )
    table_id = f"{b.dataset}-samples"
    meta = {"table": table_id, "metrics": metrics, "extra": [], "method_col": 0, "order": None}
    script = _meta_script(meta)
    primary = next(iter(b.sample_values), None)
    return {
        "html": _datatable(frame, table_id, numeric, None) + script,
        "controls": _controls(table_id, metrics, primary, sorted(set(frame["method"]))),
    }


def _datasets_table(boards: list[DatasetBoards], frame: pd.DataFrame) -> str:
    lines = []
    for b in boards:
        best = b.models.table[b.models.table["rank"] == 1] if len(b.models.table) else b.models.table
        lines.append(
            {
                "dataset": f'<a href="{html.escape(b.dataset)}.html">{html.escape(b.dataset)}</a>',
                "runs": int((frame["dataset"] == b.dataset).sum()),
                "not applicable": int(b.not_applicable["combinations"].sum()) if len(b.not_applicable) else 0,
                "protocol": html.escape(protocol_text(frame, b.dataset)),
                "rank 1 (models)": html.escape(", ".join(model_name(r) for _, r in best.iterrows()) or "–"),
            }
        )
    import itables

    return itables.to_html_datatable(
        pd.DataFrame(lines),
        table_id="datasets",
        connected=True,
        dt_url=_DT_URL,
        showIndex=False,
        maxBytes=0,
        paging=False,
        display_logo_when_loading=False,
        allow_html=True,
        text_in_header_can_be_selected=False,
        layout={"topStart": None, "topEnd": "search", "bottomStart": "info", "bottomEnd": None},
        classes=["display", "compact", "hover"],
        autoWidth=False,
    )


def _summaries(summaries: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    blocks = []
    for kind, summary in summaries.items():
        key = MODEL_KEY if kind == "models" else ["target_kind", "init", "sampler"]
        scopes = []
        for number, scope in summary.groupby("scope", sort=True):
            first = scope.iloc[0]
            frame = pd.DataFrame(
                {
                    "#": range(1, len(scope) + 1),
                    **{_HEADERS.get(c, c): list(scope[c]) for c in key},
                    "average rank": pd.to_numeric(scope["average_rank"]).round(3).tolist(),
                }
            )
            table_id = f"summary-{kind}-{number}"
            method_col = list(frame.columns).index("method" if kind == "models" else "sampler")
            meta = {"table": table_id, "metrics": [], "extra": [], "method_col": method_col, "order": None}
            script = _meta_script(meta)
            scopes.append(
                _markup(
                    {
                        "heading": f"{first['datasets']} datasets, {len(scope)} rows",
                        "datasets": first["scope_datasets"],
                        "html": _datatable(frame, table_id, [], [[len(frame.columns) - 1, "asc"]]) + script,
                        "controls": _controls(table_id, [], None, sorted(set(frame.iloc[:, method_col]))),
                    }
                )
            )
        blocks.append(
            {
                "title": "Models" if kind == "models" else "Samplers",
                "scopes": scopes,
                "text": "Average rank over a set of datasets, among the rows ranked on all of them, "
                "re-ranked among themselves on each dataset by the rules above.",
            }
        )
    return blocks
