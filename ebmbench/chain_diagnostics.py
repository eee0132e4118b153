"""Markov-chain diagnostics through ArviZ: bulk effective sample size and rank-normalised R-hat.

Both are ArviZ's implementations (``arviz_stats.base.array_stats``, the NumPy interface of
arviz-stats, which needs no xarray) of Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021),
"Rank-normalization, folding, and localization: an improved R-hat for assessing convergence
of MCMC", Bayesian Analysis 16(2):

- **bulk ESS**: the draws of every chain are split in halves, the pooled draws are replaced
  by their normal scores z = Φ⁻¹((r − 3/8)/(S + 1/4)) (r the rank among all S draws), and
  ESS = S / τ̂ with τ̂ = −1 + 2 Σₜ ρ̂ₜ, the autocorrelations ρ̂ₜ combined over chains and
  summed with Geyer's initial monotone sequence.
- **R-hat**: the larger of the split R-hat of the normal scores and of the normal scores of
  the folded draws |x − median|, where split R-hat = √(((S' − 1)/S' W + B/S') / W) for chains
  of S' draws with mean within-chain variance W and between-chain variance B/S'.

Draws are arrays shaped (chains, draws, coordinates); each coordinate is diagnosed apart.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["bulk_ess", "rank_rhat"]


def _stats():  # imported on first use: arviz-stats pulls in SciPy (seconds, cold)
    from arviz_stats.base import array_stats

    return array_stats


def _per_coordinate(draws: np.ndarray) -> np.ndarray:
    """(chains, draws, coordinates) → (coordinates, chains, draws), float64."""
    draws = np.asarray(draws, dtype=np.float64)
    if draws.ndim == 2:
        draws = draws[:, :, None]
    if draws.ndim != 3:
        raise ValueError(f"draws must be shaped (chains, draws, coordinates), got {draws.shape}")
    return np.moveaxis(draws, 2, 0)


def _frozen(x: np.ndarray) -> np.ndarray:
    """Per coordinate: True where no chain moved over its draws (zero within-chain spread)."""
    return (np.ptp(x, axis=-1) == 0).all(axis=-1)


def bulk_ess(draws: np.ndarray) -> np.ndarray:
    """The bulk effective sample size of each coordinate of ``draws`` (chains, draws, d).

    The ESS of all the draws together (at most about chains × draws for independent
    draws). A coordinate on which no chain moved carries no information about the spread
    of the target: its ESS is 0 (ArviZ would report the number of draws).

    >>> rng = np.random.default_rng(0)
    >>> ess = bulk_ess(rng.normal(size=(8, 200, 2)))     # independent draws: ESS ≈ 1600
    >>> bool(((ess > 1300) & (ess < 1900)).all())
    True
    >>> bulk_ess(np.zeros((4, 10, 1))).tolist()
    [0.0]
    """
    x = _per_coordinate(draws)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ess = np.asarray(_stats().ess(x, chain_axis=-2, draw_axis=-1, method="bulk"), dtype=float)
    return np.where(_frozen(x), 0.0, ess)


def rank_rhat(draws: np.ndarray) -> np.ndarray:
    """The rank-normalised split R-hat of each coordinate of ``draws`` (chains, draws, d).

    ≈ 1 for chains that have mixed; above 1.01 (Vehtari et al.'s threshold), and far above
    1.1, when chains sample different regions, e.g. stuck in different modes. Chains that
    never moved, at different places, get +∞ (ArviZ gives NaN: zero within-chain variance).

    >>> rng = np.random.default_rng(0)
    >>> mixed = rng.normal(size=(8, 200, 1))
    >>> stuck = mixed + np.arange(8)[:, None, None]          # every chain in its own place
    >>> float(rank_rhat(mixed)[0]) < 1.02, float(rank_rhat(stuck)[0]) > 1.5
    (True, True)
    """
    x = _per_coordinate(draws)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = np.asarray(_stats().rhat(x, chain_axis=-2, draw_axis=-1, method="rank"), dtype=float)
    apart = np.ptp(x.mean(axis=-1), axis=-1) > 0
    return np.where(np.isnan(rhat) & _frozen(x) & apart, np.inf, rhat)
