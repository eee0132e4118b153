"""KID with a standard error, on extracted features.

Pure tensor code (no torch-fidelity here), so it is cheap to import and to test against
closed forms.

KID (Bińkowski et al. 2018, "Demystifying MMD GANs", §4) is the unbiased estimate of the
squared maximum mean discrepancy with the cubic polynomial kernel
k(a, b) = (aᵀb / d + 1)³ between features x₁…xₙ of the samples and y₁…yₘ of the reference:

    KID = 1/(n(n−1)) Σ_{i≠j} k(xᵢ, xⱼ) + 1/(m(m−1)) Σ_{i≠j} k(yᵢ, yⱼ) − 2/(nm) Σ_{i,j} k(xᵢ, yⱼ).

torch-fidelity averages it over random subsets and reports their spread, which is not a
standard error of anything (with one subset of all the samples it measures only the
resampling of the reference). Here it is computed once on all n and m features, and its
standard error is the two-sample delete-one jackknife (Arvesen 1969), which for
U-statistics is conservative (Efron & Stein 1981).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["polynomial_kernel", "kid_with_se"]


def polynomial_kernel(a: Tensor, b: Tensor) -> Tensor:
    """k(a, b) = (aᵀb / d + 1)³ for every row pair, (len(a), len(b)): torch-fidelity's KID kernel.

    >>> polynomial_kernel(torch.ones(1, 2), torch.ones(1, 2))   # (2/2 + 1)³
    tensor([[8.]])
    """
    return (a @ b.T / a.shape[1] + 1).pow(3)


def _sums(x: Tensor, y: Tensor | None, chunk: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """Row sums of k(x, x) without the diagonal, and row and column sums of k(x, y)."""
    off_diagonal = x.new_zeros(len(x))
    cross_rows = x.new_zeros(len(x))
    cross_cols = None if y is None else x.new_zeros(len(y))
    for start in range(0, len(x), chunk):
        rows = x[start : start + chunk]
        k_xx = polynomial_kernel(rows, x)
        diagonal = (rows.pow(2).sum(1) / x.shape[1] + 1).pow(3)  # k(xᵢ, xᵢ)
        off_diagonal[start : start + chunk] = k_xx.sum(1) - diagonal
        if y is not None and cross_cols is not None:
            k_xy = polynomial_kernel(rows, y)
            cross_rows[start : start + chunk] = k_xy.sum(1)
            cross_cols += k_xy.sum(0)
    return off_diagonal, cross_rows, cross_cols


def kid_with_se(x: Tensor, y: Tensor, chunk: int = 2048) -> tuple[float, float]:
    """(KID, its jackknife standard error) between features ``x`` (n, d) and ``y`` (m, d).

    With r_i = Σ_{j≠i} k(xᵢ, xⱼ), c_i = Σ_j k(xᵢ, yⱼ) (and likewise for y), deleting xᵢ gives

        KID₍₋ᵢ₎ = (S_xx − 2rᵢ)/((n−1)(n−2)) + S_yy/(m(m−1)) − 2(S_xy − cᵢ)/((n−1)m),

    and the jackknife variance is (n−1)/n Σᵢ (KID₍₋ᵢ₎ − mean)² plus the same over y
    (Arvesen 1969, two-sample U-statistics). All in float64, chunked over rows, so memory
    is O(chunk · (n + m)).

    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = torch.randn(300, 4, generator=g), torch.randn(300, 4, generator=g)
    >>> kid, se = kid_with_se(x, y)
    >>> abs(kid) < 3 * se, se > 0   # the same distribution: KID ≈ 0 within its error
    (True, True)
    """
    x, y = x.detach().to(torch.float64), y.detach().to(torch.float64)
    n, m = len(x), len(y)
    if n < 3 or m < 3:
        raise ValueError(f"KID needs at least 3 features on each side, got {n} and {m}")
    r_x, c_x, c_y = _sums(x, y, chunk)
    r_y, _, _ = _sums(y, None, chunk)
    assert c_y is not None
    s_xx, s_yy, s_xy = r_x.sum(), r_y.sum(), c_x.sum()
    kid = s_xx / (n * (n - 1)) + s_yy / (m * (m - 1)) - 2 * s_xy / (n * m)
    drop_x = ((s_xx - 2 * r_x) / ((n - 1) * (n - 2)) + s_yy / (m * (m - 1))
              - 2 * (s_xy - c_x) / ((n - 1) * m))
    drop_y = (s_xx / (n * (n - 1)) + (s_yy - 2 * r_y) / ((m - 1) * (m - 2))
              - 2 * (s_xy - c_y) / (n * (m - 1)))
    var = ((n - 1) / n * (drop_x - drop_x.mean()).pow(2).sum()
           + (m - 1) / m * (drop_y - drop_y.mean()).pow(2).sum())
    return float(kid), float(var.clamp_min(0).sqrt())
