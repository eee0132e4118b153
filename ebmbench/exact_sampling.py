"""Targets with exact samples: a toy density as an energy, and a learned 2-D energy on a grid.

The sampler board (:mod:`ebmbench.sampler_board`) judges samplers against exact samples of
their target. A toy density supplies both itself (``log_prob`` and ``sample``);
:class:`ExactLogDensity` wraps it as the energy a sampler runs on. For a learned energy f_θ in
2-D, :class:`GridDensity2D` draws from exp(f_θ) restricted to a box, exactly up to the
resolution of a fine grid, and measures that resolution's error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .quadrature import uniform_grid_2d

__all__ = ["ExactLogDensity", "GridDensity2D"]


class _LogProbWithScore(torch.autograd.Function):
    """log p(x) forward; the density's own exact score backward (first order only)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, density: Any) -> Tensor:
        ctx.save_for_backward(x)
        ctx.density = density
        return density.log_prob(x)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        score = ctx.density.score(x.detach())
        return grad_out.reshape(-1, *([1] * (x.dim() - 1))) * score, None


class ExactLogDensity(nn.Module):
    """A toy density's exact, normalised log p(x) as an energy f = log p for samplers.

    The gradient ∇ₓf is the density's own exact ``score`` (a :class:`~ebmbench.ToyDensity`
    guarantees it), not autograd through ``log_prob``: for densities defined by a
    quadrature over a curve parameter the closed-form score costs about half of
    differentiating the quadrature (measured on ``pinwheel``: 130 ms for log p and score of
    1000 points against 190 ms by autograd). First-order only, as samplers need.

    >>> from ebmbench import get_dataset
    >>> d = get_dataset("banana")
    >>> x = d.sample(5, torch.Generator().manual_seed(0)).requires_grad_(True)
    >>> (g,) = torch.autograd.grad(ExactLogDensity(d)(x).sum(), x)
    >>> bool(torch.allclose(g, d.score(x.detach()), atol=1e-5))
    True
    """

    def __init__(self, density: Any) -> None:
        super().__init__()
        self.density = density

    def forward(self, x: Tensor) -> Tensor:
        return _LogProbWithScore.apply(x, self.density)


class GridDensity2D:
    """Samples of p ∝ exp(f) on a 2-D box B, exact up to the grid: inverse CDF over cells.

    The box is cut into n × n equal cells with centres cᵢ and area A. The grid density is
    the piecewise-constant

        p̂(x) = exp f(cᵢ) / Ẑ  for x in cell i,   Ẑ = A Σᵢ exp f(cᵢ)

    (Ẑ is the midpoint rule for Z_B = ∫_B exp f). A draw picks cell i with probability
    A exp f(cᵢ) / Ẑ by inverting the cumulative sum of those masses at a uniform u, then
    adds a uniform jitter within the cell. Its errors, both measured here:

    - **resolution**: the total-variation distance TV(p̂, p_B) to the density restricted to
      the box, p_B = exp f / Z_B. With w(x) = exp(f(x) − f(cᵢ)) for x in cell i,
      p_B / p̂ = w Ẑ / Z_B and Z_B / Ẑ = E_p̂[w] exactly, so
      TV = ½ E_p̂ |w / E_p̂[w] − 1|, estimated by :meth:`tv_error` from draws of p̂. It falls
      like the cell width h (O(h ‖∇f‖)).
    - **truncation**: the mass of exp f outside B, :meth:`mass_outside`, by the same
      midpoint rule on a box twice as wide. A sampler targets exp f on the whole plane.

    Args:
        log_f: Maps (m, 2) points to (m,) values f (an energy module, a log-density).
        bounds: ``((x_lo, x_hi), (y_lo, y_hi))``.
        cells: n, cells per axis.
        device: Where to evaluate ``log_f`` (the points are float32 there).
        chunk: Points per call of ``log_f``.

    >>> g = GridDensity2D(lambda x: -0.5 * (x ** 2).sum(1), ((-8, 8), (-8, 8)), cells=256)
    >>> abs(g.log_z - math.log(2 * math.pi)) < 1e-3        # Z of N(0, I) is 2π
    True
    >>> x = g.sample(20_000, torch.Generator().manual_seed(0))
    >>> x.shape, bool(x.mean(0).abs().max() < 0.05), bool((x.var(0) - 1).abs().max() < 0.05)
    (torch.Size([20000, 2]), True, True)
    """

    def __init__(
        self,
        log_f: Callable[[Tensor], Tensor],
        bounds: Sequence[Sequence[float]],
        cells: int = 512,
        *,
        device: torch.device | str | None = None,
        chunk: int = 65_536,
    ) -> None:
        if cells < 2:
            raise ValueError(f"a grid needs at least 2 cells per axis, got {cells}")
        self.log_f, self.device, self.chunk = log_f, device, chunk
        self.bounds = tuple((float(lo), float(hi)) for lo, hi in bounds)
        self.cells = cells
        (x0, x1), (y0, y1) = self.bounds
        self.cell_size = torch.tensor([(x1 - x0) / cells, (y1 - y0) / cells], dtype=torch.float64)
        _, _, self.centres = uniform_grid_2d(self.bounds, cells)
        self._values = self._evaluate(self.centres)
        log_mass = self._values + math.log(float(self.cell_size.prod()))
        #: log Ẑ, the midpoint rule for log ∫_B exp f.
        self.log_z = float(torch.logsumexp(log_mass, dim=0))
        #: Each cell's probability A exp f(cᵢ) / Ẑ, float64.
        self.probs = (log_mass - self.log_z).exp()
        cdf = self.probs.cumsum(0)
        self._cdf = cdf / cdf[-1]

    @torch.no_grad()
    def _evaluate(self, points: Tensor) -> Tensor:
        parts = []
        for start in range(0, len(points), self.chunk):
            x = points[start : start + self.chunk].to(device=self.device, dtype=torch.float32)
            parts.append(self.log_f(x).detach().to(device="cpu", dtype=torch.float64).reshape(-1))
        values = torch.cat(parts)
        if torch.isnan(values).any() or torch.isposinf(values).any():
            raise ValueError("the energy is NaN or +inf on the grid: no density to sample")
        return values

    def _draw(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        cell = torch.searchsorted(self._cdf, u, right=True).clamp_(max=len(self._cdf) - 1)
        jitter = torch.rand((n, 2), generator=generator, dtype=torch.float64) - 0.5
        return self.centres[cell] + jitter * self.cell_size, cell

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` draws of p̂, shape (n, 2), float32 on the CPU, reproducible from ``generator``."""
        return self._draw(n, generator)[0].float()

    def mean(self) -> Tensor:
        """E_p̂[x] = Σᵢ pᵢ cᵢ (the jitter has mean 0), float64."""
        return self.probs @ self.centres

    def covariance(self) -> Tensor:
        """Cov_p̂[x] = Σᵢ pᵢ (cᵢ − m)(cᵢ − m)ᵀ + diag(h²/12): the cells' spread plus the
        uniform jitter's variance, float64 (2, 2)."""
        centred = self.centres - self.mean()
        return (centred * self.probs[:, None]).T @ centred + torch.diag(self.cell_size**2 / 12)

    def tv_error(self, n: int = 4096, generator: torch.Generator | None = None) -> float:
        """A Monte-Carlo estimate of TV(p̂, p_B) from ``n`` draws of p̂ (see the class)."""
        generator = generator or torch.Generator().manual_seed(0)
        x, cell = self._draw(n, generator)
        log_w = self._evaluate(x) - self._values[cell]
        w = (log_w - log_w.max()).exp()
        return float(0.5 * (w / w.mean() - 1).abs().mean())

    def mass_outside(self, cells: int | None = None) -> float:
        """The fraction of ∫ exp f over a box twice as wide (same centre) that lies outside
        the box, by the midpoint rule on ``cells`` (default n/2, even) cells per axis of the
        inner box's width."""
        inner = max(2, (cells or self.cells // 2) // 2 * 2)
        (x0, x1), (y0, y1) = self.bounds
        wx, wy = (x1 - x0) / 2, (y1 - y0) / 2
        wide = ((x0 - wx, x1 + wx), (y0 - wy, y1 + wy))
        _, _, points = uniform_grid_2d(wide, 2 * inner)
        values = self._evaluate(points).reshape(2 * inner, 2 * inner)
        total = torch.logsumexp(values.reshape(-1), dim=0)
        lo, hi = inner // 2, inner // 2 + inner
        inside = torch.logsumexp(values[lo:hi, lo:hi].reshape(-1), dim=0)
        return float(-torch.expm1(inside - total))
