"""Langevin-dynamics samplers."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmbench import EnergyFn, Param, SampleResult, Sampler, energy_and_score

__all__ = ["UnadjustedLangevin"]


class UnadjustedLangevin(Sampler):
    """Unadjusted Langevin algorithm (ULA).

    x_{t+1} = x_t + ε ∇ₓf(x_t) + √(2ε) z_t,  z_t ~ N(0, I).

    It targets p ∝ exp(f) only as ε → 0: for fixed ε the stationary law is biased by O(ε).
    """

    name = "ula"
    description = "Unadjusted Langevin: x + ε∇f(x) + √(2ε)z, no accept step"
    params = {
        "steps": Param(100, "Langevin steps per chain", smoke=10, full=500),
        "step_size": Param(1e-3, "step size ε"),
    }

    def sample(
        self,
        energy: EnergyFn,
        x0: Tensor,
        n_steps: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        steps = self.hparams["steps"] if n_steps is None else n_steps
        eps = self.hparams["step_size"]
        noise_scale = math.sqrt(2 * eps)
        x = x0.detach()
        for _ in range(steps):
            _, score = energy_and_score(energy, x)
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + eps * score + noise_scale * z
        return SampleResult(x.detach(), {"energy_evals": steps, "grad_evals": steps})
