"""Gaussian mixtures in 8, 32 and 128 dimensions, with exact log-density and score.

The K means sit at the vertices ±r Q eⱼ (j = 1…K/2) of a cross-polytope, turned by a
fixed random rotation Q: every pair of means is r√2 or 2r apart in every dimension, so
``gmm_8d``, ``gmm_32d`` and ``gmm_128d`` have the same mode geometry and differ only in
the number of directions that are pure noise.

    p(x) = 1/K Σₖ N(x; μₖ, s² I),   ∇ log p(x) = Σₖ rₖ(x) (μₖ − x) / s²,

with rₖ(x) the responsibilities. Computed in float64, returned in the input's dtype.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from ebmbench import Param, ToyDensity, UserError

__all__ = ["GaussianMixtureND", "GMM8D", "GMM32D", "GMM128D"]


def _rotation(dim: int, seed: int) -> Tensor:
    """A fixed orthogonal matrix (QR of a seeded Gaussian matrix, signs made unique)."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn((dim, dim), generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))[None, :]


class GaussianMixtureND(ToyDensity):
    """An equal-weight mixture of K isotropic Gaussians on a rotated cross-polytope.

    The base class of the registered ``gmm_<d>d`` datasets, which fix the dimension; used
    directly it takes the dimension as the ``dim`` parameter.

    >>> GaussianMixtureND(dim=64).sample(3, torch.Generator().manual_seed(0)).shape
    torch.Size([3, 64])
    >>> d = GMM8D()
    >>> distances = torch.cdist(d.means, d.means).flatten().tolist()
    >>> sorted({round(v, 4) for v in distances})  # 0, r√2 and 2r
    [0.0, 3.5355, 5.0]
    """

    name = "gmm"
    description = "Mixture of K Gaussians on a rotated cross-polytope, dim given"
    params = ToyDensity.params | {
        "dim": Param(8, "the dimension d", low=1),
        "components": Param(8, "number of components K (even, at most 2 x dim)", low=2),
        "radius": Param(2.5, "distance r of every mean from the origin", low=0),
        "scale": Param(0.5, "standard deviation s of each component", positive=True),
        "layout_seed": Param(0, "seed of the rotation", low=0),
    }

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dim = self.hparams.get("dim", type(self).dim)
        d, k = self.dim, self.hparams["components"]
        if k < 2 or k % 2 or k > 2 * d:
            raise UserError(f"bad value {k} for dataset {self.name!r}.components: must be even "
                            f"and in [2, {2 * d}] (twice the dimension)")

    @functools.cached_property
    def means(self) -> Tensor:
        """The K means, (K, d) float64; built on first use to keep the constructor cheap."""
        q = _rotation(self.dim, self.hparams["layout_seed"])
        axes = q[:, : self.hparams["components"] // 2].T  # K/2 orthonormal directions
        return self.hparams["radius"] * torch.cat([axes, -axes])

    def _log_components(self, x: Tensor) -> Tensor:
        s = self.hparams["scale"]
        means = self.means.to(x.device)
        d2 = (x.pow(2).sum(1, keepdim=True) - 2 * x @ means.T + means.pow(2).sum(1)).clamp_min(0)
        return (-d2 / (2 * s * s) - 0.5 * self.dim * math.log(2 * math.pi * s * s)
                - math.log(len(means)))

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        comp = torch.randint(0, len(self.means), (n,), generator=generator)
        eps = torch.randn((n, self.dim), generator=generator, dtype=torch.float64)
        return (self.means[comp] + self.hparams["scale"] * eps).float()

    def log_prob(self, x: Tensor) -> Tensor:
        return torch.logsumexp(self._log_components(x.double()), dim=1).to(x.dtype)

    def score(self, x: Tensor) -> Tensor:
        x64 = x.detach().double()
        resp = torch.softmax(self._log_components(x64), dim=1)
        return ((resp @ self.means.to(x.device) - x64) / self.hparams["scale"] ** 2).to(x.dtype)


_FIXED_DIM = {k: v for k, v in GaussianMixtureND.params.items() if k != "dim"}


class GMM8D(GaussianMixtureND):
    """The mixture in 8 dimensions."""

    name = "gmm_8d"
    description = "Mixture of 8 Gaussians (std 0.5) on a rotated cross-polytope, 8-D"
    params = _FIXED_DIM
    dim = 8


class GMM32D(GaussianMixtureND):
    """The mixture in 32 dimensions."""

    name = "gmm_32d"
    description = "Mixture of 8 Gaussians (std 0.5) on a rotated cross-polytope, 32-D"
    params = _FIXED_DIM
    dim = 32


class GMM128D(GaussianMixtureND):
    """The mixture in 128 dimensions."""

    name = "gmm_128d"
    description = "Mixture of 8 Gaussians (std 0.5) on a rotated cross-polytope, 128-D"
    params = _FIXED_DIM
    dim = 128
