"""Kernel two-sample statistic (MMD) between a sampler's output and fresh data."""

from __future__ import annotations

import torch
from torch import Tensor

from ebmbench import EvalContext, Metric, Param, ToyDensity

__all__ = ["MMD", "mmd2_unbiased", "median_distance"]


def median_distance(x: Tensor) -> float:
    """The median Euclidean distance between distinct rows of ``x`` (the median heuristic).

    >>> median_distance(torch.tensor([[0.0], [1.0], [3.0]]))
    2.0
    """
    d = torch.cdist(x, x)
    i, j = torch.triu_indices(len(x), len(x), offset=1, device=x.device)
    return float(d[i, j].median())


def _kernel(a: Tensor, b: Tensor, bandwidths: Tensor) -> Tensor:
    """k(a, b) = (1/L) Σ_ℓ exp(−‖a − b‖² / 2ℓ²), shape (len(a), len(b))."""
    d2 = torch.cdist(a, b).pow_(2)
    total = torch.zeros_like(d2)
    for h in bandwidths.tolist():
        total.add_(torch.exp(d2 * (-0.5 / (h * h))))
    return total.div_(len(bandwidths))


def _mean_off_diagonal(k: Tensor) -> Tensor:
    n = len(k)
    return (k.sum() - k.diagonal().sum()) / (n * (n - 1))


def mmd2_unbiased(x: Tensor, y: Tensor, bandwidths: Tensor, *, k_yy: Tensor | None = None) -> float:
    """The unbiased estimate MMD²_u of Gretton et al. (2012, JMLR, eq. 3):

        MMD²_u = 1/(m(m−1)) Σ_{i≠j} k(xᵢ, xⱼ) + 1/(n(n−1)) Σ_{i≠j} k(yᵢ, yⱼ)
                 − 2/(mn) Σ_{i,j} k(xᵢ, yⱼ),

    with k the mean of Gaussian kernels of the given bandwidths. Its expectation is the
    population MMD², so it is ≈ 0 (and can be negative) when x and y have the same law.

    >>> x, y = torch.tensor([[0.0], [1.0]]).double(), torch.tensor([[0.0], [2.0]]).double()
    >>> import math
    >>> k = lambda a, b: math.exp(-(a - b) ** 2 / 2)
    >>> expected = k(0, 1) + k(0, 2) - (k(0, 0) + k(0, 2) + k(1, 0) + k(1, 2)) / 2
    >>> abs(mmd2_unbiased(x, y, torch.tensor([1.0]).double()) - expected) < 1e-12
    True
    """
    k_xx = _kernel(x, x, bandwidths)
    k_yy = _kernel(y, y, bandwidths) if k_yy is None else k_yy
    k_xy = _kernel(x, y, bandwidths)
    return float(_mean_off_diagonal(k_xx) + _mean_off_diagonal(k_yy) - 2 * k_xy.mean())


class MMD(Metric):
    """Squared maximum mean discrepancy between the samples and fresh data (↓).

    ``mmd`` is the unbiased MMD²_u (:func:`mmd2_unbiased`) between m = min(#samples,
    ``max_samples``) of the sampler's output and m fresh draws y from the density. The
    kernel is the mean of Gaussian kernels with bandwidths ℓ = c · med, c in
    ``bandwidth_factors`` and med the median pairwise distance of (the first 1000 of) y
    (the median heuristic,
    fixed by the data so no sampler can move it; the smaller factors see the fine
    structure of multi-modal toys).

    ``mmd_floor`` is the same statistic between y and a second independent set of m fresh
    draws: what a perfect sampler would score, ≈ 0 ± its noise. It is a reference value
    (shown, never ranked); compare ``mmd`` with it.
    """

    name = "mmd"
    description = "Unbiased MMD² (multi-bandwidth RBF) of samples vs fresh data, and the data floor"
    higher_is_better = {"mmd": False, "mmd_floor": False}
    reference_values = frozenset({"mmd_floor"})
    needs_samples = True
    params = {
        "max_samples": Param(1000, "samples (and data) compared", smoke=256, full=4000, low=2),
        "bandwidth_factors": Param(
            [0.125, 0.25, 0.5, 1.0], "bandwidths as multiples of the median distance", type=list
        ),
    }

    def applies_to(self, combo) -> bool:
        return isinstance(combo.dataset, ToyDensity)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # The data side (y, the bandwidths, k(y, y) and the floor) depends on the density, the
        # run's seed and m, not on the samples: the harness evaluates one model with every
        # sampler through one metric object, so it is computed once for all of them. The
        # cache holds the density itself, so its identity cannot be reused by another.
        self._cached_for: tuple = ()
        self._cached: tuple[Tensor, Tensor, Tensor, float] | None = None

    def _data_side(self, ctx: EvalContext, m: int) -> tuple[Tensor, Tensor, Tensor, float]:
        key = (ctx.seed, m, str(ctx.device))
        if self._cached is None or self._cached_for[0] is not ctx.dataset or self._cached_for[1:] != key:
            density: ToyDensity = ctx.dataset  # type: ignore[assignment]
            fresh = density.sample(2 * m, ctx.generator(salt=307))
            y = fresh[:m].to(device=ctx.device, dtype=torch.float64)
            y2 = fresh[m:].to(device=ctx.device, dtype=torch.float64)
            factors = torch.tensor([float(c) for c in self.hparams["bandwidth_factors"]],
                                   dtype=torch.float64, device=ctx.device)
            bandwidths = factors * median_distance(y[:1000])
            k_yy = _kernel(y, y, bandwidths)
            floor = mmd2_unbiased(y2, y, bandwidths, k_yy=k_yy)
            self._cached_for, self._cached = (ctx.dataset, *key), (y, bandwidths, k_yy, floor)
        return self._cached

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        x = ctx.samples.reshape(len(ctx.samples), -1)[: self.hparams["max_samples"]]
        y, bandwidths, k_yy, floor = self._data_side(ctx, len(x))
        x = x.to(device=ctx.device, dtype=torch.float64)
        return {"mmd": mmd2_unbiased(x, y, bandwidths, k_yy=k_yy), "mmd_floor": floor}
