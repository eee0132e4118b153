"""The fixed target of the "compute to reach a target" column, per dataset.

The models board reports, for each model, the training FLOPs at which its learning curve
(:mod:`ebmbench.learning_curve`, on the validation split) first reaches the dataset's target
value, as benchopt reports the time a solver takes to reach a given suboptimality. A target
is only useful if it stays put between publications, so it is a number per dataset, fixed
here, not derived from the results being ranked.

The built-in toys' targets are Fisher divergences: the value the best quarter of the models
had reached at the end of training in the first published sweep (``quick`` budget, three
seeds, 2026-11-29), to one significant figure. A bar that a good method clears within the
budget, and a weak one does not. Datasets without a target (images: their curves carry no
Fisher divergence; third-party datasets) show "–".
"""

from __future__ import annotations

__all__ = ["CURVE_TARGETS", "curve_target"]

#: dataset → (learning-curve value, threshold): reached when the value is ≤ the threshold.
CURVE_TARGETS: dict[str, tuple[str, float]] = {
    "banana": ("fisher_divergence", 1.0),
    "checkerboard": ("fisher_divergence", 6.0),
    "correlated_gaussian": ("fisher_divergence", 0.1),
    "correlated_gaussian_16d": ("fisher_divergence", 20.0),
    "eight_gaussians": ("fisher_divergence", 5.0),
    "funnel": ("fisher_divergence", 0.06),
    "gmm_8d": ("fisher_divergence", 2.0),
    "gmm_32d": ("fisher_divergence", 8.0),
    "gmm_128d": ("fisher_divergence", 70.0),
    "pinwheel": ("fisher_divergence", 4.0),
    "rings": ("fisher_divergence", 40.0),
    "student_t": ("fisher_divergence", 0.007),
    "swiss_roll": ("fisher_divergence", 2.0),
    "twenty_five_gaussians": ("fisher_divergence", 70.0),
    "two_moons": ("fisher_divergence", 3.0),
    "two_spirals": ("fisher_divergence", 30.0),
}


def curve_target(dataset: str) -> tuple[str, float] | None:
    """The dataset's (curve value, threshold), or None.

    >>> curve_target("banana"), curve_target("digits")
    (('fisher_divergence', 1.0), None)
    """
    return CURVE_TARGETS.get(dataset)
