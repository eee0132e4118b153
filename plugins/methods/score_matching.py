"""Score-matching methods: they fit ∇ₓf_θ to the data score without sampling.

Minimising the Fisher divergence ½ E_data‖∇ₓ log p_data − ∇ₓf_θ‖² needs the unknown data
score; integration by parts removes it (Hyvärinen 2005), at the price of the Hessian trace.
Denoising score matching (Vincent 2011) avoids the Hessian by matching the score of a
Gaussian-smoothed data distribution instead. Sliced score matching lives in
:mod:`.sliced_score_matching`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmbench import EnergyFn, Method, Param, energy_and_score, log_uniform

__all__ = [
    "DenoisingScoreMatching",
    "ExactScoreMatching",
    "antithetic_pairs",
    "dsm_loss",
    "exact_sm_loss",
    "hessian_trace",
]

_TRACE_IMPLS = ("auto", "loop", "func")


def dsm_loss(energy: EnergyFn, x: Tensor, sigma: float, noise: Tensor) -> Tensor:
    """Denoising score matching (Vincent 2011, eq. 9 with a Gaussian kernel).

    With x̃ = x + σε, the score of the kernel q_σ(x̃|x) is −(x̃ − x)/σ² = −ε/σ, so

        J_DSM(θ) = ½ E ‖∇ₓf_θ(x̃) + ε/σ‖².

    It equals, up to a constant, the Fisher divergence to the σ-smoothed data
    p_data * N(0, σ²I), so its minimiser is that distribution's score: an O(σ²) bias. For
    Gaussian data N(μ, Σ) and a Gaussian energy the optimum is exactly N(μ, Σ + σ²I).

    Args:
        energy: f_θ, mapping (B, *shape) to (B,).
        x: A data batch.
        sigma: The noise scale σ.
        noise: ε ~ N(0, I), the same shape as ``x``.

    >>> f = lambda x: -0.5 * (x ** 2).sum(dim=1)          # N(0, I): score −x̃
    >>> x, eps = torch.zeros(1, 2), torch.ones(1, 2)
    >>> round(dsm_loss(f, x, 0.5, eps).item(), 4)       # ½‖−0.5·1 + 1/0.5‖² = ½·2·1.5²
    2.25
    """
    x_noisy = x + sigma * noise
    _, score = energy_and_score(energy, x_noisy, create_graph=True)
    residual = (score + noise / sigma).flatten(1)
    return 0.5 * residual.pow(2).sum(dim=1).mean()


def antithetic_pairs(x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The examples of ``x`` twice, with noise ε and then −ε: antithetic variates
    (Hammersley & Morton 1956) for :func:`dsm_loss`.

    Each half is a valid draw of the DSM objective, so the mean of the pair,

        ½(ℓ(x, ε) + ℓ(x, −ε)),   ℓ(x, ε) = ½‖∇ₓf_θ(x + σε) + ε/σ‖²,

    has DSM's expectation. Its gradient does not carry DSM's large noise at small σ: in
    ∇_θℓ(x, ε) the term (1/σ) εᵀ ∂_θ∇ₓf_θ(x + σε) has mean zero and variance of order 1/σ²
    (why DSM estimates the score poorly at low noise; De Bortoli et al. 2024, section 1), and
    in the pair the two such terms differ by the sign of ε only, so they cancel to O(1) by a
    Taylor expansion around x (for a quadratic energy exactly: its residuals
    −P(x − μ) ± (I/σ − σP)ε have no cross term left in the pair's mean).

    Args:
        x: B examples.
        generator: Draws ε ~ N(0, I).

    Returns:
        (inputs, noise): 2B rows each, inputs[i + B] = inputs[i], noise[i + B] = −noise[i].

    >>> inputs, noise = antithetic_pairs(torch.arange(4.0).view(2, 2), torch.Generator())
    >>> inputs.tolist(), bool((noise[:2] == -noise[2:]).all())
    ([[0.0, 1.0], [2.0, 3.0], [0.0, 1.0], [2.0, 3.0]], True)
    """
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return torch.cat([x, x]), torch.cat([eps, -eps])


def _trace_loop(x: Tensor, score: Tensor, create_graph: bool) -> Tensor:
    # One backward pass per coordinate: measured fastest on CPU (docs/methods.md).
    flat = score.flatten(1)
    trace = torch.zeros(flat.shape[0], dtype=flat.dtype, device=flat.device)
    if not flat.requires_grad:  # the score does not depend on x (f linear in x)
        return trace
    for i in range(flat.shape[1]):
        (row,) = torch.autograd.grad(
            flat[:, i].sum(), x, create_graph=create_graph, retain_graph=True, allow_unused=True
        )
        if row is not None:
            trace = trace + row.flatten(1)[:, i]
    return trace


def _trace_func(energy: EnergyFn, x: Tensor) -> Tensor:
    # All d Hessian-vector products in one vmapped forward-over-reverse pass: fewer
    # kernel launches, which pays on a GPU (slower than the loop on CPU).
    def score_fn(y: Tensor) -> Tensor:
        return torch.func.grad(lambda z: energy(z).sum())(y)

    d = x[0].numel()
    basis = torch.eye(d, dtype=x.dtype, device=x.device).view(d, 1, *x.shape[1:])
    basis = basis.expand(d, *x.shape)
    _, hvp = torch.func.vmap(lambda v: torch.func.jvp(score_fn, (x,), (v,)))(basis)
    return hvp.flatten(2).diagonal(dim1=0, dim2=2).sum(dim=-1)  # Σᵢ (H eᵢ)ᵢ


def hessian_trace(
    energy: EnergyFn, x: Tensor, *, impl: str = "auto", create_graph: bool = True
) -> tuple[Tensor, Tensor, Tensor]:
    """f(x), ∇ₓf(x) and tr ∇ₓ²f(x) for every example of a batch, exactly.

    Args:
        energy: f, mapping (B, *shape) to (B,).
        x: The points.
        impl: ``loop`` (d backward passes), ``func`` (torch.func vmap of jvp over the
            basis), or ``auto``: ``func`` on CUDA, ``loop`` elsewhere.
        create_graph: Keep the graph, to differentiate the result in the parameters.

    >>> f = lambda x: -(x ** 2).sum(dim=1)                  # Hessian −2I, trace −2d
    >>> hessian_trace(f, torch.ones(2, 3))[2].tolist()
    [-6.0, -6.0]
    """
    if impl not in _TRACE_IMPLS:
        raise ValueError(f"impl must be one of {_TRACE_IMPLS}, got {impl!r}")
    if impl == "auto":
        impl = "func" if x.device.type == "cuda" else "loop"
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        value = energy(x)
        (score,) = torch.autograd.grad(value.sum(), x, create_graph=True)
        if impl == "loop":
            trace = _trace_loop(x, score, create_graph)
        else:
            trace = _trace_func(energy, x)
    if not create_graph:
        value, score, trace = value.detach(), score.detach(), trace.detach()
    return value, score, trace


def exact_sm_loss(energy: EnergyFn, x: Tensor, *, impl: str = "auto") -> Tensor:
    """Exact score matching (Hyvärinen 2005, Theorem 1).

        J(θ) = E_data[ ½‖∇ₓf_θ(x)‖² + tr ∇ₓ²f_θ(x) ],

    equal to the Fisher divergence ½E‖∇ₓ log p_data − ∇ₓf_θ‖² up to a constant. It needs a
    non-zero Hessian: with ReLU networks tr ∇²f = 0 almost everywhere (ERRATA 4).

    >>> f = lambda x: -0.5 * (x ** 2).sum(dim=1)      # ½‖x‖² − d
    >>> exact_sm_loss(f, torch.tensor([[1.0, 1.0]])).item()
    -1.0
    """
    _, score, trace = hessian_trace(energy, x, impl=impl)
    return (0.5 * score.flatten(1).pow(2).sum(dim=1) + trace).mean()


class DenoisingScoreMatching(Method):
    """Denoising score matching with Gaussian noise of scale σ (Vincent 2011).

    Loss ½E‖∇ₓf(x + σε) + ε/σ‖², see :func:`dsm_loss`. By default each step draws
    antithetic noise pairs (ε and −ε on the same example, :func:`antithetic_pairs`): the same
    objective, without the O(1/σ²) gradient variance that makes small σ untrainable. With
    ``antithetic=False`` it is Vincent's plain estimator, one draw per example, labelled as a
    variant on the leaderboards.
    """

    name = "dsm"
    description = "Denoising score matching (Vincent 2011) with Gaussian noise σ"
    # The plain estimator is a labelled variant: its rows are not the default's.
    variant_params = ("antithetic",)
    params = Method.params | {
        # What tuning chose (docs/protocol.md section 6, checked again 2026-11-30): untuned,
        # 3e-3 beats 1e-3 on five of seven toy studies (the quadratic energy 0.86 → 0.079).
        "lr": Method.params["lr"].with_quick_default(3e-3),
        # 0.05 at quick since the antithetic pairs (2026-12-02): with them σ = 0.05 beat
        # σ = 0.1 on all seven toy studies of docs/protocol.md section 6, where with plain
        # noise it lost on four; σ = 0.025 was mixed against it (better on three, worse on
        # three).
        "sigma": Param(0.1, "noise scale σ of the Gaussian corruption", positive=True,
                       search=log_uniform(0.01, 1.0)).with_quick_default(0.05),
        # Antithetic since 2026-12-02: at equal compute it beat plain noise on every toy
        # study measured, at σ = 0.05 by 2-28x (docs/protocol.md section 6).
        "antithetic": Param(True, "draw noise in antithetic pairs ε, −ε on the same example "
                            "(the same objective at lower variance); false: one draw each"),
    }

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        if self.hparams["antithetic"]:
            # Half the batch, each example twice, so a step costs what a plain one does. At
            # random, so that a batch passed in the same order each step (a full batch) is
            # not fitted by its first half only.
            chosen = torch.randperm(batch.shape[0], generator=self.ctx.generator,
                                    device=self.ctx.generator.device)[: (batch.shape[0] + 1) // 2]
            inputs, noise = antithetic_pairs(batch[chosen.to(batch.device)], self.ctx.generator)
        else:
            inputs = batch
            noise = torch.randn(
                batch.shape, generator=self.ctx.generator, device=batch.device, dtype=batch.dtype
            )
        return dsm_loss(self.energy, inputs, self.hparams["sigma"], noise), {}


class ExactScoreMatching(Method):
    """Exact score matching ½‖∇ₓf‖² + tr ∇ₓ²f (Hyvärinen 2005), Hessian trace by autograd.

    The trace costs d backward passes per batch, so data with more than ``max_dim``
    coordinates (images) are declared incompatible; sliced or denoising score matching
    scale instead.
    """

    name = "exact_sm"
    description = "Exact score matching ½‖∇f‖² + tr∇²f (Hyvärinen 2005); small d only"
    required_features = frozenset({"nonzero_hessian"})
    params = Method.params | {
        # quick: what tuning chose most often (docs/protocol.md, 6)
        "lr": Method.params["lr"].with_quick_default(4e-3),
        # d backward passes per step: at d = 8 a CPU step already costs ~4x DSM's.
        "max_dim": Param(
            8, "refuse data with more coordinates (d backward passes per step)", full=1024,
            low=1,
        ),
        "trace_impl": Param(
            "auto", "Hessian trace: loop of d grads, torch.func vmap, or auto (func on CUDA)",
            choices=_TRACE_IMPLS,
        ),
    }

    def incompatibility(self, combo) -> str | None:
        reason = super().incompatibility(combo)
        if reason is not None:
            return reason
        d = math.prod(combo.dataset.shape)
        if d > self.hparams["max_dim"]:
            return (
                f"method exact_sm needs d={d} backward passes per step for the Hessian trace; "
                f"it is limited to d <= max_dim={self.hparams['max_dim']} (use ssm or dsm)"
            )
        return None

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        return exact_sm_loss(self.energy, batch, impl=self.hparams["trace_impl"]), {}
