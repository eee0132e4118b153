"""Metrics against ground truth: closed-form Fisher divergences, exact log Z, entropies,
the population MMD² of Gaussians, and classifier accuracies at the two extremes."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from ebmbench_plugins.metrics.c2st import c2st_accuracy
from ebmbench_plugins.metrics.mmd import mmd2_unbiased
from torch import nn

import ebmbench
from ebmbench import (
    Combination,
    Dataset,
    EvalContext,
    Method,
    ToyDensity,
    get_dataset,
    get_metric,
    log_integrate_2d,
)

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@functools.cache
def density(name: str) -> ToyDensity:
    return get_dataset(name, budget="smoke")  # type: ignore[return-value]


class LogDensity(nn.Module):
    """f(x) = log p(x) + c for a toy density p: log Z = c exactly."""

    def __init__(self, d: ToyDensity, c: float = 0.0) -> None:
        super().__init__()
        self.d, self.c = d, c
        self.anchor = nn.Parameter(torch.zeros((), dtype=F64))  # gives the module a dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.d.log_prob(x.double()) + self.c + 0 * self.anchor


class Quadratic(nn.Module):
    """f(x) = −½ (x − m)ᵀ S⁻¹ (x − m) + c: a Gaussian N(m, S) with log Z = c + ½ log det 2πS."""

    def __init__(self, mean, cov, c: float = 0.0) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.as_tensor(mean, dtype=F64))
        self.register_buffer("prec", torch.linalg.inv(torch.as_tensor(cov, dtype=F64)))
        self.cov = torch.as_tensor(cov, dtype=F64)
        self.c = c

    def forward(self, x):
        z = x.double() - self.mean
        return -0.5 * ((z @ self.prec) * z).sum(1) + self.c

    def log_z(self) -> float:
        return self.c + 0.5 * float(torch.logdet(2 * math.pi * self.cov))


class FixedLogZ(Method):
    """A stand-in trained method whose own estimate of log Z is ``value``."""

    name = "fixed_log_z"
    description = "test stand-in"

    def __init__(self, value: float | None) -> None:
        super().__init__(budget="smoke")
        self.value = value

    def loss(self, batch):
        raise NotImplementedError

    def log_partition(self):
        return self.value


def context(d, energy, *, samples=None, method=None, seed=0, artifact_dir=None, n=2000):
    return EvalContext(
        energy=energy, method=method or FixedLogZ(None), dataset=d,
        sampler=ebmbench.get_sampler("ula", budget="smoke"), samples=samples, sample_stats={},
        train_data=d.sample(n, gen(seed + 1)), test_data=d.sample(n, gen(seed + 2)),
        device=torch.device("cpu"), seed=seed, budget="smoke", artifact_dir=artifact_dir,
    )


# ----------------------------------------------------------------------- quadrature


@pytest.mark.parametrize("grid", [128, 256])
def test_quadrature_log_z_of_a_gaussian_energy(grid):
    """A correlated, off-centre, sharp Gaussian: log Z = ½ log det(2πΣ) to < 1e-3 nats."""
    for cov, mean, box in (
        ([[1.7, 0.9], [0.9, 0.63]], [0.5, -0.5], ((-6.0, 7.0), (-6.0, 5.0))),
        ([[0.01, 0.0], [0.0, 0.04]], [1.0, 2.0], ((-4.0, 4.0), (-4.0, 4.0))),  # σ = 0.1
    ):
        q = Quadratic(mean, cov, c=2.5)
        assert abs(log_integrate_2d(q, box, grid) - q.log_z()) < 1e-3


def test_quadrature_is_exact_where_the_integrand_does_not_vanish_at_the_edges():
    a = torch.tensor([1.3, -0.7], dtype=F64)
    box = ((-1.0, 2.0), (0.5, 3.0))
    exact = sum(math.log((math.exp(ai * hi) - math.exp(ai * lo)) / ai)
                for ai, (lo, hi) in zip(a.tolist(), box, strict=True))
    got = log_integrate_2d(lambda x: x @ a, box, 32, dtype=F64)
    assert got == pytest.approx(exact, abs=1e-12)


# ---------------------------------------------------------------------- log_partition

CHEAP_2D = ["rings", "twenty_five_gaussians", "checkerboard", "funnel", "student_t", "banana",
            "correlated_gaussian", "two_moons"]


@pytest.mark.parametrize("name", CHEAP_2D)
def test_log_partition_recovers_the_shift_of_the_true_log_density(name):
    """f = log p + c ⇒ log Z = c: the default smoke grid resolves every toy to < 1e-3."""
    d = density(name)
    metric = get_metric("log_partition", budget="smoke")
    log_z = metric.log_z_quadrature(LogDensity(d, 1.75), d.bounds, torch.device("cpu"))
    assert abs(log_z - 1.75) < 1e-3


def test_test_nll_of_the_true_density_is_its_entropy():
    """−E_test[log p] is the entropy ½ log det(2πeΣ), up to the Monte Carlo error."""
    d = density("correlated_gaussian")
    ctx = context(d, LogDensity(d, -4.0), method=FixedLogZ(-4.0 + 0.3), n=5000)
    out = get_metric("log_partition", budget="smoke").compute(ctx)
    assert abs(out["test_nll"] - d.entropy()) < 4 * out["test_nll_se"] + 1e-3
    # Var log p(x) = d/2 for a Gaussian.
    assert out["test_nll_se"] == pytest.approx(math.sqrt(0.5 * d.dim / 5000), rel=0.1)
    assert out["log_z_abs_error"] == pytest.approx(0.3, abs=1e-3)
    assert set(out) == {"test_nll", "test_nll_se", "log_z_abs_error"}


def test_no_log_z_error_without_the_methods_own_estimate():
    d = density("eight_gaussians")
    out = get_metric("log_partition", budget="smoke").compute(context(d, LogDensity(d)))
    assert "log_z_abs_error" not in out and math.isfinite(out["test_nll"])


def test_a_bound_on_log_z_is_reported_as_a_gap_not_an_estimation_error():
    """A method whose log Ẑ is a bound (the adversarial E_q f + H(q)) gets
    ``log_z_bound_gap``, a reference value, so it is never ranked with NCE's error."""
    d = density("correlated_gaussian")

    class Bound(FixedLogZ):
        log_partition_is_bound = True

    out = get_metric("log_partition", budget="smoke").compute(
        context(d, LogDensity(d, -4.0), method=Bound(-4.0 - 0.3), n=2000))
    assert "log_z_abs_error" not in out
    assert out["log_z_bound_gap"] == pytest.approx(0.3, abs=1e-3)
    assert ebmbench.get_method("adversarial").log_partition_is_bound
    assert not ebmbench.get_method("nce").log_partition_is_bound


def test_test_nll_ranks_a_worse_model_lower():
    """A Gaussian moved off the data has the larger NLL; its value is the closed-form
    cross-entropy E_p[−log q] = ½ tr(S⁻¹Σ) + ½ (μ−m)ᵀS⁻¹(μ−m) + ½ log det 2πS."""
    d = density("correlated_gaussian")
    metric = get_metric("log_partition", budget="smoke")
    cov = d.covariance.clone()
    shifted = Quadratic(d.mean + torch.tensor([0.5, 0.0], dtype=F64), cov, c=7.0)
    out = metric.compute(context(d, shifted, n=5000))
    prec, diff = torch.linalg.inv(cov), torch.tensor([0.5, 0.0], dtype=F64)
    cross = 0.5 * float(torch.trace(prec @ d.covariance) + diff @ prec @ diff
                        + torch.logdet(2 * math.pi * cov))
    assert abs(out["test_nll"] - cross) < 4 * out["test_nll_se"] + 1e-3
    assert out["test_nll"] - d.entropy() > 0.3  # the KL, ½ δᵀS⁻¹δ = 0.37


def test_log_partition_above_2d_uses_ais_with_its_standard_error_and_ess():
    """A 16-D Gaussian energy with known log Z (not given to the metric): AIS is within its
    error bars, and the ESS and chain count come along as reference values."""
    d = density("correlated_gaussian_16d")
    metric = get_metric("log_partition", budget="smoke", ais_chains=16, ais_replicates=8,
                        ais_temperatures=60)
    energy = Quadratic(d.mean, d.covariance, c=-2.0)
    ctx = context(d, energy, method=FixedLogZ(energy.log_z() + 1.0), n=4000)
    out = metric.compute(ctx)
    assert out["log_z_abs_error_se"] > 0
    assert abs(out["log_z_abs_error"] - 1.0) < 4 * out["log_z_abs_error_se"] + 0.02
    assert abs(out["test_nll"] - d.entropy()) < 4 * out["test_nll_se"] + 0.02
    assert out["log_z_chains"] == 128 and 0.5 * 128 < out["log_z_ess"] <= 128
    assert ctx.unreliable == {}
    assert {"log_z_ess", "log_z_chains"} <= type(metric).reference_values


class ClosedForm(Quadratic):
    """A Gaussian energy that states its exact log Z, as the quadratic architecture does."""

    def log_partition(self) -> torch.Tensor:
        return torch.tensor(self.log_z())


def test_log_partition_uses_the_energys_closed_form_instead_of_ais(monkeypatch):
    """An energy with ``log_partition()`` gets its exact log Z: no AIS, no ESS, and the
    test NLL's error is the Monte Carlo error of the test average alone."""
    d = density("correlated_gaussian_16d")
    metric = get_metric("log_partition", budget="smoke")
    monkeypatch.setattr(metric, "log_z_ais", lambda *a: pytest.fail("AIS was run"))
    energy = ClosedForm(d.mean, d.covariance, c=3.0)
    out = metric.compute(context(d, energy, method=FixedLogZ(energy.log_z() - 0.25), n=5000))
    assert out["log_z_abs_error"] == pytest.approx(0.25, abs=1e-6)  # float32 log Z
    assert "log_z_abs_error_se" not in out and "log_z_ess" not in out
    assert abs(out["test_nll"] - d.entropy()) < 4 * out["test_nll_se"]
    assert out["test_nll_se"] == pytest.approx(math.sqrt(0.5 * d.dim / 5000), rel=0.1)


def test_the_built_in_quadratic_energy_states_its_log_z():
    from ebmbench_plugins.metrics.partition import closed_form_log_partition

    q = ebmbench.get_architecture("quadratic").build((16,))
    assert closed_form_log_partition(q) == pytest.approx(8 * math.log(2 * math.pi))
    assert closed_form_log_partition(nn.Linear(16, 1)) is None


def test_an_ais_value_whose_weights_collapse_is_flagged_unreliable():
    """A target far narrower than the data (so than the fitted base) with a starved AIS:
    the ESS collapses, and the metric says why its values should not be ranked."""
    d = density("correlated_gaussian_16d")
    metric = get_metric("log_partition", budget="smoke", ais_chains=8, ais_replicates=4,
                        ais_temperatures=3)
    energy = Quadratic(d.mean + 0.5, 0.01 * d.covariance)
    ctx = context(d, energy, method=FixedLogZ(0.0))
    out = metric.compute(ctx)
    assert out["log_z_ess"] < 0.1 * out["log_z_chains"]
    assert set(ctx.unreliable) == {"test_nll", "log_z_abs_error"}
    assert "ESS" in ctx.unreliable["test_nll"] and "of 32 chains" in ctx.unreliable["test_nll"]


# ----------------------------------------------------------------------------- fisher


@pytest.mark.parametrize("name", ["two_spirals", "checkerboard", "gmm_32d", "funnel"])
def test_fisher_divergence_of_the_true_log_density_is_zero(name):
    d = density(name)
    out = get_metric("fisher", budget="smoke").compute(context(d, LogDensity(d, 3.0)))
    assert out["fisher_divergence"] < 1e-12 and out["fisher_divergence_se"] < 1e-12


@pytest.mark.parametrize("name", ["correlated_gaussian", "correlated_gaussian_16d"])
def test_fisher_divergence_of_a_wrong_gaussian_has_its_closed_form(name):
    """p = N(μ, Σ), q = N(m, S): with B = S⁻¹ − Σ⁻¹ and c = S⁻¹(μ − m),
    D_F = ½ (tr(BΣBᵀ) + ‖c‖²)."""
    d = density(name)
    dim = d.dim
    m = d.mean + 0.3 * torch.ones(dim, dtype=F64)
    s = 1.5 * torch.eye(dim, dtype=F64) + 0.2 * torch.ones(dim, dim, dtype=F64) / dim
    b = torch.linalg.inv(s) - torch.linalg.inv(d.covariance)
    c = torch.linalg.solve(s, d.mean - m)
    exact = 0.5 * float(torch.trace(b @ d.covariance @ b.T) + c @ c)
    out = get_metric("fisher", budget="smoke").compute(context(d, Quadratic(m, s)))
    assert abs(out["fisher_divergence"] - exact) < 4 * out["fisher_divergence_se"]


# -------------------------------------------------------------------------------- mmd


def test_mmd_estimator_is_the_unbiased_u_statistic():
    """Against the definition, summed term by term."""
    x = torch.randn(7, 3, generator=gen(0), dtype=F64)
    y = torch.randn(5, 3, generator=gen(1), dtype=F64) + 0.4
    h = torch.tensor([0.5, 2.0], dtype=F64)

    def k(a, b):
        return sum(math.exp(-float((a - b).pow(2).sum()) / (2 * w * w)) for w in h.tolist()) / 2

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    assert mmd2_unbiased(x, y, h) == pytest.approx(xx + yy - 2 * xy, abs=1e-12)


def _gaussian_mean_kernel(mu, cov, ell):
    """E k(x, y) for x − y ~ N(mu, cov), k = exp(−‖x − y‖²/2ℓ²):
    det(I + cov/ℓ²)^(−½) exp(−½ muᵀ(ℓ²I + cov)⁻¹mu)."""
    eye = torch.eye(len(mu), dtype=F64)
    return float(torch.det(eye + cov / ell**2) ** -0.5
                 * torch.exp(-0.5 * mu @ torch.linalg.solve(ell**2 * eye + cov, mu)))


def test_mmd_matches_the_population_value_between_gaussians():
    """MMD²_u is unbiased: its mean over replicates equals the closed-form MMD² of
    N(0, I) vs N(δ, I), within 4 standard errors of that mean."""
    dim, ell, delta = 2, 1.0, torch.tensor([0.6, 0.0], dtype=F64)
    eye = torch.eye(dim, dtype=F64)
    zero = torch.zeros(dim, dtype=F64)
    exact = (2 * _gaussian_mean_kernel(zero, 2 * eye, ell)
             - 2 * _gaussian_mean_kernel(delta, 2 * eye, ell))
    g = gen(5)
    reps = [mmd2_unbiased(torch.randn(300, dim, generator=g, dtype=F64),
                          torch.randn(300, dim, generator=g, dtype=F64) + delta,
                          torch.tensor([ell], dtype=F64)) for _ in range(40)]
    mean, se = np.mean(reps), np.std(reps, ddof=1) / math.sqrt(len(reps))
    assert abs(mean - exact) < 4 * se
    assert exact > 10 * se  # the check has power


def test_mmd_metric_floor_and_a_shifted_sampler():
    d = density("eight_gaussians")
    metric = get_metric("mmd", budget="smoke")
    perfect = context(d, None, samples=d.sample(256, gen(70)))
    out = metric.compute(perfect)
    # Perfect samples: statistic and floor are both noise around zero, of the same size.
    noise = [metric.compute(context(d, None, samples=d.sample(256, gen(80 + i)), seed=i))
             ["mmd_floor"] for i in range(8)]
    spread = float(np.std(noise, ddof=1))
    assert abs(out["mmd"]) < 4 * spread and abs(out["mmd_floor"]) < 4 * spread
    shifted = metric.compute(context(d, None, samples=d.sample(256, gen(70)) + 0.5))
    assert shifted["mmd"] > 10 * spread
    assert shifted["mmd_floor"] == out["mmd_floor"]  # depends on the data and seed only
    assert type(metric).reference_values == {"mmd_floor"}




def test_mmd_metric_reused_across_samplers_seeds_and_densities_equals_a_fresh_one():
    # The harness evaluates one model with every sampler through one metric object, which
    # keeps the data side between calls: it must give exactly what a fresh object gives, and
    # a new seed, sample count or density must not see the previous data.
    reused = get_metric("mmd", budget="smoke")
    for name, seed, n, shift in [("eight_gaussians", 0, 256, 0.0), ("eight_gaussians", 0, 256, 0.3),
                                 ("eight_gaussians", 1, 256, 0.3), ("eight_gaussians", 1, 100, 0.0),
                                 ("banana", 1, 100, 0.0), ("eight_gaussians", 0, 256, 0.0)]:
        d = density(name)
        ctx = context(d, None, samples=d.sample(n, gen(90 + seed)) + shift, seed=seed)
        assert reused.compute(ctx) == get_metric("mmd", budget="smoke").compute(ctx), (name, seed, n)
# ------------------------------------------------------------------------------- c2st


def test_c2st_is_chance_on_one_distribution_and_certain_on_separated_ones():
    rng = np.random.default_rng(0)
    same, se = c2st_accuracy(rng.normal(size=(500, 2)), rng.normal(size=(500, 2)), seed=1)
    assert abs(same - 0.5) < 4 * se
    apart, _ = c2st_accuracy(rng.normal(size=(500, 2)), rng.normal(size=(500, 2)) + 8, seed=1)
    assert apart > 0.99
    # Bayes accuracy for N(0,1) vs N(1,1) along one axis is Φ(½) = 0.691.
    mid, se = c2st_accuracy(rng.normal(size=(1500, 2)),
                            rng.normal(size=(1500, 2)) + np.array([1.0, 0.0]), seed=1)
    assert 0.691 - 6 * se - 0.03 < mid < 0.691 + 4 * se


def test_c2st_metric_on_data_and_on_collapsed_samples():
    d = density("eight_gaussians")
    metric = get_metric("c2st", budget="smoke")
    out = metric.compute(context(d, None, samples=d.sample(256, gen(90))))
    assert abs(out["c2st_accuracy"] - 0.5) < 4 * out["c2st_accuracy_se"] + 0.01
    collapsed = d.sample(256, gen(91))
    collapsed = collapsed[collapsed[:, 0] > 1.0]  # only the modes on the right
    out = metric.compute(context(d, None, samples=collapsed.repeat(4, 1)[:256]))
    assert out["c2st_accuracy"] > 0.7


def test_c2st_mlp_classifier_runs():
    rng = np.random.default_rng(1)
    acc, se = c2st_accuracy(rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + 6,
                            classifier="mlp", seed=0)
    assert acc > 0.95 and se < 0.02


# ----------------------------------------------------------------------- the figure


def test_density_figure_saves_the_gallery_data_compactly(tmp_path):
    """The learned density of the true log-density (shifted by a constant, which Z absorbs)
    is the true density, and the samples are kept: what the dataset's gallery draws."""
    d = density("two_moons")
    metric = get_metric("density_figure", budget="smoke")
    samples = d.sample(300, gen(95))
    ctx = context(d, LogDensity(d, 1.5), samples=samples, artifact_dir=tmp_path / "run")
    assert metric.compute(ctx) == {}
    path = ctx.artifact_dir / ctx.artifacts["density_figure"]
    assert path.name == "gallery.npz" and path.stat().st_size < 60_000
    saved = np.load(path)
    res = metric.hparams["resolution"]
    assert saved["learned"].shape == saved["true"].shape == (res, res)
    true, learned = saved["true"].astype(float), saved["learned"].astype(float)
    assert np.abs(learned - true).max() < 0.01 * true.max() + 1e-3  # float16, quadrature
    assert np.allclose(saved["samples"].astype(float), samples[:300].numpy(), atol=5e-3)
    (x0, x1), (y0, y1) = saved["view"].reshape(2, 2)
    assert x0 < x1 and y0 < y1
    ctx = context(d, LogDensity(d), samples=d.sample(300, gen(95)), artifact_dir=None)
    assert metric.compute(ctx) == {} and ctx.artifacts == {}


# ---------------------------------------------------------------------- applicability


class _Images(Dataset):
    name = "images_stub"
    description = "test stub"
    data_kind = "image"

    @property
    def shape(self):
        return (1, 8, 8)

    def train_data(self, generator):
        return torch.zeros(4, 1, 8, 8)

    def test_data(self, generator):
        return torch.zeros(4, 1, 8, 8)


def test_where_each_metric_applies():
    def combo(d):
        return Combination(FixedLogZ(None), ebmbench.get_sampler("ula"),
                           ebmbench.get_architecture("mlp"), d)

    flat, high, images = combo(density("rings")), combo(density("gmm_8d")), combo(_Images())
    for name in ("fisher", "log_partition", "mmd", "c2st"):
        m = get_metric(name)
        assert m.applies_to(flat) and m.applies_to(high) and not m.applies_to(images), name
    fig = get_metric("density_figure")
    assert fig.applies_to(flat) and not fig.applies_to(high) and not fig.applies_to(images)


@pytest.mark.parametrize("budget", ["smoke", "quick", "full"])
def test_the_harness_draws_every_sample_the_toy_sample_metrics_read(budget):
    # EVAL_SAMPLES (the chains run per sampler on a toy) was cut to what the metrics read at
    # quick; it must never fall below it, or a metric would silently compare fewer samples.
    from ebmbench.runner import EVAL_SAMPLES

    reads = {name: get_metric(name, budget=budget).hparams["max_samples"] for name in ("mmd", "c2st")}
    assert all(n <= EVAL_SAMPLES[budget] for n in reads.values()), (reads, EVAL_SAMPLES[budget])
    if budget == "quick":  # and no more is drawn than they read
        assert EVAL_SAMPLES[budget] == max(reads.values())


def test_declared_directions():
    hib = {n: type(get_metric(n)).higher_is_better for n in
           ("fisher", "log_partition", "mmd", "c2st", "density_figure")}
    assert hib["log_partition"] == {"test_nll": False, "log_z_abs_error": False,
                                    "log_z_bound_gap": False, "log_z_ess": True,
                                    "log_z_chains": True}
    ranked = set(hib["log_partition"]) - type(get_metric("log_partition")).reference_values
    assert ranked == {"test_nll", "log_z_abs_error"}
    assert hib["mmd"] == {"mmd": False, "mmd_floor": False}
    assert hib["c2st"] == {"c2st_accuracy": False}
    assert hib["density_figure"] == {}


def test_metrics_through_the_harness(tmp_path):
    """One smoke run: every metric returns finite values and the figure is linked."""
    frame = ebmbench.run(methods=["dsm"], samplers=["ula"], architectures=["mlp"],
                         datasets=["eight_gaussians"], budget="smoke", device="cpu",
                         results=tmp_path / "r.sqlite")
    row = frame.iloc[0]
    assert row["status"] == "ok", row["reason"]
    for value in ("fisher_divergence", "test_nll", "mmd", "mmd_floor", "c2st_accuracy"):
        assert math.isfinite(row[f"metric.{value}"]), value
    assert row["artifacts"]["density_figure"].endswith("gallery.npz")
    assert (tmp_path / row["artifacts"]["density_figure"]).exists()
