"""Exactly Gaussian toy densities, for checking methods and samplers against closed forms.

* ``correlated_gaussian``: an anisotropic, correlated 2-D Gaussian.
* ``correlated_gaussian_16d``: a 16-D Gaussian with a random rotation and a spread of scales.

Both set ``gaussian = True`` (the quadratic energy runs only on these) and expose the exact
parameters: :attr:`mean`, :attr:`covariance` (float64) and :attr:`dist`, the
``torch.distributions.MultivariateNormal`` they define. Then

    log p(x) = −½ (x − μ)ᵀ Σ⁻¹ (x − μ) − ½ log det(2πΣ),   ∇ log p = −Σ⁻¹ (x − μ),
    entropy H = ½ log det(2πe Σ).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from ebmbench import Param, ToyDensity

__all__ = ["CorrelatedGaussian", "CorrelatedGaussian16D"]


class _Gaussian(ToyDensity):
    """N(μ, Σ) from :attr:`mean` and :attr:`covariance`, set by the subclass's constructor."""

    gaussian = True
    mean: Tensor
    covariance: Tensor

    def _finish(self, mean: Tensor, covariance: Tensor) -> None:
        self.mean = mean.double()
        self.covariance = 0.5 * (covariance + covariance.T).double()
        self.dim = len(self.mean)
        self.cholesky = torch.linalg.cholesky(self.covariance)
        self.precision = torch.cholesky_inverse(self.cholesky)

    @property
    def dist(self) -> MultivariateNormal:
        """The exact distribution, float64 on the CPU."""
        return MultivariateNormal(self.mean, scale_tril=self.cholesky)

    def entropy(self) -> float:
        """H = ½ log det(2πe Σ) in nats."""
        return float(0.5 * self.dim * math.log(2 * math.pi * math.e)
                     + self.cholesky.diagonal().log().sum())

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        eps = torch.randn((n, self.dim), generator=generator, dtype=torch.float64)
        return (self.mean + eps @ self.cholesky.T).float()

    def log_prob(self, x: Tensor) -> Tensor:
        x64 = x.double()
        dist = MultivariateNormal(self.mean.to(x.device), scale_tril=self.cholesky.to(x.device))
        return dist.log_prob(x64).to(x.dtype)

    def score(self, x: Tensor) -> Tensor:
        x64 = x.detach().double()
        return (-(x64 - self.mean.to(x.device)) @ self.precision.to(x.device)).to(x.dtype)


class CorrelatedGaussian(_Gaussian):
    """An anisotropic correlated 2-D Gaussian N(μ, Σ), Σ = R(α) diag(a², b²) R(α)ᵀ.

    μ = (0.5, −0.5), a = ``std_major``, b = ``std_minor``, α = ``angle`` (degrees): with
    the defaults the correlation is 0.90 and the condition number 25.

    >>> d = CorrelatedGaussian()
    >>> [round(v, 4) for v in d.covariance.flatten().tolist()]
    [1.71, 0.9353, 0.9353, 0.63]
    """

    name = "correlated_gaussian"
    description = "Anisotropic correlated Gaussian: stds 1.5 and 0.3, rotated 30 degrees (2-D)"
    params = ToyDensity.params | {
        "std_major": Param(1.5, "standard deviation along the major axis", positive=True),
        "std_minor": Param(0.3, "standard deviation along the minor axis", positive=True),
        "angle": Param(30.0, "angle of the major axis, in degrees"),
    }
    dim = 2

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        a = math.radians(self.hparams["angle"])
        rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]],
                           dtype=torch.float64)
        scales = torch.tensor([self.hparams["std_major"], self.hparams["std_minor"]],
                              dtype=torch.float64)
        self._finish(torch.tensor([0.5, -0.5]), rot @ torch.diag(scales**2) @ rot.T)
        sd = self.covariance.diagonal().sqrt()
        self.bounds = tuple((float(m - 7 * s), float(m + 7 * s))
                            for m, s in zip(self.mean, sd, strict=True))


def random_rotation(dim: int, seed: int) -> Tensor:
    """A fixed orthogonal matrix: QR of a seeded Gaussian matrix, signs made unique.

    >>> q = random_rotation(3, 0)
    >>> torch.allclose(q @ q.T, torch.eye(3, dtype=torch.float64))
    True
    """
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn((dim, dim), generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))[None, :]


class CorrelatedGaussian16D(_Gaussian):
    """A 16-D Gaussian N(μ, Q diag(λ) Qᵀ) with a fixed random rotation Q.

    The standard deviations √λᵢ are log-spaced from ``std_min`` to ``std_max`` (condition
    number 25 by default); μ has i.i.d. N(0, ¼) entries. Q and μ come from a generator
    seeded with ``layout_seed``, so the density is the same on every machine.
    """

    name = "correlated_gaussian_16d"
    description = "16-D Gaussian, random rotation, standard deviations 0.2..1 (cond. 25)"
    params = ToyDensity.params | {
        "std_min": Param(0.2, "smallest standard deviation", positive=True),
        "std_max": Param(1.0, "largest standard deviation", positive=True),
        "layout_seed": Param(0, "seed of the rotation and the mean", low=0),
    }
    dim = 16

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        d, seed = type(self).dim, self.hparams["layout_seed"]
        stds = torch.logspace(math.log10(self.hparams["std_min"]),
                              math.log10(self.hparams["std_max"]), d, dtype=torch.float64)
        q = random_rotation(d, seed)
        mean = 0.5 * torch.randn(d, generator=torch.Generator().manual_seed(seed + 1),
                                 dtype=torch.float64)
        self._finish(mean, q @ torch.diag(stds**2) @ q.T)
