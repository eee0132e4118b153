"""Sliced score matching (Song, Garg, Shi & Ermon 2019, arXiv:1905.07088).

Score matching projected on random directions v with E[v vᵀ] = I: the Hessian trace
becomes vᵀ∇ₓ²f v, one Hessian-vector product (two backward passes) whatever d is.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ebmbench import EnergyFn, Method, Param

__all__ = [
    "SlicedScoreMatching",
    "SlicedScoreMatchingVR",
    "random_projections",
    "ssm_loss",
]

PROJECTIONS = ("gaussian", "rademacher", "sphere")


def random_projections(
    like: Tensor,
    n_projections: int,
    kind: str = "gaussian",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random directions v, shape (M, *like.shape), with E[v vᵀ] = I for every example.

    Args:
        like: A batch whose shape, dtype and device the directions take.
        n_projections: M, directions per example.
        kind: ``gaussian`` (N(0, I)), ``rademacher`` (±1 entries) or ``sphere``
            (uniform on the sphere of radius √d, so that E[v vᵀ] = I still holds).
        generator: On ``like``'s device, or None.

    >>> v = random_projections(torch.zeros(5, 3), 2, "sphere")
    >>> v.shape, torch.allclose(v.pow(2).sum(-1), torch.full((2, 5), 3.0))
    (torch.Size([2, 5, 3]), True)
    """
    shape = (n_projections, *like.shape)
    opts = {"generator": generator, "device": like.device, "dtype": like.dtype}
    if kind == "gaussian":
        return torch.randn(shape, **opts)
    if kind == "rademacher":
        return torch.randint(0, 2, shape, generator=generator, device=like.device).to(
            like.dtype
        ) * 2 - 1
    if kind == "sphere":
        v = torch.randn(shape, **opts).flatten(2)
        v = v / v.norm(dim=-1, keepdim=True) * math.sqrt(v.shape[-1])
        return v.view(shape)
    raise ValueError(f"unknown projection kind {kind!r}; choose from {PROJECTIONS}")


def ssm_loss(
    energy: EnergyFn, x: Tensor, v: Tensor, *, variance_reduction: bool = False
) -> Tensor:
    """Sliced score matching, averaged over examples and projections.

    Song et al. (2019), eq. (7) and its variance-reduced form (eq. 8, "SSM-VR"):

        J(θ)    = E_data E_v[ vᵀ∇ₓ²f_θ(x) v + ½ (vᵀ∇ₓf_θ(x))² ],
        J_VR(θ) = E_data E_v[ vᵀ∇ₓ²f_θ(x) v + ½ ‖∇ₓf_θ(x)‖² ],

    both equal to exact score matching in expectation over v when E[v vᵀ] = I.

    Args:
        energy: f_θ, mapping (B, *shape) to (B,).
        x: A data batch, shape (B, *shape).
        v: Projections, shape (M, B, *shape) (see :func:`random_projections`).
        variance_reduction: Use J_VR (the ½‖∇f‖² term in closed form).

    >>> f = lambda x: -0.5 * (x ** 2).sum(dim=1)              # ∇f = −x, ∇²f = −I
    >>> x, v = torch.tensor([[1.0, 2.0]]), torch.tensor([[[1.0, 0.0]]])
    >>> ssm_loss(f, x, v).item(), ssm_loss(f, x, v, variance_reduction=True).item()
    (-0.5, 1.5)
    """
    n_proj, batch = v.shape[0], x.shape[0]
    # All projections in one batch of M·B copies: two backward passes in total.
    x_rep = x.detach().unsqueeze(0).expand(n_proj, *x.shape).reshape(n_proj * batch, *x.shape[1:])
    v_rep = v.reshape(n_proj * batch, *x.shape[1:])
    with torch.enable_grad():
        x_rep = x_rep.requires_grad_(True)
        (score,) = torch.autograd.grad(energy(x_rep).sum(), x_rep, create_graph=True)
        score_v = (score * v_rep).flatten(1).sum(dim=1)  # vᵀ∇f
        if score_v.requires_grad:
            (hess_v,) = torch.autograd.grad(score_v.sum(), x_rep, create_graph=True)
            vhv = (hess_v * v_rep).flatten(1).sum(dim=1)  # vᵀ∇²f v
        else:  # f linear in x: zero Hessian
            vhv = torch.zeros_like(score_v)
    if variance_reduction:
        second = 0.5 * score.flatten(1).pow(2).sum(dim=1)
    else:
        second = 0.5 * score_v.pow(2)
    return (vhv + second).mean()


class SlicedScoreMatching(Method):
    """Sliced score matching with M random projections per example (Song et al. 2019).

    Loss E[vᵀ∇²f v + ½(vᵀ∇f)²], see :func:`ssm_loss`.
    """

    name = "ssm"
    description = "Sliced score matching vᵀ∇²f v + ½(vᵀ∇f)² (Song et al. 2019)"
    required_features = frozenset({"nonzero_hessian"})
    variance_reduction = False
    params = Method.params | {
        # quick: what tuning chose most often (docs/protocol.md, 6)
        "lr": Method.params["lr"].with_quick_default(4e-3),
        "n_projections": Param(1, "random projections M per example", low=1),
        "projection": Param(
            "gaussian", "distribution of the projections v", choices=PROJECTIONS
        ),
    }

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        v = random_projections(
            batch, self.hparams["n_projections"], self.hparams["projection"], self.ctx.generator
        )
        return ssm_loss(self.energy, batch, v, variance_reduction=self.variance_reduction), {}


class SlicedScoreMatchingVR(SlicedScoreMatching):
    """Sliced score matching with variance reduction, E[vᵀ∇²f v + ½‖∇f‖²] (Song et al. 2019)."""

    name = "ssm_vr"
    description = "Sliced score matching, variance-reduced vᵀ∇²f v + ½‖∇f‖² (Song et al. 2019)"
    variance_reduction = True
