"""Static figures of a dataset's page (PNG, for GitHub): learning curves (quality against
training compute, one line per model, as benchopt draws convergence curves), cost against
quality with its Pareto front, and the 2-D gallery (rows: models; columns: learned density,
samples). Saved as 64-colour palette PNGs to keep the repository light."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from .aggregate import MODEL_KEY, DatasetBoards

__all__ = [
    "draw_figures",
    "pareto_front",
    "curve_value",
    "curve_lines",
    "plot_learning_curves",
    "plot_pareto",
    "plot_gallery",
    "model_name",
    "CURVE_VALUES",
]

#: The learning-curve value plotted, the first of these the curves hold (the validation
#: split's Fisher divergence on toys; a training loss is not comparable across methods).
CURVE_VALUES = ("fisher_divergence", "nll", "log_z_error")


def model_name(row: pd.Series | dict | tuple) -> str:
    """``method/architecture[/training sampler]``."""
    values = tuple(row[c] for c in MODEL_KEY) if not isinstance(row, tuple) else row
    return "/".join(str(v) for v in values if v != "–")


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


def curve_value(curves: pd.DataFrame, target: tuple[str, float] | None = None) -> str | None:
    """The curve value the figures plot (the target's, else the first of CURVE_VALUES)."""
    if curves.empty:
        return None
    if target and target[0] in curves and curves[target[0]].notna().any():
        return target[0]
    return next((v for v in CURVE_VALUES if v in curves and curves[v].notna().any()), None)


def curve_lines(curves: pd.DataFrame, value: str) -> dict[tuple, pd.DataFrame]:
    """Model key → its curve: per point, the median over seeds of the FLOPs and the value."""
    lines = {}
    for key, group in curves.dropna(subset=[value]).groupby(MODEL_KEY, sort=True):
        line = group.groupby("point")[["flops", value]].median().sort_values("flops")
        lines[tuple(key)] = line[line["flops"] > 0]
    return lines


def _save(fig, path: Path) -> Path:
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    buffer.seek(0)
    Image.open(buffer).convert("RGB").quantize(colors=64).save(path, optimize=True)
    return path


def _figure(width: float, height: float, dpi: int = 90):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return [cmap(i % 20) for i in range(n)]


def plot_learning_curves(boards: DatasetBoards, path: Path) -> Path | None:
    """Validation quality against training FLOPs, one line per model (median over seeds),
    the target as a dashed line."""
    value = curve_value(boards.curves, boards.target)
    if value is None:
        return None
    lines = curve_lines(boards.curves, value)
    if not lines:
        return None
    fig = _figure(7.5, 4.6)
    ax = fig.subplots()
    for (key, line), colour in zip(lines.items(), _colours(len(lines)), strict=True):
        ax.plot(line["flops"], line[value], marker="o", ms=2.5, lw=1.2, color=colour, label=model_name(key))
    if boards.target and boards.target[0] == value:
        ax.axhline(boards.target[1], color="k", ls="--", lw=0.8, label=f"target {boards.target[1]:g}")
    ax.set_xscale("log")
    positive = pd.concat([line[value] for line in lines.values()])
    if (positive > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel(f"{value} on the validation split (lower is better)")
    ax.set_title(f"{boards.dataset}: learning curves")
    ax.legend(fontsize=6, ncol=2, loc="upper right")
    fig.tight_layout()
    return _save(fig, path)


def pareto_points(boards: DatasetBoards) -> pd.DataFrame:
    """The models with a training cost (FLOPs) and the primary value: ``name``, ``cost``,
    ``quality``, ``front``."""
    board = boards.models
    metric = board.primary
    table = board.table
    if metric is None or table.empty or "train_flops" not in table:
        return pd.DataFrame(columns=["name", "cost", "quality", "front"])
    points = table.assign(name=[model_name(r) for _, r in table.iterrows()])
    points = points.rename(columns={"train_flops": "cost", metric: "quality"})[["name", "cost", "quality"]]
    points = points.dropna()
    loss = -points["quality"] if board.directions.get(metric) else points["quality"]
    points["front"] = pareto_front(points["cost"].to_numpy(float), loss.to_numpy(float))
    return points.reset_index(drop=True)


def plot_pareto(boards: DatasetBoards, path: Path) -> Path | None:
    """Training FLOPs against the primary model value; the Pareto front joined."""
    points = pareto_points(boards)
    metric = boards.models.primary
    if points.empty or metric is None:
        return None
    fig = _figure(6.5, 4.4)
    ax = fig.subplots()
    for (_, row), colour in zip(points.iterrows(), _colours(len(points)), strict=True):
        ax.scatter(row["cost"], row["quality"], s=26, color=colour, label=row["name"])
    front = points[points["front"]].sort_values("cost")
    ax.plot(front["cost"], front["quality"], "k--", lw=0.8, label="Pareto front")
    ax.set_xscale("log")
    q = points["quality"]
    if (q > 0).all() and q.max() / max(q.min(), 1e-300) > 100:
        ax.set_yscale("log")
    higher = boards.models.directions.get(metric)
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel(f"{metric} ({'higher' if higher else 'lower'} is better)")
    ax.set_title(f"{boards.dataset}: cost vs quality")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return _save(fig, path)


def plot_gallery(boards: DatasetBoards, results_dir: Path, path: Path) -> Path | None:
    """One row per model (rank order; degenerate ones last): learned density, samples over
    data; the true density and the data on top. Drawn from the runs' ``gallery.npz``."""
    order = [*boards.models.table.itertuples(index=False), *boards.models.unranked.itertuples(index=False)]
    entries = []
    for row in order:
        key = tuple(getattr(row, c) for c in MODEL_KEY)
        relative = boards.gallery.get(key)
        if relative and (results_dir / relative).is_file():
            with np.load(results_dir / relative) as saved:
                entries.append((key, {k: saved[k] for k in saved.files}))
    if not entries:
        return None
    first = entries[0][1]
    (x0, x1), (y0, y1) = first["view"].reshape(2, 2)
    extent = (x0, x1, y0, y1)
    vmax = float(np.nanmax(first["true"].astype(float)))
    rows = len(entries) + 1
    fig = _figure(3.3, 1.55 * rows, dpi=60)
    axes = fig.subplots(rows, 2, squeeze=False)

    def density(ax, image, title):
        ax.imshow(
            image.astype(float),
            origin="lower",
            extent=extent,
            vmin=0,
            vmax=vmax,
            cmap="viridis",
            aspect="auto",
            interpolation="nearest",
        )
        ax.set_title(title, fontsize=7, pad=2)

    def scatter(ax, points, colour, title):
        data = first["data"].astype(float)
        ax.scatter(data[:, 0], data[:, 1], s=1, c="0.7", lw=0)
        if points is not None:
            points = points.astype(float)
            ax.scatter(points[:, 0], points[:, 1], s=1, c=colour, lw=0)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_title(title, fontsize=7, pad=2)

    density(axes[0, 0], first["true"], "true density")
    scatter(axes[0, 1], None, "k", "data")
    for i, (key, saved) in enumerate(entries, start=1):
        sampler = key[2] if key[2] != "–" else boards.gallery_sampler
        density(axes[i, 0], saved["learned"], model_name(key))
        scatter(axes[i, 1], saved["samples"], "tab:red", f"samples ({sampler})")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{boards.dataset}: learned densities and samples (first seed)", fontsize=8)
    fig.tight_layout(pad=0.3, h_pad=0.4, w_pad=0.2)
    return _save(fig, path)


def draw_figures(boards: DatasetBoards, results_dir: Path, out: Path) -> dict[str, str]:
    """Draw the dataset's figures into ``out``; caption → file name of those drawn."""
    drawn = {}
    for caption, suffix, draw in (
        ("learning curves", "curves", plot_learning_curves),
        ("cost vs quality", "pareto", plot_pareto),
    ):
        if draw(boards, out / f"{boards.dataset}-{suffix}.png"):
            drawn[caption] = f"{boards.dataset}-{suffix}.png"
    if plot_gallery(boards, results_dir, out / f"{boards.dataset}-gallery.png"):
        drawn["gallery"] = f"{boards.dataset}-gallery.png"
    return drawn
