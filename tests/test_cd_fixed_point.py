"""scripts/cd_fixed_point.py: short-run CD with ULA's fixed point on a Gaussian, in closed
form, checked against the ULA sampler, ULA's stationary law and trained runs."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ebmbench
from tests.helpers import load_script, ula_stationary_precision

F64 = torch.float64


@pytest.fixture(scope="module")
def cfp():
    return load_script("cd_fixed_point")


def test_chain_moments_are_the_ula_samplers(cfp):
    """K steps of the harness's ``ula`` on the quadratic energy, from the dataset's noise,
    have the mean and covariance the closed form propagates (given the starts' own
    moments, only the injected noise is random: 20 000 chains, a few per cent)."""
    ds = ebmbench.get_dataset("correlated_gaussian")
    x0 = ds.init_noise(20_000, torch.Generator().manual_seed(0)).double()
    mean = torch.tensor([0.3, -0.2], dtype=F64)
    precision = torch.tensor([[3.0, -2.0], [-2.0, 6.0]], dtype=F64)
    energy = ebmbench.get_architecture("quadratic").build(ds.shape).double()
    energy.set(mean, precision)
    eps, steps = 0.02, 30
    ula = ebmbench.get_sampler("ula", step_size=eps)
    x = ula.sample(energy, x0, steps, generator=torch.Generator().manual_seed(1)).x.double()
    m, c = cfp.chain_moments(precision[None], mean[None], torch.tensor([eps], dtype=F64),
                             torch.tensor([steps]), x0.mean(0), torch.cov(x0.T))
    assert torch.allclose(x.mean(0), m[0], atol=0.02)
    assert torch.allclose(torch.cov(x.T), c[0], rtol=0.05, atol=0.01)
    # and not the target's: 30 steps leave the chains far wider than N(m, P⁻¹)
    assert c[0][0, 0] > 2 * torch.linalg.inv(precision)[0, 0]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), dim=st.integers(1, 4), steps=st.integers(1, 60),
       eps_fraction=st.floats(0.01, 1.9))
def test_chain_moments_are_the_ula_recursion_unrolled(cfp, seed, dim, steps, eps_fraction):
    """The eigendecomposed closed form equals K applications of m ← A m + εP μ,
    C ← A C Aᵀ + 2εI for any positive definite P and any ε < 2 / λ_max(P)."""
    g = torch.Generator().manual_seed(seed)
    root = torch.randn(dim, dim, generator=g, dtype=F64)
    precision = root @ root.T + 0.1 * torch.eye(dim, dtype=F64)
    eps = eps_fraction / float(torch.linalg.eigvalsh(precision)[-1])
    mean, m0 = torch.randn(dim, generator=g, dtype=F64), torch.randn(dim, generator=g, dtype=F64)
    c0 = (lambda r: r @ r.T)(torch.randn(dim, dim, generator=g, dtype=F64))
    a = torch.eye(dim, dtype=F64) - eps * precision
    m, c = m0.clone(), c0.clone()
    for _ in range(steps):
        m, c = a @ m + eps * precision @ mean, a @ c @ a.T + 2 * eps * torch.eye(dim, dtype=F64)
    m_k, c_k = cfp.chain_moments(precision[None], mean[None], torch.tensor([eps], dtype=F64),
                                 torch.tensor([steps]), m0, c0)
    assert torch.allclose(m_k[0], m, rtol=1e-8, atol=1e-8)
    assert torch.allclose(c_k[0], c, rtol=1e-8, atol=1e-8)


def test_long_chains_settle_where_ulas_stationary_variance_equals_the_datas(cfp):
    """With K → ∞ the chains forget the start: on N(0, s) CD's fixed point is the precision
    whose ULA stationary variance 1 / (p (1 − εp/2)) is s, p = (1 − √(1 − 2ε/s)) / ε."""
    s, eps = 0.5, 0.05
    noise = (torch.zeros(1, dtype=F64), torch.tensor([[4.0]], dtype=F64), torch.zeros(1, dtype=F64))
    _, precision, status = cfp.fixed_points(
        torch.zeros(1, dtype=F64), torch.tensor([[s]], dtype=F64), noise,
        torch.tensor([eps], dtype=F64), torch.tensor([10**5]))
    assert status.tolist() == [1]
    assert precision[0, 0, 0].item() == pytest.approx((1 - math.sqrt(1 - 2 * eps / s)) / eps,
                                                      rel=1e-5)


def test_no_fixed_point_once_the_step_passes_half_the_narrowest_variance(cfp):
    """Every ULA chain variance is at least 2ε, so along correlated_gaussian's minor axis
    (s = 0.3) a fixed point needs ε < s²/2 = 0.045."""
    ds = ebmbench.get_dataset("correlated_gaussian")
    _, _, status = cfp.fixed_points(ds.mean, ds.covariance, cfp.noise_moments(ds),
                                    torch.tensor([0.043, 0.047], dtype=F64), torch.tensor([100, 100]))
    assert status.tolist() == [1, 0]


def test_cd_with_ula_trains_to_the_closed_form_fixed_point_not_the_truth():
    """The harness's ``cd`` with ``ula`` on the quadratic energy, chains from noise (K = 20,
    chain step ×5), ends within 2 % of the predicted precision, 27 % from the truth's."""
    cfp = load_script("cd_fixed_point")
    ds = ebmbench.get_dataset("correlated_gaussian")
    scale, steps = 5.0, 20
    eps = scale * ebmbench.get_sampler("ula").hparams["step_size"]
    _, predicted, status = cfp.fixed_points(ds.mean, ds.covariance, cfp.noise_moments(ds),
                                            torch.tensor([eps], dtype=F64), torch.tensor([steps]))
    assert status.tolist() == [1]
    model = ebmbench.train(
        "cd", "quadratic", "correlated_gaussian", sampler="ula", device="cpu",
        checkpoint="last", weight_average="ema",
        overrides={"method.cd.mcmc_steps": steps, "method.cd.chain_step_scale": scale,
                   "method.cd.chain_start": "noise", "method.cd.lr": 0.02,
                   "method.cd.steps": 1000})
    learned = model.energy.precision().detach().double()
    assert float((learned - predicted[0]).norm() / predicted[0].norm()) < 0.02
    assert float((learned - ds.precision).norm() / ds.precision.norm()) > 0.2


def test_cd_from_the_data_settles_at_ulas_stationary_law_whatever_k(cfp):
    """Hinton's CD-K (chains from the data) with α = 0: C_K − Σ = L^K(Σ − C_∞) vanishes only
    at Σ = C_∞, so the fixed point is ULA's stationary precision for every K, where chains
    from noise depend on K."""
    ds = ebmbench.get_dataset("correlated_gaussian")
    eps = torch.tensor([0.025] * 3, dtype=F64)
    steps = torch.tensor([1, 5, 100])
    _, precision, status = cfp.fixed_points(ds.mean, ds.covariance, cfp.start_moments(ds, "data"),
                                            eps, steps)
    assert status.tolist() == [1, 1, 1]
    exact = ula_stationary_precision(ds.covariance.double(), 0.025)
    for p in precision:
        assert torch.allclose(p, exact, rtol=1e-4, atol=1e-4)
    from_noise = cfp.settled_values(ds, eps, steps, 0.0, "noise")
    assert from_noise[0] > 10 * from_noise[2]  # short-run CD: K decides


def test_cd_from_the_data_trains_to_ulas_stationary_law_with_short_chains():
    """The harness's ``cd`` with ``chain_start=data`` and ``ula`` (K = 5, chain step ×5,
    ε = 0.025) ends within 3 % of ULA's stationary precision (0.7 % measured), 15 % or more
    from the truth's (20 %); the same run with chains from noise ends far from both (73 %
    from the stationary precision), its 5 steps too few to forget the noise."""
    ds = ebmbench.get_dataset("correlated_gaussian")
    eps = 5 * ebmbench.get_sampler("ula").hparams["step_size"]
    predicted = ula_stationary_precision(ds.covariance.double(), eps)
    model = ebmbench.train(
        "cd", "quadratic", "correlated_gaussian", sampler="ula", device="cpu",
        checkpoint="last", weight_average="ema",
        overrides={"method.cd.mcmc_steps": 5, "method.cd.chain_step_scale": 5.0,
                   "method.cd.chain_start": "data", "method.cd.lr": 0.02,
                   "method.cd.steps": 1000})
    learned = model.energy.precision().detach().double()
    assert float((learned - predicted).norm() / predicted.norm()) < 0.03
    assert float((learned - ds.precision).norm() / ds.precision.norm()) > 0.15
    from_noise = ebmbench.train(
        "cd", "quadratic", "correlated_gaussian", sampler="ula", device="cpu",
        checkpoint="last", weight_average="ema",
        overrides={"method.cd.mcmc_steps": 5, "method.cd.chain_step_scale": 5.0,
                   "method.cd.chain_start": "noise", "method.cd.lr": 0.02,
                   "method.cd.steps": 1000})
    learned = from_noise.energy.precision().detach().double()
    assert float((learned - predicted).norm() / predicted.norm()) > 0.3


def test_the_script_finds_cds_floor_within_its_k_range(cfp, capsys):
    """At K = 100 with α = 0 the best chain step (×4) leaves 0.245 and ×10 passes the
    0.045 bound; α = 0.01 settles lower (0.062 at ×5), and has a fixed point at ×10."""
    values = cfp.main(["--scale", "4,5,10", "--steps", "100", "--alpha", "0,0.01"])
    assert values[0.0, 4.0, 100] == pytest.approx(0.245, abs=0.005)
    assert math.isinf(values[0.0, 10.0, 100])
    assert values[0.01, 5.0, 100] == pytest.approx(0.062, abs=0.003)
    assert math.isfinite(values[0.01, 10.0, 100])
    out = capsys.readouterr().out
    assert "α = 0.01" in out and "| ×10" in out and "no fixed point" in out


@pytest.mark.parametrize("alpha", [0.0, 0.1])
def test_expected_gradient_is_cd_losss_on_exact_ula_chains(cfp, alpha):
    """The closed-form expected gradient of ``cd_loss`` (with the regulariser's fourth
    moments, the uniform start's kurtosis included) against autograd of the plugin's
    ``cd_loss`` on 300 000 data points and ULA chains from the dataset's noise."""
    from plugins.methods.contrastive_divergence import cd_loss

    ds = ebmbench.get_dataset("correlated_gaussian")
    g = torch.Generator().manual_seed(3)
    n, eps, steps = 300_000, 0.02, 30
    x = ds.init_noise(n, g).double()
    data = ds.sample(n, g).double()
    mean = torch.tensor([0.3, -0.2], dtype=F64)
    precision = torch.tensor([[3.0, -2.0], [-2.0, 6.0]], dtype=F64)
    for _ in range(steps):
        x = x - eps * (x - mean) @ precision + math.sqrt(2 * eps) * torch.randn(
            x.shape, generator=g, dtype=F64)
    m, p = mean.clone().requires_grad_(), precision.clone().requires_grad_()

    def f(z):
        return -0.5 * (((z - m) @ p) * (z - m)).sum(-1)

    cd_loss(f(data), f(x), alpha).backward()
    grad_m, grad_p = cfp.expected_gradient(mean[None], precision[None],
                                           torch.tensor([eps], dtype=F64), torch.tensor([steps]),
                                           ds.mean, ds.covariance, cfp.noise_moments(ds), alpha)
    assert torch.allclose(grad_m[0], m.grad, rtol=0.03, atol=0.02)
    assert torch.allclose(grad_p[0], p.grad, rtol=0.03, atol=0.02)


def test_stored_models_are_set_beside_their_fixed_point(cfp, tmp_path, capsys):
    """``--results``: a stored cd/ula run on the quadratic energy (chains from noise, K = 20,
    chain step ×5) beside its configuration's fixed point, 4.78, where its last curve point settled."""
    ebmbench.run(methods=["cd"], samplers=["ula"], architectures=["quadratic"],
                 datasets=["correlated_gaussian"], metrics=["fisher"], seeds=[0], device="cpu",
                 results=tmp_path / "r.sqlite", weight_average="ema",
                 overrides={"method.cd.mcmc_steps": 20, "method.cd.chain_step_scale": 5.0,
                            "method.cd.chain_start": "noise", "method.cd.lr": 0.02,
                            "method.cd.steps": 1000})
    values = cfp.main(["--results", str(tmp_path / "r.sqlite")])
    assert values == {(0.0, 5.0, 20): pytest.approx(4.78, abs=0.01)}
    models = cfp.stored_models(str(tmp_path / "r.sqlite"), "correlated_gaussian")
    assert models.loc[0, "last_point"] == pytest.approx(4.78, rel=0.05)
    out = capsys.readouterr().out
    assert "fixed_point" in out and re.search(r"\|\s+4\.78\s+\|\n", out)
    assert cfp.stored_models(str(tmp_path / "r.sqlite"), "correlated_gaussian_16d").empty


@pytest.mark.parametrize(("argv", "message"), [
    (["--dataset", "banana"], "'banana' is not Gaussian .* Gaussian datasets: correlated_gaussian"),
    (["--scale", "abc"], "argument --scale: 'abc' is not a comma list of numbers"),
    (["--steps", "0"], "argument --steps: '0': every value must be positive"),
    (["--alpha", "-1"], "argument --alpha: '-1': every value must be at least 0"),
])
def test_bad_input_exits_2_with_one_line(cfp, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        cfp.main(argv)
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(message, last) and "Traceback" not in last


def test_cds_quick_defaults_train_the_quadratic_energy_to_ulas_stationary_law():
    """Untuned at quick, ``cd`` starts its chains from the data with lr 0.01 (what tuning
    chose, docs/protocol.md section 6), so with ``ula`` it lands within 5 % of ULA's
    stationary law at the sampler's own step (0.8 % measured) and under the published
    target's Fisher divergence of 0.05 (0.0088), where the old quick defaults (noise, lr
    0.001) left 4.9."""
    ds = ebmbench.get_dataset("correlated_gaussian")
    eps = ebmbench.get_sampler("ula").hparams["step_size"]
    stationary = ula_stationary_precision(ds.covariance.double(), eps)
    model = ebmbench.train("cd", "quadratic", "correlated_gaussian", sampler="ula",
                           device="cpu", seed=0)
    assert model.spec.params["method"]["chain_start"] == "data"
    learned = model.energy.precision().detach().double()
    assert float((learned - stationary).norm() / stationary.norm()) < 0.05
    assert model.evaluate("fisher")["fisher_divergence"] < 0.05
