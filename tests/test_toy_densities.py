"""Toy densities against ground truth: normalisation, exact scores, exact sampling, seeding.

Generic properties run on every registered ToyDensity; the curve densities are checked
against an independent high-resolution quadrature written here from their definitions.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch.distributions import (
    Categorical,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
)

import ebmbench
from ebmbench import ToyDensity, box_rule_2d, gauss_legendre, log_integrate_2d


def _toy_names() -> list[str]:
    return [n for n in ebmbench.list_plugins("dataset")
            if isinstance(ebmbench.get_dataset(n, budget="smoke"), ToyDensity)]


ALL = _toy_names()
TWO_D = [n for n in ALL if ebmbench.get_dataset(n, budget="smoke").bounds is not None]
HIGH_D = [n for n in ALL if n not in TWO_D]
GAUSSIAN = [n for n in ALL if ebmbench.get_dataset(n, budget="smoke").gaussian]
F64 = torch.float64


@functools.cache
def density(name: str) -> ToyDensity:
    """One instance per name for the session (curve densities build their rule once)."""
    return ebmbench.get_dataset(name, budget="smoke")  # type: ignore[return-value]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_the_suite_is_there():
    built_in = {
        "eight_gaussians", "twenty_five_gaussians", "rings", "two_moons", "swiss_roll",
        "pinwheel", "two_spirals", "checkerboard", "banana", "funnel", "student_t",
        "correlated_gaussian", "gmm_8d", "gmm_32d", "gmm_128d", "correlated_gaussian_16d",
    }
    assert built_in <= set(ALL)
    assert {density(n).dim for n in ("gmm_8d", "gmm_32d", "gmm_128d")} == {8, 32, 128}
    for name in ALL:
        d = density(name)
        assert d.shape == (d.dim,)
        assert (d.bounds is not None) == (d.dim == 2), name


# ------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("name", ALL)
def test_sampling_is_seeded_by_the_generator_only(name):
    d = density(name)
    torch.manual_seed(1)
    a = d.sample(257, gen(3))
    torch.manual_seed(2)  # the global RNG must not matter
    b = d.sample(257, gen(3))
    c = d.sample(257, gen(4))
    assert a.shape == (257, d.dim) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.isfinite(a).all()
    noise = d.init_noise(64, gen(0))
    assert noise.shape == (64, d.dim) and torch.equal(noise, d.init_noise(64, gen(0)))
    if d.bounds is not None:
        lo = torch.tensor([b[0] for b in d.bounds])
        hi = torch.tensor([b[1] for b in d.bounds])
        assert ((noise >= lo) & (noise <= hi)).all()
    # Train and test sets are independent draws, fixed per seed.
    assert torch.equal(d.train_data(gen(5)), d.train_data(gen(5)))


def _view(d: ToyDensity, quantile: float = 0.002):
    x = d.sample(20_000, gen(99)).double()
    lo, hi = torch.quantile(x, quantile, dim=0), torch.quantile(x, 1 - quantile, dim=0)
    return ((float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1])))


@pytest.mark.parametrize("name", TWO_D)
def test_samples_follow_log_prob_2d(name):
    """Pearson χ² of 20 000 samples over 12 × 12 cells (plus the rest of the plane), with
    cell probabilities integrated from log_prob by a 6-point Gauss–Legendre rule per cell."""
    d = density(name)
    (x0, x1), (y0, y1) = _view(d)
    cells, order = 12, 6
    tx, wx = gauss_legendre(x0, x1, cells * order, order=order)
    ty, wy = gauss_legendre(y0, y1, cells * order, order=order)
    pts = torch.cartesian_prod(tx, ty)
    mass = (d.log_prob(pts).exp() * (wx[:, None] * wy[None, :]).reshape(-1)).reshape(
        cells, order, cells, order).sum(dim=(1, 3))
    expected_p = torch.cat([mass.reshape(-1), (1 - mass.sum()).reshape(1)])
    assert float(expected_p[-1]) > -1e-6  # the cells never hold more than all the mass
    n = 20_000
    x = d.sample(n, gen(7)).double()
    ix = torch.floor((x[:, 0] - x0) / (x1 - x0) * cells).long()
    iy = torch.floor((x[:, 1] - y0) / (y1 - y0) * cells).long()
    inside = (ix >= 0) & (ix < cells) & (iy >= 0) & (iy < cells)
    counts = torch.bincount(ix[inside] * cells + iy[inside], minlength=cells * cells).double()
    observed = torch.cat([counts, torch.tensor([float((~inside).sum())], dtype=F64)])
    expected = n * expected_p.clamp_min(0)
    # Pool sparse cells: with many cells of expectation ~5 the χ² law's tail is too light.
    keep = expected >= 20
    obs = torch.cat([observed[keep], observed[~keep].sum().reshape(1)])
    exp = torch.cat([expected[keep], expected[~keep].sum().reshape(1)])
    obs, exp = obs[exp > 0], exp[exp > 0]
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    p_value = stats.chi2.sf(chi2, len(obs) - 1)
    assert p_value > 1e-3, (chi2, len(obs))


def test_a_wrong_noise_level_fails_the_chi2_test():
    """The χ² test above has power: moons with σ 10 % too large are rejected."""
    d, wrong = density("two_moons"), ebmbench.get_dataset("two_moons", budget="smoke", noise=0.22)
    (x0, x1), (y0, y1) = _view(d)
    x = wrong.sample(20_000, gen(7)).double()
    h, _, _ = np.histogram2d(x[:, 0].numpy(), x[:, 1].numpy(), bins=12,
                             range=[[x0, x1], [y0, y1]])
    tx, wx = gauss_legendre(x0, x1, 96, order=8)
    ty, wy = gauss_legendre(y0, y1, 96, order=8)
    mass = (d.log_prob(torch.cartesian_prod(tx, ty)).exp()
            * (wx[:, None] * wy[None, :]).reshape(-1)).reshape(12, 8, 12, 8).sum(dim=(1, 3))
    exp = 20_000 * mass.numpy()
    keep = exp >= 20
    chi2 = float((((h - exp) ** 2)[keep] / exp[keep]).sum())
    assert stats.chi2.sf(chi2, int(keep.sum()) - 1) < 1e-10


@pytest.mark.parametrize("name", HIGH_D)
def test_samples_follow_the_projected_law_high_d(name):
    """KS test of u·x on a fixed direction u, against its exact 1-D law."""
    d = density(name)
    x = d.sample(5000, gen(11)).double()
    u = torch.randn(d.dim, generator=gen(12), dtype=F64)
    u = u / u.norm()
    if d.gaussian:
        law = Normal(d.mean @ u, (u @ d.covariance @ u).sqrt())
        cdf = lambda z: law.cdf(torch.as_tensor(z)).numpy()  # noqa: E731
    else:
        centres, s = (d.means @ u).numpy(), d.hparams["scale"]
        cdf = lambda z: stats.norm.cdf((np.asarray(z)[:, None] - centres) / s).mean(1)  # noqa: E731
    assert stats.kstest((x @ u).numpy(), cdf).pvalue > 1e-3


# --------------------------------------------------------------- log_prob and score


@pytest.mark.parametrize("name", TWO_D)
def test_normalised_over_bounds_2d(name):
    d = density(name)
    log_mass = log_integrate_2d(d.log_prob, d.bounds, 96, order=8, dtype=F64)
    assert abs(log_mass) < 1e-4  # ∫_B p = 1 up to the negligible mass outside the box
    x = d.sample(20_000, gen(21))
    lo = torch.tensor([b[0] for b in d.bounds])
    hi = torch.tensor([b[1] for b in d.bounds])
    assert int(((x < lo) | (x > hi)).any(1).sum()) <= 3


def _probe_points(d: ToyDensity, n: int = 48) -> torch.Tensor:
    """Samples plus points spread over the box (2-D) or a wider Gaussian (higher-d)."""
    x = d.sample(n, gen(31)).double()
    if d.bounds is not None:
        (x0, x1), (y0, y1) = d.bounds
        u = torch.rand((n // 2, 2), generator=gen(32), dtype=F64) * 0.8 + 0.1
        far = torch.stack([x0 + (x1 - x0) * u[:, 0], y0 + (y1 - y0) * u[:, 1]], dim=1)
    else:
        far = x[: n // 2] + torch.randn((n // 2, d.dim), generator=gen(32), dtype=F64)
    return torch.cat([x, far])


@pytest.mark.parametrize("name", ALL)
def test_score_is_the_gradient_of_log_prob(name):
    d = density(name)
    x = _probe_points(d)
    score = d.score(x)
    assert score.dtype == F64 and score.shape == x.shape
    h = 1e-5
    step = h * torch.eye(d.dim, dtype=F64)
    ahead = d.log_prob((x[:, None] + step).reshape(-1, d.dim)).reshape(len(x), d.dim)
    behind = d.log_prob((x[:, None] - step).reshape(-1, d.dim)).reshape(len(x), d.dim)
    fd = (ahead - behind) / (2 * h)
    torch.testing.assert_close(score, fd, rtol=1e-5, atol=1e-5)
    # float32 in, float32 out, same values
    x32 = x.float()
    assert d.log_prob(x32).dtype == torch.float32 and d.score(x32).dtype == torch.float32
    torch.testing.assert_close(d.log_prob(x32).double(), d.log_prob(x32.double()),
                               rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_stein_identities(name):
    """E_p[∇log p] = 0 and E_p[xᵀ∇log p] = −d (integration by parts), within 5 std errors."""
    d = density(name)
    n = 10_000
    x = d.sample(n, gen(41)).double()
    s = d.score(x)
    minus_d = torch.tensor([-float(d.dim)], dtype=F64)
    for values, target in ((s, torch.zeros(d.dim, dtype=F64)),
                           ((x * s).sum(1, keepdim=True), minus_d)):
        mean, se = values.mean(0), values.std(0) / math.sqrt(n)
        assert ((mean - target).abs() <= 5 * se + 1e-9).all(), (mean, target, se)


def test_gaussian_flag_marks_exactly_the_gaussians():
    for name in ALL:
        d = density(name)
        # ∇log p is affine exactly when p is Gaussian: probe its second differences.
        x = _probe_points(d, 16)
        v = torch.randn_like(x)
        second = d.score(x + v) - 2 * d.score(x) + d.score(x - v)
        assert (second.abs().max() < 1e-9) == d.gaussian, name
    assert {"correlated_gaussian", "correlated_gaussian_16d"} <= set(GAUSSIAN)


@pytest.mark.parametrize("name", GAUSSIAN)
def test_gaussians_match_torch_distributions(name):
    d = density(name)
    x = _probe_points(d)
    ref = MultivariateNormal(d.mean, covariance_matrix=d.covariance)
    torch.testing.assert_close(d.log_prob(x), ref.log_prob(x), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(d.score(x), -torch.linalg.solve(d.covariance, (x - d.mean).T).T)
    assert d.entropy() == pytest.approx(float(ref.entropy()), abs=1e-10)
    assert torch.equal(d.dist.loc, d.mean)


@pytest.mark.parametrize("name", [n for n in HIGH_D if n.startswith("gmm_")])
def test_gmm_matches_torch_distributions(name):
    d = density(name)
    x = _probe_points(d)
    k, s = len(d.means), d.hparams["scale"]
    ref = MixtureSameFamily(Categorical(logits=torch.zeros(k, dtype=F64)),
                            Independent(Normal(d.means, torch.full_like(d.means, s)), 1))
    torch.testing.assert_close(d.log_prob(x), ref.log_prob(x), rtol=1e-12, atol=1e-9)
    dist = torch.cdist(d.means, d.means)
    r = d.hparams["radius"]
    off = dist[~torch.eye(k, dtype=torch.bool)]
    assert torch.allclose(off.min(), torch.tensor(r * math.sqrt(2), dtype=F64))
    assert torch.allclose(off.max(), torch.tensor(2 * r, dtype=F64))


def test_log_ndtr_diff_in_the_far_tails():
    import mpmath
    from ebmbench_plugins.datasets.toy2d import log_ndtr_diff

    a = torch.tensor([1.0, 40.0, -30.0, 5.0, 0.3], dtype=F64)
    b = torch.tensor([-1.0, 39.5, -31.0, -5.0, 0.2], dtype=F64)
    got = log_ndtr_diff(a, b)
    with mpmath.workdps(400):  # Φ(40) = 1 − 4e-350: the plain difference needs ~350 digits
        for ai, bi, g in zip(a.tolist(), b.tolist(), got.tolist(), strict=True):
            exact = mpmath.log(mpmath.ncdf(ai) - mpmath.ncdf(bi))
            assert g == pytest.approx(float(exact), rel=1e-12, abs=1e-12)


# ----------------------------------------------- curves against independent references


def _moons(t, k):
    c1 = np.stack([2 * np.cos(t) - 1, 2 * np.sin(t) - 0.2], -1)
    c2 = np.stack([1 - 2 * np.cos(t), 0.8 - 2 * np.sin(t)], -1)
    return c1 if k == 0 else c2


def _pinwheel(t, k, arms=5, rate=0.25):
    phi = 2 * np.pi * k / arms + rate * np.exp(t)
    return 2 * t[:, None] * np.stack([np.cos(phi), np.sin(phi)], -1)


# name → (components, curve(t, k), t interval, log w(t), σ): written from the definitions
# in the docstrings (scikit-learn's moons and swiss roll, FFJORD's scalings), not the code.
CURVES = {
    "two_moons": (2, _moons, (0.0, np.pi), lambda t: np.full_like(t, -np.log(np.pi)), 0.2),
    "swiss_roll": (1, lambda t, k: np.stack([t * np.cos(t), t * np.sin(t)], -1) / 5,
                   (1.5 * np.pi, 4.5 * np.pi), lambda t: np.full_like(t, -np.log(3 * np.pi)), 0.2),
    "two_spirals": (2, lambda t, k: (1 - 2 * k) * np.stack([-t * np.cos(t), t * np.sin(t)], -1) / 3,
                    (0.0, 3 * np.pi),
                    lambda t: np.log(np.maximum(2 * t / (3 * np.pi) ** 2, 1e-300)), 0.1),
    "pinwheel": (5, _pinwheel, (1 - 2.4, 1 + 2.4),
                 lambda t: stats.norm.logpdf(t, 1, 0.3), 0.2),
}


def _reference_log_prob(name, points):
    """log ∫ w(t) N(x; c(t), σ²I) dt by Simpson's rule on 2¹⁶ intervals (error < 1e-8)."""
    k_count, curve, (lo, hi), log_w, sigma = CURVES[name]
    t = np.linspace(lo, hi, 2**16 + 1)
    lw = log_w(t)
    out = []
    for x in points:
        logs = []
        for k in range(k_count):
            c = curve(t, k)
            g = lw - ((x - c) ** 2).sum(-1) / (2 * sigma**2)
            top = g.max()
            logs.append(top + np.log(integrate.simpson(np.exp(g - top), x=t)))
        out.append(np.logaddexp.reduce(logs) - np.log(k_count) - np.log(2 * np.pi * sigma**2))
    return np.array(out)


@pytest.mark.parametrize("name", list(CURVES))
def test_curve_density_matches_a_fine_independent_quadrature(name):
    d = density(name)
    (x0, x1), (y0, y1) = d.bounds
    u = torch.rand((14, 2), generator=gen(51), dtype=F64)
    corners = torch.tensor([[x0, y0], [x1, y1]], dtype=F64)
    spread = torch.stack([x0 + (x1 - x0) * u[:, 0], y0 + (y1 - y0) * u[:, 1]], dim=1)
    x = torch.cat([d.sample(8, gen(52)).double(), spread, corners])
    ref = _reference_log_prob(name, x.numpy())
    got = d.log_prob(x).numpy()
    assert np.abs(got - ref).max() < 1e-6, np.abs(got - ref).max()


def test_rings_match_a_fine_angular_quadrature():
    """The Bessel closed form against the periodic trapezoid rule over the angle."""
    d = density("rings")
    radii, sigma = d.radii.numpy(), d.hparams["noise"]
    reach = d.bounds[0][1]
    u = torch.rand((20, 2), generator=gen(61), dtype=F64) * 2 - 1
    x = torch.cat([d.sample(10, gen(62)).double(), reach * u, torch.zeros(1, 2, dtype=F64)])
    theta = np.arange(8192) * (2 * np.pi / 8192)
    ring = np.stack([np.cos(theta), np.sin(theta)], -1)
    ref = []
    for p in x.numpy():
        g = np.concatenate([-((p - r * ring) ** 2).sum(-1) / (2 * sigma**2) for r in radii])
        ref.append(np.logaddexp.reduce(g) - np.log(len(g)) - np.log(2 * np.pi * sigma**2))
    assert np.abs(d.log_prob(x).numpy() - np.array(ref)).max() < 1e-9


def test_curve_quadrature_is_normalised_and_cheap_to_build():
    """The t-rule integrates w exactly enough: Σ πₖ w(tⱼ) ωⱼ = 1 for every curve density."""
    for name in CURVES:
        d = density(name)
        _, log_w = d.quadrature_rule()
        assert float(torch.logsumexp(log_w, 0)) == pytest.approx(0.0, abs=1e-12)
    # Construction stays cheap: the rule is built on first use, not in __init__.
    assert ebmbench.get_dataset("pinwheel")._rule is None


def test_box_rule_weights_cover_the_box():
    points, log_w = box_rule_2d(((-1.0, 3.0), (0.0, 1.0)), 64, order=4)
    assert float(log_w.exp().sum()) == pytest.approx(4.0, rel=1e-12)
    assert points[:, 0].min() > -1 and points[:, 0].max() < 3
