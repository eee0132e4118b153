"""Learning curves: a model's sampler-free quality at log-spaced points of its compute.

As benchopt draws a solver's objective against time, the harness records, during every
training run, the quality of the model at the points where its *progress* crosses the
fractions :data:`CURVE_FRACTIONS` (1/128, 1/64, …, 1/2, 1), and at the end. Progress is the
larger of the compute spent over the budget and the updates made over the method's step cap
(:func:`run_progress`): a run stops at whichever it reaches first, and an energy so cheap
that the cap binds first (the ``quadratic`` energy) still gets its eight points, and its
pruner its rungs. Each point holds:

- ``fisher_divergence``: ½ mean ‖∇ₓ log p(x) − ∇ₓ f_θ(x)‖² over the *validation split*
  (held out from the training set; toy densities, whose exact score is known);
- ``log_z`` and ``nll``: in 2-D, log Z(θ) by quadrature over the dataset's box and the
  validation negative log-likelihood log Z(θ) − mean f_θ(x) (a coarser grid than the
  ``log_partition`` metric's, enough to follow the trend);
- ``log_z_error``: |log Ẑ − log Z(θ)| when the method estimates log Z itself (NCE, FCE);
- the compute spent so far (``flops``, ``energy_rows``, ``grad_rows``, ``seconds``),
  ``step``, ``progress``, and the training ``loss``.

Evaluating a point is measurement, not training: it is not counted in the compute, and the
model's parameters and the training random streams are left untouched. The curves feed
the quality-vs-compute figures, the "compute to reach a target" column and the tuner's
pruner (which stops trials whose curve lags).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .base import Dataset, Method, ToyDensity
from .compute import TrainingCompute
from .functional import energy_and_score
from .quadrature import log_integrate_2d

__all__ = ["CURVE_FRACTIONS", "CURVE_GRID", "LearningCurveProbe", "run_progress"]

#: Fractions of the compute budget at which a curve point is taken (log-spaced).
CURVE_FRACTIONS: tuple[float, ...] = tuple(2.0 ** -k for k in range(7, -1, -1))

#: √(quadrature nodes) for a curve point's log Z in 2-D, per budget.
CURVE_GRID = {"smoke": 48, "quick": 96, "full": 256}

_CHUNK = 8192


def run_progress(flops: float, steps: int, budget_flops: float, max_steps: int) -> float:
    """How far a run is through its training, in [0, 1]: a run stops at its compute budget
    or at its step cap, whichever comes first, so progress is the larger of the two fractions.

    >>> run_progress(30.0, 10, budget_flops=120.0, max_steps=1000)  # compute-bound
    0.25
    >>> run_progress(30.0, 500, budget_flops=120.0, max_steps=1000)  # the cap binds first
    0.5
    """
    return max(flops / budget_flops, steps / max_steps)


def _dtype(energy: nn.Module) -> torch.dtype:
    param = next(iter(energy.parameters()), None)
    return param.dtype if param is not None else torch.float32


class LearningCurveProbe:
    """Evaluates curve points of one training run on its validation split.

    Args:
        dataset: The dataset plugin (exact scores and a quadrature box for toys).
        validation: The validation split, on the CPU.
        device: Where the energy lives.
        budget: The budget level (picks the quadrature grid).
        method: The method in training (for its own log Z estimate).
    """

    def __init__(self, dataset: Dataset, validation: Tensor, device: torch.device, budget: str,
                 method: Method) -> None:
        self.dataset = dataset
        self.device = device
        self.method = method
        self.grid = CURVE_GRID.get(budget, CURVE_GRID["quick"])
        self.points: list[dict[str, float]] = []
        self.validation = validation
        self.true_score: Tensor | None = None
        if isinstance(dataset, ToyDensity) and len(validation):
            # The exact score costs a quadrature per point on some densities: once per run.
            self.true_score = dataset.score(validation)

    @torch.no_grad()
    def _mean_energy(self, energy: nn.Module) -> float:
        dtype = _dtype(energy)
        total = 0.0
        for start in range(0, len(self.validation), _CHUNK):
            x = self.validation[start : start + _CHUNK].to(self.device, dtype)
            total += float(energy(x).double().sum())
        return total / len(self.validation)

    def _fisher(self, energy: nn.Module) -> float:
        assert self.true_score is not None
        dtype = _dtype(energy)
        total = 0.0
        for start in range(0, len(self.validation), _CHUNK):
            x = self.validation[start : start + _CHUNK].to(self.device, dtype)
            _, score = energy_and_score(energy, x)
            truth = self.true_score[start : start + _CHUNK].to(score)
            total += float(0.5 * (truth - score).pow(2).flatten(1).sum(dim=1).double().sum())
        return total / len(self.validation)

    def __call__(self, energy: nn.Module, compute: TrainingCompute,
                 logs: dict[str, float], progress: float | None = None) -> dict[str, float]:
        """Take one point now and keep it in :attr:`points` (``progress``: see
        :func:`run_progress`)."""
        point = self.measure(energy, compute, logs, progress)
        self.points.append(point)
        return point

    def measure(self, energy: nn.Module, compute: TrainingCompute,
                logs: dict[str, float], progress: float | None = None) -> dict[str, float]:
        """The point ``energy`` would make now, not kept (a candidate, e.g. the average of
        the iterates beside the iterate itself: :mod:`ebmbench.averaging`)."""
        point: dict[str, Any] = {
            "step": compute.steps, "flops": compute.flops, "energy_rows": compute.energy_rows,
            "grad_rows": compute.grad_rows, "seconds": compute.wall_seconds,
        }
        if progress is not None:
            point["progress"] = float(progress)
        loss = logs.get("loss")
        if loss is not None and math.isfinite(loss):
            point["loss"] = float(loss)
        was_training = energy.training
        energy.eval()
        # A method's log Z estimate may draw from its training generator (adversarial's
        # bound): the point must not shift the training's random stream.
        generator = getattr(getattr(self.method, "ctx", None), "generator", None)
        rng_state = generator.get_state() if generator is not None else None
        try:
            if self.true_score is not None:
                point["fisher_divergence"] = self._fisher(energy)
            bounds = getattr(self.dataset, "bounds", None)
            if isinstance(self.dataset, ToyDensity) and bounds is not None and len(self.validation):
                log_z = log_integrate_2d(energy, bounds, self.grid, device=self.device,
                                         dtype=_dtype(energy))
                point["log_z"] = log_z
                point["nll"] = log_z - self._mean_energy(energy)
                estimate = self.method.log_partition()
                if estimate is not None:
                    point["log_z_error"] = abs(float(estimate) - log_z)
        finally:
            energy.train(was_training)
            if rng_state is not None:
                generator.set_state(rng_state)
        return {k: float(v) for k, v in point.items()}
