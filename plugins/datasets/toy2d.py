"""Two-dimensional toy densities with exact log-density and score."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from ebmbench import Param, ToyDensity

__all__ = ["EightGaussians"]


class EightGaussians(ToyDensity):
    """Eight isotropic Gaussians evenly spaced on a circle, equal weights.

    p(x) = 1/8 Σₖ N(x; r(cos 2πk/8, sin 2πk/8), s² I).

    >>> d = EightGaussians()
    >>> x = d.sample(4, torch.Generator().manual_seed(0))
    >>> d.log_prob(x).shape, d.score(x).shape
    (torch.Size([4]), torch.Size([4, 2]))
    """

    name = "eight_gaussians"
    description = "8 Gaussians on a circle of radius 2 (2-D)"
    params = ToyDensity.params | {
        "radius": Param(2.0, "radius of the circle of means"),
        "scale": Param(0.2, "standard deviation of each component"),
    }
    dim = 2

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        r, s = self.hparams["radius"], self.hparams["scale"]
        reach = r + 8 * s
        self.bounds = ((-reach, reach), (-reach, reach))
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        self.means = r * torch.stack([angles.cos(), angles.sin()], dim=1)

    def distribution(self, like: Tensor) -> MixtureSameFamily:
        """The mixture in ``like``'s dtype and device."""
        means = self.means.to(like)
        return MixtureSameFamily(
            Categorical(logits=torch.zeros(8, dtype=like.dtype, device=like.device)),
            Independent(Normal(means, torch.full_like(means, self.hparams["scale"])), 1),
        )

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        comp = torch.randint(0, 8, (n,), generator=generator)
        noise = torch.randn((n, 2), generator=generator)
        return self.means.float()[comp] + self.hparams["scale"] * noise

    def log_prob(self, x: Tensor) -> Tensor:
        return self.distribution(x).log_prob(x)
