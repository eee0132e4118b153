"""Averaged iterates: the model a run evaluates can be an average of its training's iterates.

With a constant learning rate, stochastic-gradient iterates do not settle: they wander
around the optimum with a spread set by the lr and the gradient's noise, so a run's final
(or best-checkpoint) model is one noisy draw of that cloud, and three seeds of one
configuration can report Fisher divergences a factor 10 apart (``dsm`` on the quadratic
energy, docs/protocol.md section 7). Averaging the iterates removes most of that spread
without slowing the optimisation (Polyak & Juditsky 1992, "Acceleration of stochastic
approximation by averaging"); score-based and adversarial models are routinely evaluated
at an exponential moving average of their weights (Song & Ermon 2020, "Improved techniques
for training score-based generative models"; Yazıcı et al. 2019, "The unusual effectiveness
of averaging in GAN training").

**The average** (``--weight-average ema``) is the *power-function EMA* of Karras et al.
(2024, "Analyzing and improving the training dynamics of diffusion models", section 3.1):
after update t (t = 1, 2, …)

    θ̄_t = β_t θ̄_{t−1} + (1 − β_t) θ_t,    β_t = (1 − 1/t)^(γ+1),

which weights the iterates so far as τ^γ over τ ∈ [0, t]. Its width is a fixed fraction
of the run so far, σ_rel = √((γ+1) / ((γ+2)² (γ+3))) (the weights' standard deviation over
t), so the same rule suits a run of 300 updates and one of 2000, and every curve point
reads an average over about the last fifth of the run up to it. The default σ_rel = 0.1
(γ ≈ 6.94) is in the range EDM2 found best.

**What is averaged:** every parameter of every optimiser the method trains with
(:meth:`ebmbench.Method.optimizers`: the energy, NCE's log Z, a flow), so that a learned
log Z stays the one of the averaged energy. Training itself is unchanged: the optimisers
and the training chains of ``cd``/``pcd`` keep the raw iterates; the average is what the
learning curve scores, what the run reports, saves and ranks. Buffers (a replay buffer, a
normalisation's statistics) are not averaged. The update is elementwise, so it adds no
counted FLOPs; its time counts as training.

**Choosing per run** (``--weight-average best``, :func:`take_curve_point`): at each
learning-curve point both the iterate and the average are measured on the validation split,
and the point, and the model it stands for, is the one that ranks better by the checkpoint
rule's own order (:func:`ebmbench.early_stopping.point_rank`). The average is one more
candidate, not an imposition: a run whose iterate validates better (a curve still falling
steeply, which the average lags) keeps it. docs/protocol.md (section 3) has the measurement.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

__all__ = ["WEIGHT_AVERAGES", "check_weight_average", "power_ema_gamma", "power_ema_beta",
           "IterateAverage", "take_curve_point"]

#: What a run evaluates: its iterates as they are (``none``), their power-function EMA
#: (``ema``), or at each learning-curve point whichever of the two validates better
#: (``best``).
WEIGHT_AVERAGES: tuple[str, ...] = ("none", "ema", "best")

#: The EMA's width as a fraction of the run so far (Karras et al. 2024, section 3.1).
DEFAULT_SIGMA_REL = 0.10


def check_weight_average(value: Any) -> str:
    """``value`` if it is a weight average, else a ``UserError`` naming the valid ones."""
    from .errors import UserError, shown

    if not isinstance(value, str) or value not in WEIGHT_AVERAGES:
        raise UserError(f"unknown weight_average {shown(value)}. "
                        f"Valid averages: {', '.join(WEIGHT_AVERAGES)}")
    return value


def power_ema_gamma(sigma_rel: float) -> float:
    """The exponent γ whose power-function EMA has relative width ``sigma_rel``: the
    largest real root of σ_rel² (γ+2)² (γ+3) = γ+1, i.e. γ³ + 7γ² + (16 − σ_rel⁻²)γ +
    (12 − σ_rel⁻²) = 0 (Karras et al. 2024, appendix C.2).

    >>> round(power_ema_gamma(0.10), 2)
    6.94
    >>> g = power_ema_gamma(0.05)
    >>> round(math.sqrt((g + 1) / ((g + 2) ** 2 * (g + 3))), 6)
    0.05
    """
    if not 0 < sigma_rel < math.sqrt(1 / 12):
        raise ValueError(f"sigma_rel must be in (0, {math.sqrt(1 / 12):.4f}), not {sigma_rel}")
    t = sigma_rel ** -2
    roots = torch.linalg.eigvals(torch.tensor(
        [[-7.0, -(16 - t), -(12 - t)], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64))
    return float(roots[roots.imag.abs() < 1e-9].real.max())


def power_ema_beta(step: int, gamma: float) -> float:
    """β_t = (1 − 1/t)^(γ+1): the weight the average keeps at update ``step`` = t ≥ 1.

    >>> power_ema_beta(1, 6.94)      # the first update replaces the average
    0.0
    >>> round(power_ema_beta(1000, 6.94), 5)
    0.99209
    """
    if step < 1:
        raise ValueError(f"step must be at least 1, not {step}")
    return (1.0 - 1.0 / step) ** (gamma + 1.0)


class IterateAverage:
    """The power-function EMA of ``params`` over the updates of a run (see the module).

    Call :meth:`update` after every update; :meth:`swapped` puts the average in the
    parameters for a while (a learning-curve point) and the iterates back after;
    :meth:`load` puts the average in for good (the end of training).

    >>> w = torch.nn.Parameter(torch.zeros(()))
    >>> average = IterateAverage([w], gamma=0.0)          # γ = 0: the plain running mean
    >>> for value in (1.0, 2.0, 3.0):
    ...     _ = w.data.fill_(value); average.update()
    >>> with average.swapped():
    ...     float(w.detach())
    2.0
    >>> float(w.detach())
    3.0
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], gamma: float | None = None) -> None:
        unique: dict[int, torch.nn.Parameter] = {}
        for p in params:
            unique.setdefault(id(p), p)
        self.params = list(unique.values())
        self.gamma = power_ema_gamma(DEFAULT_SIGMA_REL) if gamma is None else float(gamma)
        self.steps = 0
        # In at least float32, so that a low-precision parameter's small EMA increments
        # are not rounded away.
        self.average = [p.detach().to(torch.promote_types(p.dtype, torch.float32), copy=True)
                        for p in self.params]

    @classmethod
    def of_optimizers(cls, optimizers: Iterable[torch.optim.Optimizer],
                      gamma: float | None = None) -> IterateAverage:
        """The average of every parameter the ``optimizers`` update."""
        return cls((p for opt in optimizers for group in opt.param_groups for p in group["params"]),
                   gamma)

    @torch.no_grad()
    def update(self) -> None:
        """Fold the parameters' current values into the average (after an update)."""
        self.steps += 1
        weight = 1.0 - power_ema_beta(self.steps, self.gamma)
        for avg, p in zip(self.average, self.params, strict=True):
            avg.lerp_(p.detach().to(avg.dtype), weight)

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """The parameters hold the average inside the block, their iterates after it (the
        iterates are put back exactly; the average is left as it was)."""
        with torch.no_grad():
            iterates = [p.detach().clone() for p in self.params]
            for avg, p in zip(self.average, self.params, strict=True):
                p.copy_(avg)
        try:
            yield
        finally:
            with torch.no_grad():
                for saved, p in zip(iterates, self.params, strict=True):
                    p.copy_(saved)

    @torch.no_grad()
    def load(self) -> None:
        """Put the average in the parameters for good (the run's model from now on)."""
        for avg, p in zip(self.average, self.params, strict=True):
            p.copy_(avg)


def take_curve_point(probe: Any, energy: torch.nn.Module, compute: Any, logs: dict[str, float],
                     progress: float, average: IterateAverage | None, rule: str,
                     rank: Callable[[dict[str, float]], Any] | None) -> dict[str, float]:
    """Take the learning-curve point of the model the run has now, by the averaging
    ``rule``, and keep it in ``probe.points``; the point says ``averaged`` (1.0 or 0.0)
    when the rule averages.

    - ``none``: the iterate;
    - ``ema``: the average;
    - ``best``: both are measured on the validation split, and the point is the one that
      ranks better by ``rank`` (:func:`ebmbench.early_stopping.point_rank`: not degenerate
      first, then the lower objective); a tie, an unrankable average, or no ``rank`` at
      all (the curve does not carry the tuning objective) keeps the iterate.
    """
    if average is None or rule == "none" or (rule == "best" and rank is None):
        return probe(energy, compute, logs, progress=progress)
    with average.swapped():
        averaged = probe.measure(energy, compute, logs, progress) | {"averaged": 1.0}
    if rule == "ema":
        probe.points.append(averaged)
        return averaged
    iterate = probe.measure(energy, compute, logs, progress) | {"averaged": 0.0}
    a, i = (rank(averaged), rank(iterate)) if rank is not None else (None, None)
    point = averaged if a is not None and (i is None or a < i) else iterate
    probe.points.append(point)
    return point
