"""What a 2-D run contributes to its dataset's gallery figure: the learned density on a grid
and a subset of its samples, saved compactly; the leaderboard draws one gallery per dataset."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import Tensor

from ebmbench import EvalContext, Metric, Param, ToyDensity, log_integrate_2d, uniform_grid_2d

__all__ = ["DensityFigure", "view_box", "GALLERY_FILE"]

#: The file each run writes in its artifact folder.
GALLERY_FILE = "gallery.npz"

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
    """Writes ``gallery.npz``: what the dataset's gallery figure draws for this run.

    For 2-D toy densities only. The file holds ``view`` (the box drawn: the data's
    0.5–99.5 % quantile box, :func:`view_box`), ``true`` and ``learned`` (the true density
    and exp(f_θ)/Z(θ) on a ``resolution``² grid over the view, Z(θ) by quadrature over the
    dataset's box as in the ``log_partition`` metric), ``samples`` and ``data`` (up to
    ``max_points`` of each), as float16 (about 20 kB). The leaderboard draws one figure per
    dataset from them (rows: models; columns: learned density, samples) instead of a
    picture per run. Returns no values; records ``ctx.artifacts["density_figure"]``. Does
    nothing when ``ctx.artifact_dir`` is None.
    """

    name = "density_figure"
    description = "Saves the learned 2-D density on a grid and a sample subset for the dataset's gallery"
    higher_is_better: dict[str, bool] = {}
    needs_samples = True
    params = {
        "resolution": Param(64, "grid points per side of the density images", smoke=32, full=128,
                            low=8),
        "max_points": Param(500, "samples and data points kept", full=1000, low=1),
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
        samples = ctx.samples.reshape(len(ctx.samples), -1)[:k].detach().double().cpu().numpy()
        ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
        with open(ctx.artifact_dir / GALLERY_FILE, "wb") as handle:
            np.savez_compressed(
                handle, view=np.asarray(view, dtype=np.float64).reshape(-1),
                true=true.astype(np.float16), learned=np.nan_to_num(learned, posinf=6e4).astype(np.float16),
                samples=samples.astype(np.float16), data=data[:k].double().numpy().astype(np.float16),
            )
        ctx.artifacts["density_figure"] = GALLERY_FILE
        return {}
