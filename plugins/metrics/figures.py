"""A figure per 2-D run: the true density, the learned one, and the samples over the data."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import Tensor

from ebmbench import EvalContext, Metric, Param, ToyDensity, log_integrate_2d, uniform_grid_2d

__all__ = ["DensityFigure", "view_box"]

#: (dataset, parameters, view, resolution) → the true density on the grid: the same for
#: every run on that dataset, and a quadrature per point for the curve densities.
_TRUE_GRID: OrderedDict[tuple, np.ndarray] = OrderedDict()
_CACHE_SIZE = 8


def view_box(data: Tensor, bounds, margin: float = 0.1, quantile: float = 0.005):
    """The box to draw: the data's [q, 1 − q] quantiles widened by ``margin``, within bounds.

    The quadrature boxes of heavy-tailed toys are much larger than where the mass is;
    the picture shows the latter.

    >>> view_box(torch.linspace(-1, 1, 201)[:, None].repeat(1, 2), ((-5, 5), (-5, 5)))
    ((-1.188, 1.188), (-1.188, 1.188))
    """
    lo = torch.quantile(data.double(), quantile, dim=0)
    hi = torch.quantile(data.double(), 1 - quantile, dim=0)
    pad = margin * (hi - lo)
    return tuple(
        (round(max(float(a - p), b[0]), 6), round(min(float(c + p), b[1]), 6))
        for a, c, p, b in zip(lo, hi, pad, bounds, strict=True)
    )


def _energy_dtype(energy) -> torch.dtype:
    param = next(iter(energy.parameters()), None) if hasattr(energy, "parameters") else None
    return param.dtype if param is not None else torch.float32


class DensityFigure(Metric):
    """Writes ``density.png``: true density | learned exp(f_θ)/Z(θ) | samples over data.

    For 2-D toy densities only. The three panels share the view (the data's 0.5–99.5 %
    quantile box, :func:`view_box`) and the two density panels share one colour scale, so
    mass in the wrong place shows as colour. Z(θ) is the quadrature over the dataset's box,
    as in the ``log_partition`` metric. Returns no values; records
    ``ctx.artifacts["density_figure"]`` (relative to ``ctx.artifact_dir``). Does nothing
    when ``ctx.artifact_dir`` is None.
    """

    name = "density_figure"
    description = "PNG of the true vs learned 2-D density and the samples over the data"
    higher_is_better: dict[str, bool] = {}
    needs_samples = True
    params = {
        "resolution": Param(96, "pixels per side of the density images", smoke=48, full=200,
                            low=8),
        "max_points": Param(1000, "samples and data points drawn", full=2000, low=1),
        "grid": Param(128, "about √(quadrature nodes) for Z(θ)", full=512, low=8),
    }

    def applies_to(self, combo) -> bool:
        return isinstance(combo.dataset, ToyDensity) and combo.dataset.bounds is not None

    def _true_density(self, density: ToyDensity, view, points: Tensor) -> np.ndarray:
        key = (type(density).__module__, type(density).__qualname__,
               repr(sorted(density.hparams.items())), view, self.hparams["resolution"])
        if key not in _TRUE_GRID:
            _TRUE_GRID[key] = density.log_prob(points).exp().numpy()
            if len(_TRUE_GRID) > _CACHE_SIZE:
                _TRUE_GRID.popitem(last=False)
        _TRUE_GRID.move_to_end(key)
        return _TRUE_GRID[key]

    @torch.no_grad()
    def compute(self, ctx: EvalContext) -> dict[str, float]:
        if ctx.artifact_dir is None:
            return {}
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        density: ToyDensity = ctx.dataset  # type: ignore[assignment]
        res, k = self.hparams["resolution"], self.hparams["max_points"]
        data = ctx.test_data[: max(k, 2000)]
        view = view_box(data, density.bounds)
        _, _, points = uniform_grid_2d(view, res)
        true = self._true_density(density, view, points).reshape(res, res)

        dtype = _energy_dtype(ctx.energy)
        log_z = log_integrate_2d(ctx.energy, density.bounds, self.hparams["grid"],
                                 device=ctx.device, dtype=dtype)
        f = ctx.energy(points.to(device=ctx.device, dtype=dtype)).double().cpu()
        learned = (f - log_z).exp().reshape(res, res).numpy()

        fig = Figure(figsize=(9.6, 3.4), dpi=80)
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 3, sharex=True, sharey=True)
        extent = (*view[0], *view[1])
        vmax = float(np.nanmax(true))
        for ax, image, title in ((axes[0], true, "true density"),
                                 (axes[1], learned, "learned exp(f)/Z")):
            ax.imshow(image, origin="lower", extent=extent, vmin=0, vmax=vmax,
                      cmap="viridis", aspect="auto", interpolation="nearest")
            ax.set_title(title, fontsize=9)
        samples = ctx.samples.reshape(len(ctx.samples), -1)[:k].detach().double().cpu()
        axes[2].scatter(data[:k, 0], data[:k, 1], s=2, c="0.6", lw=0, label="data")
        axes[2].scatter(samples[:, 0], samples[:, 1], s=2, c="tab:red", lw=0, label="samples")
        axes[2].set_xlim(*view[0])
        axes[2].set_ylim(*view[1])
        axes[2].set_title("samples (red) over data (grey)", fontsize=9)
        sampler = ctx.sampler.name if ctx.sampler is not None else "-"
        fig.suptitle(f"{density.name} · {ctx.method.name} · {sampler} · seed {ctx.seed}",
                     fontsize=10)
        for ax in axes:
            ax.tick_params(labelsize=7)
        fig.tight_layout()
        ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(ctx.artifact_dir / "density.png")
        ctx.artifacts["density_figure"] = "density.png"
        return {}
