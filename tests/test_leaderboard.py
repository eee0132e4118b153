"""Leaderboard aggregation and rendering against hand-computed values."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from ebmbench.leaderboard import aggregate, render_board, summarize
from ebmbench.leaderboard.figures import pareto_front, plot_heatmap, plot_pareto


def _frame() -> pd.DataFrame:
    rows = []
    # a/x: fisher 1, 3 (mean 2, se 1); b/x: fisher 0.5, 0.5; c/x failed.
    for method, values in {"a": [1.0, 3.0], "b": [0.5, 0.5]}.items():
        for seed, v in enumerate(values):
            rows.append({
                "method": method, "sampler": "x", "architecture": "mlp", "dataset": "toy",
                "seed": seed, "status": "ok", "reason": "",
                "metric.fisher_divergence": v, "metric.train_seconds": 10.0 if method == "b" else 1.0,
                "metric.c2st": 0.9 if method == "b" else 0.6,
                "directions": {"fisher_divergence": False, "train_seconds": False, "c2st": True},
                "cost_values": ["train_seconds"],
                "artifacts": {"density_figure": f"artifacts/{method}{seed}/density.png"},
            })
    rows.append({"method": "c", "sampler": "x", "architecture": "mlp", "dataset": "toy",
                 "seed": 0, "status": "failed", "reason": "boom | bang",
                 "directions": {}, "cost_values": [], "artifacts": {}})
    return pd.DataFrame(rows)


def test_mean_and_standard_error_over_seeds():
    (board,) = aggregate(_frame())
    a = board.table.set_index("method").loc["a"]
    assert a["fisher_divergence"] == 2.0
    assert math.isclose(a["fisher_divergence_se"], math.sqrt(2.0) / math.sqrt(2))  # std 1.414
    assert a["runs"] == "2/2 ok"


def test_rank_averages_quality_metrics_with_their_directions_and_ignores_cost():
    (board,) = aggregate(_frame())
    assert board.ranked == ["fisher_divergence", "c2st"]
    # b wins both quality metrics (lower fisher, higher c2st) although it is slower.
    assert board.table.iloc[0]["method"] == "b" and board.table.iloc[0]["rank"] == 1


def test_rendered_markdown_marks_directions_links_figures_and_lists_failures():
    (board,) = aggregate(_frame())
    text = render_board(board, link_base="../results")
    assert "| fisher_divergence ↓" in text.replace("  ", " ") or "fisher_divergence ↓" in text
    assert "c2st ↑" in text
    assert "2 ± 1" in text  # mean ± se of a
    assert "[density_figure](../results/artifacts/b0/density.png)" in text
    assert "boom \\| bang" in text  # failures listed, pipes escaped


def test_summary_averages_ranks_over_complete_combinations_only():
    frame = _frame()
    other = frame[frame.status == "ok"].copy()
    other["dataset"] = "toy2"
    other.loc[other.method == "a", "metric.fisher_divergence"] = 0.1  # a wins on toy2
    both = pd.concat([frame, other], ignore_index=True)
    summary = summarize(aggregate(both), both)
    assert set(summary.method) == {"a", "b"}  # c never finished ok: not complete
    assert summary.set_index("method").loc["a", "datasets"] == 2
    # toy: b ranks 1, a 2; toy2: a wins fisher, b wins c2st, so they tie at rank 1.
    assert summary.set_index("method")["average_rank"].to_dict() == {"a": 1.5, "b": 1.0}


def test_summary_ranks_each_scope_among_the_combinations_that_cover_it():
    frame = _frame()
    other = frame[frame.status == "ok"].copy()
    other["dataset"] = "toy2"
    other.loc[other.method == "a", "metric.fisher_divergence"] = 0.1
    # e beats everyone on toy but is skipped on toy2: it must not push a and b down in the
    # {toy, toy2} scope, and a scope of one dataset is its own board, not a summary.
    best = frame[frame.method == "b"].copy().assign(method="e")
    best["metric.fisher_divergence"] = 0.01
    best["metric.c2st"] = 0.99
    skip = best.iloc[:1].assign(dataset="toy2", status="skipped", reason="no")
    both = pd.concat([frame, other, best, skip], ignore_index=True)
    summary = summarize(aggregate(both), both)
    assert summary["scope"].unique().tolist() == [0]
    assert summary["scope_datasets"].unique().tolist() == ["toy, toy2"]
    assert summary.set_index("method")["average_rank"].to_dict() == {"a": 1.5, "b": 1.0}
    # Add a third dataset that only a and e ran: {toy, toy3} is a second scope for them.
    third = pd.concat([best, frame[frame.method == "a"]]).assign(dataset="toy3")
    frame3 = pd.concat([both, third], ignore_index=True)
    summary = summarize(aggregate(frame3), frame3)
    scopes = {r["scope_datasets"]: g for r, g in
              ((g.iloc[0], g) for _, g in summary.groupby("scope"))}
    assert set(scopes) == {"toy, toy2", "toy, toy3"}
    assert scopes["toy, toy3"].set_index("method")["average_rank"].to_dict() == {"e": 1.0, "a": 2.0}


def test_pareto_front_keeps_the_non_dominated_points():
    cost = np.array([1.0, 2.0, 3.0, 0.5])
    loss = np.array([5.0, 1.0, 2.0, 9.0])
    assert pareto_front(cost, loss).tolist() == [True, True, False, True]


def test_figures_are_written_and_linked(tmp_path):
    (board,) = aggregate(_frame())
    board.table["train_seconds"] = [1.0, 10.0]
    assert plot_pareto(board, tmp_path / "p.png") and (tmp_path / "p.png").stat().st_size > 1000
    assert plot_heatmap(board, tmp_path / "h.png") and (tmp_path / "h.png").stat().st_size > 1000
    text = render_board(board, "../results", {"cost vs quality": "p.png"})
    images = [line for line in text.splitlines() if line.startswith("![")]
    # The page's figures, not a run's figure (the per-run links are in the table).
    assert images == ["![cost vs quality](p.png)"]


def test_columns_are_quality_then_cost_and_skips_are_counted_by_reason():
    frame = _frame()
    skip = {"sampler": "x", "architecture": "conv", "dataset": "toy", "seed": 0,
            "status": "skipped", "reason": "conv takes images", "directions": {},
            "cost_values": [], "artifacts": {}}
    frame = pd.concat([frame, pd.DataFrame([{**skip, "method": "a"}, {**skip, "method": "b"}])],
                      ignore_index=True)
    (board,) = aggregate(frame)
    text = render_board(board)
    header = next(line for line in text.splitlines() if line.startswith("| rank"))
    assert header.index("fisher_divergence") < header.index("c2st") < header.index("train_seconds")
    failures, skipped = text.split("## Runs that did not finish ok")[1].split("## Skipped")
    assert "boom" in failures and "conv takes images" not in failures
    assert re.search(r"\|\s*2\s*\|\s*conv takes images\s*\|", skipped)


def test_boards_render_the_same_from_the_store_and_its_exports_and_check_detects_edits(tmp_path):
    from ebmbench.leaderboard import check_leaderboards, write_leaderboards
    from ebmbench.store import ResultStore

    frame = _frame()
    with ResultStore.open(tmp_path / "results.sqlite") as store:
        for i, row in enumerate(frame.to_dict("records")):
            metrics = {k[7:]: v for k, v in row.items() if k.startswith("metric.") and v == v}
            store.write({**row, "run_id": f"r{i}", "metrics": metrics})
        for fmt in ("csv", "parquet", "json"):
            store.export(fmt, tmp_path / f"results.{fmt}")
    write_leaderboards(tmp_path / "results.sqlite", tmp_path / "boards")
    for fmt in ("csv", "parquet", "json"):
        assert check_leaderboards(tmp_path / f"results.{fmt}", tmp_path / "boards") == [], fmt
    page = tmp_path / "boards" / "toy.md"
    page.write_text(page.read_text().replace("2/2 ok", "3/3 ok"))
    assert check_leaderboards(tmp_path / "results.csv", tmp_path / "boards") == [
        f"{page} differs from what {tmp_path / 'results.csv'} renders"]


def test_index_says_what_ran_and_links_every_dataset():
    from ebmbench.leaderboard import render_index

    frame = _frame().assign(budget="smoke", device="cpu")
    frame.loc[len(frame)] = {**frame.iloc[0].to_dict(), "seed": 10, "status": "skipped",
                             "budget": "full"}  # skipped runs did not run at that budget
    frame.loc[len(frame)] = {**frame.iloc[0].to_dict(), "seed": 2}
    text = render_index(aggregate(frame), frame)
    assert "budget: smoke · seeds: 0, 1, 2 · device: cpu" in text
    assert "[toy](toy.md)" in text
