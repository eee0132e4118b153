"""A multilayer-perceptron energy with smooth activations."""

from __future__ import annotations

import math

from torch import Tensor, nn

from ebmbench import Architecture, Param, autocast_for, precision_param

__all__ = ["MLPEnergy", "MLP"]

_ACTIVATIONS = {"silu": nn.SiLU, "softplus": nn.Softplus, "tanh": nn.Tanh, "elu": nn.ELU}


class MLP(nn.Module):
    """f(x) = wᵀ σ(... σ(W₁ vec(x) + b₁) ...) + b, one scalar per example.

    With ``precision="bf16"`` the hidden layers run under bf16 autocast and the last
    linear layer, which gives f, in x's dtype (see :mod:`ebmbench.precision`).
    """

    def __init__(self, in_features: int, hidden: int, depth: int, activation: str,
                 precision: str = "fp32") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), _ACTIVATIONS[activation]()]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.numeric_precision = precision
        # The body and the head of ``net``, in a tuple so that they are not registered twice.
        self._parts = (tuple(layers[:-1]), layers[-1])

    def forward(self, x: Tensor) -> Tensor:
        h = x.flatten(1)
        if self.numeric_precision == "fp32":
            return self.net(h).squeeze(-1)
        body, head = self._parts
        with autocast_for(self.numeric_precision, h):
            for layer in body:
                h = layer(h)
        return head(h.to(x.dtype)).squeeze(-1)


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
        "precision": precision_param(),
    }

    def build(self, shape: tuple[int, ...]) -> nn.Module:
        return MLP(math.prod(shape), self.hparams["hidden"], self.hparams["depth"],
                   self.hparams["activation"], self.hparams["precision"])
