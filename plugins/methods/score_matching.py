"""Score-matching methods: they fit ∇ₓf_θ to the data score without sampling."""

from __future__ import annotations

import torch
from torch import Tensor

from ebmbench import Method, Param, energy_and_score

__all__ = ["DenoisingScoreMatching", "dsm_loss"]


def dsm_loss(energy, x: Tensor, sigma: float, noise: Tensor) -> Tensor:
    """Denoising score matching (Vincent 2011, eq. 9 with a Gaussian kernel).

    With x̃ = x + σε, the score of the kernel q_σ(x̃|x) is −(x̃ − x)/σ² = −ε/σ, so

        J_DSM(θ) = ½ E ‖∇ₓf_θ(x̃) + ε/σ‖².

    Its minimiser is the score of the σ-smoothed data, hence an O(σ²) bias.

    Args:
        energy: f_θ, mapping (B, *shape) to (B,).
        x: A data batch.
        sigma: The noise scale σ.
        noise: ε ~ N(0, I), the same shape as ``x``.
    """
    x_noisy = x + sigma * noise
    _, score = energy_and_score(energy, x_noisy, create_graph=True)
    residual = (score + noise / sigma).flatten(1)
    return 0.5 * residual.pow(2).sum(dim=1).mean()


class DenoisingScoreMatching(Method):
    """Denoising score matching with Gaussian noise of scale σ (Vincent 2011)."""

    name = "dsm"
    description = "Denoising score matching (Vincent 2011) with Gaussian noise σ"
    params = Method.params | {
        "sigma": Param(0.1, "noise scale σ of the Gaussian corruption"),
    }

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        noise = torch.randn(batch.shape, generator=self.ctx.generator, device=batch.device)
        return dsm_loss(self.energy, batch, self.hparams["sigma"], noise), {}
