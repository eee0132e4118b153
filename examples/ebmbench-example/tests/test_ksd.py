"""The ksd method: ebmbench's conformance suite, and checks against exact references."""

from __future__ import annotations

import math

import pytest
import torch
from ebmbench_example import KernelSteinDiscrepancy, ksd_u_statistic, stein_kernel
from torch import nn

from ebmbench import TrainContext, get_dataset
from ebmbench.testing import parametrize_with_checks


@parametrize_with_checks(KernelSteinDiscrepancy)
def test_conformance(plugin_check):
    plugin_check()


def _stein_kernel_by_autograd(kernel, x, y, sx, sy, h, beta):
    """u(x, y) from k alone: s(x)ᵀs(y)k + s(x)ᵀ∇_y k + s(y)ᵀ∇_x k + Σⱼ ∂²k/∂xⱼ∂yⱼ."""
    x, y = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    r2 = (x - y).pow(2).sum()
    k = torch.exp(-r2 / (2 * h * h)) if kernel == "rbf" else (h * h + r2) ** beta
    gx, gy = torch.autograd.grad(k, (x, y), create_graph=True)
    trace = sum(torch.autograd.grad(gy[j], x, retain_graph=True)[0][j] for j in range(len(x)))
    return k * (sx @ sy) + sx @ gy + sy @ gx + trace


@pytest.mark.parametrize("kernel, beta", [("rbf", -0.5), ("imq", -0.5), ("imq", -0.2)])
def test_closed_form_stein_kernel_matches_autograd(kernel, beta):
    g = torch.Generator().manual_seed(0)
    x, y, sx, sy = torch.randn(4, 5, 3, generator=g, dtype=torch.float64)
    u = stein_kernel(x, y, sx, sy, kernel=kernel, bandwidth=1.3, beta=beta)
    assert u.shape == (5, 5)
    for i in range(5):
        for j in range(5):
            ref = _stein_kernel_by_autograd(kernel, x[i], y[j], sx[i], sy[j], 1.3, beta)
            assert u[i, j].item() == pytest.approx(ref.item(), rel=1e-10, abs=1e-12)


class Gaussian(nn.Module):
    """f(x) = −½ (x − μ)ᵀ L Lᵀ (x − μ): a Gaussian energy with learned μ and precision."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(dim))
        self.chol = nn.Parameter(torch.eye(dim))

    def precision(self) -> torch.Tensor:
        lower = torch.tril(self.chol)
        return lower @ lower.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) @ torch.tril(self.chol)
        return -0.5 * z.pow(2).sum(dim=1)


MEAN = torch.tensor([1.0, -0.5])
COV = torch.tensor([[1.0, 0.6], [0.6, 0.8]])


def _data(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return MEAN + torch.randn(n, 2, generator=g) @ torch.linalg.cholesky(COV).T


def _true_energy() -> Gaussian:
    energy = Gaussian(2)
    with torch.no_grad():
        energy.mean.copy_(MEAN)
        energy.chol.copy_(torch.linalg.cholesky(torch.linalg.inv(COV)))
    return energy


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_ksd_is_unbiased_zero_at_the_true_score_and_positive_elsewhere(kernel):
    # The U-statistic is unbiased for KSD², which is 0 when the score is the data's.
    batches = [_data(200, seed) for seed in range(60)]
    true = torch.stack([ksd_u_statistic(_true_energy(), b, kernel=kernel, create_graph=False)
                        for b in batches])
    se = true.std().item() / math.sqrt(len(true))
    assert abs(true.mean().item()) < 5 * se
    shifted = _true_energy()
    with torch.no_grad():
        shifted.mean.add_(0.5)
    wrong = torch.stack([ksd_u_statistic(shifted, b, kernel=kernel, create_graph=False)
                         for b in batches])
    assert wrong.mean().item() > true.mean().item() + 10 * se


def test_training_recovers_a_gaussian():
    # The minimum-KSD estimator is consistent in a well-specified family (Barp et al. 2019):
    # trained on N(μ, Σ) data, a Gaussian energy finds μ and Σ.
    torch.manual_seed(0)
    data = _data(4000, seed=1)
    energy = Gaussian(2)
    method = KernelSteinDiscrepancy(budget="quick", lr=0.05, batch_size=256)
    ctx = TrainContext(energy, None, get_dataset("eight_gaussians", budget="smoke"), data,
                       torch.device("cpu"), torch.Generator().manual_seed(0))
    method.setup(ctx)
    batches = torch.Generator().manual_seed(2)
    for _ in range(300):
        idx = torch.randint(len(data), (256,), generator=batches)
        method.train_step(data[idx])
    cov = torch.linalg.inv(energy.precision().detach())
    assert torch.allclose(energy.mean.detach(), MEAN, atol=0.1)
    # Adam's noise at lr 0.05 dominates the error (about 0.1 at most over seeds).
    assert torch.allclose(cov, COV, atol=0.2)
