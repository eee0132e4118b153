"""Annealed importance sampling against closed-form log-partition functions."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

from ebmbench import (
    AISResult,
    ais_log_partition,
    ais_unreliable_reason,
    annealed_importance_sampling,
    annealing_schedule,
    get_sampler,
    log_mean_exp_with_se,
    replicate_log_mean_exp,
    thermodynamic_schedule,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class ShiftedGaussian(nn.Module):
    """f(x) = c − ½ (x − μ)ᵀ P (x − μ), so log Z = c + (d/2) log 2π − ½ log det P."""

    def __init__(self, dim: int, seed: int = 0, offset: float = 3.0) -> None:
        super().__init__()
        g = gen(seed)
        a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
        cov = a @ a.T / dim + 0.5 * torch.eye(dim, dtype=torch.float64)
        self.mean = nn.Parameter(torch.randn(dim, generator=g, dtype=torch.float64).float())
        self.register_buffer("precision", torch.linalg.inv(cov).float())
        self.offset = offset
        self.log_z = offset + dim / 2 * math.log(2 * math.pi) + 0.5 * float(torch.logdet(cov))

    def forward(self, x: Tensor) -> Tensor:
        d = x - self.mean
        return self.offset - 0.5 * ((d @ self.precision) * d).sum(1)


def broad_base(dim: int, scale: float = 2.0) -> Independent:
    return Independent(Normal(torch.zeros(dim), torch.full((dim,), scale)), 1)


KERNELS = {
    "mh": {"step_size": 0.5},
    "ula": {"step_size": 0.01},
    "mala": {"step_size": 0.2},
    "hmc": {"step_size": 0.3, "leapfrog_steps": 2},
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_ais_log_z_within_three_standard_errors(name: str) -> None:
    energy = ShiftedGaussian(2)
    result = annealed_importance_sampling(
        energy, broad_base(2), get_sampler(name, **KERNELS[name]),
        n_chains=1000, n_temperatures=100, steps_per_temperature=2, generator=gen(0),
    )
    assert isinstance(result, AISResult)
    # The test has teeth: the standard error is small against the offset of 3 nats.
    assert 0 < result.log_z_se < 0.05
    assert abs(result.log_z - energy.log_z) < 3 * result.log_z_se
    assert 1 < result.ess <= 1000
    assert result.log_w.shape == (1000,) and result.x.shape == (1000, 2)
    assert all(p.grad is None and p.requires_grad for p in energy.parameters())
    assert result.stats["energy_evals"] > 100


@pytest.mark.parametrize("schedule", ["geometric", "linear", "sigmoid"])
def test_ais_each_schedule_in_8d(schedule: str) -> None:
    energy = ShiftedGaussian(8, seed=1)
    result = annealed_importance_sampling(
        energy, broad_base(8, 1.5), get_sampler("hmc", step_size=0.25, leapfrog_steps=3),
        n_chains=500, n_temperatures=300, schedule=schedule, generator=gen(1),
    )
    assert result.log_z_se < 0.1
    assert abs(result.log_z - energy.log_z) < 3 * result.log_z_se


def test_ais_standard_error_is_calibrated() -> None:
    """Across independent runs, log Ẑ scatters by about the reported standard error."""
    energy = ShiftedGaussian(2, seed=2)
    g = gen(2)
    runs = [
        annealed_importance_sampling(energy, broad_base(2, 3.0), get_sampler("mh", step_size=0.5),
                                     n_chains=200, n_temperatures=8, generator=g)
        for _ in range(30)
    ]
    log_z = torch.tensor([r.log_z for r in runs])
    se = torch.tensor([r.log_z_se for r in runs])
    assert 0.02 < se.mean() < 0.3  # few temperatures: a noisy estimator, on purpose
    ratio = float(log_z.std() / se.mean())
    assert 0.6 < ratio < 1.6
    # Bias is second order: the mean of 30 runs is close to the truth.
    assert abs(float(log_z.mean()) - energy.log_z) < 4 * float(se.mean()) / math.sqrt(30) + 0.02


def test_ais_when_base_equals_target_has_equal_weights() -> None:
    """f = log p₀ + c: every weight is c, so log Ẑ = c exactly, se = 0 and ESS = n."""
    base = broad_base(3, 1.0)
    energy = lambda x: base.log_prob(x) + 1.5  # noqa: E731
    result = annealed_importance_sampling(energy, base, get_sampler("mala"), n_chains=50,
                                          n_temperatures=4, generator=gen(0))
    assert result.log_z == pytest.approx(1.5, abs=1e-5)
    assert result.log_z_se < 1e-5 and result.ess == pytest.approx(50)


def test_ais_is_reproducible_and_leaves_the_global_rng_alone() -> None:
    energy = ShiftedGaussian(2)
    state = torch.get_rng_state()
    kwargs = dict(n_chains=64, n_temperatures=10, generator=None)
    a = annealed_importance_sampling(energy, broad_base(2), get_sampler("mh"),
                                     **kwargs | {"generator": gen(5)})
    assert torch.equal(torch.get_rng_state(), state)
    b = annealed_importance_sampling(energy, broad_base(2), get_sampler("mh"),
                                     **kwargs | {"generator": gen(5)})
    c = annealed_importance_sampling(energy, broad_base(2), get_sampler("mh"),
                                     **kwargs | {"generator": gen(6)})
    assert torch.equal(a.log_w, b.log_w) and not torch.equal(a.log_w, c.log_w)


def test_ais_counts_evaluations() -> None:
    """MALA keeps f and log p₀ at the chains across temperatures: one gradient at the start
    and one per step, nothing for the weights. A kernel run through ``sample`` (here ULA)
    costs its own start-up at every temperature plus one evaluation for the weights."""
    calls = []

    def energy(x: Tensor) -> Tensor:
        calls.append(1)
        return -0.5 * x.pow(2).sum(1)

    result = annealed_importance_sampling(energy, broad_base(2), get_sampler("mala"),
                                          n_chains=16, n_temperatures=6,
                                          steps_per_temperature=3, generator=gen(0))
    assert result.stats["grad_evals"] == 1 + 5 * 3
    assert result.stats["energy_evals"] == 1 + 5 * 3 == len(calls)
    assert 0 <= result.stats["acceptance_rate"] <= 1
    calls.clear()
    result = annealed_importance_sampling(energy, broad_base(2), get_sampler("ula"),
                                          n_chains=16, n_temperatures=6,
                                          steps_per_temperature=3, generator=gen(0))
    # ULA: 1 evaluation per step; 6 for the weights.
    assert result.stats["grad_evals"] == 5 * 3
    assert result.stats["energy_evals"] == 6 + 5 * 3 == len(calls)


def test_log_mean_exp_with_se_is_stable_and_matches_the_direct_formula() -> None:
    log_w = torch.randn(500, generator=gen(0), dtype=torch.float64)
    w = log_w.exp()
    lz, se, ess = log_mean_exp_with_se(log_w)
    assert lz == pytest.approx(float(w.mean().log()))
    assert se == pytest.approx(float(w.std() / (w.mean() * math.sqrt(500))))
    assert ess == pytest.approx(float(w.sum() ** 2 / (w**2).sum()))
    # Shifting every log-weight by 10⁴ (exp overflows) shifts log Ẑ only.
    lz2, se2, ess2 = log_mean_exp_with_se(log_w + 1e4)
    assert lz2 == pytest.approx(lz + 1e4) and se2 == pytest.approx(se)
    assert ess2 == pytest.approx(ess)
    # NaN weights count as zero weight; all-invalid gives NaN.
    lz3, _, ess3 = log_mean_exp_with_se(torch.tensor([0.0, float("nan")]))
    assert lz3 == pytest.approx(math.log(0.5)) and ess3 == pytest.approx(1.0)
    assert math.isnan(log_mean_exp_with_se(torch.tensor([float("nan")]))[0])


@pytest.mark.parametrize("kind", ["geometric", "linear", "sigmoid"])
def test_annealing_schedules(kind: str) -> None:
    betas = annealing_schedule(kind, 20)
    assert betas.shape == (21,) and betas[0] == 0 and betas[-1] == 1
    assert (betas.diff() > 0).all()
    custom = annealing_schedule([0.0, 0.3, 1.0], 99)
    assert custom.tolist() == [0.0, 0.3, 1.0]
    with pytest.raises(ValueError):
        annealing_schedule([0.2, 1.0], 1)
    with pytest.raises(ValueError):
        annealing_schedule("cubic", 5)


def test_ais_with_a_compiling_kernel_compiles_once() -> None:
    """One AnnealedEnergy with β in a buffer serves every temperature, so a kernel with
    compile=True traces it a fixed number of times, however many temperatures there are."""
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    energy = ShiftedGaussian(2)
    kwargs = dict(n_chains=64, n_temperatures=12, steps_per_temperature=2)
    eager = annealed_importance_sampling(energy, broad_base(2), get_sampler("mala"),
                                         generator=gen(0), **kwargs)
    kernel = get_sampler("mala", compile=True)
    kernel.compile_options = {"backend": counting_backend}
    compiled = annealed_importance_sampling(energy, broad_base(2), kernel, generator=gen(0),
                                            **kwargs)
    torch.testing.assert_close(compiled.log_w, eager.log_w)
    assert 1 <= len(graphs) <= 2


# ------------------------------------------------------------ replicates, tuning, reliability


@pytest.mark.parametrize(("name", "params"), [("mala", {}), ("hmc", {"leapfrog_steps": 3}),
                                              ("mh", {})])
def test_the_cached_path_gives_the_weights_of_plain_kernel_calls(name, params, monkeypatch):
    """Keeping f and log p₀ at the chains (one gradient per MALA step) changes the cost,
    not the estimator: the same draws give the same weights as calling the kernel afresh
    at every temperature."""
    import ebmbench.ais as ais

    energy = ShiftedGaussian(3, seed=4)
    kwargs = dict(n_chains=100, n_temperatures=20, steps_per_temperature=2)
    cached = annealed_importance_sampling(energy, broad_base(3), get_sampler(name, step_size=0.1,
                                          **params), generator=gen(3), **kwargs)
    monkeypatch.setattr(ais._CachedChains, "applies", staticmethod(lambda kernel: False))
    plain = annealed_importance_sampling(energy, broad_base(3), get_sampler(name, step_size=0.1,
                                         **params), generator=gen(3), **kwargs)
    torch.testing.assert_close(cached.log_w, plain.log_w, rtol=0, atol=1e-4)
    assert cached.stats["energy_evals"] < plain.stats["energy_evals"]


def test_replicates_give_the_pooled_estimate_and_their_spread() -> None:
    energy = ShiftedGaussian(4, seed=5)
    result = annealed_importance_sampling(
        energy, broad_base(4), get_sampler("hmc", step_size=0.3, leapfrog_steps=3),
        n_chains=50, n_temperatures=40, replicates=8, generator=gen(5),
    )
    assert result.replicates == 8 and result.n_chains == 400 and result.log_w.shape == (400,)
    per = torch.logsumexp(result.log_w.view(8, 50), 1) - math.log(50)
    torch.testing.assert_close(result.log_z_replicates, per)
    assert result.log_z == pytest.approx(float(torch.logsumexp(result.log_w, 0) - math.log(400)))
    delta_se = log_mean_exp_with_se(result.log_w)[1]
    assert result.log_z_se == pytest.approx(max(float(per.std() / math.sqrt(8)), delta_se))
    assert abs(result.log_z - energy.log_z) < 4 * result.log_z_se
    lz, se, _ = replicate_log_mean_exp(result.log_w, 8)
    assert lz == result.log_z and se == pytest.approx(float(per.std() / math.sqrt(8)))
    with pytest.raises(ValueError):
        replicate_log_mean_exp(result.log_w, 7)


def test_step_sizes_per_temperature_and_their_adaptation() -> None:
    """Given step sizes are used as given; with a target acceptance they adapt from one
    temperature to the next until the kernel accepts about that often. The caller's kernel
    is left alone."""
    energy = ShiftedGaussian(8, seed=6)
    kernel = get_sampler("mala", step_size=0.5)
    fixed = annealed_importance_sampling(energy, broad_base(8), kernel, n_chains=200,
                                         n_temperatures=30, step_sizes=0.01, generator=gen(6))
    assert torch.equal(fixed.step_sizes, torch.full((29,), 0.01, dtype=torch.float64))
    assert kernel.hparams["step_size"] == 0.5
    adapted = annealed_importance_sampling(energy, broad_base(8), kernel, n_chains=200,
                                           n_temperatures=80, schedule="linear",
                                           target_accept=0.574, generator=gen(6))
    assert adapted.step_sizes[0] == 0.5 and adapted.acceptance.shape == (79,)
    assert abs(float(adapted.acceptance[-40:].mean()) - 0.574) < 0.1
    assert fixed.acceptance.mean() > 0.9  # a tiny step: nearly always accepted
    with pytest.raises(ValueError, match="step_sizes has 3 values"):
        annealed_importance_sampling(energy, broad_base(8), kernel, n_chains=4,
                                     n_temperatures=30, step_sizes=[0.1, 0.1, 0.1])


def test_thermodynamic_schedule_spends_equal_length_per_step() -> None:
    """Δβ_k ∝ 1/s(β_k): with s(β) = 1 + 9β², every step covers the same ∫ s dβ."""
    grid = torch.linspace(0, 1, 2001, dtype=torch.float64)
    betas = thermodynamic_schedule(grid, 1 + 9 * grid**2, 50)
    assert betas[0] == 0 and betas[-1] == 1 and (betas.diff() > 0).all()
    length = betas + 3 * betas**3  # ∫₀^β (1 + 9t²) dt
    torch.testing.assert_close(length.diff(), torch.full((50,), 4 / 50, dtype=torch.float64),
                               rtol=1e-3, atol=0)


@pytest.mark.parametrize("dim", [2, 16])
def test_ais_log_partition_is_within_its_error_bars_and_undoes_the_whitening(dim: int) -> None:
    """From a base N(m, S) that is off the target N(μ, Σ): log Ẑ within 4 standard errors
    of the exact log Z, the final chains (weighted) in the target's coordinates."""
    from torch.distributions import MultivariateNormal

    energy = ShiftedGaussian(dim, seed=7)
    g = gen(8)
    base = MultivariateNormal(energy.mean.detach() + 0.4, covariance_matrix=1.5 * torch.eye(dim))
    result = ais_log_partition(energy, base, get_sampler("hmc", leapfrog_steps=3), n_chains=32,
                               replicates=16, n_temperatures=100, target_accept=0.65,
                               generator=g)
    assert 0 < result.log_z_se < 0.05
    assert abs(result.log_z - energy.log_z) < 4 * result.log_z_se
    w = torch.softmax(result.log_w, 0).float()
    mean = (w[:, None] * result.x).sum(0)
    target = energy.mean.detach()
    # The chains left the base (its mean is 0.4√d away) for the target (Monte Carlo error
    # about √(1.5 d / ESS): 0.1 at d = 2, 0.25 at d = 16).
    assert float((mean - target).norm()) < 0.35 * float((base.loc - target).norm())
    assert result.stats["pilot_grad_evals"] > 0 and result.ess > 0.5 * result.n_chains
    assert ais_unreliable_reason(result) is None


def test_unreliable_when_the_weights_are_degenerate_or_replicates_disagree() -> None:
    base = broad_base(2, 1.0)
    equal = annealed_importance_sampling(lambda x: base.log_prob(x) + 2.0, base,
                                         get_sampler("mh"), n_chains=64, n_temperatures=3,
                                         replicates=4, generator=gen(0))
    assert ais_unreliable_reason(equal) is None
    # One chain carries all the weight: ESS 1 of 256.
    degenerate = replace(equal, log_w=torch.cat([torch.tensor([50.0]), torch.zeros(255)]).double())
    reason = ais_unreliable_reason(degenerate)
    assert reason is not None and "ESS 1.0 of 256 chains < 30%" in reason
    # Every replicate's own weights are equal (own SE 0.01-ish), but the replicates sit
    # 1 nat apart.
    g = gen(1)
    log_w = (torch.arange(4.0).repeat_interleave(64) + 0.01 * torch.randn(256, generator=g)).double()
    spread = replace(equal, log_w=log_w)
    reason = ais_unreliable_reason(spread, min_ess_fraction=0.0)
    assert reason is not None and "replicates disagree" in reason
    nan = replace(equal, log_z=float("nan"))
    assert "not finite" in ais_unreliable_reason(nan)
