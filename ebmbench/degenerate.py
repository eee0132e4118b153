"""The ``degenerate`` status: a run that finished but whose model or samples are useless.

A model that collapsed (its density one spike, its samples one point) still returns
numbers, and averaged into a leaderboard those numbers mislead. The harness records such a
run with status ``degenerate``: shown on the leaderboard, never ranked. Two tests, each
with its reason in the row's ``notes``:

``degenerate:nll`` (a property of the trained model)
    Its test NLL is worse than that of a Gaussian fitted to the training data by more than
    :func:`nll_margin`: ``test_nll > gaussian_nll + max(1 nat, 10 % of |gaussian_nll|)``.
    A Gaussian fit is the simplest density anyone would try; an energy model doing worse
    by a nat per example has learned nothing usable. The Gaussian's NLL is recorded as the
    reference value ``gaussian_nll``. The test needs ``test_nll`` (the ``log_partition``
    metric, toy densities); it flags every sampler's row of the model alike.
``degenerate:collapse`` (a property of the samples, hence of the sampler too)
    The samples' total variance (trace of their covariance) is below
    :data:`COLLAPSE_FRACTION` of the held-out data's: the sample set is (nearly) a point.

Leaderboards read them as follows: a model flagged by ``nll`` is not ranked on the models
board; a ``collapse`` flag marks that row in the samples table, and excludes the model
from the models board only for methods that train with the sampler (cd, pcd), whose own
chains collapsed. For a sampler-free method a collapse under one evaluation sampler says
more about that sampler than about the model. Tuning trials are never flagged, nor runs at
the ``smoke`` budget (:data:`JUDGED_BUDGETS`): a smoke run trains for seconds to test the
plumbing, and its model, worse than a Gaussian as a rule, is not meant to be judged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["gaussian_nll", "nll_margin", "total_variance", "degenerate_notes",
           "COLLAPSE_FRACTION", "NLL_MARGIN_NATS", "NLL_MARGIN_RELATIVE", "JUDGED_BUDGETS",
           "HARNESS_VALUES"]

#: The budgets whose runs can be judged degenerate.
JUDGED_BUDGETS = ("quick", "full")
#: Metric values the harness itself records in a row (the degenerate test's reference),
#: which no metric plugin declares.
HARNESS_VALUES = ("gaussian_nll",)

#: The NLL margin: the larger of this many nats per example ...
NLL_MARGIN_NATS = 1.0
#: ... and this fraction of the Gaussian's |NLL|.
NLL_MARGIN_RELATIVE = 0.10
#: Samples whose total variance is below this fraction of the data's have collapsed.
COLLAPSE_FRACTION = 0.01


def gaussian_nll(train: Tensor, test: Tensor, jitter: float = 1e-6) -> float:
    """Mean NLL, in nats per example, of ``test`` under N(μ, Σ + δI) fitted to ``train``
    (maximum likelihood; δ = ``jitter`` × mean variance keeps Σ invertible).

    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = torch.randn(20000, 2, generator=g), torch.randn(20000, 2, generator=g)
    >>> abs(gaussian_nll(x, y) - (math.log(2 * math.pi) + 1)) < 0.02  # the entropy of N(0, I)
    True
    """
    train = train.reshape(len(train), -1).double()
    test = test.reshape(len(test), -1).double()
    mean = train.mean(0)
    cov = torch.atleast_2d(torch.cov(train.T, correction=0))
    cov = cov + jitter * float(cov.diagonal().mean()) * torch.eye(len(mean), dtype=cov.dtype)
    dist = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    return float(-dist.log_prob(test).mean())


def nll_margin(reference_nll: float) -> float:
    """How much worse than the Gaussian a model may be: max(1 nat, 10 % of |NLL|).

    >>> nll_margin(2.8), nll_margin(-40.0)
    (1.0, 4.0)
    """
    return max(NLL_MARGIN_NATS, NLL_MARGIN_RELATIVE * abs(reference_nll))


def total_variance(x: Tensor) -> float:
    """Trace of the covariance of ``x`` (n, ...), flattened per example."""
    flat = x.reshape(len(x), -1).double()
    return float(flat.var(dim=0, correction=0).sum())


def degenerate_notes(
    test_nll: float | None, reference_nll: float | None,
    samples: Tensor | None, test_data: Tensor | None, split: str = "test",
) -> dict[str, str]:
    """The ``degenerate:<test>`` notes a run earns (empty when it is not degenerate).

    ``split`` names the split the NLL is on: ``validation`` for a tuning trial, judged by
    the same test when its configuration is chosen (:func:`ebmbench.tuning.choose`).

    >>> degenerate_notes(9.0, 2.8, None, None)
    {'degenerate:nll': 'test NLL 9 > 3.8 (a Gaussian fitted to the training data: 2.8, + max(1 nat, 10 %))'}
    >>> degenerate_notes(None, None, torch.zeros(10, 2), torch.tensor([[0.0, 0.0], [2.0, 0.0]]))
    {'degenerate:collapse': 'samples collapsed: total variance 0 < 1% of the data (1)'}
    """
    notes: dict[str, str] = {}
    if test_nll is not None and reference_nll is not None and math.isfinite(reference_nll):
        bar = reference_nll + nll_margin(reference_nll)
        if not test_nll <= bar:  # NaN included
            notes["degenerate:nll"] = (
                f"{split} NLL {test_nll:.4g} > {bar:.4g} (a Gaussian fitted to the training data: "
                f"{reference_nll:.4g}, + max(1 nat, 10 %))")
    if samples is not None and test_data is not None and len(samples) > 1:
        spread, data_spread = total_variance(samples), total_variance(test_data)
        if spread < COLLAPSE_FRACTION * data_spread:
            notes["degenerate:collapse"] = (
                f"samples collapsed: total variance {spread:.3g} < {COLLAPSE_FRACTION:.0%} of the "
                f"data ({data_spread:.3g})")
    return notes
