"""Training methods against closed forms and against their papers' formulas.

Three kinds of checks:

* transcriptions: on fixed inputs every loss equals an independent, literal transcription
  of its paper's formula (explicit Hessians from ``torch.autograd.functional``, the NCE
  classifier written with h = 1 / (1 + ν e^{−G}), ...);
* recovery: on Gaussian data in 2-D and 8-D with the quadratic energy, every method
  converges to its exact optimum on that data set (the sample mean and covariance for
  maximum-likelihood-consistent methods; Σ̂ + σ²I for denoising score matching; the
  stationary law of ULA for contrastive divergence run with ULA), and to the true (μ, Σ)
  within the Monte Carlo error of N samples;
* plumbing that could silently break a method: skip reasons, samplers that touch the
  parameters, the replay buffer, checkpoints of log Z.
"""

from __future__ import annotations

import math

import pytest
import torch
from ebmbench_plugins.architectures.quadratic import Quadratic
from ebmbench_plugins.methods.adversarial import adversarial_losses
from ebmbench_plugins.methods.contrastive_divergence import cd_loss
from ebmbench_plugins.methods.noise_contrastive import nce_loss
from ebmbench_plugins.methods.score_matching import (
    antithetic_pairs,
    dsm_loss,
    exact_sm_loss,
    hessian_trace,
)
from ebmbench_plugins.methods.sliced_score_matching import random_projections, ssm_loss
from torch import Tensor, nn
from torch.autograd.functional import hessian, jacobian
from torch.distributions import MultivariateNormal

from ebmbench import (
    Architecture,
    Combination,
    ImageDataset,
    ReplayBuffer,
    Sampler,
    SampleResult,
    ToyDensity,
    TrainContext,
    flow_rsample,
    get_method,
    get_sampler,
    path_log_prob,
    standardised_maf,
)
from tests.helpers import ula_stationary_cov

DOUBLE = torch.float64


# ------------------------------------------------------------------------- test plugins


class GaussianData(ToyDensity):
    """A test-only Gaussian dataset N(μ, Σ) (exact samples from its Cholesky factor)."""

    name = "test_gaussian"
    description = "test-only Gaussian"
    gaussian = True

    def __init__(self, mean: Tensor, cov: Tensor, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dim = mean.shape[0]
        self.dist = MultivariateNormal(mean, cov)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        z = torch.randn((n, self.dim), generator=generator, dtype=self.dist.loc.dtype)
        return self.dist.loc + z @ self.dist.scale_tril.T

    def log_prob(self, x: Tensor) -> Tensor:
        return self.dist.log_prob(x)


class TinyImages(ImageDataset):
    name = "test_images"
    description = "test-only images"
    image_shape = (1, 8, 8)

    def load(self):
        return torch.zeros(4, 1, 8, 8), torch.zeros(4, 1, 8, 8)


class ReluMLP(Architecture):
    """A test-only ReLU energy: its Hessian is zero almost everywhere (ERRATA 4)."""

    name = "test_relu"
    description = "test-only ReLU MLP"

    def build(self, shape):
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), 8), nn.ReLU(),
                             nn.Linear(8, 1), nn.Flatten(0))


class SmoothMLP(ReluMLP):
    name = "test_smooth"
    description = "test-only smooth MLP"
    data_kinds = frozenset({"vector", "image"})
    features = frozenset({"nonzero_hessian"})


def gaussian_problem(d: int, n: int = 2048, seed: int = 0, dtype=DOUBLE):
    """(dataset, data): a random N(μ, Σ) with Σ's eigenvalues in [0.5, 1.5], and n samples."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=dtype))
    cov = q @ torch.diag(0.5 + torch.rand(d, generator=g, dtype=dtype)) @ q.T
    mean = 2 * torch.rand(d, generator=g, dtype=dtype) - 1
    ds = GaussianData(mean, cov)
    return ds, ds.sample(n, g)


def small_mlp(d: int, seed: int = 0, act=nn.SiLU) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 16), act(), nn.Linear(16, 16), act(), nn.Linear(16, 1),
                         nn.Flatten(0)).to(DOUBLE)


def param_grads(module: nn.Module, loss: Tensor) -> list[Tensor]:
    params = list(module.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def assert_same_grads(module, loss_a, loss_b, rtol=1e-9, atol=1e-11):
    for ga, gb in zip(param_grads(module, loss_a), param_grads(module, loss_b), strict=True):
        torch.testing.assert_close(ga, gb, rtol=rtol, atol=atol)


def context(energy, ds, data, sampler=None, seed=0) -> TrainContext:
    return TrainContext(energy, sampler, ds, data, torch.device("cpu"),
                        torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------- transcriptions


def per_example_derivatives(f, x: Tensor):
    """Gradient and Hessian of f at each row of x, by torch.autograd.functional."""
    grads, hessians = [], []
    for xi in x:
        fi = lambda y: f(y.unsqueeze(0)).squeeze(0)  # noqa: E731
        grads.append(jacobian(fi, xi, create_graph=True))
        hessians.append(hessian(fi, xi, create_graph=True))
    return torch.stack(grads), torch.stack(hessians)


@pytest.mark.parametrize("impl", ["loop", "func"])
def test_exact_sm_equals_hyvarinen_formula(impl):
    """J = mean ½‖∇f‖² + tr ∇²f (Hyvärinen 2005, eq. 4), values and θ-gradients."""
    net = small_mlp(3)
    x = torch.randn(3, 3, dtype=DOUBLE, generator=torch.Generator().manual_seed(1))
    grad, hess = per_example_derivatives(net, x)
    reference = (0.5 * grad.pow(2).sum(1) + hess.diagonal(dim1=1, dim2=2).sum(1)).mean()
    loss = exact_sm_loss(net, x, impl=impl)
    torch.testing.assert_close(loss, reference, rtol=1e-10, atol=1e-12)
    assert_same_grads(net, loss, reference)


def test_hessian_trace_of_a_quadratic_is_minus_trace_p():
    q = Quadratic(4).to(DOUBLE)
    with torch.no_grad():
        q.lower.normal_()
        q.raw_diag.normal_()
    x = torch.randn(6, 4, dtype=DOUBLE)
    for impl in ("loop", "func"):
        _, score, trace = hessian_trace(q, x, impl=impl, create_graph=False)
        torch.testing.assert_close(trace, -torch.trace(q.precision()).expand(6))
        torch.testing.assert_close(score, -(x - q.mean) @ q.precision())


@pytest.mark.parametrize("variance_reduction", [False, True])
def test_ssm_equals_song_formula(variance_reduction):
    """vᵀ∇²f v + ½(vᵀ∇f)² (eq. 7), or + ½‖∇f‖² (SSM-VR), averaged over v and x."""
    net = small_mlp(3)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 3, dtype=DOUBLE, generator=g)
    v = torch.randn(3, 4, 3, dtype=DOUBLE, generator=g)  # M = 3 projections
    grad, hess = per_example_derivatives(net, x)
    vhv = torch.einsum("mbi,bij,mbj->mb", v, hess, v)
    if variance_reduction:
        second = 0.5 * grad.pow(2).sum(1).expand(3, 4)
    else:
        second = 0.5 * torch.einsum("mbi,bi->mb", v, grad).pow(2)
    reference = (vhv + second).mean()
    loss = ssm_loss(net, x, v, variance_reduction=variance_reduction)
    torch.testing.assert_close(loss, reference, rtol=1e-10, atol=1e-12)
    assert_same_grads(net, loss, reference)


def test_dsm_equals_vincent_formula():
    """½ mean ‖∇f(x + σε) − ∇ log q_σ(x + σε | x)‖², with ∇ log q_σ(x̃|x) = −(x̃ − x)/σ²."""
    net = small_mlp(2)
    g = torch.Generator().manual_seed(3)
    x, eps, sigma = (torch.randn(6, 2, dtype=DOUBLE, generator=g),
                     torch.randn(6, 2, dtype=DOUBLE, generator=g), 0.3)
    x_noisy = x + sigma * eps
    grad, _ = per_example_derivatives(net, x_noisy)
    kernel_score = -(x_noisy - x) / sigma**2
    reference = 0.5 * (grad - kernel_score).pow(2).sum(1).mean()
    loss = dsm_loss(net, x, sigma, eps)
    torch.testing.assert_close(loss, reference, rtol=1e-10, atol=1e-12)
    assert_same_grads(net, loss, reference)


def _dsm_gradients(model: Quadratic, x: Tensor, sigma: float, draws: int, antithetic: bool,
                   seed: int) -> Tensor:
    """The flattened gradient of dsm_loss, one row per noise draw, on the rows ``x`` twice
    (plain: independent noise on each copy; antithetic: ε on one copy, −ε on the other)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(draws):
        if antithetic:
            inputs, noise = antithetic_pairs(x, g)
        else:
            inputs = torch.cat([x, x])
            noise = torch.randn(inputs.shape, generator=g, dtype=DOUBLE)
        grads = torch.autograd.grad(dsm_loss(model, inputs, sigma, noise), list(model.parameters()))
        rows.append(torch.cat([gr.flatten() for gr in grads]))
    return torch.stack(rows)


def test_antithetic_dsm_keeps_the_objective_and_cancels_its_small_sigma_noise():
    """With f = −½(x − μ)ᵀP(x − μ) the DSM residual is −P(x − μ) + (I/σ − σP)ε, so
    E_ε ℓ = ½‖P(x − μ)‖² + ½‖I/σ − σP‖²_F in closed form. Plain and antithetic noise on the
    same rows both estimate that gradient without bias (within 4 standard errors), and at
    σ = 0.05 the antithetic pairs, which cancel the O(1/σ) cross term, have a small fraction
    of the plain estimator's gradient variance."""
    g = torch.Generator().manual_seed(11)
    model = Quadratic(2).double()
    model.set(torch.tensor([0.3, -0.2], dtype=DOUBLE),
              torch.tensor([[3.0, 1.2], [1.2, 2.0]], dtype=DOUBLE))
    x = torch.randn(16, 2, dtype=DOUBLE, generator=g)
    sigma = 0.05
    precision = model.precision()
    closed = (0.5 * (model.mean - x).matmul(precision).pow(2).sum(1).mean()
              + 0.5 * (torch.eye(2, dtype=DOUBLE) / sigma - sigma * precision).pow(2).sum())
    truth = torch.cat([gr.flatten() for gr in torch.autograd.grad(closed, list(model.parameters()))])
    plain = _dsm_gradients(model, x, sigma, 400, antithetic=False, seed=1)
    paired = _dsm_gradients(model, x, sigma, 400, antithetic=True, seed=2)
    for draws in (plain, paired):
        se = draws.std(0) / math.sqrt(len(draws))
        assert ((draws.mean(0) - truth).abs() <= 4 * se + 1e-9).all()
    ratio = paired.var(0).sum() / plain.var(0).sum()
    assert ratio < 0.01, ratio


@pytest.mark.parametrize("nu", [1.0, 3.0])
def test_nce_equals_gutmann_hyvarinen_formula(nu):
    """J = (1/T_d)[Σ ln h(x) + Σ ln(1 − h(y))], h = 1/(1 + ν exp(−G)), G = ln p_m − ln p_n."""
    g = torch.Generator().manual_seed(4)
    t_d = 5
    t_n = int(nu * t_d)
    f_x = torch.randn(t_d, dtype=DOUBLE, generator=g)
    f_y = torch.randn(t_n, dtype=DOUBLE, generator=g)
    pn_x = torch.rand(t_d, dtype=DOUBLE, generator=g)
    pn_y = torch.rand(t_n, dtype=DOUBLE, generator=g)
    log_z = torch.tensor(0.7, dtype=DOUBLE)

    def h(f, pn):  # naive, as printed in the paper (2012, eqs. 5-8)
        p_m = torch.exp(f - log_z)
        return 1 / (1 + nu * torch.exp(-(torch.log(p_m) - torch.log(pn))))

    objective = (torch.log(h(f_x, pn_x)).sum() + torch.log(1 - h(f_y, pn_y)).sum()) / t_d
    loss = nce_loss(f_x, f_y, pn_x.log(), pn_y.log(), log_z, nu)
    torch.testing.assert_close(loss, -objective, rtol=1e-12, atol=1e-12)
    if nu == 1.0:  # the lecture's log-sum-exp form, with ERRATA 1 applied (log p_n(y))
        lse = torch.logaddexp
        lecture = (f_x - lse(f_x, log_z + pn_x.log())
                   + log_z + pn_y.log() - lse(f_y, log_z + pn_y.log())).mean()
        torch.testing.assert_close(loss, -lecture, rtol=1e-12, atol=1e-12)


def test_nce_is_stable_for_extreme_energies():
    big = torch.tensor([1e4, -1e4], dtype=DOUBLE)
    loss = nce_loss(big, -big, torch.zeros(2, dtype=DOUBLE), torch.zeros(2, dtype=DOUBLE),
                    torch.tensor(0.0, dtype=DOUBLE), 1.0)
    assert torch.isfinite(loss)


def test_cd_gradient_is_data_minus_sample_gradient():
    """∇_θ L = −(∇_θ E_data f − ∇_θ E_sample f) (ERRATA 3), and the α term of Du & Mordatch."""
    net = small_mlp(2)
    g = torch.Generator().manual_seed(5)
    x_data, x_sample = (torch.randn(7, 2, dtype=DOUBLE, generator=g),
                        torch.randn(9, 2, dtype=DOUBLE, generator=g))
    loss = cd_loss(net(x_data), net(x_sample))
    for gl, gd, gs in zip(param_grads(net, loss), param_grads(net, net(x_data).mean()),
                          param_grads(net, net(x_sample).mean()), strict=True):
        torch.testing.assert_close(gl, -(gd - gs))
    alpha = 0.3
    reg = cd_loss(net(x_data), net(x_sample), alpha)
    reference = (net(x_sample).mean() - net(x_data).mean()
                 + alpha * (net(x_data).pow(2).mean() + net(x_sample).pow(2).mean()))
    torch.testing.assert_close(reg, reference)


def test_adversarial_flow_loss_is_minus_the_jensen_bound():
    """For q = N(m, C) and the quadratic p_θ: L_φ = −(E_q f + H(q)) = KL(q‖p_θ) − log Z(θ).

    The bound E_q f + H(q) = log Z − KL ≤ log Z (ERRATA 2: the entropy is *subtracted* in
    the log-likelihood bound E_data f − E_q f − H(q)).
    """
    q_energy = Quadratic(2).to(DOUBLE).set(torch.tensor([0.5, -1.0], dtype=DOUBLE),
                                           torch.tensor([[2.0, 0.3], [0.3, 1.0]], dtype=DOUBLE))
    m = torch.tensor([0.2, -0.5], dtype=DOUBLE)
    cov = torch.tensor([[0.7, -0.1], [-0.1, 0.9]], dtype=DOUBLE)
    q = MultivariateNormal(m, cov)
    n = 200_000
    torch.manual_seed(6)
    with torch.no_grad():
        x = q.sample((n,))
        f_q, log_q = q_energy(x), q.log_prob(x)
        energy_loss, flow_loss = adversarial_losses(torch.zeros(1, dtype=DOUBLE), f_q, log_q)
        p = MultivariateNormal(q_energy.mean, precision_matrix=q_energy.precision())
        log_z = q_energy.log_partition()
        exact = torch.distributions.kl_divergence(q, p) - log_z
    se = (log_q - f_q).std() / math.sqrt(n)
    assert abs(float(flow_loss - exact)) < 4 * float(se)
    assert float(-flow_loss) < float(log_z)  # a lower bound on log Z
    torch.testing.assert_close(energy_loss, f_q.mean())


def _flow_gradients(flow, f, data, draws: int, path: bool, seed: int) -> Tensor:
    """The flattened φ-gradient of E_q[log q_φ − f] on 64 rsamples, one row per draw."""
    g = torch.Generator().manual_seed(seed)
    params = list(flow.parameters())
    rows = []
    for _ in range(draws):
        x, log_q = flow_rsample(flow, 64, g, data)
        if path:
            log_q = path_log_prob(flow, x)
        grads = torch.autograd.grad((log_q - f(x)).mean(), params, allow_unused=True)
        rows.append(torch.cat([(gr if gr is not None else torch.zeros_like(p)).flatten()
                               for gr, p in zip(grads, params, strict=True)]))
    return torch.stack(rows)


def test_path_gradient_keeps_the_flow_gradient_and_vanishes_at_the_target():
    """Sticking the landing (Roeder et al. 2017): dropping the score term ∂_φ log q_φ(x)|ₓ,
    of mean zero, leaves the reverse-KL gradient's expectation (same z, 4 standard errors
    of the difference) and makes it exactly zero, draw by draw, when f = log q_φ."""
    import copy

    torch.manual_seed(0)
    data = torch.randn(500, 2, dtype=DOUBLE) * torch.tensor([1.5, 0.5], dtype=DOUBLE)
    flow = standardised_maf(data, 2, 16)
    target = copy.deepcopy(flow).requires_grad_(False)
    at_target = lambda x: target().log_prob(x)  # noqa: E731
    assert _flow_gradients(flow, at_target, data, 5, path=True, seed=1).abs().max() == 0
    assert _flow_gradients(flow, at_target, data, 5, path=False, seed=1).abs().max() > 0.1
    energy = Quadratic(2).to(DOUBLE).requires_grad_(False)  # N(0, I): not q
    full = _flow_gradients(flow, energy, data, 300, path=False, seed=2)
    path = _flow_gradients(flow, energy, data, 300, path=True, seed=2)
    # The difference of the two estimators along a few fixed directions (the mean gradient,
    # three random ones) has mean zero within 4 standard errors.
    directions = torch.cat([full.mean(0, keepdim=True),
                            torch.randn(3, full.shape[1], dtype=DOUBLE,
                                        generator=torch.Generator().manual_seed(3))])
    diff = (full - path) @ directions.T
    se = diff.std(0) / math.sqrt(len(diff))
    assert (diff.mean(0).abs() <= 4 * se).all(), (diff.mean(0), se)
    assert path.var(0).sum() < 0.6 * full.var(0).sum()


@pytest.mark.parametrize("kind", ["gaussian", "rademacher", "sphere"])
def test_projections_have_identity_second_moment(kind):
    n, d = 20_000, 3
    v = random_projections(torch.zeros(n, d), 1, kind, torch.Generator().manual_seed(7))[0]
    second = v.T @ v / n
    # Each entry of v vᵀ has variance at most E v_i² v_j² ≤ 3 (Gaussian diagonal: 2).
    assert (second - torch.eye(d)).abs().max() < 5 * math.sqrt(3 / n)


@pytest.mark.parametrize("kind", ["gaussian", "rademacher", "sphere"])
def test_sliced_losses_agree_with_exact_sm_in_expectation(kind):
    """E_v[SSM] = E_v[SSM-VR] = exact SM when E[v vᵀ] = I (Song et al. 2019, §3)."""
    net = small_mlp(3)
    x = torch.randn(4, 3, dtype=DOUBLE, generator=torch.Generator().manual_seed(8))
    exact = exact_sm_loss(net, x).detach()
    m = 4000
    v = random_projections(x, m, kind, torch.Generator().manual_seed(9))
    grad, hess = (t.detach() for t in per_example_derivatives(net, x))
    vhv = torch.einsum("mbi,bij,mbj->mb", v, hess, v)
    for vr in (True, False):
        second = 0.5 * (grad.pow(2).sum(1) if vr else torch.einsum("mbi,bi->mb", v, grad).pow(2))
        per_projection = (vhv + second).mean(1)  # i.i.d. over the M projections
        se = per_projection.std() / math.sqrt(m)
        estimate = ssm_loss(net, x, v, variance_reduction=vr).detach()
        assert abs(float(estimate - exact)) < 4 * float(se), (kind, vr)
        if not vr and kind == "gaussian":
            # Variance reduction is a reduction: its per-projection spread is smaller.
            assert float(se) > float((vhv + 0.5 * grad.pow(2).sum(1)).mean(1).std()) / math.sqrt(m)


# ---------------------------------------------------------------------- compatibility


def combo(method, architecture, dataset, sampler=None):
    return Combination(method, sampler or get_sampler("ula"), architecture, dataset)


def test_exact_sm_refuses_relu_and_large_dimensions():
    method = get_method("exact_sm")
    toy = GaussianData(torch.zeros(2), torch.eye(2))
    reason = method.incompatibility(combo(method, ReluMLP(), toy))
    assert reason is not None and "nonzero_hessian" in reason and "test_relu" in reason
    assert method.incompatibility(combo(method, SmoothMLP(), toy)) is None
    reason = method.incompatibility(combo(method, SmoothMLP(), TinyImages()))
    assert reason is not None and "d=64" in reason and "max_dim" in reason
    big = get_method("exact_sm", max_dim=64)
    assert big.incompatibility(combo(big, SmoothMLP(), TinyImages())) is None


def test_which_methods_need_a_hessian_or_a_sampler():
    toy = GaussianData(torch.zeros(2), torch.eye(2))
    needs_hessian = {"exact_sm", "ssm", "ssm_vr"}
    for name in ("cd", "pcd", "exact_sm", "dsm", "ssm", "ssm_vr", "nce", "fce", "adversarial"):
        method = get_method(name)
        refused = method.incompatibility(combo(method, ReluMLP(), toy)) is not None
        assert refused == (name in needs_hessian), name
        assert method.uses_sampler == (name in ("cd", "pcd")), name
        for key in ("steps", "batch_size", "lr"):
            assert key in method.hparams


# --------------------------------------------------------------- contrastive divergence


class RecordingSampler(Sampler):
    """Records its calls; returns x0 shifted by one, after a .backward() on f (a sloppy
    but common way of getting ∇ₓf) that must not reach the parameters."""

    name = "test_recording"
    description = "test-only sampler"
    params = {}

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = []

    def sample(self, energy, x0, n_steps=None, *, generator=None):
        self.calls.append((x0.clone(), n_steps))
        x = x0.detach().requires_grad_(True)
        energy(x).sum().backward()
        return SampleResult(x.detach() + 1.0, {"energy_evals": 1.0})


def test_cd_runs_k_sampler_steps_from_noise_and_keeps_gradients_clean():
    ds, data = gaussian_problem(2, n=64)
    net = small_mlp(2)
    sampler = RecordingSampler()
    # Short-run CD (the quick default starts from the data since 2026-12-02).
    method = get_method("cd", mcmc_steps=7, batch_size=16, lr=0.0, chain_start="noise")
    method.setup(context(net, ds, data, sampler))
    batch = data[:16]
    loss, logs = method.loss(batch)
    (x0, k), = sampler.calls
    assert k == 7 and x0.shape == (16, 2)
    # The chains start from the dataset's init_noise (here N(0, I), as ToyDensity does
    # without bounds), not from the data.
    assert not torch.equal(x0, batch)
    assert all(p.grad is None for p in net.parameters())  # the sampler's backward did not leak
    torch.testing.assert_close(loss, cd_loss(net(batch), net(x0 + 1.0)))
    assert logs["f_sample"] == pytest.approx(float(net(x0 + 1.0).detach().mean()))


def test_cd_at_quick_starts_its_chains_from_the_batch():
    """Hinton's CD-K, the quick default: the chains start at the update's data batch; smoke
    keeps short-run CD, from noise."""
    ds, data = gaussian_problem(2, n=64)
    net = small_mlp(2)
    sampler = RecordingSampler()
    method = get_method("cd", budget="quick", mcmc_steps=3, batch_size=16, lr=0.0)
    assert method.hparams["chain_start"] == "data"
    assert get_method("cd", budget="smoke").hparams["chain_start"] == "noise"
    method.setup(context(net, ds, data, sampler))
    batch = data[:16]
    method.loss(batch)
    (x0, k), = sampler.calls
    assert k == 3 and torch.equal(x0, batch)


@pytest.mark.parametrize("name", ["cd", "pcd"])
def test_k_buys_every_training_kernel_the_same_gradients(name):
    """K counts score evaluations per chain and update, not kernel steps: HMC with L
    leapfrog steps runs ⌈K/L⌉ iterations, so ula, mala and hmc spend the same gradients per
    update (to within the one a Metropolis kernel spends starting its chains), and a kernel
    that declares nothing (the recording sampler) still gets K steps."""
    ds, data = gaussian_problem(2, n=64)
    spent = {}
    for sampler_name, extra in (("ula", {}), ("mala", {}), ("hmc", {"leapfrog_steps": 3})):
        sampler = get_sampler(sampler_name, budget="quick", **extra)
        method = get_method(name, budget="quick", mcmc_steps=6, batch_size=16, chain_adapt=False)
        method.setup(context(small_mlp(2), ds, data, sampler))
        counted = {}
        original = method.sampler.sample

        def sample(*args, _orig=original, _counted=counted, **kwargs):
            result = _orig(*args, **kwargs)
            _counted["grads"] = result.stats["grad_evals"]
            _counted["steps"] = kwargs["n_steps"]
            return result

        method.sampler.sample = sample
        method.train_step(data[:16])
        spent[sampler_name] = counted
    assert spent["ula"]["steps"] == spent["mala"]["steps"] == 6 and spent["hmc"]["steps"] == 2
    assert spent["ula"]["grads"] == 6
    assert spent["mala"]["grads"] == spent["hmc"]["grads"] == 7  # 6 + the start's score
    recording = RecordingSampler()
    method = get_method(name, mcmc_steps=6, batch_size=8)
    method.setup(context(small_mlp(2), ds, data, recording))
    method.loss(data[:8])
    assert recording.calls[0][1] == 6


def test_pcd_chains_persist_in_the_replay_buffer():
    ds, data = gaussian_problem(2, n=64)
    sampler = RecordingSampler()
    method = get_method("pcd", mcmc_steps=3, batch_size=8, reinit_prob=0.0, buffer_size=100)
    method.setup(context(small_mlp(2), ds, data, sampler))
    method.train_step(data[:8])
    assert len(method.buffer) == 8
    first_out = sampler.calls[0][0] + 1.0
    method.train_step(data[:8])
    # With no restarts, every chain of the second step continues one of the first.
    starts = sampler.calls[1][0]
    assert all((first_out == row).all(dim=1).any() for row in starts)
    assert len(method.buffer) == 8
    state = method.state_dict()
    other = get_method("pcd", buffer_size=100)
    other.setup(context(small_mlp(2), ds, data, sampler))
    other.load_state_dict(state)
    torch.testing.assert_close(other.buffer.data, method.buffer.data)


def test_replay_buffer_restart_rate_and_write_back():
    noise = lambda n: torch.full((n, 2), -1.0)  # noqa: E731
    buf = ReplayBuffer(1000, noise, reinit_prob=0.2)
    buf.push(torch.arange(1000.0).unsqueeze(1).expand(1000, 2))
    n = 20_000
    x, slots = buf.sample(n, torch.Generator().manual_seed(10))
    restarted = (slots == -1)
    assert (x[restarted] == -1).all()
    torch.testing.assert_close(x[~restarted], buf.data[slots[~restarted]])
    rate = restarted.double().mean().item()
    assert abs(rate - 0.2) < 4 * math.sqrt(0.2 * 0.8 / n)
    # Write-back: slots are overwritten in place; restarts go first-in-first-out.
    buf.push(torch.full((n, 2), 5000.0), slots)
    assert len(buf) == 1000
    assert (buf.data[slots[~restarted]] == 5000.0).all()


# ------------------------------------------------------------------------- recovery

#: method → (hyper-parameters, training steps, data size N). Full-batch or large batches;
#: the last 40% of the steps run at a tenth of the learning rate and their iterates are
#: averaged (Polyak-Ruppert), so that what remains is the method's Monte Carlo noise.
RECIPES = {
    "exact_sm": ({"batch_size": 2048, "lr": 0.05}, 200, 2048),
    "ssm": ({"batch_size": 2048, "lr": 0.05}, 250, 2048),
    "ssm_vr": ({"batch_size": 2048, "lr": 0.05}, 250, 2048),
    "dsm": ({"batch_size": 2048, "lr": 0.05, "sigma": 0.5}, 250, 2048),
    "nce": ({"batch_size": 2048, "lr": 0.02, "noise_scale": 1.0}, 300, 2048),
    "cd": ({"batch_size": 1024, "lr": 0.03, "mcmc_steps": 30}, 200, 4096),
    "pcd": ({"batch_size": 1024, "lr": 0.03, "mcmc_steps": 5, "buffer_size": 2048}, 300, 4096),
    "fce": ({"batch_size": 512, "lr": 0.03, "flow_lr": 0.002, "flow_transforms": 1,
             "flow_hidden": 16, "pretrain_steps": 50}, 200, 16384),
    "adversarial": ({"batch_size": 1024, "lr": 0.01, "flow_lr": 0.01, "flow_steps": 2, "alpha": 0.0,
                     "flow_transforms": 1, "flow_hidden": 16}, 250, 4096),
}

ULA_STEP = 0.2


def optimum(name: str, hparams: dict, mean: Tensor, cov: Tensor) -> tuple[Tensor, Tensor]:
    """The exact (μ, Σ) a method reaches on data with moments (mean, cov).

    Score matching (exact and sliced) on a Gaussian family gives the sample moments
    (Hyvärinen 2005, §3); maximum-likelihood methods too; NCE as well when its noise is
    the Gaussian fitted to the data (then h = ½ at the MLE and its gradient vanishes there).
    """
    if name == "dsm":
        return mean, cov + hparams["sigma"] ** 2 * torch.eye(len(mean), dtype=cov.dtype)
    if name in ("cd", "pcd"):
        return mean, ula_stationary_cov(cov, ULA_STEP)
    return mean, cov


def whitened_errors(mean, cov, ref_mean, ref_cov) -> tuple[float, float]:
    """‖Σ_ref^{-1/2}(μ − μ_ref)‖ and ‖Σ_ref^{-1/2} Σ Σ_ref^{-1/2} − I‖_F."""
    chol = torch.linalg.cholesky(ref_cov)
    w_mean = torch.linalg.solve_triangular(chol, (mean - ref_mean).unsqueeze(1), upper=False)
    half = torch.linalg.solve_triangular(chol, cov, upper=False)
    w_cov = torch.linalg.solve_triangular(chol, half.T, upper=False)
    return float(w_mean.norm()), float((w_cov - torch.eye(len(mean), dtype=cov.dtype)).norm())


def fit(name: str, d: int, seed: int = 0, **overrides):
    """Train the quadratic energy with ``name`` on N samples of a Gaussian.

    Returns (method, energy, averaged mean, averaged covariance, dataset, data).
    """
    hparams, steps, n = RECIPES[name]
    hparams = hparams | overrides
    ds, data = gaussian_problem(d, n=n, seed=seed)
    energy = Quadratic(d).to(DOUBLE)
    sampler = get_sampler("ula", step_size=ULA_STEP) if name in ("cd", "pcd") else None
    method = get_method(name, **hparams)
    method.setup(context(energy, ds, data, sampler, seed))
    optimizers = [v for v in vars(method).values() if isinstance(v, torch.optim.Optimizer)]
    batch_gen = torch.Generator().manual_seed(seed + 1)
    batch_size = min(method.hparams["batch_size"], len(data))
    start = int(0.6 * steps)
    sum_mean, sum_cov = 0, 0
    for step in range(steps):
        if step == start:
            for opt in optimizers:
                for group in opt.param_groups:
                    group["lr"] *= 0.1
        batch = data if batch_size == len(data) else data[
            torch.randperm(len(data), generator=batch_gen)[:batch_size]]
        logs = method.train_step(batch)
        assert math.isfinite(logs["loss"])
        if step >= start:
            with torch.no_grad():
                sum_mean = sum_mean + energy.mean
                sum_cov = sum_cov + energy.covariance()
    count = steps - start
    return method, energy, sum_mean / count, sum_cov / count, ds, data


def tolerances(name: str, d: int) -> tuple[float, float]:
    """Allowed whitened errors (mean, covariance) against the exact optimum on the data.

    A covariance estimated from n samples has whitened error of order √(d(d+1)/n) (mean:
    √(d/n)). The averaged iterates saw n_eff = batch × averaged steps of the method's own
    Monte Carlo draws (noise, projections, chains, q-samples); we allow k of those standard
    errors, with k larger for PCD and adversarial training, whose chains (resp. flow q_φ)
    persist and so are correlated across steps. FCE's optimum
    on N data points differs from the MLE by the data's own sampling error (its noise is a
    flow, not the fitted Gaussian), so it also gets 2 standard errors of N.
    """
    hparams, steps, n = RECIPES[name]
    if name == "exact_sm":  # deterministic, full batch: optimisation error only
        return 2e-2, 2e-2
    n_eff = min(hparams["batch_size"], n) * (steps - int(0.6 * steps))
    k_mean, k_cov = (12, 8) if name in ("pcd", "adversarial") else (8, 6)
    data_se = 2 if name == "fce" else 0
    tol_mean = k_mean * math.sqrt(d / n_eff) + data_se * math.sqrt(d / n)
    tol_cov = k_cov * math.sqrt(d * (d + 1) / n_eff) + data_se * math.sqrt(d * (d + 1) / n)
    return tol_mean, tol_cov


@pytest.mark.parametrize("d", [2, 8])
@pytest.mark.parametrize("name", list(RECIPES))
def test_method_recovers_gaussian(name, d):
    method, energy, mean, cov, ds, data = fit(name, d)
    n = len(data)
    emp_mean, emp_cov = data.mean(0), torch.cov(data.T, correction=0)
    target_mean, target_cov = optimum(name, method.hparams, emp_mean, emp_cov)
    err_mean, err_cov = whitened_errors(mean, cov, target_mean, target_cov)
    tol_mean, tol_cov = tolerances(name, d)
    assert err_mean < tol_mean and err_cov < tol_cov, (err_mean, tol_mean, err_cov, tol_cov)

    # Against the truth: the data's own sampling error, E‖·‖² = d/N (mean) and
    # d(d+1)/N (covariance, whitened), is what separates the two.
    true_mean, true_cov = optimum(name, method.hparams, ds.dist.loc, ds.dist.covariance_matrix)
    err_mean, err_cov = whitened_errors(mean, cov, true_mean, true_cov)
    assert err_mean < 4 * math.sqrt(d / n) + tol_mean
    assert err_cov < 4 * math.sqrt(d * (d + 1) / n) + tol_cov

    if name in ("dsm", "cd", "pcd"):
        # The bias is real: the plain sample covariance is not what these methods reach.
        _, wrong = whitened_errors(mean, cov, emp_mean, emp_cov)
        assert wrong > 1.5 * tol_cov
    if name in ("nce", "fce"):
        # The learned log Z is the learned quadratic's ½ log det(2πΣ).
        exact = float(energy.log_partition().detach())
        assert method.log_partition() == pytest.approx(exact, abs=0.02)
    if name == "adversarial":
        check_adversarial_bound_and_amortised_sampler(method, energy)


def check_adversarial_bound_and_amortised_sampler(method, energy) -> None:
    """E_q f + H(q) is a lower bound on log Z, tight once q ≈ p_θ; q samples p_θ."""
    exact = float(energy.log_partition().detach())
    bound, se = method.log_z_bound(20_000)
    assert bound < exact + 4 * se
    assert bound > exact - 0.02
    x = method.amortised_sample(20_000, torch.Generator().manual_seed(11))
    assert x.shape == (20_000, energy.dim)
    err_mean, err_cov = whitened_errors(x.mean(0), torch.cov(x.T), energy.mean.detach(),
                                        energy.covariance().detach())
    # 20 000 samples: standard errors √(d/n) ≤ 0.02 and √(d(d+1)/n) ≤ 0.06.
    assert err_mean < 0.08 and err_cov < 0.2


@pytest.mark.parametrize("name,nu", [("nce", 4.0), ("fce", 3.0)])
def test_learned_log_z_is_exact_with_a_noise_ratio(name, nu):
    """With ν ≠ 1 the log ν terms matter: without them log Z would be off by log ν."""
    method, energy, *_ = fit(name, 2, noise_ratio=nu)
    exact = float(energy.log_partition().detach())
    assert method.log_partition() == pytest.approx(exact, abs=0.02)


def test_nce_checkpoint_restores_log_z():
    ds, data = gaussian_problem(2, n=256)
    method = get_method("nce", init_samples=256)
    method.setup(context(Quadratic(2).to(DOUBLE), ds, data))
    with torch.no_grad():
        method.log_z.fill_(1.234)
    state = method.state_dict()
    other = get_method("nce", init_samples=256)
    other.setup(context(Quadratic(2).to(DOUBLE), ds, data, seed=1))
    assert other.log_partition() != pytest.approx(1.234)
    other.load_state_dict(state)
    assert other.log_partition() == pytest.approx(1.234)
    torch.testing.assert_close(other.noise_dist.loc, method.noise_dist.loc)
    fresh = get_method("nce")  # restoring before setup also works
    fresh.load_state_dict(state)
    assert fresh.log_partition() == pytest.approx(1.234)


def test_fce_checkpoint_restores_log_z_and_flow():
    ds, data = gaussian_problem(2, n=256)
    hp = {"pretrain_steps": 2, "init_samples": 64, "flow_transforms": 1, "flow_hidden": 8}
    method = get_method("fce", **hp)
    method.setup(context(Quadratic(2).to(DOUBLE), ds, data))
    other = get_method("fce", **hp)
    other.setup(context(Quadratic(2).to(DOUBLE), ds, data, seed=1))
    other.load_state_dict(method.state_dict())
    assert other.log_partition() == method.log_partition()
    x = data[:5]
    torch.testing.assert_close(other.flow().log_prob(x), method.flow().log_prob(x))
