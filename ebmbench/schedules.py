"""Step-size, learning-rate and annealing schedules.

- :func:`schedule_factors`: multipliers of a sampler's base step size over the steps of a
  call (constant, linear, cosine, geometric), used by :class:`~ebmbench.MarkovChainSampler`;
- :func:`lr_factor` and :class:`LearningRateSchedule`: the training learning rate's
  multiplier at a point of a run's progress (``--lr-schedule``), applied by the harness to
  every optimiser of a method;
- :func:`annealing_schedule`: the inverse temperatures of
  :func:`ebmbench.annealed_importance_sampling`.

The MCMC machinery that uses them (the sampler base class, step-size adaptation, chain
state) lives in :mod:`ebmbench.mcmc`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: the command line reads LR_SCHEDULES
    import torch
    from torch import Tensor

__all__ = [
    "SCHEDULES",
    "ANNEALING_SCHEDULES",
    "LR_SCHEDULES",
    "TUNED_LR_SCHEDULE",
    "TUNED_LR_SCHEDULES",
    "check_lr_schedule",
    "LearningRateSchedule",
    "lr_factor",
    "schedule_factors",
    "annealing_schedule",
]

#: Step-size decay shapes over the steps of a run (see :func:`schedule_factors`).
SCHEDULES: tuple[str, ...] = ("constant", "linear", "cosine", "geometric")

#: Learning-rate decays over a training run's progress (see :func:`lr_factor`).
LR_SCHEDULES: tuple[str, ...] = ("constant", "linear", "cosine")

#: ``--lr-schedule tuned``: not a decay but a rule of the tuned protocol. Each tuning study
#: searches the schedule among :data:`TUNED_LR_SCHEDULES` with the method's own
#: hyper-parameters, and its runs train under the one it chose (:mod:`ebmbench.tuning`), as
#: AlgoPerf leaves the schedule to each submission. Only a sweep with ``--tune`` takes it.
TUNED_LR_SCHEDULE = "tuned"
#: What a tuned schedule chooses between: no decay, and a decay to zero. ``linear`` is left
#: out: it decays to zero as ``cosine`` does, and each extra value costs a study's trials.
TUNED_LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")


def check_lr_schedule(value: object, *, tuned: bool = False) -> str:
    """``value`` if it is a learning-rate schedule, else a ``UserError`` naming the valid
    ones (the check of ``ebmbench.run`` and ``ebmbench.train``). ``tuned``: whether
    :data:`TUNED_LR_SCHEDULE` is valid too (a sweep's, not a single run's)."""
    from .errors import UserError, shown

    valid = LR_SCHEDULES + ((TUNED_LR_SCHEDULE,) if tuned else ())
    if not isinstance(value, str) or value not in valid:
        raise UserError(f"unknown lr_schedule {shown(value)}. Valid schedules: {', '.join(valid)}")
    return value


#: Inverse-temperature spacings for annealing (see :func:`annealing_schedule`).
ANNEALING_SCHEDULES: tuple[str, ...] = ("geometric", "linear", "sigmoid")


def schedule_factors(kind: str, n_steps: int, final: float = 0.1) -> list[float]:
    """Multipliers of the base step size for steps t = 0 … n−1 of a run.

    With u = t / (n − 1) ∈ [0, 1] and r = ``final`` (the last step's factor):

    - ``constant``: 1,
    - ``linear``: 1 + (r − 1) u,
    - ``cosine``: r + (1 − r)(1 + cos πu) / 2 (Loshchilov & Hutter 2017, SGDR),
    - ``geometric``: r^u (exponential decay).

    Every shape starts at 1 and ends at r. Metropolis-adjusted kernels stay exact under any
    schedule (each step is p-invariant); for ULA a decay shrinks the O(ε) bias.

    >>> [round(v, 3) for v in schedule_factors("geometric", 3, final=0.01)]
    [1.0, 0.1, 0.01]
    >>> schedule_factors("linear", 3, final=0.5)
    [1.0, 0.75, 0.5]
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; valid: {', '.join(SCHEDULES)}")
    if kind == "constant" or n_steps <= 1:
        return [1.0] * n_steps
    if final <= 0:
        raise ValueError(f"the final step-size factor must be positive, got {final}")
    us = [t / (n_steps - 1) for t in range(n_steps)]
    if kind == "geometric":
        return [final**u for u in us]
    return [final + (1 - final) * _decay(kind, u) for u in us]


def _decay(kind: str, u: float) -> float:
    """The ``constant``, ``linear`` or ``cosine`` shape from 1 at u = 0 to 0 at u = 1 (1 for
    ``constant``): the step-size schedules rescale it to end at their ``final`` factor."""
    if kind == "linear":
        return 1.0 - u
    if kind == "cosine":
        return (1.0 + math.cos(math.pi * u)) / 2.0
    return 1.0


def lr_factor(kind: str, progress: float) -> float:
    """The learning rate's multiplier at ``progress`` u ∈ [0, 1] of a training run.

    - ``constant``: 1,
    - ``linear``: 1 − u,
    - ``cosine``: (1 + cos πu) / 2 (Loshchilov & Hutter 2017, SGDR, without restarts).

    Both decays reach zero at the end of the run, so the final iterate is an average of the
    last updates rather than one noisy draw around the optimum: the shape AlgoPerf's
    baselines train with (Dahl et al. 2023, "Benchmarking neural network training
    algorithms"). Progress is the harness's (the larger of the compute and step-cap
    fractions, :func:`ebmbench.learning_curve.run_progress`), so a method's schedule ends
    when its budget does, whatever an update costs. ``progress`` outside [0, 1] is clipped.

    >>> lr_factor("cosine", 0.5), lr_factor("linear", 0.25), lr_factor("constant", 0.9)
    (0.5, 0.75, 1.0)
    """
    if kind not in LR_SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {kind!r}; valid: {', '.join(LR_SCHEDULES)}")
    return _decay(kind, min(max(float(progress), 0.0), 1.0))


class LearningRateSchedule:
    """Sets every parameter group of ``optimizers`` to its initial lr × :func:`lr_factor`.

    The initial lrs are read once, at construction (after the method's ``setup``), so a
    method's own ratios between optimisers (e.g. a flow's ``flow_lr``) are kept.

    >>> import torch
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    >>> schedule = LearningRateSchedule("linear", [opt])
    >>> schedule.at(0.75); round(opt.param_groups[0]["lr"], 6)
    0.025
    """

    def __init__(self, kind: str, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        lr_factor(kind, 0.0)  # an unknown kind fails here, before training
        self.kind = kind
        self._groups = [(g, float(g["lr"])) for opt in optimizers for g in opt.param_groups]

    def at(self, progress: float) -> None:
        """Set the lrs for the update taken at ``progress`` of the run."""
        if self.kind == "constant":
            return
        factor = lr_factor(self.kind, progress)
        for group, initial in self._groups:
            group["lr"] = initial * factor


def annealing_schedule(
    kind: str | Sequence[float] | Tensor, n_temperatures: int, *, beta_min: float = 1e-4,
    sharpness: float = 4.0,
) -> Tensor:
    """Inverse temperatures 0 = β₀ < β₁ < … < β_K = 1 (K = ``n_temperatures``), float64.

    - ``linear``: β_k = k / K.
    - ``geometric``: β₁ … β_K evenly spaced in log from ``beta_min`` to 1 (Neal 2001, §5,
      spends the temperatures where log p changes fastest for a broad base).
    - ``sigmoid``: β̃_k = σ(δ(2k/K − 1)) rescaled to [0, 1], δ = ``sharpness`` (Grosse,
      Ghahramani & Adams 2015, "Sandwiching the marginal likelihood", arXiv:1511.02543).

    A sequence or tensor is taken as the full schedule itself (it must rise from 0 to 1).

    >>> annealing_schedule("linear", 4).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    >>> b = annealing_schedule("geometric", 3, beta_min=0.01)
    >>> [round(v, 4) for v in b.tolist()]
    [0.0, 0.01, 0.1, 1.0]
    """
    import torch

    if not isinstance(kind, str):
        betas = torch.as_tensor(kind, dtype=torch.float64).flatten()
        if betas.numel() < 2 or betas[0] != 0 or betas[-1] != 1 or (betas.diff() < 0).any():
            raise ValueError("a custom annealing schedule must rise from 0 to 1")
        return betas
    if n_temperatures < 1:
        raise ValueError(f"need at least one temperature, got {n_temperatures}")
    k = torch.arange(n_temperatures + 1, dtype=torch.float64)
    if kind == "linear":
        return k / n_temperatures
    if kind == "geometric":
        if n_temperatures == 1:
            return torch.tensor([0.0, 1.0], dtype=torch.float64)
        betas = torch.logspace(math.log10(beta_min), 0.0, n_temperatures, dtype=torch.float64)
        return torch.cat([betas.new_zeros(1), betas])
    if kind == "sigmoid":
        s = torch.sigmoid(sharpness * (2 * k / n_temperatures - 1))
        return (s - s[0]) / (s[-1] - s[0])
    raise ValueError(
        f"unknown annealing schedule {kind!r}; valid: {', '.join(ANNEALING_SCHEDULES)}"
    )
