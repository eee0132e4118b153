"""The model a run reports: its best learning-curve point on the validation split.

A run spends its whole compute budget, and its learning curve (:mod:`ebmbench.learning_curve`)
scores the model on the validation split at about eight log-spaced points of it. With the
``best`` rule (``--checkpoint best``, the default) the run reports the model at the best of
those points, as a practitioner who keeps the checkpoint that validates best would
(early stopping; Prechelt 1998, "Early stopping — but when?"): the model that is
evaluated, saved and ranked is that checkpoint, and the test split is read only after it
was chosen. With ``last`` the run reports its final model (every publication before
2026-12-01).

**The rule** (:func:`point_rank`), over the points where the dataset's tuning objective is
on the curve (``fisher_divergence`` on toy densities):

1. a point whose validation NLL (2-D toys, by quadrature) passes the ``degenerate:nll`` test
   (:mod:`ebmbench.degenerate`) against the validation split's Gaussian beats one that
   fails it, as tuning's choice rule prefers a trial not degenerate on the validation split;
2. then the lower objective wins; a tie goes to the later point (more training).

Where the objective is not on the curve (images: KID is scored on samples at the end), the
last point is the model, under either rule. The compute a run reports is what it spent,
the whole budget, whichever point it reports: the search for the checkpoint is part of the
method's cost.

Why: a model whose training blows up near the end of its budget is a known failure of
several EBM losses (the energy's magnitude runs away: CD and PCD without regulariser,
sliced score matching's unbounded objective). Reported at its last step such a run is
``degenerate`` in one seed of three, and a model board that shows it hides a configuration
that was sound for most of its run; the published curves show where it happened
(docs/protocol.md, section 3).
"""

from __future__ import annotations

import copy
import math
from typing import Any

from torch import nn

from .base import Method
from .degenerate import nll_margin
from .errors import UserError, shown

__all__ = ["CHECKPOINT_RULES", "check_rule", "point_rank", "select_point", "BestCheckpoint"]

#: The model a run reports: ``best`` (its best learning-curve point) or ``last``.
CHECKPOINT_RULES = ("best", "last")


def check_rule(value: Any) -> str:
    """``value`` if it is a checkpoint rule, else a :class:`UserError` naming the rules."""
    if not isinstance(value, str) or value not in CHECKPOINT_RULES:
        raise UserError(f"unknown checkpoint {shown(value)}. Valid rules: {', '.join(CHECKPOINT_RULES)}")
    return value


def point_rank(point: dict[str, float], objective: str,
               reference_nll: float | None) -> tuple[int, float] | None:
    """How good a curve point is, lower first: (fails the NLL test, objective); ``None``
    when the point has no finite objective (it cannot be chosen).

    >>> point_rank({"fisher_divergence": 2.0, "nll": 9.0}, "fisher_divergence", 2.8)
    (1, 2.0)
    >>> point_rank({"fisher_divergence": 3.0, "nll": 2.9}, "fisher_divergence", 2.8)
    (0, 3.0)
    """
    value = point.get(objective)
    if value is None or not math.isfinite(value):
        return None
    nll = point.get("nll")
    fails = (reference_nll is not None and nll is not None
             and not nll <= reference_nll + nll_margin(reference_nll))
    return (int(fails), float(value))


def select_point(curve: list[dict[str, float]], objective: str,
                 reference_nll: float | None = None) -> int | None:
    """The index of the curve point the ``best`` rule reports (see the module), or None
    when no point has the objective (then the run reports its last model).

    >>> curve = [{"fisher_divergence": 5.0, "nll": 3.0}, {"fisher_divergence": 1.0, "nll": 3.1},
    ...          {"fisher_divergence": 0.5, "nll": 9.0}]
    >>> select_point(curve, "fisher_divergence", reference_nll=3.0)   # the last fails the NLL test
    1
    >>> select_point(curve, "fisher_divergence")                       # no reference: lowest value
    2
    """
    best: tuple[tuple[int, float], int] | None = None
    for index, point in enumerate(curve):
        rank = point_rank(point, objective, reference_nll)
        if rank is not None and (best is None or rank <= best[0]):
            best = (rank, index)
    return None if best is None else best[1]


class BestCheckpoint:
    """Keeps, during training, a copy of the model at the best curve point so far.

    :meth:`offer` is called with every point the learning curve takes (its index in the
    curve); the energy's parameters and the method's state (:meth:`Method.state_dict`,
    e.g. NCE's log Z, PCD's replay buffer, a flow) are copied when the point is the best
    so far by :func:`point_rank`. :meth:`restore` puts the kept copy back. Copies are made
    only for points that may be reported, at most one per curve point (about eight per run).

    Args:
        objective: The curve value to minimise (the dataset's tuning objective), or None
            when the curve does not carry it: then nothing is kept and the last model is
            reported.
        reference_nll: The validation split's NLL under a Gaussian fitted to the training
            split (:func:`ebmbench.degenerate.gaussian_nll`), or None.
    """

    def __init__(self, objective: str | None, reference_nll: float | None) -> None:
        self.objective = objective
        self.reference_nll = reference_nll
        self.index: int | None = None
        self._rank: tuple[int, float] | None = None
        self._state: dict[str, Any] | None = None

    def offer(self, index: int, point: dict[str, float], energy: nn.Module, method: Method) -> None:
        """Keep the model now if ``point`` (curve point ``index``) is the best so far."""
        if self.objective is None:
            return
        rank = point_rank(point, self.objective, self.reference_nll)
        if rank is None or (self._rank is not None and rank > self._rank):
            return
        self.index, self._rank = index, rank
        self._state = {
            "energy": {k: v.detach().clone() for k, v in energy.state_dict().items()},
            "method": copy.deepcopy(method.state_dict()),
        }

    def restore(self, energy: nn.Module, method: Method) -> bool:
        """Load the kept model into ``energy`` and ``method``; False when none was kept."""
        if self._state is None:
            return False
        energy.load_state_dict(self._state["energy"])
        method.load_state_dict(self._state["method"])
        return True
