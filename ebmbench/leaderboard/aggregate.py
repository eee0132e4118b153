"""Aggregate result rows into per-dataset leaderboards: mean ± standard error, rank."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Board", "aggregate", "summarize", "COMBO"]

#: The columns that identify a leaderboard row.
COMBO = ["method", "sampler", "architecture"]


@dataclass
class Board:
    """One dataset's leaderboard.

    Attributes:
        dataset: The dataset's name.
        table: One row per combination: ``rank``, the :data:`COMBO` columns, ``runs``
            (ok/total), ``seeds``, and for each metric value ``<name>`` (mean over seeds) and
            ``<name>_se`` (standard error over seeds, NaN with one seed).
        directions: Metric value → higher is better.
        ranked: The metric values the rank averages over (quality: not cost, not reference).
        links: Combination → {figure name: path relative to the results folder}.
        not_ok: Rows of this dataset whose status is not ``ok``.
        reference: Values shown for reference only (floors, sample counts).
    """

    dataset: str
    table: pd.DataFrame
    directions: dict[str, bool]
    ranked: list[str]
    links: dict[tuple[str, ...], dict[str, str]] = field(default_factory=dict)
    not_ok: pd.DataFrame | None = None
    reference: list[str] = field(default_factory=list)


def _directions(rows: pd.DataFrame) -> tuple[dict[str, bool], set[str], set[str]]:
    """Every value's direction, the cost values and the reference values."""
    directions: dict[str, bool] = {}
    sets: dict[str, set[str]] = {"cost_values": set(), "reference_values": set()}
    for d in rows.get("directions", []):
        directions.update(d or {})
    for column, found in sets.items():
        for c in rows.get(column, []):
            found.update(c or [])
    return directions, sets["cost_values"], sets["reference_values"]


def aggregate(frame: pd.DataFrame) -> list[Board]:
    """One :class:`Board` per dataset in ``frame`` (as from ``load_results``)."""
    boards = []
    if frame.empty:
        return boards
    for dataset, rows in frame.groupby("dataset", sort=True):
        ok = rows[rows["status"] == "ok"]
        directions, costs, references = _directions(ok)
        values = [v for v in directions if f"metric.{v}" in ok.columns]
        records = []
        links: dict[tuple[str, ...], dict[str, str]] = {}
        for combo, group in rows.groupby(COMBO, sort=True):
            good = group[group["status"] == "ok"]
            record: dict[str, Any] = dict(zip(COMBO, combo, strict=True))
            record["runs"] = f"{len(good)}/{len(group)} ok"
            record["seeds"] = len(good)
            if good.empty:
                continue
            for v in values:
                col = good[f"metric.{v}"].astype(float).dropna()
                record[v] = col.mean() if len(col) else math.nan
                record[f"{v}_se"] = col.std(ddof=1) / math.sqrt(len(col)) if len(col) > 1 else math.nan
            records.append(record)
            first = good.sort_values("seed").iloc[0]
            if first.get("artifacts"):
                links[tuple(combo)] = {
                    k: p for k, p in first["artifacts"].items()
                    if isinstance(p, str) and p.startswith("artifacts/")
                }
        table = pd.DataFrame.from_records(records)
        ranked = [v for v in values if v not in costs and v not in references]
        if not table.empty:
            table.insert(0, "rank", _rank(table, ranked, directions))
            table = table.sort_values(["rank", *COMBO], kind="stable").reset_index(drop=True)
        not_ok = rows[rows["status"] != "ok"][COMBO + ["seed", "status", "reason"]]
        boards.append(Board(str(dataset), table, directions, ranked, links, not_ok,
                            sorted(references & set(values))))
    return boards


def _rank(table: pd.DataFrame, ranked: list[str], directions: dict[str, bool]) -> pd.Series:
    """Dense rank of the mean per-metric rank (1 = best); NaN metrics rank last."""
    if not ranked:
        return pd.Series(np.ones(len(table), dtype=int), index=table.index)
    per_metric = pd.DataFrame(index=table.index)
    for v in ranked:
        col = table[v].astype(float)
        per_metric[v] = col.rank(ascending=not directions[v], method="min", na_option="bottom")
    return per_metric.mean(axis=1).rank(method="min").astype(int)


def summarize(boards: list[Board], frame: pd.DataFrame) -> pd.DataFrame:
    """Average rank across datasets, over sets of datasets that combinations share.

    A combination is *complete* when it finished ``ok`` on every dataset where it was not
    skipped (an image-only energy is not held against toy densities); its *coverage* is the
    set of datasets it was ranked on. Average ranks are only comparable over the same
    datasets and the same competitors, so each distinct coverage of two or more datasets is
    a *scope*: every complete combination that covers all of the scope's datasets is
    re-ranked among those combinations on each of them (as on the dataset's own board), and
    the ranks are averaged. A combination appears in every scope it covers.

    Returns:
        One row per (scope, combination): ``scope`` (0, 1, ...; widest first),
        ``datasets`` (how many the scope holds), ``scope_datasets`` (their names, comma
        separated), ``average_rank`` and the :data:`COMBO` columns, sorted by scope and
        then best first.
    """
    columns = ["scope", "datasets", "scope_datasets", *COMBO, "average_rank"]
    ranked_boards = {b.dataset: b for b in boards if not b.table.empty}
    if not ranked_boards:
        return pd.DataFrame(columns=columns)
    ranks = pd.concat([b.table[COMBO].assign(dataset=d) for d, b in ranked_boards.items()],
                      ignore_index=True)
    coverage = ranks.groupby(COMBO)["dataset"].agg(frozenset)
    attempted = frame[frame["status"] != "skipped"].groupby(COMBO)["dataset"].nunique()
    coverage = coverage[coverage.map(len) == attempted.reindex(coverage.index).fillna(0)]
    scopes = sorted({c for c in coverage if len(c) >= 2}, key=lambda c: (-len(c), sorted(c)))
    parts = []
    for scope in scopes:
        members = {combo for combo, covered in coverage.items() if scope <= covered}
        if len(members) < 2:
            continue
        per_dataset = []
        for dataset in sorted(scope):
            board = ranked_boards[dataset]
            keep = board.table[COMBO].apply(tuple, axis=1).isin(members)
            table = board.table[keep]
            per_dataset.append(table[COMBO].assign(rank=_rank(table, board.ranked, board.directions)))
        averaged = pd.concat(per_dataset).groupby(COMBO)["rank"].mean().rename("average_rank")
        part = averaged.reset_index().sort_values(["average_rank", *COMBO], kind="stable")
        part.insert(0, "scope_datasets", ", ".join(sorted(scope)))
        part.insert(0, "datasets", len(scope))
        part.insert(0, "scope", len(parts))
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]
