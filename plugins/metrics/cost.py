"""Wall-clock and compute cost of a run."""

from __future__ import annotations

from ebmbench import EvalContext, Metric

__all__ = ["WallClockCost"]


class WallClockCost(Metric):
    """Train and sample seconds, and the sampler's energy-gradient evaluations per chain."""

    name = "cost"
    description = "Wall-clock train/sample seconds and gradient evaluations per sample"
    higher_is_better = {"train_seconds": False, "sample_seconds": False, "grad_evals": False}
    needs_samples = True
    cost_values = frozenset(higher_is_better)

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        return {
            "train_seconds": ctx.costs["train_seconds"],
            "sample_seconds": ctx.costs["sample_seconds"],
            "grad_evals": float(ctx.sample_stats.get("grad_evals", 0)),
        }
