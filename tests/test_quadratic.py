"""The quadratic (Gaussian) energy against torch.distributions and quadrature."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from ebmbench_plugins.architectures.quadratic import Quadratic, QuadraticEnergy
from torch.autograd.functional import hessian
from torch.distributions import MultivariateNormal

import ebmbench
from ebmbench import (
    Combination,
    ImageDataset,
    ToyDensity,
    energy_and_score,
    get_architecture,
    get_dataset,
    get_method,
    get_sampler,
)
from ebmbench.leaderboard.aggregate import aggregate, model_label

DOUBLE = torch.float64


def random_quadratic(d: int, seed: int = 0) -> Quadratic:
    g = torch.Generator().manual_seed(seed)
    q = Quadratic(d).to(DOUBLE)
    with torch.no_grad():
        q.mean.copy_(torch.randn(d, generator=g, dtype=DOUBLE))
        q.raw_diag.copy_(torch.randn(d, generator=g, dtype=DOUBLE))
        q.lower.copy_(torch.randn(d, d, generator=g, dtype=DOUBLE))
    return q


@pytest.mark.parametrize("d", [1, 2, 5])
def test_energy_minus_log_z_is_the_gaussian_log_density(d):
    q = random_quadratic(d)
    x = torch.randn(50, d, dtype=DOUBLE)
    with torch.no_grad():
        gauss = MultivariateNormal(q.mean, precision_matrix=q.precision())
        torch.testing.assert_close(q(x) - q.log_partition(), gauss.log_prob(x))
        torch.testing.assert_close(q.covariance(), gauss.covariance_matrix)
        # log Z = ½ log det(2πΣ)
        torch.testing.assert_close(
            q.log_partition(), 0.5 * torch.logdet(2 * math.pi * gauss.covariance_matrix)
        )


def test_score_and_hessian_are_exact():
    q = random_quadratic(3, seed=1)
    x = torch.randn(4, 3, dtype=DOUBLE)
    _, score = energy_and_score(q, x)
    precision = q.precision().detach()
    torch.testing.assert_close(score, -(x - q.mean.detach()) @ precision)
    hess = hessian(lambda y: q(y.unsqueeze(0)).squeeze(0), x[0])
    torch.testing.assert_close(hess, -precision)


def test_log_partition_matches_quadrature_in_2d():
    q = random_quadratic(2, seed=2)
    with torch.no_grad():
        cov = q.covariance()
        half = 10 * cov.diagonal().sqrt()  # ±10σ: the truncated mass is below 1e-20
        n = 801
        axes = [torch.linspace(float(q.mean[i] - half[i]), float(q.mean[i] + half[i]), n,
                               dtype=DOUBLE) for i in range(2)]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 2)
        cell = float((axes[0][1] - axes[0][0]) * (axes[1][1] - axes[1][0]))
        log_z = torch.logsumexp(q(grid), 0) + math.log(cell)  # Riemann sum, spectrally exact
    assert float(log_z) == pytest.approx(float(q.log_partition().detach()), abs=1e-8)


def test_precision_stays_positive_definite():
    q = Quadratic(4).to(DOUBLE)
    with torch.no_grad():
        q.raw_diag.fill_(-50.0)  # softplus → 0: the floor min_diag keeps L invertible
        q.lower.normal_(0, 1, generator=torch.Generator().manual_seed(0))
    # P = LLᵀ with diag(L) ≥ min_diag is positive definite exactly: log det P = 2 Σ log L_ii.
    # (Its smallest eigenvalue can sit below float64's resolution relative to the largest,
    # so eigenvalues are not the test.)
    chol = q.cholesky().detach()
    assert torch.diagonal(chol).min() >= q.min_diag
    assert torch.equal(chol, torch.tril(chol))


def test_set_round_trips_mean_and_precision():
    mean = torch.tensor([1.0, -2.0, 0.5], dtype=DOUBLE)
    a = torch.randn(3, 3, dtype=DOUBLE, generator=torch.Generator().manual_seed(3))
    precision = a @ a.T + 0.5 * torch.eye(3, dtype=DOUBLE)
    q = Quadratic(3).to(DOUBLE).set(mean, precision)
    torch.testing.assert_close(q.mean.detach(), mean)
    torch.testing.assert_close(q.precision().detach(), precision)


def test_every_parameter_gets_a_gradient():
    q = Quadratic(3)
    q(torch.randn(8, 3)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in q.parameters())
    # Only the strictly lower part of ``lower`` is used.
    assert torch.equal(torch.triu(q.lower.grad), torch.zeros(3, 3))


def test_initialisation_is_standard_normal():
    q = Quadratic(3)
    torch.testing.assert_close(q.precision(), torch.eye(3))
    torch.testing.assert_close(q.mean, torch.zeros(3), check_stride=False)


class Gaussian(ToyDensity):
    name = "test_gauss"
    description = "test-only Gaussian"
    gaussian = True

    def sample(self, n, generator):
        return torch.randn((n, 2), generator=generator)

    def log_prob(self, x):
        return MultivariateNormal(torch.zeros(2), torch.eye(2)).log_prob(x)


class NotGaussian(Gaussian):
    name = "test_not_gauss"
    gaussian = False


class Images(ImageDataset):
    name = "test_images"
    description = "test-only images"

    def load(self):
        return torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)


def test_runs_only_on_gaussian_vector_datasets():
    arch = get_architecture("quadratic")
    assert isinstance(arch, QuadraticEnergy)
    method, sampler = get_method("dsm"), get_sampler("ula")

    def reason(ds):
        return arch.incompatibility(Combination(method, sampler, arch, ds))

    assert reason(Gaussian()) is None
    why = reason(NotGaussian())
    assert why is not None and "Gaussian" in why and "test_not_gauss" in why
    why = reason(Images())
    assert why is not None and "vector" in why


def test_built_module_and_features():
    arch = get_architecture("quadratic")
    module = arch.build((3,))
    assert isinstance(module, Quadratic) and module.dim == 3
    assert module(torch.zeros(5, 3)).shape == (5,)
    assert "nonzero_hessian" in arch.features
    # Exact score matching accepts it (its Hessian is −P ≠ 0).
    exact = get_method("exact_sm")
    assert exact.incompatibility(Combination(exact, get_sampler("ula"), arch, Gaussian())) is None


def test_frozen_factor_is_reused_and_never_stale():
    """Chains run with the parameters frozen reuse L between calls; an optimiser step,
    ``set``, ``load_state_dict`` or a dtype change rebuilds it, and every value equals what a
    fresh module with the same parameters computes, bit for bit."""
    from ebmbench import frozen_parameters

    q = Quadratic(2).set(torch.tensor([1.0, -1.0]), torch.tensor([[2.0, 0.5], [0.5, 1.0]]))
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))

    def fresh(module: Quadratic) -> torch.Tensor:
        other = Quadratic(2).to(module.lower.dtype)
        other.load_state_dict(module.state_dict())
        return other(x.to(module.lower.dtype)).detach()

    with frozen_parameters(q):
        first = q(x)
        factor = q._factor()
        assert q._factor() is factor  # reused while frozen
        assert torch.equal(q(x), first)
    assert torch.equal(first, fresh(q))
    rebuilt = q._factor()  # trainable parameters: rebuilt, with its graph
    assert rebuilt is not factor and rebuilt.requires_grad

    optimiser = torch.optim.SGD(q.parameters(), lr=0.1)
    q(x).sum().backward()
    optimiser.step()
    with frozen_parameters(q):
        assert not torch.equal(q(x), first)
        assert torch.equal(q(x), fresh(q))
        q.set(torch.zeros(2), torch.eye(2))
        assert torch.equal(q(x), fresh(q))
    q.double()
    with frozen_parameters(q):
        out = q(x.double())
    assert out.dtype == torch.float64 and torch.equal(out, fresh(q))


# ----------------------------------------------------------------- the start-at-truth control


def test_start_at_truth_sets_the_datasets_exact_parameters():
    """``start="truth"`` puts μ and P at the dataset's exact mean and Σ⁻¹, so the model's
    score is the density's own: zero Fisher divergence and the exact log Z."""
    dataset = get_dataset("correlated_gaussian")
    arch = get_architecture("quadratic", start="truth")
    energy = arch.build((2,))
    arch.initialise(energy, dataset)
    torch.testing.assert_close(energy.mean.double(), dataset.mean, check_dtype=False)
    torch.testing.assert_close(energy.covariance().double(), dataset.covariance, rtol=1e-5, atol=1e-6)
    x = dataset.sample(200, torch.Generator().manual_seed(0))
    _, score = energy_and_score(energy, x.float())
    true_score = -(x - dataset.mean) @ torch.linalg.inv(dataset.covariance)
    torch.testing.assert_close(score.double(), true_score, rtol=1e-4, atol=1e-4)
    assert energy.log_partition().item() == pytest.approx(
        0.5 * torch.logdet(2 * math.pi * dataset.covariance).item(), abs=1e-5)
    # The default leaves build's identity start untouched.
    plain = get_architecture("quadratic")
    energy = plain.build((2,))
    plain.initialise(energy, dataset)
    torch.testing.assert_close(energy.precision(), torch.eye(2))


def test_a_run_from_the_truth_starts_there_and_is_labelled(tmp_path):
    """The harness calls initialise before training: exact score matching at a tiny lr,
    started at the truth, has Fisher divergence ≈ 0 at its first curve point (≈ 5 from
    the identity), and its leaderboard label says it started at the truth."""
    common = dict(methods=["exact_sm"], samplers=["ula"], architectures=["quadratic"],
                  datasets=["correlated_gaussian"], metrics=["fisher"], budget="smoke",
                  checkpoints=False, overrides={"method.exact_sm.lr": 1e-6})
    truth = ebmbench.run(results=tmp_path / "t.sqlite",
                         **common | {"overrides": common["overrides"]
                                     | {"architecture.quadratic.start": "truth"}})
    plain = ebmbench.run(results=tmp_path / "p.sqlite", **common)
    assert truth["curve"].iloc[0][0]["fisher_divergence"] < 1e-3
    assert truth["metric.fisher_divergence"].iloc[0] < 1e-3
    assert plain["curve"].iloc[0][0]["fisher_divergence"] > 1.0
    assert truth["hyperparams"].iloc[0]["variant"] == {"start": "truth"}
    assert truth["hyperparams"].iloc[0]["control"] == {"start": "truth"}
    assert "variant" not in plain["hyperparams"].iloc[0]
    assert "control" not in plain["hyperparams"].iloc[0]
    assert model_label("exact_sm", truth["hyperparams"].iloc[0]) == "exact_sm (start=truth)"
    # On a leaderboard the control is shown, labelled, and never ranked, even though it
    # beats the model trained from the identity.
    both = pd.concat([ebmbench.load_results(tmp_path / "t.sqlite"),
                      ebmbench.load_results(tmp_path / "p.sqlite")], ignore_index=True)
    board = aggregate(both)[0].models
    assert list(board.table["method"]) == ["exact_sm"]
    unranked = board.unranked.set_index("method").loc["exact_sm (start=truth)"]
    assert unranked["why"] == "a control experiment (start=truth), not a trained model"
    assert unranked["fisher_divergence"] < 1e-3 and unranked["seeds"] == 1


def test_dsm_from_the_truth_drifts_to_its_closed_form_optimum(tmp_path):
    """The control measures a method's bias: DSM's optimum on N(μ, Σ) is N(μ, Σ + σ²I)
    (Vincent 2011), whose Fisher divergence to the truth is ½ tr(D Σ D) with
    D = Σ⁻¹ − (Σ + σ²I)⁻¹. Started at the truth, dsm at σ = 0.2 ends there (0.53; the
    runs measure 0.56-0.63 with their gradient noise), while exact score matching,
    unbiased, stays within its noise of zero."""
    dataset = get_dataset("correlated_gaussian")
    cov = dataset.covariance
    drift = torch.linalg.inv(cov) - torch.linalg.inv(cov + 0.04 * torch.eye(2, dtype=cov.dtype))
    closed_form = 0.5 * torch.trace(drift @ cov @ drift).item()
    assert closed_form == pytest.approx(0.526, abs=1e-3)
    common = dict(samplers=["ula"], architectures=["quadratic"], datasets=["correlated_gaussian"],
                  metrics=["fisher"], budget="smoke", checkpoints=False)
    sets = {"architecture.quadratic.start": "truth", "method.dsm.sigma": 0.2,
            "method.dsm.lr": 0.003, "method.dsm.steps": 1000, "method.exact_sm.lr": 0.003,
            "method.exact_sm.steps": 1000}
    # The final model, not the best validated one (which, from the truth, is the start).
    out = ebmbench.run(methods=["dsm", "exact_sm"], results=tmp_path / "r.sqlite", overrides=sets,
                       train_flops=1e15, checkpoint="last", **common).set_index("method")
    # It started at the truth (1/128 of the run in), and moved to its own optimum.
    assert out.loc["dsm", "curve"][0]["fisher_divergence"] < 0.1
    assert out.loc["dsm", "metric.fisher_divergence"] == pytest.approx(closed_form, rel=0.25)
    # Its gradient noise at the smoke budget's batch: 0.02-0.04 measured.
    assert out.loc["exact_sm", "metric.fisher_divergence"] < 0.1
