"""Training compute, wall-clock and sampling cost of a run."""

from __future__ import annotations

from ebmbench import EvalContext, Metric

__all__ = ["WallClockCost"]

#: Training compute the harness counts (see ebmbench.compute), as reported here.
_TRAINING = ("train_flops", "train_energy_rows", "train_grad_rows", "train_cpu_seconds")


class WallClockCost(Metric):
    """Training compute (FLOPs, energy rows and gradient rows, counted by the harness) and
    seconds, sampling seconds, and the sampler's energy-gradient evaluations per chain.

    ``train_steps`` (the updates the compute budget bought) is a reference value.
    """

    name = "cost"
    description = "Training FLOPs, energy/gradient rows and seconds; sampling seconds and gradients"
    higher_is_better = {"train_seconds": False, "sample_seconds": False, "grad_evals": False,
                        **dict.fromkeys(_TRAINING, False), "train_steps": True}
    needs_samples = True
    cost_values = frozenset(higher_is_better) - {"train_steps"}
    reference_values = frozenset({"train_steps"})

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        out = {
            "train_seconds": ctx.costs["train_seconds"],
            "sample_seconds": ctx.costs["sample_seconds"],
            "grad_evals": float(ctx.sample_stats.get("grad_evals", 0)),
        }
        out |= {k: float(ctx.costs[k]) for k in (*_TRAINING, "train_steps") if k in ctx.costs}
        return out
