"""Compute budgets: how much training each run of a budget level may spend.

A budget level (``smoke``, ``quick``, ``full``) sets a training compute budget in FLOPs
(counted by the harness, see :mod:`ebmbench.compute`) per kind of data. Every method trains
until it has spent it: the number of updates is what the compute buys, so a method whose
update costs more (K sampler steps, a flow trained alongside) takes fewer. A method's
``steps`` hyper-parameter caps the updates, for energies so cheap that the budget would buy
an unreasonable number of them (the analytic quadratic energy).

The quick budgets were set so that denoising score matching, the cheapest update, keeps
about the step count it had when budgets counted steps (1000 updates of 256 examples on a
2-D toy with the default MLP; 200 updates of 64 digit images with the default ConvNet).

>>> train_flops_for("quick", "vector")
60000000000.0
"""

from __future__ import annotations

from typing import Any

from .errors import UserError
from .params import BUDGETS

__all__ = ["TRAIN_FLOPS", "train_flops_for", "dataset_train_flops", "VALIDATION_FRACTION",
           "MAX_VALIDATION", "BUDGET_TOLERANCE", "skips_last_update", "update_fits_budget"]

#: Training FLOPs per budget level and data kind.
TRAIN_FLOPS: dict[str, dict[str, float]] = {
    "smoke": {"vector": 5e7, "image": 3e8},
    "quick": {"vector": 6e10, "image": 1.2e10},
    "full": {"vector": 1.5e12, "image": 2e13},
}

#: How far from its budget a run should end: a last update that would take it more than this
#: past the budget is not taken when stopping before it ends nearer (see skips_last_update).
BUDGET_TOLERANCE = 0.10


def skips_last_update(spent: float, next_cost: float | None, budget: float) -> bool:
    """Whether a run that has ``spent`` of its ``budget`` FLOPs stops before an update
    costing ``next_cost``.

    A run trains while its budget is not spent, so its last update overshoots by up to one
    update, which is nothing on a toy (under 2 % of the budget at quick) but can be a third
    of it for a sampler-trained method on a residual image energy. An update that would end
    more than :data:`BUDGET_TOLERANCE` past the budget is skipped when stopping now is
    nearer the budget than taking it: compute then lands within the tolerance whenever one
    update costs at most twice the tolerance, and as near as the updates allow otherwise.
    Below the tolerance nothing changes, so no toy run is affected.

    >>> skips_last_update(0.96, 0.32, 1.0)   # would end at 1.28; stopping leaves 0.04
    True
    >>> skips_last_update(0.70, 0.45, 1.0)   # 1.15 is nearer than stopping 0.30 short
    False
    >>> skips_last_update(0.99, 0.02, 1.0)   # within the tolerance: taken
    False
    """
    if not next_cost or spent >= budget:
        return False
    after = spent + next_cost
    return after > budget * (1 + BUDGET_TOLERANCE) and budget - spent < after - budget


def update_fits_budget(update_cost: float, budget: float) -> bool:
    """Whether updates costing ``update_cost`` FLOPs let a run end within
    :data:`BUDGET_TOLERANCE` of its ``budget``: at most twice the tolerance (the nearer of
    stopping and taking the last update is then at most one tolerance away; see
    :func:`skips_last_update`). A tuning trial whose update costs more is infeasible at
    equal compute and is stopped (docs/protocol.md, section 4).

    >>> update_fits_budget(0.14, 1.0), update_fits_budget(0.38, 1.0)
    (True, False)
    """
    return update_cost <= 2 * BUDGET_TOLERANCE * budget


#: The share of a training set held out as the validation split (at most
#: :data:`MAX_VALIDATION` examples): learning curves and tuning trials are scored on it;
#: no run ever trains on it, and tuning never reads the test split.
VALIDATION_FRACTION = 0.1
MAX_VALIDATION = 2000


def train_flops_for(budget: str, data_kind: str) -> float:
    """The training FLOPs of ``budget`` for data of ``data_kind``."""
    if budget not in TRAIN_FLOPS:
        raise UserError(f"unknown budget {budget!r}. Valid budgets: {', '.join(BUDGETS)}")
    kinds = TRAIN_FLOPS[budget]
    if data_kind not in kinds:
        raise UserError(f"no compute budget for {data_kind!r} data. Known kinds: {', '.join(kinds)}")
    return kinds[data_kind]


def dataset_train_flops(dataset: Any, budget: str) -> float:
    """A dataset's training FLOPs at ``budget``: its own ``train_flops`` entry, else the
    budget's value for its data kind."""
    own = getattr(type(dataset), "train_flops", {}) or {}
    if budget in own:
        return float(own[budget])
    return train_flops_for(budget, dataset.data_kind)
