"""Mixed precision for energies: the body of a network in bf16, its output f in float32.

An architecture's ``precision`` hyper-parameter is one of :data:`PRECISIONS`:

- ``fp32`` (the default): everything in float32.
- ``bf16``: the network's body (its convolutions and linear layers) runs under
  ``torch.autocast(device_type, dtype=torch.bfloat16)`` (Micikevicius et al. 2018, "Mixed
  precision training"; bf16 keeps float32's exponent range, so no loss scaling is needed),
  on CUDA and on the CPU alike; its last layer, which produces f, runs in float32 on the
  float32 cast of the features.

Why the last layer stays in float32: samplers and estimators subtract nearby values of f
(the log acceptance ratio f(x') − f(x) of MALA and HMC, the AIS weights), and bf16's 8-bit
mantissa would round f itself to about 0.4 % of its magnitude, far more than those
differences. The score ∇ₓf comes back in float32 whatever the body computed in (autograd
returns a gradient in its input's dtype), and :class:`~ebmbench.EnergyCounter` casts f to
the chains' dtype, so acceptance ratios and AIS weights are formed in float32 (AIS weights
in float64) even for an energy that does not follow this layout.

On a GPU with bf16 tensor cores (A100, H100/H200) bf16 roughly halves the time of large
convolutions; tiny toy networks are launch-bound and gain nothing. On most CPUs bf16
autocast is slower than float32: it is offered there so the same configuration runs (and is
tested) everywhere. The harness records each run's precision in its row
(``hyperparams["precision"]``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor, nn

from .params import Param

__all__ = ["PRECISIONS", "precision_param", "autocast_for", "MixedPrecisionEnergy",
           "energy_precision"]

#: The precisions an architecture may run at.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")


def precision_param() -> Param:
    """The ``precision`` hyper-parameter every built-in architecture declares."""
    return Param("fp32", "fp32, or bf16: the body under bf16 autocast, f in float32",
                 choices=PRECISIONS)


def autocast_for(precision: str, x: Tensor) -> contextlib.AbstractContextManager[Any]:
    """The context for computing on ``x`` at ``precision``.

    ``bf16``: bf16 autocast on ``x``'s device type; ``fp32``: nothing.

    >>> with autocast_for("bf16", torch.zeros(1)):
    ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
    torch.bfloat16
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(x.device.type, dtype=torch.bfloat16)
    raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")


class MixedPrecisionEnergy(nn.Module):
    """f(x) = head(float32(body(x))), the body under :func:`autocast_for` ``precision``.

    For third-party architectures: wrap a network split into a body (x → features) and a
    head (features → f, shape (B,)), or pass ``head=None`` to take the body's output as f,
    cast to x's dtype (then f is computed, and rounded, in bf16).

    Args:
        body: A module computing features (or f, when ``head`` is None).
        head: A module mapping the features to f, shape (B,), run at x's precision.
        precision: One of :data:`PRECISIONS`.

    >>> f = MixedPrecisionEnergy(nn.Linear(2, 4), nn.Sequential(nn.Linear(4, 1),
    ...                          nn.Flatten(0)), precision="bf16")
    >>> f(torch.zeros(3, 2)).dtype
    torch.float32
    """

    def __init__(self, body: nn.Module, head: nn.Module | None = None,
                 precision: str = "fp32") -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
        self.body = body
        self.head = head
        self.numeric_precision = precision

    def forward(self, x: Tensor) -> Tensor:
        with autocast_for(self.numeric_precision, x):
            h = self.body(x)
        h = h if h.dtype == x.dtype else h.to(x.dtype)
        return h if self.head is None else self.head(h)


def energy_precision(energy: Any) -> str:
    """The precision an energy module declares, else ``fp32``.

    Modules declare it as their ``numeric_precision`` attribute (not ``precision``, which
    in an EBM is as likely to be a precision matrix: the quadratic energy's is).

    >>> energy_precision(MixedPrecisionEnergy(nn.Identity(), precision="bf16"))
    'bf16'
    >>> energy_precision(nn.Linear(2, 1))
    'fp32'
    """
    value = getattr(energy, "numeric_precision", "fp32")
    return value if isinstance(value, str) and value in PRECISIONS else "fp32"
