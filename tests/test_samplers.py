"""Samplers against ground truth: Gaussian targets, ULA's closed-form bias, acceptance rates,
and the properties every sampler must have (vectorised, deterministic, no parameter grads)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import Tensor, nn

from ebmbench import (
    MarkovChainSampler,
    Sampler,
    get_dataset,
    get_sampler,
    list_plugins,
    schedule_factors,
)

EXACT = ("mh", "mala", "hmc")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class GaussianEnergy(nn.Module):
    """f(x) = −½ (x − μ)ᵀ P (x − μ) for N(μ, Σ), P = Σ⁻¹ (float64 inside, float32 out)."""

    def __init__(self, mean: Tensor, cov: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("precision", torch.linalg.inv(cov))

    def forward(self, x: Tensor) -> Tensor:
        d = x - self.mean
        return -0.5 * ((d @ self.precision) * d).sum(1)


def random_gaussian(dim: int, seed: int) -> tuple[Tensor, Tensor]:
    """A mean and a covariance with eigenvalues spread over [0.5, 2] in random directions."""
    g = gen(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    eig = torch.linspace(0.5, 2.0, dim, dtype=torch.float64)
    cov = (q * eig) @ q.T
    mean = torch.randn(dim, generator=g, dtype=torch.float64)
    return mean, cov


class CountingMLP(nn.Module):
    """A small SiLU MLP (vectors or flattened images) that counts its batched calls."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 16), nn.SiLU(),
                                 nn.Linear(16, 1))
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return self.net(x).squeeze(-1) - 0.5 * x.flatten(1).pow(2).sum(1)


# ----------------------------------------------------------- exactness on Gaussian targets

# dim → (warm-up steps, sampling steps, extra params): enough for N(0, 4I) starts to forget
# (a few tens of autocorrelation times at the tuned step size).
EXACT_RUNS = {
    2: {"mh": (100, 300, {}), "mala": (50, 150, {}), "hmc": (100, 60, {"leapfrog_steps": 3})},
    16: {"mh": (300, 900, {}), "mala": (150, 300, {}), "hmc": (50, 100, {"leapfrog_steps": 5})},
}


@pytest.mark.parametrize("dim", [2, 16])
@pytest.mark.parametrize("name", EXACT)
def test_exact_samplers_match_gaussian_moments_and_marginals(name: str, dim: int) -> None:
    torch.manual_seed(0)
    n_chains = 1000
    mean, cov = random_gaussian(dim, seed=dim)
    energy = GaussianEnergy(mean.float(), cov.float())
    warmup, steps, extra = EXACT_RUNS[dim][name]
    sampler = get_sampler(name, warmup=warmup, adapt="global", step_size=0.5, **extra)
    x0 = 2 * torch.randn(n_chains, dim, generator=gen(1))
    result = sampler.sample(energy, x0, warmup + steps, generator=gen(2))

    # Adaptation reached its target (the rate is measured after warm-up only).
    assert abs(result.stats["acceptance_rate"] - sampler.hparams["target_accept"]) < 0.1

    # Whiten with the true moments: y ~ N(0, I) exactly if the chains are at stationarity.
    chol = torch.linalg.cholesky(cov)
    y = torch.linalg.solve_triangular(chol, (result.x.double() - mean).T, upper=False).T
    se = 1 / math.sqrt(n_chains)
    assert y.mean(0).abs().max() < 4.5 * se
    emp = torch.cov(y.T)
    # Var of a sample covariance entry of N(0, I): 2/n on the diagonal, 1/n off it.
    scale = torch.full((dim, dim), se) + torch.eye(dim) * (math.sqrt(2) - 1) * se
    assert ((emp - torch.eye(dim)) / scale).abs().max() < 4.5

    # Two-sample KS on 1-D marginals against exact draws (Bonferroni over the coordinates).
    exact = torch.distributions.MultivariateNormal(mean, cov).sample((n_chains,))
    coords = range(min(dim, 4))
    for i in coords:
        p = stats.ks_2samp(result.x[:, i].double().numpy(), exact[:, i].numpy()).pvalue
        assert p > 1e-3 / len(coords), f"coordinate {i}: KS p = {p:.2e}"


def test_exact_sampler_detects_a_wrong_target() -> None:
    """The moment check above has teeth: chains from a different Gaussian fail it."""
    mean, cov = random_gaussian(2, seed=2)
    energy = GaussianEnergy(mean.float(), 1.2 * cov.float())
    x = get_sampler("mala", step_size=0.3).sample(energy, torch.randn(1000, 2), 150,
                                                   generator=gen(0)).x
    chol = torch.linalg.cholesky(cov)
    y = torch.linalg.solve_triangular(chol, (x.double() - mean).T, upper=False).T
    assert (torch.cov(y.T).diagonal() - 1).abs().max() > 4.5 * math.sqrt(2 / 1000)


# --------------------------------------------------------------------- ULA's O(ε) bias


@pytest.mark.parametrize("eps", [0.02, 0.04, 0.08])
def test_ula_stationary_variance_closed_form(eps: float) -> None:
    """On N(0, diag σ²), ULA from x₀ = 0 is Gaussian at every step, with variance

        v_T = v_∞ (1 − (1 − ε/σ²)^{2T}),   v_∞ = σ² / (1 − ε/(2σ²)),

    since x_{t+1} = (1 − ε/σ²) x_t + √(2ε) z. So the bias of the stationary variance is
    v_∞/σ² − 1 = ε/(2σ²) + O(ε²): linear in ε at small ε, with slope 1/(2σ²).
    """
    var = torch.tensor([0.1, 0.2, 0.4])
    energy = lambda x: -0.5 * (x.pow(2) / var).sum(1)  # noqa: E731
    n, steps = 16_384, 150
    x = get_sampler("ula", step_size=eps).sample(
        energy, torch.zeros(n, 3), steps, generator=gen(3)).x.double()
    var = var.double()
    a = eps / var
    v_inf = var / (1 - eps / (2 * var))
    v_t = v_inf * (1 - (1 - a) ** (2 * steps))
    v_hat = x.pow(2).mean(0)                      # the mean is known to be 0
    se = v_t * math.sqrt(2 / n)
    assert ((v_hat - v_t) / se).abs().max() < 4.5
    # The same statement as a slope: (v/σ² − 1)(1 − ε/(2σ²)) / ε = 1/(2σ²) exactly, where
    # the chains have converged.
    converged = (1 - a) ** (2 * steps) < 1e-6
    assert converged.sum() >= 2
    slope = (v_hat / var - 1) * (1 - eps / (2 * var)) / eps
    slope_se = se / var / eps * (1 - eps / (2 * var))
    assert (((slope - 1 / (2 * var)) / slope_se)[converged]).abs().max() < 4.5
    # The check has teeth: the bias itself is many standard errors wide.
    assert ((v_hat - var) / se)[converged].max() > 8


# ------------------------------------------------------------- acceptance in closed form


def _reference_acceptance(name: str, eps: float, leapfrog: int = 1) -> float:
    """E[min(1, α)] at stationarity on N(0, 1) in 1-D, by quadrature over (x, z).

    Written from each kernel's definition with scipy densities, not from the sampler code.
    """
    grid = np.linspace(-8, 8, 1201)
    h = grid[1] - grid[0]
    x, z = np.meshgrid(grid, grid, indexing="ij")
    weight = stats.norm.pdf(x) * stats.norm.pdf(z) * h * h
    log_p = stats.norm.logpdf
    if name == "mh":  # x' = x + εz
        log_alpha = log_p(x + eps * z) - log_p(x)
    elif name == "mala":  # q(b | a) = N(b; a + ε∇log p(a), 2ε), ∇log p(a) = −a
        xp = x + eps * (-x) + math.sqrt(2 * eps) * z
        sd = math.sqrt(2 * eps)
        log_alpha = (log_p(xp) + stats.norm.logpdf(x, xp - eps * xp, sd)
                     - log_p(x) - stats.norm.logpdf(xp, x - eps * x, sd))
    else:  # HMC: z is the momentum; leapfrog on ∇log p(q) = −q
        q, p = x.copy(), z.copy()
        p = p - 0.5 * eps * q
        for i in range(leapfrog):
            q = q + eps * p
            p = p - (0.5 * eps if i == leapfrog - 1 else eps) * q
        log_alpha = (log_p(q) - 0.5 * p**2) - (log_p(x) - 0.5 * z**2)
    return float((weight * np.minimum(1.0, np.exp(log_alpha))).sum())


@pytest.mark.parametrize(
    ("name", "eps", "extra"),
    [("mh", 0.5, {}), ("mh", 2.4, {}), ("mh", 6.0, {}), ("mala", 0.8, {}),
     ("mala", 1.5, {}), ("hmc", 1.2, {"leapfrog_steps": 1, "step_jitter": 0.0}),
     ("hmc", 1.5, {"leapfrog_steps": 4, "step_jitter": 0.0}),
     ("hmc", 1.2, {"leapfrog_steps": 1}), ("hmc", 1.5, {"leapfrog_steps": 4})],
)
def test_acceptance_rate_matches_closed_form(name: str, eps: float, extra: dict) -> None:
    if name == "mh":
        # Random-walk Metropolis on N(0, 1) with proposal N(x, s²) accepts, at
        # stationarity, with probability (2/π) arctan(2/s).
        expected = 2 / math.pi * math.atan(2 / eps)
        assert abs(expected - _reference_acceptance("mh", eps)) < 1e-4
    elif name == "hmc":
        # A jittered ε is uniform on [(1 − j)ε, (1 + j)ε]: the acceptance is the average of
        # the fixed-ε one over that law (midpoint rule, 40 nodes).
        j = extra.get("step_jitter", get_sampler("hmc").hparams["step_jitter"])
        nodes = [eps * (1 - j + 2 * j * (k + 0.5) / 40) for k in range(40)] if j else [eps]
        expected = float(np.mean([_reference_acceptance(name, e, extra["leapfrog_steps"])
                                  for e in nodes]))
    else:
        expected = _reference_acceptance(name, eps, extra.get("leapfrog_steps", 1))
    n, steps = 100_000, 3
    energy = lambda x: -0.5 * x.pow(2).sum(1)  # noqa: E731
    x0 = torch.randn(n, 1, generator=gen(4))     # exact draws: stationary from step 0
    result = get_sampler(name, step_size=eps, **extra).sample(energy, x0, steps,
                                                              generator=gen(5))
    se = math.sqrt(expected * (1 - expected) / n)  # per step; the mean over steps is no worse
    assert abs(result.stats["acceptance_rate"] - expected) < 4.5 * se


def test_hmc_jitter_breaks_the_half_period_resonance() -> None:
    """On N(0, s²) with L = 3 and ε = s, three leapfrog steps turn (x, p) by exactly π
    (cos θ = 1 − ε²/2s² = ½ per step), so every fixed-ε iteration maps x to −x with H
    unchanged: chains keep their starting spread forever, accepted every time. Jittered ε
    (the default) forgets it and reaches the stationary variance s²."""
    s, n = 0.5, 4000
    energy = lambda x: -0.5 * (x / s).pow(2).sum(1)  # noqa: E731
    x0 = 10 * s * torch.randn(n, 1, generator=gen(6), dtype=torch.float64)
    fixed = get_sampler("hmc", step_size=s, leapfrog_steps=3, step_jitter=0.0)
    stuck = fixed.sample(energy, x0, 30, generator=gen(7))
    assert stuck.stats["acceptance_rate"] > 0.999
    assert torch.allclose(stuck.x.abs(), x0.abs(), rtol=1e-6)   # the resonance itself
    jittered = get_sampler("hmc", step_size=s, leapfrog_steps=3)
    assert jittered.hparams["step_jitter"] > 0
    mixed = jittered.sample(energy, x0, 30, generator=gen(7))
    var, se = s**2, s**2 * math.sqrt(2 / n)
    assert abs(float(mixed.x.pow(2).mean()) - var) < 4.5 * se


# ---------------------------------------------------- properties of every sampler plugin

ALL = list_plugins("sampler")


@pytest.mark.parametrize("shape", [(2,), (1, 6, 6)], ids=["vector", "image"])
@pytest.mark.parametrize("name", ALL)
def test_sampler_contract(name: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    energy = CountingMLP(math.prod(shape))
    sampler = get_sampler(name, budget="smoke")
    x0 = torch.randn(5, *shape, generator=gen(0))
    result = sampler.sample(energy, x0, 4, generator=gen(1))

    assert result.x.shape == x0.shape and result.x.dtype == x0.dtype
    assert torch.isfinite(result.x).all() and not result.x.requires_grad
    assert not torch.equal(result.x, x0)
    for key in ("energy_evals", "grad_evals"):
        assert isinstance(result.stats[key], float) and result.stats[key] >= 0
    assert result.stats["energy_evals"] >= 4
    if isinstance(sampler, MarkovChainSampler) and sampler.has_accept:
        assert 0 <= result.stats["acceptance_rate"] <= 1
    # No gradient reached (or is left on) the parameters, which still require grad.
    assert all(p.grad is None and p.requires_grad for p in energy.parameters())
    # The same generator seed reproduces the chains; another seed does not.
    again = sampler.sample(energy, x0, 4, generator=gen(1)).x
    other = sampler.sample(energy, x0, 4, generator=gen(2)).x
    assert torch.equal(result.x, again) and not torch.equal(result.x, other)
    # Vectorised: the number of batched energy calls does not grow with the chains.
    calls = []
    for n in (3, 40):
        energy.calls = 0
        stats_n = sampler.sample(energy, torch.randn(n, *shape), 4, generator=gen(1)).stats
        calls.append(energy.calls)
        assert stats_n["energy_evals"] == energy.calls
    assert calls[0] == calls[1]


@pytest.mark.parametrize("name", ALL)
def test_sampler_runs_under_no_grad_and_default_steps(name: str) -> None:
    sampler = get_sampler(name, budget="smoke")
    energy = CountingMLP(2)
    with torch.no_grad():
        result = sampler.sample(energy, torch.randn(7, 2), generator=gen(0))
    assert result.x.shape == (7, 2) and torch.isfinite(result.x).all()
    assert energy.calls >= sampler.hparams["steps"]


@pytest.mark.parametrize("budget", ["smoke", "quick", "full"])
def test_default_chains_of_the_gradient_samplers_spend_equal_gradients(budget: str) -> None:
    # The harness's evaluation runs each sampler's default chain length: hmc's iterations
    # of L leapfrog steps must cost what ula's and mala's steps cost, within one iteration.
    energy = GaussianEnergy(torch.zeros(2), torch.eye(2))
    spent = {}
    for name in ("ula", "mala", "hmc"):
        result = get_sampler(name, budget=budget).sample(energy, torch.randn(3, 2), generator=gen(0))
        spent[name] = result.stats["grad_evals"]
    leapfrog = get_sampler("hmc", budget=budget).hparams["leapfrog_steps"]
    assert abs(spent["ula"] - spent["mala"]) <= 1, spent
    assert abs(spent["hmc"] - spent["mala"]) <= leapfrog, (spent, leapfrog)


@pytest.mark.parametrize("name", ALL)
def test_continuing_the_chains_equals_one_long_run(name: str) -> None:
    """Persistent chains: x0 = sampler.state.x continues exactly where the last call ended."""
    energy = CountingMLP(2)
    x0 = torch.randn(6, 2, generator=gen(0))
    g = gen(1)
    one = get_sampler(name, budget="smoke").sample(energy, x0, 10, generator=g).x
    sampler = get_sampler(name, budget="smoke")
    g = gen(1)
    sampler.sample(energy, x0, 4, generator=g)
    two = sampler.resume(energy, 6, generator=g).x
    torch.testing.assert_close(one, two, rtol=0, atol=0)
    assert torch.equal(sampler.state.x, two)


@pytest.mark.parametrize("name", ALL)
def test_compile_is_off_by_default_at_every_budget(name: str) -> None:
    for budget in ("smoke", "quick", "full"):
        assert get_sampler(name, budget=budget).hparams.get("compile", False) is False


@pytest.mark.parametrize("name", ["mala"])
def test_compiled_path_matches_eager(name: str) -> None:
    """compile=True goes through torch.compile (here with the aot_eager backend, which
    traces forward and backward the way inductor does but runs them eagerly)."""
    energy = CountingMLP(2)
    x0 = torch.randn(32, 2, generator=gen(0))
    eager = get_sampler(name, budget="smoke").sample(energy, x0, 5, generator=gen(1))
    sampler = get_sampler(name, budget="smoke", compile=True)
    sampler.compile_options = {"backend": "aot_eager"}
    compiled = sampler.sample(energy, x0, 5, generator=gen(1))
    torch.testing.assert_close(compiled.x, eager.x)
    assert compiled.stats == eager.stats
    assert sampler._compiled is not None and sampler._compiled[0]() is energy
    assert all(p.grad is None and p.requires_grad for p in energy.parameters())


# ----------------------------------------------------------- schedules and adaptation


@pytest.mark.parametrize("kind", ["constant", "linear", "cosine", "geometric"])
def test_schedule_factors(kind: str) -> None:
    f = schedule_factors(kind, 50, final=0.05)
    assert len(f) == 50 and f[0] == 1.0
    assert f[-1] == pytest.approx(1.0 if kind == "constant" else 0.05)
    assert all(a >= b for a, b in zip(f, f[1:], strict=False))


def test_ula_schedule_is_the_hand_written_update() -> None:
    """x_{t+1} = x_t + ε_t ∇f + √(2ε_t) z with ε_t = ε · 0.1^{t/(T−1)} (geometric decay)."""
    energy = lambda x: -0.5 * x.pow(2).sum(1) - 0.1 * x.pow(4).sum(1)  # noqa: E731
    x0 = torch.randn(8, 3, generator=gen(0))
    out = get_sampler("ula", step_size=0.05, schedule="geometric", final_ratio=0.1).sample(
        energy, x0, 6, generator=gen(1)).x
    g, x = gen(1), x0.clone()
    for t in range(6):
        eps = 0.05 * 0.1 ** (t / 5)
        score = -x - 0.4 * x.pow(3)
        x = x + eps * score + math.sqrt(2 * eps) * torch.randn(x.shape, generator=g)
    torch.testing.assert_close(out, x)


@pytest.mark.parametrize("name", EXACT)
def test_adaptation_happens_only_during_warmup(name: str) -> None:
    energy = lambda x: -0.5 * x.pow(2).sum(1)  # noqa: E731
    x0 = torch.randn(64, 2, generator=gen(0))
    long = get_sampler(name, warmup=20, step_size=3.0)
    long.sample(energy, x0, 50, generator=gen(1))
    short = get_sampler(name, warmup=20, step_size=3.0)
    short.sample(energy, x0, 20, generator=gen(1))
    assert long.state.step_size == short.state.step_size != 3.0
    fixed = get_sampler(name, step_size=3.0)  # warmup 0 by default: no adaptation at all
    assert fixed.sample(energy, x0, 20, generator=gen(1)).stats["step_size"] == 3.0


@pytest.mark.parametrize("name", EXACT)
def test_persistent_warmup_spans_calls(name: str) -> None:
    energy = lambda x: -0.5 * x.pow(2).sum(1)  # noqa: E731
    x0 = torch.randn(64, 2, generator=gen(0))
    one = get_sampler(name, warmup=30, step_size=3.0, persistent=True)
    r1 = one.sample(energy, x0, 70, generator=gen(1))
    split = get_sampler(name, warmup=30, step_size=3.0, persistent=True)
    g = gen(1)
    split.sample(energy, x0, 20, generator=g)  # all warm-up: ε keeps adapting next call
    r2 = split.resume(energy, 50, generator=g)
    # Equal up to the round trip exp(log ε) of the step size handed between the calls.
    torch.testing.assert_close(r1.x, r2.x, rtol=1e-5, atol=1e-6)
    assert one.state.step_size == pytest.approx(split.state.step_size, rel=1e-6)
    assert one.state.steps_done == split.state.steps_done == 70
    # Not persistent: every call starts again from hparams["step_size"].
    fresh = get_sampler(name, warmup=30, step_size=3.0)
    fresh.sample(energy, x0, 20, generator=gen(1))
    assert fresh.state.step_size != 3.0
    third = fresh.sample(energy, x0, 20, generator=gen(1))
    assert third.stats["step_size"] == fresh.state.step_size  # re-adapted from 3.0 again


def test_per_chain_adaptation_follows_each_chains_scale() -> None:
    """Chain i targets N(0, σᵢ²): per-chain adaptation makes εᵢ ∝ σᵢ (RWM is scale-free)."""
    sigma = torch.tensor([0.1, 1.0, 10.0]).repeat_interleave(100)
    energy = lambda x: -0.5 * (x / sigma[:, None]).pow(2).sum(1)  # noqa: E731
    x0 = torch.randn(300, 2, generator=gen(0)) * sigma[:, None]
    sampler = get_sampler("mh", adapt="per_chain", warmup=400, step_size=1.0)
    sampler.sample(energy, x0, 400, generator=gen(1))
    ratio = (sampler.state.step_size / sigma).view(3, 100).median(dim=1).values
    assert (ratio / ratio.mean() - 1).abs().max() < 0.2
    assert ((ratio - 2.38 / math.sqrt(2)).abs() < 1.0).all()  # near the known optimum


# ------------------------------------------- the harness's defaults on a 2-D toy density


@pytest.mark.parametrize("name", ALL)
def test_quick_defaults_give_sensible_samples_on_eight_gaussians(name: str) -> None:
    """From the dataset's init noise, the quick-budget chain puts nearly every sample in a
    mode (within 3σ of a mean) and populates all eight modes."""
    data = get_dataset("eight_gaussians")
    energy = data.log_prob
    x0 = data.init_noise(1000, gen(0))
    result = get_sampler(name, budget="quick").sample(energy, x0, generator=gen(1))
    dist = torch.cdist(result.x.double(), data.means)
    nearest = dist.min(dim=1)
    in_mode = nearest.values < 3 * data.hparams["scale"]
    assert in_mode.float().mean() > 0.9
    counts = torch.bincount(nearest.indices[in_mode], minlength=8)
    assert counts.min() > 0.05 * 1000


def test_hmc_needs_a_leapfrog_step() -> None:
    with pytest.raises(ValueError, match="leapfrog"):
        get_sampler("hmc", leapfrog_steps=0)


def test_samplers_are_sampler_plugins() -> None:
    for name in ("mh", "ula", "mala", "hmc"):
        assert isinstance(get_sampler(name), Sampler)
