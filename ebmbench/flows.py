"""Normalising flows shared by the flow-based methods (FCE and adversarial training).

Built on zuko. The flow maps data to N(0, I) through a standardising affine layer, a
learned LU linear layer, then masked autoregressive transforms (Papamakarios et al. 2017).
"""

from __future__ import annotations

import math

import torch
import zuko
from torch import Tensor
from torch.distributions import Transform
from zuko.lazy import UnconditionalTransform
from zuko.transforms import DependentTransform, LULinearTransform, MonotonicAffineTransform

__all__ = ["standardised_maf", "flow_rsample", "path_log_prob"]


def _affine(shift: Tensor, scale: Tensor) -> Transform:
    return DependentTransform(MonotonicAffineTransform(shift, scale), 1)


def standardised_maf(flat: Tensor, transforms: int, hidden: int) -> zuko.flows.Flow:
    """An affine layer, a learned LU linear map, then MAF transforms (data → N(0, I)).

    The affine layer starts by standardising ``flat`` (the data, flattened) and the LU
    layer at the identity: a Gaussian is then exactly representable whatever the MAF
    conditioners do, and training starts near the data. The MAF uses coupling-style masks
    (passes=2), so rsample costs one conditioner pass per transform, not d.
    """
    d = flat.shape[1]
    mean, std = flat.mean(0), flat.std(0).nan_to_num(1.0)
    # Constant coordinates (image borders) have std 0: cap the initial scale at e^6.
    log_scale = (-std.clamp_min(1e-12).log()).clamp(-6.0, 6.0)
    # MonotonicAffineTransform soft-clips its log-scale a to a / (1 + |a / log 1e-3|); invert.
    raw = log_scale / (1 - log_scale.abs() / abs(math.log(1e-3)))
    maf = zuko.flows.MAF(
        d,
        transforms=transforms,
        hidden_features=(hidden,) * 2,
        passes=min(2, d),
    )
    layers = [
        UnconditionalTransform(_affine, -mean * log_scale.exp(), raw),
        UnconditionalTransform(LULinearTransform, torch.eye(d, dtype=flat.dtype)),
        *maf.transform.transforms,
    ]
    return zuko.flows.Flow(layers, maf.base).to(flat.device, flat.dtype)


def flow_rsample(
    flow: zuko.flows.Flow, n: int, generator: torch.Generator | None, like: Tensor
) -> tuple[Tensor, Tensor]:
    """``n`` reparameterised samples of the flow and their log-density.

    The flow models flattened rows of ``like`` (the data); the samples come back in the
    data's shape, ``(n, *like.shape[1:])``, ready for the energy.
    """
    # zuko draws the base noise from the global RNG; draw it from the given generator
    # (on its own device, then moved) so that runs are reproducible.
    dist = flow()
    device = generator.device if generator is not None else like.device
    z = torch.randn(
        (n, *dist.base.event_shape), generator=generator, device=device, dtype=like.dtype
    ).to(like.device)
    x, ladj = dist.transform.inv.call_and_ladj(z)
    return x.view(n, *like.shape[1:]), dist.base.log_prob(z) - ladj


def path_log_prob(flow: zuko.flows.Flow, x: Tensor) -> Tensor:
    """log q_φ(x) with the flow's parameters held fixed: for x = T_φ(z) from
    :func:`flow_rsample`, its gradient in φ is the *path* derivative alone,
    ∇ₓ log q_φ(x) · ∂x/∂φ, without the score term ∂_φ log q_φ(x)|ₓ, whose expectation
    under q_φ is zero ("sticking the landing", Roeder, Wu & Duvenaud 2017).

    In a reverse-KL objective E_q[log q_φ − f] the dropped term only adds noise; with it
    gone the gradient is zero sample by sample when q_φ ∝ exp f, so the estimator's
    variance vanishes as q_φ reaches its target. ``x`` is in the data's shape; its value
    equals the log-density :func:`flow_rsample` returns.
    """
    # The whole evaluation runs inside functional_call: MAF conditioners are called lazily,
    # by log_prob, so detaching only while the distribution is built would miss them.
    wrapper = _LogProb(flow)
    frozen = {f"flow.{name}": p.detach() for name, p in flow.named_parameters()}
    return torch.func.functional_call(wrapper, frozen, (x.flatten(1),), strict=False)


class _LogProb(torch.nn.Module):
    def __init__(self, flow: zuko.flows.Flow) -> None:
        super().__init__()
        self.flow = flow

    def forward(self, x: Tensor) -> Tensor:
        return self.flow().log_prob(x)
