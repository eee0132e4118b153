"""Where short-run CD with ULA can land on a Gaussian dataset, in closed form.

On the ``quadratic`` energy f(x) = −½ (x − m)ᵀ P (x − m), a ULA step is linear and Gaussian:

    x' = A x + ε P m + √(2ε) z,    A = I − εP,

so K steps from chains started at ``init_noise`` (mean m₀, covariance C₀) give chains of
mean and covariance

    m_K = m + Aᴷ (m₀ − m),    C_K = Aᴷ C₀ Aᴷ + 2ε Σ_{j<K} A²ʲ

exactly (with A = V diag(a) Vᵀ the sum is V diag(2ε (1 − a²ᴷ) / (1 − a²)) Vᵀ). f is linear in
the statistics x and x xᵀ, so the expected gradient of ``cd_loss`` (α = 0) vanishes exactly
when the chains' two moments equal the data's: m_K = μ and C_K = Σ. That (m, P) is where
short-run CD settles with exact expectations, wherever its optimiser came from; its Fisher
divergence from the data's N(μ, Σ) is

    ½ tr((P − Σ⁻¹) Σ (P − Σ⁻¹)) + ½ ‖P (μ − m)‖².

Two facts bound it. Every chain variance is at least 2ε (the sum's first term), so along
an axis of standard deviation s a fixed point needs ε < s²/2: above it the energy sharpens
without end (the "no fixed point" cells; the chains then explode once εP passes 2). And
with ε small the K steps do not forget the wide noise they start from, which CD offsets by
a sharper energy. Between the two lies the best CD can do with that kernel and K.

The fixed point is found by the expected gradient's natural flow from the energy's
initialisation (P = I, m solved exactly for each P), dP ∝ P (C_K − Σ) P in steps that keep P
positive definite, which stops at the root with 0 < εP < I, the one reached while the chains
still contract.

This prints, for a Gaussian dataset, the fixed point's Fisher divergence over the training
chains' step (``cd``'s ``chain_step_scale`` × ``ula``'s ε) and K (``cd``'s
``mcmc_steps``: ULA takes one evaluation per step); docs/protocol.md, section 7, compares
it with trained runs.

Usage::

    python scripts/cd_fixed_point.py [--dataset correlated_gaussian]
        [--scale 0.3,1,2,3,4,5,7,9,10] [--steps 5,10,20,50,100,200,400]
"""

from __future__ import annotations

import argparse
import math

import torch
from tabulate import tabulate

import ebmbench

#: Draws of ``init_noise`` for its first two moments (their error is about 1/√n relative).
NOISE_DRAWS = 200_000


def chain_moments(precision: torch.Tensor, mean: torch.Tensor, eps: torch.Tensor,
                  steps: torch.Tensor, m0: torch.Tensor, c0: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and covariance of ULA chains on N(mean, precision⁻¹) after ``steps`` steps of
    size ``eps`` from N-moments (m0, c0); batched over the leading dimension of
    ``precision`` (B, d, d), ``mean`` (B, d), ``eps`` (B,) and ``steps`` (B,).

    >>> p = torch.tensor([[[4.0]]], dtype=torch.float64)
    >>> m, c = chain_moments(p, torch.zeros(1, 1, dtype=torch.float64),
    ...                      torch.tensor([0.1], dtype=torch.float64), torch.tensor([10**4]),
    ...                      torch.zeros(1, dtype=torch.float64), torch.eye(1, dtype=torch.float64))
    >>> round(c.item(), 6) == round(1 / (4 * (1 - 0.1 * 4 / 2)), 6)   # ULA's stationary variance
    True
    """
    a, v = torch.linalg.eigh(torch.eye(precision.shape[-1], dtype=precision.dtype)
                             - eps[:, None, None] * precision)
    ak = a.pow(steps[:, None].to(a.dtype))
    denominator = 1 - a.square()
    flat = denominator.abs() < 1e-12          # a = ±1: the sum is K terms of 1
    geometric = torch.where(flat, steps[:, None].to(a.dtype),
                            (1 - ak.square()) / torch.where(flat, 1.0, denominator))
    vt = v.transpose(-1, -2)
    c0_rot = vt @ c0 @ v
    cov = v @ (ak[:, :, None] * ak[:, None, :] * c0_rot
               + torch.diag_embed(2 * eps[:, None] * geometric)) @ vt
    shift = (vt @ (m0 - mean)[..., None]).squeeze(-1) * ak
    return mean + (v @ shift[..., None]).squeeze(-1), cov


def fixed_points(mu: torch.Tensor, sigma: torch.Tensor, m0: torch.Tensor, c0: torch.Tensor,
                 eps: torch.Tensor, steps: torch.Tensor, iterations: int = 20_000,
                 rate: float = 0.5, tolerance: float = 1e-7
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Short-run CD's fixed points (m, P) for each (ε, K) pair, and whether each exists.

    Returns ``(mean, precision, found)``, batched over the pairs; where ``found`` is False
    the flow reached εP ≥ I (no fixed point with contracting chains: CD keeps sharpening
    the energy) or did not settle within ``iterations``.
    """
    batch, dim = len(eps), len(mu)
    eye = torch.eye(dim, dtype=torch.float64)
    precision = eye.expand(batch, dim, dim).clone()
    mean = mu.expand(batch, dim).clone()
    found = torch.zeros(batch, dtype=torch.bool)
    active = torch.ones(batch, dtype=torch.bool)
    # Each pair's own rate: halved when its gap grows (the flow overshot), else grown
    # back by 10 % up to ``rate``.
    rates = torch.full((batch,), rate, dtype=torch.float64)
    last_gap = torch.full((batch,), math.inf, dtype=torch.float64)
    scale = sigma.abs().max()
    for _ in range(iterations):
        if not active.any():
            break
        idx = active.nonzero().squeeze(-1)
        p, e, k = precision[idx], eps[idx], steps[idx]
        # The mean is exact given P: m + Aᴷ(m₀ − m) = μ ⇔ (I − Aᴷ) m = μ − Aᴷ m₀.
        a, v = torch.linalg.eigh(eye - e[:, None, None] * p)
        ak = v @ torch.diag_embed(a.pow(k[:, None].to(a.dtype))) @ v.transpose(-1, -2)
        m = torch.linalg.solve(eye - ak, (mu - (ak @ m0[:, None]).squeeze(-1))[..., None]
                               ).squeeze(-1)
        _, cov = chain_moments(p, m, e, k, m0, c0)
        gap = cov - sigma
        size_of_gap = gap.abs().amax(dim=(-2, -1))
        converged = size_of_gap < tolerance * scale
        r = torch.where(size_of_gap > last_gap[idx] * 1.01, rates[idx] / 2,
                        torch.clamp(rates[idx] * 1.1, max=rate))
        rates[idx], last_gap[idx] = r, size_of_gap
        # The flow's step P (C_K − Σ) P, taken as P ← P^½ exp(η P^½ (C_K − Σ) P^½) P^½: P
        # stays positive definite, and a step moves each of P's eigenvalues by at most
        # 10 % (far from the fixed point the chains are 30 times too wide).
        w, u = torch.linalg.eigh(p)
        root = u @ torch.diag_embed(w.clamp_min(0).sqrt()) @ u.transpose(-1, -2)
        h = root @ gap @ root
        h = (h + h.transpose(-1, -2)) / 2
        hw, hu = torch.linalg.eigh(h)
        size = hw.abs().amax(dim=-1)
        r = r / torch.clamp(r * size / 0.1, min=1)
        expm = hu @ torch.diag_embed(torch.exp(r[:, None] * hw)) @ hu.transpose(-1, -2)
        p_new = root @ expm @ root
        p_new = (p_new + p_new.transpose(-1, -2)) / 2
        values = torch.linalg.eigvalsh(p_new)
        escaped = (e * values[:, -1] >= 1) | (values[:, 0] <= 0) | ~torch.isfinite(values).all(-1)
        precision[idx] = torch.where(converged[:, None, None], p, p_new)
        mean[idx] = m
        found[idx[converged]] = True
        active[idx[converged | escaped]] = False
    return mean, precision, found


def fisher_divergence(mu: torch.Tensor, sigma: torch.Tensor, mean: torch.Tensor,
                      precision: torch.Tensor) -> torch.Tensor:
    """½ E‖∇log N(μ, Σ) − ∇f‖² for f = −½ (x − m)ᵀ P (x − m), batched over (m, P).

    >>> s = torch.eye(2, dtype=torch.float64)
    >>> fisher_divergence(torch.zeros(2, dtype=torch.float64), s, torch.zeros(1, 2, dtype=torch.float64),
    ...                   2 * s[None]).item()   # ½ tr(I·I·I)
    1.0
    """
    diff = precision - torch.linalg.inv(sigma)
    trace = torch.einsum("bij,jk,bki->b", diff, sigma, diff)
    offset = (precision @ (mu - mean)[..., None]).squeeze(-1)
    return 0.5 * trace + 0.5 * offset.square().sum(-1)


def noise_moments(dataset: ebmbench.Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and covariance of ``dataset.init_noise``, from :data:`NOISE_DRAWS` draws."""
    x = dataset.init_noise(NOISE_DRAWS, torch.Generator().manual_seed(0)).double()
    return x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1])


def table(dataset_name: str, scales: list[float], steps: list[int]
          ) -> tuple[list[list[str]], dict[tuple[float, int], float]]:
    """The fixed point's Fisher divergence per (chain step scale, K), as printed rows and
    as numbers (``inf`` where there is none)."""
    dataset = ebmbench.get_dataset(dataset_name)
    if not getattr(dataset, "gaussian", False):
        raise ebmbench.UserError(f"dataset {dataset_name!r} is not Gaussian: the closed form "
                                 "needs the data's mean and covariance")
    base_eps = ebmbench.get_sampler("ula").hparams["step_size"]
    m0, c0 = noise_moments(dataset)
    pairs = [(s, k) for s in scales for k in steps]
    eps = torch.tensor([s * base_eps for s, _ in pairs], dtype=torch.float64)
    ks = torch.tensor([k for _, k in pairs])
    mean, precision, found = fixed_points(dataset.mean, dataset.covariance, m0, c0, eps, ks)
    fd = fisher_divergence(dataset.mean, dataset.covariance, mean, precision)
    values = {pair: (float(v) if ok else math.inf)
              for pair, v, ok in zip(pairs, fd.tolist(), found.tolist(), strict=True)}
    rows = [[f"×{s:g}", f"{s * base_eps:.4g}",
             *("no fixed point" if math.isinf(values[s, k]) else f"{values[s, k]:.3g}"
               for k in steps)] for s in scales]
    return rows, values


def main(argv: list[str] | None = None) -> dict[tuple[float, int], float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="correlated_gaussian")
    parser.add_argument("--scale", default="0.3,1,2,3,4,5,7,9,10",
                        help="cd's chain_step_scale values (× ula's step size), a comma list")
    parser.add_argument("--steps", default="5,10,20,50,100,200,400",
                        help="cd's mcmc_steps values K, a comma list")
    args = parser.parse_args(argv)
    scales = [float(s) for s in args.scale.split(",")]
    steps = [int(k) for k in args.steps.split(",")]
    rows, values = table(args.dataset, scales, steps)
    print(tabulate(rows, headers=["chain step", "ε", *(f"K = {k}" for k in steps)],
                   tablefmt="github", disable_numparse=True))
    return values


if __name__ == "__main__":
    main()
