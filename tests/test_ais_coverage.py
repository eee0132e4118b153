"""Coverage of the AIS log Z error bars, on energies whose log Z is known exactly.

The ``log_partition`` metric estimates log Z(θ) of a learned energy by AIS from a Gaussian
fitted to the training data. These tests give it stand-ins for learned energies whose
log Z is known: Gaussians and Gaussian mixtures that differ from the data (so from the
fitted base) by a learned-model-like amount, and check that log Ẑ ± 2 se contains the
exact log Z in at least 90 % of independent problems (each with its own data, its own
mismatch and its own AIS randomness).

* ``test_coverage_fast`` (CI): d = 2 and 16, a cheaper AIS than the quick budget.
* ``test_coverage_full`` (slow, opt-in with ``EBMBENCH_AIS_COVERAGE=full``): d = 2, 16 and
  128, Gaussians and mixtures, 40 problems each, with exactly the metric's quick-budget
  AIS. Its table is in docs/metrics.md; print it with
  ``python tests/test_ais_coverage.py [trials]``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass

import pytest
import torch
from ebmbench_plugins.metrics.partition import LogPartition, fit_gaussian
from torch import Tensor, nn

from ebmbench import annealed_importance_sampling, get_sampler

F64 = torch.float64


def rotation(dim: int, g: torch.Generator) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=F64))
    return q * torch.sign(torch.diagonal(r))[None, :]


class GaussianEnergy(nn.Module):
    """f(x) = c − ½ (x − μ)ᵀ Σ⁻¹ (x − μ) in float32, as a trained energy would be; log Z in
    float64 from Σ."""

    def __init__(self, mean: Tensor, cov: Tensor, c: float) -> None:
        super().__init__()
        self.mean = nn.Parameter(mean.float())
        self.register_buffer("chol", torch.linalg.cholesky(torch.linalg.inv(cov)).float())
        self.c = c
        self.exact_log_z = c + 0.5 * float(torch.logdet(2 * math.pi * cov))

    def forward(self, x: Tensor) -> Tensor:
        return self.c - 0.5 * ((x - self.mean) @ self.chol).pow(2).sum(1)


class MixtureEnergy(nn.Module):
    """f(x) = c + log Σₖ πₖ N(x; μₖ, sₖ² I) in float32, so log Z = c."""

    def __init__(self, means: Tensor, scales: Tensor, log_weights: Tensor, c: float) -> None:
        super().__init__()
        self.means = nn.Parameter(means.float())
        self.register_buffer("scales", scales.float())
        self.register_buffer("log_weights", torch.log_softmax(log_weights, 0).float())
        self.c = c
        self.exact_log_z = c

    def forward(self, x: Tensor) -> Tensor:
        d = x.shape[1]
        sq = (x.pow(2).sum(1, keepdim=True) - 2 * x @ self.means.T
              + self.means.pow(2).sum(1)).clamp_min(0)
        log_comp = (-sq / (2 * self.scales**2) - d * self.scales.log()
                    - 0.5 * d * math.log(2 * math.pi))
        return torch.logsumexp(log_comp + self.log_weights, 1) + self.c


class StudentTEnergy(nn.Module):
    """f(x) = c − (ν + d)/2 · log(1 + (x − μ)ᵀΣ⁻¹(x − μ)/ν), a multivariate Student t: tails
    far heavier than the Gaussian base's, as a learned energy that decays too slowly away
    from the data has. log Z = c + log Γ(ν/2) + (d/2) log νπ + ½ log det Σ − log Γ((ν+d)/2)."""

    def __init__(self, mean: Tensor, cov: Tensor, nu: float, c: float) -> None:
        super().__init__()
        d = len(mean)
        self.mean = nn.Parameter(mean.float())
        self.register_buffer("chol", torch.linalg.cholesky(torch.linalg.inv(cov)).float())
        self.nu, self.c, self.dim = nu, c, d
        self.exact_log_z = (c + math.lgamma(nu / 2) + d / 2 * math.log(nu * math.pi)
                            + 0.5 * float(torch.logdet(cov)) - math.lgamma((nu + d) / 2))

    def forward(self, x: Tensor) -> Tensor:
        q = ((x - self.mean) @ self.chol).pow(2).sum(1)
        return self.c - (self.nu + self.dim) / 2 * torch.log1p(q / self.nu)


@dataclass
class Problem:
    energy: nn.Module
    train: Tensor  # the data the base is fitted to
    kl: float  # KL(data ‖ model) in nats: how far the "learned" model is from the data


def _gaussian_data(dim: int, seed: int, n_train: int):
    """Data N(μ, Σ) shaped like ``correlated_gaussian_16d`` (standard deviations 0.2–1, a
    random rotation): (generator, μ, Σ^½, training sample)."""
    g = torch.Generator().manual_seed(10_000 + seed)
    stds = torch.logspace(math.log10(0.2), 0.0, dim, dtype=F64)
    half = rotation(dim, g) @ torch.diag(stds)
    mean = 0.5 * torch.randn(dim, generator=g, dtype=F64)
    train = (mean + torch.randn(n_train, dim, generator=g, dtype=F64) @ half.T).float()
    return g, mean, half, train


def _kl_from_data(data_log_p, model: nn.Module, train: Tensor) -> float:
    """KL(data ‖ model) by Monte Carlo over 4000 training points."""
    with torch.no_grad():
        x = train[:4000]
        return float((data_log_p(x.double()) - (model(x).double() - model.exact_log_z)).mean())


def gaussian_problem(dim: int, seed: int, mismatch: float, n_train: int = 10_000) -> Problem:
    """The data of :func:`_gaussian_data`; the model N(μ', Σ') differs by ``mismatch`` in
    the data's whitened coordinates: log-eigenvalues of Σ^(−½)Σ'Σ^(−½) and the mean offset
    both have sd ``mismatch``."""
    g, mean, half, train = _gaussian_data(dim, seed, n_train)
    r = rotation(dim, g)
    eig = torch.exp(mismatch * torch.randn(dim, generator=g, dtype=F64))
    cov_model = half @ r @ torch.diag(eig) @ r.T @ half.T
    mean_model = mean + half @ (mismatch * torch.randn(dim, generator=g, dtype=F64))
    c = 3 * float(torch.randn((), generator=g, dtype=F64))
    cov_data = half @ half.T
    prec = torch.linalg.inv(cov_model)
    diff = mean_model - mean
    kl = 0.5 * float(torch.trace(prec @ cov_data) - dim + diff @ prec @ diff
                     + torch.logdet(cov_model) - torch.logdet(cov_data))
    return Problem(GaussianEnergy(mean_model, cov_model, c), train, kl)


def student_t_problem(dim: int, seed: int, nu: float, n_train: int = 10_000) -> Problem:
    """The data of :func:`_gaussian_data`; the model a Student t with ``nu`` degrees of
    freedom around the μ', Σ' of :func:`gaussian_problem`'s mismatch-0.3 model."""
    gauss = gaussian_problem(dim, seed, 0.3, n_train)
    energy: GaussianEnergy = gauss.energy  # type: ignore[assignment]
    chol = energy.chol.double()
    model = StudentTEnergy(energy.mean.detach().double(), torch.linalg.inv(chol @ chol.T), nu,
                           energy.c)
    _, mean, half, _ = _gaussian_data(dim, seed, 1)
    data = torch.distributions.MultivariateNormal(mean, scale_tril=torch.linalg.cholesky(
        half @ half.T))
    return Problem(model, gauss.train, _kl_from_data(data.log_prob, model, gauss.train))


def mixture_problem(dim: int, seed: int, mismatch: float, n_train: int = 10_000) -> Problem:
    """Data: the ``gmm_<d>d`` layout (8 components of sd 0.5 at ±2.5 along 4 rotated
    axes). The model moves each mean by ``mismatch`` × 0.5 per coordinate, scales each
    sd by exp(``mismatch``/2 · z) and reweights the components by exp(0.3 z)."""
    g = torch.Generator().manual_seed(20_000 + seed)
    axes = rotation(dim, torch.Generator().manual_seed(0))[:, :4].T
    means = 2.5 * torch.cat([axes, -axes])
    comp = torch.randint(0, 8, (n_train,), generator=g)
    train = (means[comp] + 0.5 * torch.randn(n_train, dim, generator=g, dtype=F64)).float()
    means_model = means + mismatch * 0.5 * torch.randn(8, dim, generator=g, dtype=F64)
    scales_model = 0.5 * torch.exp(0.5 * mismatch * torch.randn(8, generator=g, dtype=F64))
    log_weights = 0.3 * torch.randn(8, generator=g, dtype=F64)
    c = 3 * float(torch.randn((), generator=g, dtype=F64))
    energy = MixtureEnergy(means_model, scales_model, log_weights, c)
    data_log_p = MixtureEnergy(means, torch.full((8,), 0.5, dtype=F64), torch.zeros(8, dtype=F64),
                               0.0)
    with torch.no_grad():
        x = train[:4000]
        kl = float((data_log_p(x) - (energy(x) - c)).double().mean())
    return Problem(energy, train, kl)


BUILDERS = {"gaussian": gaussian_problem, "mixture": mixture_problem,
            "student_t": student_t_problem}


def metric_ais(problem: Problem, seed: int, budget: str = "quick", **params):
    """log Ẑ by exactly the AIS the ``log_partition`` metric runs at ``budget``."""
    metric = LogPartition(budget=budget, **params)
    return metric.log_z_ais(problem.energy, problem.train, torch.device("cpu"),
                            torch.Generator().manual_seed(seed))


def coverage(kind: str, dim: int, mismatch: float, trials: int, **params) -> dict[str, float]:
    """Over ``trials`` independent problems: how often log Ẑ ± 2 se holds the exact log Z,
    and what goes with it."""
    covered = flagged = covered_unflagged = 0
    errors, ses, ess, kls, seconds = [], [], [], [], []
    from ebmbench import ais_unreliable_reason

    for seed in range(trials):
        problem = BUILDERS[kind](dim, seed, mismatch)
        start = time.process_time()
        result = metric_ais(problem, seed, **params)
        seconds.append(time.process_time() - start)
        error = result.log_z - problem.energy.exact_log_z
        hit = abs(error) <= 2 * result.log_z_se
        flag = ais_unreliable_reason(result) is not None
        covered += hit
        flagged += flag
        covered_unflagged += hit and not flag
        errors.append(error)
        ses.append(result.log_z_se)
        ess.append(result.ess / result.n_chains)
        kls.append(problem.kl)
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    return {
        "coverage": covered / trials, "trials": trials, "flagged": flagged,
        "covered_unflagged": covered_unflagged,
        "kl": mean(kls), "rmse": math.sqrt(mean([e * e for e in errors])), "bias": mean(errors),
        "se": mean(ses), "ess": mean(ess), "seconds": mean(seconds),
    }


# The cheap AIS of the fast test: a quarter of the quick budget's temperatures, half its chains.
FAST = dict(ais_chains=16, ais_replicates=16, ais_temperatures=75)


@pytest.mark.parametrize(("kind", "dim", "mismatch"), [("gaussian", 2, 0.3),
                                                       ("gaussian", 16, 0.3),
                                                       ("mixture", 16, 0.1)])
def test_coverage_fast(kind, dim, mismatch):
    """≥ 26 of 30 problems (87 %; a true 93 % falls below with probability ≈ 6 %) have the
    exact log Z inside log Ẑ ± 2 se."""
    result = coverage(kind, dim, mismatch, trials=30, **FAST)
    assert result["coverage"] >= 26 / 30, result
    assert result["se"] > 0.002  # an estimator with noise to cover, not an exact one
    assert result["flagged"] <= 1


def test_the_old_single_run_error_bar_did_not_cover():
    """The estimator this replaced (one AIS run of 128 chains, 100 geometric temperatures,
    MALA with ε = λ_min(Σ) d^(−1/3), delta-method standard error) on 16-D problems
    further from the data (mismatch 1.0, KL ≈ 16 nats): its error bars miss the truth
    most of the time (it is about 1 nat low, the issue's symptom), so coverage tests can
    fail. The quick budget's AIS covers these problems (docs/metrics.md)."""
    missed = 0
    for seed in range(12):
        problem = gaussian_problem(16, seed, 1.0)
        base = fit_gaussian(problem.train.double())
        lam_min = float(torch.linalg.eigvalsh(base.covariance_matrix)[0])
        base = torch.distributions.MultivariateNormal(base.loc.float(),
                                                      scale_tril=base.scale_tril.float())
        result = annealed_importance_sampling(
            problem.energy, base, get_sampler("mala", step_size=lam_min * 16 ** (-1 / 3)),
            n_chains=128, n_temperatures=100, generator=torch.Generator().manual_seed(seed))
        missed += abs(result.log_z - problem.energy.exact_log_z) > 2 * result.log_z_se
    assert missed >= 6, f"only {missed} of 12 missed"


# (energy, d, mismatch — ν for the Student t): the cases the quick budget is claimed for.
FULL_CASES = [
    ("gaussian", 2, 0.3), ("gaussian", 16, 0.3), ("gaussian", 16, 0.6), ("gaussian", 16, 1.0),
    ("gaussian", 128, 0.3), ("gaussian", 128, 0.45), ("mixture", 16, 0.1), ("mixture", 16, 0.3),
    ("mixture", 128, 0.1), ("mixture", 128, 0.3), ("student_t", 16, 10), ("student_t", 128, 10),
]
# Further from the data than the quick budget is claimed for: reported, not asserted.
STRESS_CASES = [("gaussian", 128, 0.6)]


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("EBMBENCH_AIS_COVERAGE") != "full",
                    reason="about half an hour on 2 cores: set EBMBENCH_AIS_COVERAGE=full")
@pytest.mark.parametrize(("kind", "dim", "mismatch"), FULL_CASES)
def test_coverage_full(kind, dim, mismatch):
    """The metric's quick-budget AIS covers the exact log Z in ≥ 90 % of 40 problems."""
    result = coverage(kind, dim, mismatch, trials=40)
    assert result["coverage"] >= 0.9, result


def coverage_table(trials: int = 40) -> str:
    """The markdown table of docs/metrics.md: every case at the quick budget."""
    lines = ["| energy | d | mismatch (ν) | KL(data ‖ model) | ±2 se covers log Z | flagged "
             "| covers, unflagged only | bias | RMSE | mean se | ESS / N | CPU s per log Z |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for kind, dim, mismatch in FULL_CASES + STRESS_CASES:
        r = coverage(kind, dim, mismatch, trials)
        stress = " (stress)" if (kind, dim, mismatch) in STRESS_CASES else ""
        kept = trials - r["flagged"]
        lines.append(
            f"| {kind}{stress} | {dim} | {mismatch} | {r['kl']:.1f} | "
            f"{round(r['coverage'] * trials)}/{trials} = {r['coverage']:.0%} | {r['flagged']} | "
            f"{r['covered_unflagged']}/{kept} | {r['bias']:+.3f} | {r['rmse']:.3f} | "
            f"{r['se']:.3f} | {r['ess']:.2f} | {r['seconds']:.1f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(coverage_table(int(sys.argv[1]) if len(sys.argv) > 1 else 40))
