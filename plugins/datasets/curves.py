"""Two-dimensional densities of Gaussian noise around curves, with exact log-density.

Each is x = c_k(t) + σ ε with a component k, a curve parameter t ~ w_k and ε ~ N(0, I):

    p(x) = Σₖ πₖ ∫ w_k(t) N(x; c_k(t), σ² I) dt.

* ``rings``: concentric circles; the angle integral has the closed form of a Bessel
  function, so the density is exact to rounding.
* ``two_moons``, ``swiss_roll``, ``two_spirals``, ``pinwheel``: the integral over t is
  computed by a composite Gauss–Legendre rule in log space (a logsumexp over the nodes).
  Its panels are placed by arc length weighted by √(1 + κ D) (κ the curve's curvature,
  D the half-diagonal of the bounding box: the integrand's width along the curve at
  distance D), and graded geometrically towards the ends of the parameter interval, where
  the integrand of far-away points peaks. The error is below 1e-8 nats everywhere in the
  bounding box (tests/test_toy_densities.py checks < 1e-6 against an independent
  Simpson rule on 2¹⁶ intervals).

The score is the closed form Σⱼ rⱼ(x) (cⱼ − x)/σ² with rⱼ the normalised quadrature
terms (the exact gradient of the quadrature), not autograd. Everything is computed in
float64 and returned in the dtype of the input.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ebmbench import Param, ToyDensity, gauss_legendre_panels

__all__ = ["Rings", "TwoMoons", "SwissRoll", "TwoSpirals", "Pinwheel"]

#: Points per chunk × quadrature nodes kept in memory at once (float64 elements).
_CHUNK_ELEMENTS = 1 << 22


def _box(points: Tensor, margin: float) -> tuple[tuple[float, float], tuple[float, float]]:
    lo = points.min(dim=0).values - margin
    hi = points.max(dim=0).values + margin
    return ((float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1])))


class _NoisyCurve(ToyDensity):
    """Gaussian noise of std σ around K curves, equal weights 1/K, by quadrature over t.

    Subclasses define :meth:`curve`, :meth:`param_log_density`, :meth:`sample_param`,
    :attr:`n_components` and the parameter interval :attr:`t_range` (and, if w has
    unbounded support, the narrower :attr:`t_bounds_range` used for the bounding box).
    """

    dim = 2
    n_components: int = 1
    t_range: tuple[float, float] = (0.0, 1.0)
    #: Panels of the quadrature (before grading) and Legendre nodes per panel.
    panels: int = 24
    order: int = 16
    #: Geometrically refined panels added at each end of the parameter interval.
    grading: int = 8

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        t = torch.linspace(*self.t_bounds_range, 2001, dtype=torch.float64)
        pts = torch.cat([self.curve(t, torch.full_like(t, k, dtype=torch.long))
                         for k in range(self.n_components)])
        self.bounds = _box(pts, 6.5 * self.sigma)
        self._rule: tuple[Tensor, Tensor] | None = None  # built on first use (cheap init)

    @property
    def sigma(self) -> float:
        return self.hparams["noise"]

    @property
    def t_bounds_range(self) -> tuple[float, float]:
        return self.t_range

    # -- what subclasses define
    def curve(self, t: Tensor, k: Tensor) -> Tensor:
        """Points c_k(t), shape (*t.shape, 2), float64."""
        raise NotImplementedError

    def param_log_density(self, t: Tensor) -> Tensor:
        """log w(t), normalised on :attr:`t_range` (the same for every component)."""
        raise NotImplementedError

    def sample_param(self, n: int, generator: torch.Generator) -> Tensor:
        """n draws of t ~ w, float64."""
        raise NotImplementedError

    # -- the quadrature rule
    def _panel_edges(self, k: int) -> np.ndarray:
        lo, hi = self.t_range
        t = torch.linspace(lo, hi, 20_001, dtype=torch.float64)
        c = self.curve(t, torch.full_like(t, k, dtype=torch.long))
        step = float(t[1] - t[0])
        d1 = torch.gradient(c, spacing=step, dim=0)[0]
        d2 = torch.gradient(d1, spacing=step, dim=0)[0]
        speed = d1.norm(dim=1).clamp_min(1e-12)
        curvature = (d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]).abs() / speed**3
        (x0, x1), (y0, y1) = self.bounds
        reach = 0.5 * math.hypot(x1 - x0, y1 - y0)
        density = speed * torch.sqrt(1 + curvature * reach)
        cum = torch.cat([torch.zeros(1, dtype=torch.float64),
                         ((density[1:] + density[:-1]) / 2 * step).cumsum(0)])
        edges = np.interp(np.linspace(0.0, float(cum[-1]), self.panels + 1), cum.numpy(), t.numpy())
        if self.grading:
            g = 2.0 ** -np.arange(self.grading, 0, -1)  # 2^-G … 2^-1
            left = edges[0] + (edges[1] - edges[0]) * g
            right = edges[-1] - (edges[-1] - edges[-2]) * g[::-1]
            edges = np.concatenate([edges[:1], left, edges[1:-1], right, edges[-1:]])
        return edges

    def quadrature_rule(self) -> tuple[Tensor, Tensor]:
        """(points c_j, shape (M, 2); log-weights log(πₖ w(t_j) ω_j), shape (M,)), float64."""
        if self._rule is None:
            points, log_weights = [], []
            for k in range(self.n_components):
                t, w = gauss_legendre_panels(self._panel_edges(k), self.order)
                points.append(self.curve(t, torch.full_like(t, k, dtype=torch.long)))
                log_pi = -math.log(self.n_components)
                log_weights.append(self.param_log_density(t) + w.log() + log_pi)
            self._rule = (torch.cat(points), torch.cat(log_weights))
        return self._rule

    def _chunks(self, x: Tensor):
        """Yield (x chunk, nodes c_j / σ², log w_j − ‖c_j‖²/2σ², nodes c_j) on x's device."""
        points, log_w = self.quadrature_rule()
        s2 = self.sigma**2
        points, log_w = points.to(x.device), log_w.to(x.device)
        scaled = points / s2
        bias = log_w - points.pow(2).sum(1) / (2 * s2)
        size = max(1, _CHUNK_ELEMENTS // len(points))
        for start in range(0, len(x), size):
            yield x[start : start + size], scaled, bias, points

    @staticmethod
    def _logits(x: Tensor, scaled: Tensor, bias: Tensor) -> Tensor:
        # log w_j − ‖x − c_j‖²/2σ² + ‖x‖²/2σ²: the ‖x‖² term is the same for every node, so
        # it is added after the logsumexp; the rest is one fused matmul (addmm).
        return torch.addmm(bias, x, scaled.T)

    # -- the ToyDensity contract
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        k = torch.randint(0, self.n_components, (n,), generator=generator)
        t = self.sample_param(n, generator)
        eps = torch.randn((n, 2), generator=generator, dtype=torch.float64)
        return (self.curve(t, k) + self.sigma * eps).float()

    def log_prob(self, x: Tensor) -> Tensor:
        x64 = x.double()
        s2 = self.sigma**2
        norm = math.log(2 * math.pi * s2)
        parts = [torch.logsumexp(self._logits(xc, scaled, bias), dim=1)
                 - xc.pow(2).sum(1) / (2 * s2) - norm
                 for xc, scaled, bias, _ in self._chunks(x64)]
        return torch.cat(parts).to(x.dtype) if parts else x64.new_zeros(0).to(x.dtype)

    def score(self, x: Tensor) -> Tensor:
        x64 = x.detach().double()
        parts = []
        for xc, scaled, bias, points in self._chunks(x64):
            resp = torch.softmax(self._logits(xc, scaled, bias), dim=1)
            parts.append((resp @ points - xc) / self.sigma**2)
        return torch.cat(parts).to(x.dtype) if parts else torch.zeros_like(x)


class TwoMoons(_NoisyCurve):
    """Two interleaved half circles (scikit-learn's ``make_moons``), scaled by 2.

    c₁(t) = 2(cos t, sin t) + o,  c₂(t) = 2(1 − cos t, ½ − sin t) + o,  o = (−1, −0.2),
    t ~ U[0, π], each moon with weight ½, isotropic noise σ = ``noise`` (FFJORD's
    "moons": make_moons(noise=0.1) · 2 + o, i.e. σ = 0.2).

    >>> d = TwoMoons()
    >>> round(float(d.log_prob(torch.tensor([[1.0, -0.2]])).exp()), 4)  # moon 1's end, t = 0
    0.0795
    """

    name = "two_moons"
    description = "Two interleaved half circles (make_moons x 2) with Gaussian noise 0.2 (2-D)"
    params = ToyDensity.params | {"noise": Param(0.2, "standard deviation σ of the noise",
                                                         positive=True)}
    n_components = 2
    t_range = (0.0, math.pi)
    order = 8

    def curve(self, t: Tensor, k: Tensor) -> Tensor:
        first = torch.stack([2 * t.cos() - 1, 2 * t.sin() - 0.2], dim=-1)
        second = torch.stack([1 - 2 * t.cos(), 0.8 - 2 * t.sin()], dim=-1)
        return torch.where((k == 0)[..., None], first, second)

    def param_log_density(self, t: Tensor) -> Tensor:
        return torch.full_like(t, -math.log(math.pi))

    def sample_param(self, n: int, generator: torch.Generator) -> Tensor:
        return math.pi * torch.rand(n, generator=generator, dtype=torch.float64)


class SwissRoll(_NoisyCurve):
    """The 2-D swiss roll: c(t) = t (cos t, sin t) / 5, t ~ U[1.5π, 4.5π], noise σ.

    As scikit-learn's ``make_swiss_roll`` projected on (x, z) and divided by 5, with
    σ = ``noise`` = 0.2 (FFJORD's "swissroll": make_swiss_roll(noise=1.0) / 5).
    """

    name = "swiss_roll"
    description = "Swiss roll t(cos t, sin t)/5, t in [1.5pi, 4.5pi], Gaussian noise 0.2 (2-D)"
    params = ToyDensity.params | {"noise": Param(0.2, "standard deviation σ of the noise",
                                                         positive=True)}
    t_range = (1.5 * math.pi, 4.5 * math.pi)

    def curve(self, t: Tensor, k: Tensor) -> Tensor:
        return torch.stack([t * t.cos(), t * t.sin()], dim=-1) / 5

    def param_log_density(self, t: Tensor) -> Tensor:
        return torch.full_like(t, -math.log(3 * math.pi))

    def sample_param(self, n: int, generator: torch.Generator) -> Tensor:
        return math.pi * (1.5 + 3 * torch.rand(n, generator=generator, dtype=torch.float64))


class TwoSpirals(_NoisyCurve):
    """Two interleaved Archimedean spirals of 1.5 turns, c₁(t) = t(−cos t, sin t)/3, c₂ = −c₁.

    t = T√u with u ~ U[0, 1], T = 3π, so w(t) = 2t/T² on [0, T] (roughly uniform in arc
    length), each spiral with weight ½, noise σ = ``noise`` (after FFJORD's "2spirals",
    whose extra uniform jitter is left out so the density stays exact).
    """

    name = "two_spirals"
    description = "Two interleaved spirals (1.5 turns) with Gaussian noise 0.1 (2-D)"
    params = ToyDensity.params | {"noise": Param(0.1, "standard deviation σ of the noise",
                                                         positive=True)}
    n_components = 2
    t_range = (0.0, 3 * math.pi)
    panels = 28

    def curve(self, t: Tensor, k: Tensor) -> Tensor:
        sign = (1 - 2 * k).to(t.dtype)[..., None]
        return sign * torch.stack([-t * t.cos(), t * t.sin()], dim=-1) / 3

    def param_log_density(self, t: Tensor) -> Tensor:
        end = self.t_range[1]
        return torch.log(2 * t / end**2)

    def sample_param(self, n: int, generator: torch.Generator) -> Tensor:
        return self.t_range[1] * torch.rand(n, generator=generator, dtype=torch.float64).sqrt()


class Pinwheel(_NoisyCurve):
    """Five curved arms (after Johnson et al. 2016's pinwheel, as in FFJORD), noise σ.

    Arm k is c_k(a) = 2a (cos φ_k(a), sin φ_k(a)), φ_k(a) = 2πk/5 + ρ eᵃ, with the radial
    coordinate a ~ N(1, r²) truncated to 1 ± 8r (mass 1e-15 outside) and isotropic noise
    σ = 2 × ``tangential_std``. The original adds the tangential noise before the twist,
    which makes the density a sum over preimages; noise around the arm's centre line keeps
    it exact with the same look. r = ``radial_std``, ρ = ``rate``.
    """

    name = "pinwheel"
    description = "Five curved pinwheel arms (Johnson et al. 2016), Gaussian noise (2-D)"
    params = ToyDensity.params | {
        "radial_std": Param(0.3, "std r of the radial coordinate a ~ N(1, r^2)", positive=True),
        "tangential_std": Param(0.1, "half the std σ of the isotropic noise", positive=True),
        "rate": Param(0.25, "twist ρ: the angle grows as ρ·exp(a)"),
        "arms": Param(5, "number of arms", low=1),
    }
    panels = 28
    grading = 6

    @property
    def n_components(self) -> int:  # type: ignore[override]
        return self.hparams["arms"]

    @property
    def t_range(self) -> tuple[float, float]:  # type: ignore[override]
        r = self.hparams["radial_std"]
        return (1 - 8 * r, 1 + 8 * r)

    @property
    def sigma(self) -> float:
        return 2 * self.hparams["tangential_std"]

    @property
    def t_bounds_range(self) -> tuple[float, float]:
        r = self.hparams["radial_std"]
        return (1 - 4.5 * r, 1 + 4.5 * r)  # the box holds all but ~1e-5 of a's mass

    def curve(self, t: Tensor, k: Tensor) -> Tensor:
        phi = 2 * math.pi * k.to(t.dtype) / self.n_components + self.hparams["rate"] * t.exp()
        return 2 * t[..., None] * torch.stack([phi.cos(), phi.sin()], dim=-1)

    def param_log_density(self, t: Tensor) -> Tensor:
        r = self.hparams["radial_std"]
        # Truncation to ±8r: renormalising changes log w by ~1e-15, below float64 rounding.
        return -0.5 * ((t - 1) / r) ** 2 - math.log(r * math.sqrt(2 * math.pi))

    def sample_param(self, n: int, generator: torch.Generator) -> Tensor:
        r = self.hparams["radial_std"]
        a = 1 + r * torch.randn(n, generator=generator, dtype=torch.float64)
        outside = (a - 1).abs() > 8 * r
        while bool(outside.any()):  # exact truncation (practically never runs)
            a[outside] = 1 + r * torch.randn(int(outside.sum()), generator=generator,
                                             dtype=torch.float64)
            outside = (a - 1).abs() > 8 * r
        return a


class Rings(ToyDensity):
    """Concentric rings: x = rₖ (cos θ, sin θ) + σ ε, k uniform, θ ~ U[0, 2π).

    The angle integral is a Bessel function: with ρ = ‖x‖ and zₖ = ρ rₖ / σ²,

        p(x) = 1/K Σₖ exp(−(ρ − rₖ)² / 2σ²) · I₀ₑ(zₖ) / (2πσ²),

    where I₀ₑ(z) = e^{−z} I₀(z) (``torch.special.i0e``). The score is radial:

        ∇ₓ log p = x (−1/σ² + Σₖ qₖ(x) (rₖ²/σ⁴) g(zₖ)),  g(z) = I₁(z) / (z I₀(z)),

    with qₖ the components' responsibilities and g(0) = ½. Defaults: radii 0.75, 1.5,
    2.25, 3 (FFJORD's "rings"), σ = ``noise`` = 0.1.

    >>> d = Rings()
    >>> x = torch.tensor([[0.75, 0.0], [0.0, 0.0]])
    >>> [round(v, 4) for v in d.log_prob(x).tolist()]
    [-1.5506, -26.744]
    """

    name = "rings"
    description = "Four concentric rings (radii 0.75-3) with Gaussian noise 0.1 (2-D)"
    params = ToyDensity.params | {
        "n_rings": Param(4, "number of rings K, radii r_k = k * spacing", low=1),
        "spacing": Param(0.75, "radius of the innermost ring and gap between rings",
                         positive=True),
        "noise": Param(0.1, "standard deviation σ of the noise", positive=True),
    }
    dim = 2

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        k = self.hparams["n_rings"]
        self.radii = self.hparams["spacing"] * torch.arange(1, k + 1, dtype=torch.float64)
        reach = float(self.radii[-1]) + 7 * self.hparams["noise"]
        self.bounds = ((-reach, reach), (-reach, reach))

    def _log_components(self, rho: Tensor) -> tuple[Tensor, Tensor]:
        s2 = self.hparams["noise"] ** 2
        radii = self.radii.to(rho.device)
        z = rho[:, None] * radii / s2
        log_c = (-(rho[:, None] - radii) ** 2 / (2 * s2) + torch.special.i0e(z).log()
                 - math.log(2 * math.pi * s2) - math.log(len(radii)))
        return log_c, z

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        k = torch.randint(0, len(self.radii), (n,), generator=generator)
        theta = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        eps = torch.randn((n, 2), generator=generator, dtype=torch.float64)
        ring = self.radii[k, None] * torch.stack([theta.cos(), theta.sin()], dim=1)
        return (ring + self.hparams["noise"] * eps).float()

    def log_prob(self, x: Tensor) -> Tensor:
        rho = x.double().norm(dim=1)
        log_c, _ = self._log_components(rho)
        return torch.logsumexp(log_c, dim=1).to(x.dtype)

    def score(self, x: Tensor) -> Tensor:
        x64 = x.detach().double()
        s2 = self.hparams["noise"] ** 2
        log_c, z = self._log_components(x64.norm(dim=1))
        resp = torch.softmax(log_c, dim=1)
        small = z < 1e-4
        safe = torch.where(small, torch.ones_like(z), z)
        ratio = torch.special.i1e(safe) / (torch.special.i0e(safe) * safe)
        g = torch.where(small, 0.5 - z**2 / 16, ratio)
        radial = -1 / s2 + (resp * g * self.radii.to(x.device) ** 2).sum(1) / s2**2
        return (x64 * radial[:, None]).to(x.dtype)
