"""A multilayer-perceptron energy with smooth activations."""

from __future__ import annotations

import math

from torch import Tensor, nn

from ebmbench import Architecture, Param

__all__ = ["MLPEnergy", "MLP"]

_ACTIVATIONS = {"silu": nn.SiLU, "softplus": nn.Softplus, "tanh": nn.Tanh, "elu": nn.ELU}


class MLP(nn.Module):
    """f(x) = wᵀ σ(... σ(W₁ vec(x) + b₁) ...) + b, one scalar per example."""

    def __init__(self, in_features: int, hidden: int, depth: int, activation: str) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), _ACTIVATIONS[activation]()]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).squeeze(-1)


class MLPEnergy(Architecture):
    """MLP energy D → hidden × depth → 1 with a smooth activation (SiLU by default).

    Smooth activations keep the Hessian of f non-zero, which exact score matching needs
    (ERRATA 4). Images are flattened.
    """

    name = "mlp"
    description = "MLP energy with smooth activations (SiLU), vectors or flattened images"
    data_kinds = frozenset({"vector", "image"})
    features = frozenset({"nonzero_hessian"})
    params = {
        "hidden": Param(128, "hidden width", smoke=32, low=1),
        "depth": Param(2, "number of hidden layers", low=1),
        "activation": Param("silu", "activation function", choices=tuple(_ACTIVATIONS)),
    }

    def build(self, shape: tuple[int, ...]) -> nn.Module:
        return MLP(math.prod(shape), self.hparams["hidden"], self.hparams["depth"],
                   self.hparams["activation"])
