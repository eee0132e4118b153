"""Two-dimensional unimodal densities with awkward geometry, in closed form.

* ``banana``: a Gaussian bent along a parabola (Rosenbrock-shaped; Haario et al. 1999).
* ``funnel``: Neal's funnel (Neal 2003), a scale that changes exponentially across space.
* ``student_t``: a bivariate Student-t, polynomial (heavy) tails.

Their boxes hold all but ≲ 1e-5 of the mass, which makes them much larger than the
region where the mass concentrates, so they start samplers from a central box instead
(``init_box``, which ``ToyDensity.init_noise`` uses). Everything is computed in float64
and returned in the input's dtype.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from ebmbench import Param, ToyDensity, gauss_legendre

__all__ = ["Banana", "Funnel", "StudentT"]

_LOG_2PI = math.log(2 * math.pi)


class _CentralInit(ToyDensity):
    """Samplers "from noise" start uniform on :attr:`init_box` (set by each density), not
    on the whole bounds (``ToyDensity.init_noise`` reads it)."""

    dim = 2


class Banana(_CentralInit):
    """A banana (twisted Gaussian): x₁ ~ N(0, 1), x₂ | x₁ ~ N(b (x₁² − 1), s²).

    The map (z₁, z₂) ↦ (z₁, s z₂ + b(z₁² − 1)) has unit Jacobian determinant (times s),
    so with r = x₂ − b(x₁² − 1):

        log p(x) = −x₁²/2 − r²/(2s²) − log(2π s),
        ∇ log p  = (−x₁ + 2b x₁ r / s², −r / s²).

    b = ``curvature``, s = ``width`` (Haario, Saksman & Tamminen 1999 twist a Gaussian
    the same way). E[x₂] = 0.

    >>> d = Banana()
    >>> round(float(d.log_prob(torch.tensor([[0.0, -1.0]]))), 6) == round(-math.log(math.pi), 6)
    True
    """

    name = "banana"
    description = "Banana: x1 ~ N(0,1), x2 ~ N(x1^2 - 1, 0.5^2), Rosenbrock-shaped (2-D)"
    params = ToyDensity.params | {
        "curvature": Param(1.0, "b: x2 is centred on b (x1^2 - 1)"),
        "width": Param(0.5, "s: the standard deviation of x2 given x1", positive=True),
    }

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        b, s = self.hparams["curvature"], self.hparams["width"]
        q = 4.9  # P(|x1| > q) ≈ 1e-6; x2 above b(q² − 1) needs |x1| > q
        self.bounds = ((-q, q), (-b - 7 * s, b * (q * q - 1) + 5 * s))
        self.init_box = ((-3.0, 3.0), (-b - 2 * s, 8 * b + 2 * s))

    def _residual(self, x: Tensor) -> Tensor:
        return x[:, 1] - self.hparams["curvature"] * (x[:, 0] ** 2 - 1)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        z = torch.randn((n, 2), generator=generator, dtype=torch.float64)
        b, s = self.hparams["curvature"], self.hparams["width"]
        return torch.stack([z[:, 0], b * (z[:, 0] ** 2 - 1) + s * z[:, 1]], dim=1).float()

    def log_prob(self, x: Tensor) -> Tensor:
        x64, s = x.double(), self.hparams["width"]
        r = self._residual(x64)
        out = -0.5 * x64[:, 0] ** 2 - 0.5 * (r / s) ** 2 - _LOG_2PI - math.log(s)
        return out.to(x.dtype)

    def score(self, x: Tensor) -> Tensor:
        x64, s, b = x.detach().double(), self.hparams["width"], self.hparams["curvature"]
        r = self._residual(x64)
        g0 = -x64[:, 0] + 2 * b * x64[:, 0] * r / s**2
        return torch.stack([g0, -r / s**2], dim=1).to(x.dtype)


class Funnel(_CentralInit):
    """Neal's funnel in 2-D: v ~ N(0, σ_v²), u | v ~ N(0, eᵛ); x = (u, v).

        log p(x) = −v²/(2σ_v²) − u² e^{−v}/2 − v/2 − log(2π σ_v),
        ∇ log p  = (−u e^{−v}, −v/σ_v² + u² e^{−v}/2 − ½).

    σ_v = ``v_scale``. Neal (2003, "Slice sampling", §8) uses σ_v = 3 in 10-D; the default
    σ_v = 1 keeps the neck (std e^{−v/2}) and the mouth within reach of a grid quadrature
    on a box holding all but ~4e-6 of the mass (3e-6 beyond ±U in u, U = 18 for σ_v = 1).

    >>> d = Funnel()
    >>> round(float(d.log_prob(torch.tensor([[0.0, 0.0]]))), 6) == round(-math.log(2 * math.pi), 6)
    True
    """

    name = "funnel"
    description = "Neal's funnel: v ~ N(0,1), u ~ N(0, e^v), x = (u, v) (2-D)"
    params = ToyDensity.params | {
        "v_scale": Param(1.0, "σ_v: standard deviation of the log-variance v", positive=True),
    }

    @functools.cached_property
    def bounds(self) -> tuple[tuple[float, float], tuple[float, float]]:  # type: ignore[override]
        # Computed on first use: the grid builds every plugin and needs constructors cheap.
        sv = self.hparams["v_scale"]
        v_max = 5.0 * sv  # P(|v| > 5σ_v) ≈ 6e-7
        u_max = self._u_reach(sv, 3e-6)  # 18 for σ_v = 1
        return ((-u_max, u_max), (-v_max, v_max))

    @property
    def init_box(self) -> tuple[tuple[float, float], tuple[float, float]]:  # type: ignore[override]
        sv = self.hparams["v_scale"]
        return ((-3.0 * math.exp(sv / 2), 3.0 * math.exp(sv / 2)), (-2.5 * sv, 2.5 * sv))

    @staticmethod
    def _u_reach(sv: float, mass: float) -> float:
        """U with P(|u| > U) = ∫ N(v; 0, σ_v²) 2Φ(−U e^{−v/2}) dv ≈ ``mass``.

        The tail is evaluated on a grid of log U in one vectorised quadrature and the
        crossing interpolated: cheap enough for a constructor, to ~0.1 % in U.
        """
        v, w = gauss_legendre(-10 * sv, 10 * sv, 400, order=8)
        phi = torch.exp(-0.5 * (v / sv) ** 2) / (sv * math.sqrt(2 * math.pi))
        log_u = torch.linspace(0.0, 10.0 * sv + 5.0, 401, dtype=torch.float64)
        tails = (w * phi * 2 * torch.special.ndtr(-log_u.exp()[:, None] * (-v / 2).exp())).sum(1)
        i = int(torch.searchsorted(-tails, torch.tensor([-mass], dtype=torch.float64)))
        i = min(max(i, 1), len(log_u) - 1)
        a, b = math.log(tails[i - 1]), math.log(tails[i])  # tails fall with U: a > log mass ≥ b
        frac = (a - math.log(mass)) / (a - b) if a > b else 1.0
        return math.exp(float(log_u[i - 1] + frac * (log_u[i] - log_u[i - 1])))

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        z = torch.randn((n, 2), generator=generator, dtype=torch.float64)
        v = self.hparams["v_scale"] * z[:, 1]
        return torch.stack([(v / 2).exp() * z[:, 0], v], dim=1).float()

    def log_prob(self, x: Tensor) -> Tensor:
        x64, sv = x.double(), self.hparams["v_scale"]
        u, v = x64[:, 0], x64[:, 1]
        out = -0.5 * (v / sv) ** 2 - 0.5 * u**2 * (-v).exp() - v / 2 - _LOG_2PI - math.log(sv)
        return out.to(x.dtype)

    def score(self, x: Tensor) -> Tensor:
        x64, sv = x.detach().double(), self.hparams["v_scale"]
        u, v = x64[:, 0], x64[:, 1]
        e = (-v).exp()
        return torch.stack([-u * e, -v / sv**2 + 0.5 * u**2 * e - 0.5], dim=1).to(x.dtype)


class StudentT(_CentralInit):
    """A bivariate Student-t with ν degrees of freedom, location 0 and scale s I.

        log p(x) = log Γ((ν+2)/2) − log Γ(ν/2) − log(νπ s²) − (ν+2)/2 · log(1 + ‖x‖²/(ν s²)),
        ∇ log p  = −(ν + 2) x / (ν s² + ‖x‖²).

    Samples are x = s z / √(g/ν) with z ~ N(0, I) and g ~ χ²_ν drawn as a sum of ν
    squared normals (so ν is an integer and the generator seeds everything). The tails are
    polynomial, P(‖x‖ > R) = (1 + R²/(ν s²))^{−ν/2}; the box makes that 1e-5.
    ν = ``df``, s = ``scale``.

    >>> d = StudentT()
    >>> round(float(d.log_prob(torch.zeros(1, 2))), 6) == round(-math.log(2 * math.pi), 6)
    True
    """

    name = "student_t"
    description = "Bivariate Student-t, 5 degrees of freedom: heavy polynomial tails (2-D)"
    params = ToyDensity.params | {
        "df": Param(5, "ν, the degrees of freedom (an integer)", low=1),
        "scale": Param(1.0, "s, the scale of each coordinate", positive=True),
    }

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        nu, s = self.hparams["df"], self.hparams["scale"]
        if nu < 1:
            raise ValueError("student_t needs df >= 1")
        reach = s * math.sqrt(nu * (1e-5 ** (-2 / nu) - 1))
        self.bounds = ((-reach, reach), (-reach, reach))
        self.init_box = ((-4.0 * s, 4.0 * s), (-4.0 * s, 4.0 * s))

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        nu, s = self.hparams["df"], self.hparams["scale"]
        z = torch.randn((n, 2), generator=generator, dtype=torch.float64)
        g = torch.randn((n, nu), generator=generator, dtype=torch.float64).pow(2).sum(1)
        return (s * z / (g / nu).sqrt()[:, None]).float()

    def log_prob(self, x: Tensor) -> Tensor:
        nu, s = self.hparams["df"], self.hparams["scale"]
        r2 = x.double().pow(2).sum(1) / s**2
        const = math.lgamma((nu + 2) / 2) - math.lgamma(nu / 2) - math.log(nu * math.pi * s * s)
        return (const - (nu + 2) / 2 * torch.log1p(r2 / nu)).to(x.dtype)

    def score(self, x: Tensor) -> Tensor:
        nu, s = self.hparams["df"], self.hparams["scale"]
        x64 = x.detach().double()
        return (-(nu + 2) * x64 / (nu * s * s + x64.pow(2).sum(1, keepdim=True))).to(x.dtype)
