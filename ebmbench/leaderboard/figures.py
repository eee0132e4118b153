"""Leaderboard figures: a cost–quality Pareto plot and a method × sampler heatmap."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .aggregate import Board

__all__ = ["primary_metric", "pareto_front", "plot_pareto", "plot_heatmap", "PRIMARY_METRICS"]

#: The metric a dataset's figures plot, the first of these that the board has.
PRIMARY_METRICS = ("fisher_divergence", "test_nll", "fid", "kid", "mmd", "c2st_accuracy")


def primary_metric(board: Board) -> str | None:
    """The quality metric the figures use for ``board``."""
    for name in PRIMARY_METRICS:
        if name in board.ranked and board.table[name].notna().any():
            return name
    return next((v for v in board.ranked if board.table[v].notna().any()), None)


def pareto_front(cost: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Mask of the points no other point beats on both cost and loss (both lower-better).

    >>> pareto_front(np.array([1.0, 2.0, 3.0]), np.array([3.0, 1.0, 2.0])).tolist()
    [True, True, False]
    """
    keep = np.ones(len(cost), dtype=bool)
    for i in range(len(cost)):
        dominated = (cost <= cost[i]) & (loss <= loss[i]) & ((cost < cost[i]) | (loss < loss[i]))
        keep[i] = not dominated.any()
    return keep


def _cost(table: pd.DataFrame) -> pd.Series:
    parts = [table[c] for c in ("train_seconds", "sample_seconds") if c in table.columns]
    return sum(parts) if parts else pd.Series(np.nan, index=table.index)


def plot_pareto(board: Board, path: Path) -> Path | None:
    """Seconds (train + sample) against the primary metric; the Pareto front joined."""
    metric = primary_metric(board)
    if metric is None:
        return None
    table = board.table.assign(cost=_cost(board.table)).dropna(subset=["cost", metric])
    if table.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    higher = board.directions[metric]
    loss = -table[metric].to_numpy() if higher else table[metric].to_numpy()
    front = pareto_front(table["cost"].to_numpy(), loss)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for method, group in table.groupby("method"):
        ax.scatter(group["cost"], group[metric], label=method, s=28, alpha=0.8)
    ordered = table[front].sort_values("cost")
    ax.plot(ordered["cost"], ordered[metric], "k--", lw=1, label="Pareto front")
    ax.set_xscale("log")
    if (table[metric] > 0).all() and table[metric].max() / max(table[metric].min(), 1e-300) > 100:
        ax.set_yscale("log")
    ax.set_xlabel("train + sample seconds")
    ax.set_ylabel(f"{metric} ({'higher' if higher else 'lower'} is better)")
    ax.set_title(f"{board.dataset}: cost vs quality")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_heatmap(board: Board, path: Path) -> Path | None:
    """Method × sampler grid of the primary metric (best architecture per cell)."""
    metric = primary_metric(board)
    if metric is None:
        return None
    higher = board.directions[metric]
    cells = board.table.groupby(["method", "sampler"])[metric].agg("max" if higher else "min")
    grid = cells.unstack("sampler")
    if grid.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = grid.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    wide = (finite > 0).all() and np.nanmax(values) / max(np.nanmin(values), 1e-300) > 100
    shown = np.log10(values) if wide else values
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * grid.shape[1], 1.0 + 0.45 * grid.shape[0]))
    image = ax.imshow(shown, cmap="viridis" if higher else "viridis_r", aspect="auto")
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=30, ha="right")
    ax.set_yticks(range(grid.shape[0]), grid.index)
    for (i, j), v in np.ndenumerate(values):
        if math.isfinite(v):
            ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7, color="w")
    label = f"log10 {metric}" if shown is not values else metric
    fig.colorbar(image, ax=ax, label=label)
    best_of = " (best architecture)" if board.table["architecture"].nunique() > 1 else ""
    ax.set_title(f"{board.dataset}: {metric} by method × sampler{best_of}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
