"""Fisher divergence against a toy density's exact score."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import Tensor

from ebmbench import EvalContext, Metric, Param, ToyDensity, energy_and_score

__all__ = ["FisherDivergence"]

#: (dataset, its parameters, seed, n) → (fresh samples, their exact score) on the CPU. The
#: points depend only on these, so every run of a sweep on the same dataset and seed
#: shares them; the exact score of a curve density costs a quadrature per point.
_TRUTH: OrderedDict[tuple, tuple[Tensor, Tensor]] = OrderedDict()
_TRUTH_SIZE = 8
_CHUNK = 8192


def _truth(density: ToyDensity, ctx: EvalContext, n: int) -> tuple[Tensor, Tensor]:
    key = (type(density).__module__, type(density).__qualname__,
           repr(sorted(density.hparams.items())), ctx.seed, n)
    if key in _TRUTH:
        _TRUTH.move_to_end(key)
        return _TRUTH[key]
    x = density.sample(n, ctx.generator(salt=101))
    value = (x, density.score(x))
    _TRUTH[key] = value
    if len(_TRUTH) > _TRUTH_SIZE:
        _TRUTH.popitem(last=False)
    return value


def _dtype(energy) -> torch.dtype:
    """The dtype of the energy's parameters (float32 if it has none)."""
    param = next(iter(energy.parameters()), None) if hasattr(energy, "parameters") else None
    return param.dtype if param is not None else torch.float32


class FisherDivergence(Metric):
    """D_F = ½ E_{x~p_data} ‖∇ₓ log p_data(x) − ∇ₓ f_θ(x)‖² (Hyvärinen 2005).

    Estimated on fresh samples from the density (not the training set), with the standard
    error of the Monte Carlo mean, sd / √n, reported as ``fisher_divergence_se``. The
    samples depend only on the dataset and the seed, so every method is scored on the
    same points.
    """

    name = "fisher"
    description = "Fisher divergence ½E‖∇log p_data − ∇f_θ‖² on fresh data, with std. error"
    higher_is_better = {"fisher_divergence": False}
    params = {"n_samples": Param(10_000, "fresh samples for the estimate", smoke=1_000, low=2)}

    def applies_to(self, combo) -> bool:
        return isinstance(combo.dataset, ToyDensity)

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        density: ToyDensity = ctx.dataset  # type: ignore[assignment]
        n = self.hparams["n_samples"]
        x_all, score_all = _truth(density, ctx, n)
        parts = []
        for start in range(0, n, _CHUNK):
            x = x_all[start : start + _CHUNK].to(ctx.device, _dtype(ctx.energy))
            _, model_score = energy_and_score(ctx.energy, x)
            true_score = score_all[start : start + _CHUNK].to(model_score)
            parts.append(0.5 * (true_score - model_score).pow(2).sum(dim=1).double())
        per_point = torch.cat(parts)
        return {
            "fisher_divergence": float(per_point.mean()),
            "fisher_divergence_se": float(per_point.std() / math.sqrt(n)),
        }
