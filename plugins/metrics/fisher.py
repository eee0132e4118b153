"""Fisher divergence against a toy density's exact score."""

from __future__ import annotations

import math

from ebmbench import EvalContext, Metric, Param, ToyDensity, energy_and_score

__all__ = ["FisherDivergence"]


class FisherDivergence(Metric):
    """D_F = ½ E_{x~p_data} ‖∇ₓ log p_data(x) − ∇ₓ f_θ(x)‖² (Hyvärinen 2005).

    Estimated on fresh samples from the density (not the training set), with the standard
    error of the Monte Carlo mean reported as ``fisher_divergence_se``.
    """

    name = "fisher"
    description = "Fisher divergence ½E‖∇log p_data − ∇f_θ‖² on fresh data, with std. error"
    higher_is_better = {"fisher_divergence": False}
    params = {"n_samples": Param(10_000, "fresh samples for the estimate", smoke=1_000)}

    def applies_to(self, combo) -> bool:
        return isinstance(combo.dataset, ToyDensity)

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        density: ToyDensity = ctx.dataset  # type: ignore[assignment]
        n = self.hparams["n_samples"]
        x = density.sample(n, ctx.generator(salt=101)).to(ctx.device)
        true_score = density.score(x)
        _, model_score = energy_and_score(ctx.energy, x)
        per_point = 0.5 * (true_score - model_score).pow(2).sum(dim=1)
        return {
            "fisher_divergence": float(per_point.mean()),
            "fisher_divergence_se": float(per_point.std() / math.sqrt(n)),
        }
