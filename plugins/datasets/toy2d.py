"""Two-dimensional mixtures with closed-form log-density and score.

* ``eight_gaussians``: 8 isotropic Gaussians on a circle (Grathwohl et al. 2019, FFJORD).
* ``twenty_five_gaussians``: 25 isotropic Gaussians on a 5 × 5 grid.
* ``checkerboard``: 8 uniform squares of a 4 × 4 board, smoothed by a Gaussian so the
  score exists everywhere.

Everything is computed in float64 and returned in the dtype of the input.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmbench import Param, ToyDensity

__all__ = ["EightGaussians", "TwentyFiveGaussians", "Checkerboard", "log_ndtr_diff"]


class _IsotropicMixture(ToyDensity):
    """p(x) = 1/K Σₖ N(x; μₖ, s² I), equal weights; subclasses set :attr:`means`.

    With responsibilities rₖ(x) = softmaxₖ(−‖x − μₖ‖² / 2s²) the score is

        ∇ₓ log p(x) = Σₖ rₖ(x) (μₖ − x) / s².
    """

    dim = 2
    means: Tensor  # (K, 2), float64

    def _log_components(self, x: Tensor) -> Tensor:
        s = self.hparams["scale"]
        d2 = (x[:, None, :] - self.means.to(x.device)[None]).pow(2).sum(-1)
        return -d2 / (2 * s * s) - math.log(2 * math.pi * s * s) - math.log(len(self.means))

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        comp = torch.randint(0, len(self.means), (n,), generator=generator)
        noise = torch.randn((n, 2), generator=generator, dtype=torch.float64)
        return (self.means[comp] + self.hparams["scale"] * noise).float()

    def log_prob(self, x: Tensor) -> Tensor:
        return torch.logsumexp(self._log_components(x.double()), dim=1).to(x.dtype)

    def score(self, x: Tensor) -> Tensor:
        x64 = x.detach().double()
        resp = torch.softmax(self._log_components(x64), dim=1)
        mean = resp @ self.means.to(x.device)
        return ((mean - x64) / self.hparams["scale"] ** 2).to(x.dtype)

    def _set_bounds(self, margin: float) -> None:
        reach = float(self.means.abs().max()) + margin * self.hparams["scale"]
        self.bounds = ((-reach, reach), (-reach, reach))


class EightGaussians(_IsotropicMixture):
    """Eight isotropic Gaussians evenly spaced on a circle, equal weights.

    p(x) = 1/8 Σₖ N(x; r(cos 2πk/8, sin 2πk/8), s² I), r = ``radius``, s = ``scale``
    (after Grathwohl et al. 2019, FFJORD's "8gaussians", which has r = 2√2, s = 0.35).

    >>> d = EightGaussians()
    >>> x = d.sample(4, torch.Generator().manual_seed(0))
    >>> d.log_prob(x).shape, d.score(x).shape
    (torch.Size([4]), torch.Size([4, 2]))
    """

    name = "eight_gaussians"
    description = "8 Gaussians on a circle of radius 2 (2-D)"
    params = ToyDensity.params | {
        "radius": Param(2.0, "radius of the circle of means", low=0),
        "scale": Param(0.2, "standard deviation of each component", positive=True),
    }

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        r = self.hparams["radius"]
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        self.means = r * torch.stack([angles.cos(), angles.sin()], dim=1)
        reach = r + 8 * self.hparams["scale"]
        self.bounds = ((-reach, reach), (-reach, reach))


class TwentyFiveGaussians(_IsotropicMixture):
    """25 isotropic Gaussians on a 5 × 5 grid, equal weights.

    p(x) = 1/25 Σ_{i,j ∈ {−2,…,2}} N(x; h (i, j), s² I), h = ``spacing``, s = ``scale``.
    The modes are far apart relative to s: samplers must jump between them to get the
    weights right.

    >>> d = TwentyFiveGaussians()
    >>> d.means.shape, d.bounds[0]
    (torch.Size([25, 2]), (-2.7, 2.7))
    """

    name = "twenty_five_gaussians"
    description = "25 Gaussians (std 0.1) on a 5x5 grid of spacing 1 (2-D)"
    params = ToyDensity.params | {
        "spacing": Param(1.0, "distance between neighbouring means", low=0),
        "scale": Param(0.1, "standard deviation of each component", positive=True),
    }

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        ticks = torch.arange(-2, 3, dtype=torch.float64) * self.hparams["spacing"]
        self.means = torch.cartesian_prod(ticks, ticks)
        self._set_bounds(margin=7.0)


def log_ndtr_diff(a: Tensor, b: Tensor) -> Tensor:
    """log(Φ(a) − Φ(b)) for a > b, accurate in both tails.

    Where a + b > 0 it uses Φ(a) − Φ(b) = Φ(−b) − Φ(−a), so the subtraction never cancels
    two numbers close to 1; then log(Φ(u) − Φ(v)) = log Φ(u) + log(−expm1(log Φ(v) − log Φ(u))).

    >>> a, b = torch.tensor([1.0, 40.0], dtype=torch.float64), torch.tensor([-1.0, 39.0])
    >>> [round(v, 6) for v in log_ndtr_diff(a, b.double()).tolist()]
    [-0.381715, -765.083157]
    """
    flip = (a + b) > 0
    u = torch.where(flip, -b, a)
    v = torch.where(flip, -a, b)
    log_u = torch.special.log_ndtr(u)
    return log_u + torch.log(-torch.expm1(torch.special.log_ndtr(v) - log_u))


class Checkerboard(ToyDensity):
    """A 4 × 4 checkerboard of side-h squares, 8 of them filled, smoothed by N(0, s² I).

    x = u + s ε with u uniform on the union of the 8 filled squares Sᵢⱼ = [h i, h(i+1)) ×
    [h j, h(j+1)), i, j ∈ {−2,…,1}, i + j even (FFJORD's "checkerboard" with h = 2), and
    ε ~ N(0, I). Convolving the uniform squares with the Gaussian gives the closed form

        p(x) = 1/8 Σ_{(i,j)} Π_{d} [Φ((x_d − lo_d)/s) − Φ((x_d − hi_d)/s)] / h,

    smooth everywhere (s = ``smoothing``), so its score exists at every point.

    >>> d = Checkerboard()
    >>> x = torch.tensor([[1.0, 1.0], [1.0, -1.0]])   # a filled and an empty square
    >>> [round(v, 4) for v in d.log_prob(x).exp().tolist()]
    [0.0312, 0.0]
    """

    name = "checkerboard"
    description = "8 squares of a 4x4 checkerboard on [-4,4]^2, Gaussian-smoothed edges (2-D)"
    params = ToyDensity.params | {
        "side": Param(2.0, "side h of each square", positive=True),
        "smoothing": Param(0.1, "standard deviation s of the Gaussian blur", positive=True),
    }
    dim = 2

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        h, s = self.hparams["side"], self.hparams["smoothing"]
        reach = 2 * h + 7 * s
        self.bounds = ((-reach, reach), (-reach, reach))
        idx = torch.arange(-2, 2)
        i, j = torch.meshgrid(idx, idx, indexing="ij")
        filled = (i + j) % 2 == 0
        #: Column and row index (0..3) of each filled square.
        self.cells = torch.stack([i[filled] + 2, j[filled] + 2], dim=1)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        h, s = self.hparams["side"], self.hparams["smoothing"]
        cell = self.cells[torch.randint(0, len(self.cells), (n,), generator=generator)]
        u = torch.rand((n, 2), generator=generator, dtype=torch.float64)
        eps = torch.randn((n, 2), generator=generator, dtype=torch.float64)
        return ((cell - 2 + u) * h + s * eps).float()

    def log_prob(self, x: Tensor) -> Tensor:
        h, s = self.hparams["side"], self.hparams["smoothing"]
        x64 = x.double()
        lo = torch.arange(-2, 2, dtype=torch.float64, device=x.device) * h  # the 4 intervals
        # per_axis[n, d, c]: log of the blurred indicator of interval c along axis d, / h.
        per_axis = log_ndtr_diff((x64[..., None] - lo) / s, (x64[..., None] - lo - h) / s)
        per_axis = per_axis - math.log(h)
        cells = self.cells.to(x.device)
        log_cells = per_axis[:, 0, cells[:, 0]] + per_axis[:, 1, cells[:, 1]]
        return (torch.logsumexp(log_cells, dim=1) - math.log(len(cells))).to(x.dtype)
