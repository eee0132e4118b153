"""Small differentiable helpers shared by plugins."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import EnergyFn

__all__ = ["energy_and_score"]


def energy_and_score(
    energy: EnergyFn, x: Tensor, *, create_graph: bool = False
) -> tuple[Tensor, Tensor]:
    """Return f(x), shape (B,), and the score ∇ₓf(x), shape of ``x``.

    Args:
        energy: f, mapping (B, *shape) to (B,).
        x: The points; they need not require grad.
        create_graph: Keep the graph of the score, for losses that differentiate it
            with respect to the parameters (score matching).

    >>> f = lambda x: -0.5 * (x ** 2).sum(dim=1)
    >>> value, score = energy_and_score(f, torch.tensor([[1.0, -2.0]]))
    >>> value.tolist(), score.tolist()
    ([-2.5], [[-1.0, 2.0]])
    """
    with torch.enable_grad():
        x = x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True)
        value = energy(x)
        (score,) = torch.autograd.grad(value.sum(), x, create_graph=create_graph)
    if not create_graph:
        value = value.detach()
    return value, score
