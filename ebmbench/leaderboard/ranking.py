"""The ranking rules, in one place, so that a reviewer can check them.

1. **A metric ranks only the rows that report it.** A missing value (``–``) takes no place
   in that metric's ranking and counts in no average. A metric that fewer than two rows
   report ranks nobody (one row is not a ranking): adding a metric that only one method
   reports changes no rank.
2. **Per-metric ranks are normalised** to [0, 1]: among the n rows reporting metric m, the
   row ranked r (ties share the average rank) scores (r − 1)/(n − 1); 0 is the best. So a
   metric that three rows report weighs as much as one that thirty report, and reporting
   an extra metric neither helps nor hurts in expectation.
3. **A row's score** is the mean of its normalised ranks over the ranked metrics it
   reports (lower is better); rows that report none are not ranked. (A board of a single
   row that reports a ranked value ranks it 1.)
4. **Rank intervals.** Each row's seeds are resampled with replacement (the bootstrap,
   :data:`BOOTSTRAP_SAMPLES` times, seeded, so pages are reproducible), the means, scores and
   ranks recomputed; the row's rank interval is the 5–95 % range of its ranks.
5. **Shared ranks.** A row's rank is 1 + the number of rows that are better beyond doubt:
   whose whole interval lies above (better than) the row's interval (as Chatbot Arena ranks
   models from confidence intervals; Chiang et al. 2024). Rows whose intervals overlap the
   best row's share rank 1; with a single seed the intervals are points and the rank is the
   plain rank of the score (ties share it).

Values flagged unreliable by the run (``notes["unreliable:<value>"]``) and rows shown but not
ranked (degenerate, unfinished) are removed by the caller before these rules apply.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.stats import rankdata

__all__ = ["rank_rows", "normalised_scores", "BOOTSTRAP_SAMPLES", "INTERVAL"]

#: Bootstrap resamples of the seeds per board.
BOOTSTRAP_SAMPLES = 1000
#: The rank interval's quantiles.
INTERVAL = (0.05, 0.95)


def normalised_scores(means: np.ndarray, higher_is_better: np.ndarray) -> np.ndarray:
    """Scores (rule 3) of rows from their metric means.

    Args:
        means: (..., rows, metrics) means; NaN where a row does not report the metric.
        higher_is_better: (metrics,) directions.

    Returns:
        (..., rows) scores in [0, 1], NaN for rows that report no metric ranked.

    >>> m = np.array([[1.0, np.nan], [2.0, 5.0], [3.0, np.nan]])
    >>> normalised_scores(m, np.array([False, True])).tolist()  # metric 2: one reporter
    [0.0, 0.5, 1.0]
    """
    signed = np.where(higher_is_better, -means, means)
    reported = ~np.isnan(signed)
    n = reported.sum(axis=-2, keepdims=True)  # reporters per metric
    ranks = rankdata(signed, axis=-2, method="average", nan_policy="omit")
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.where(reported & (n >= 2), (ranks - 1) / (n - 1), np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # rows that report nothing
            return np.nanmean(normalised, axis=-1)


def rank_rows(
    units: pd.DataFrame,
    key: list[str],
    ranked: list[str],
    directions: dict[str, bool],
    n_boot: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """Score, rank and rank interval of each row (rules 1–5 of this module).

    Args:
        units: One line per (row, seed): the ``key`` columns and the ``ranked`` values
            (NaN where not reported).
        key: The columns that identify a row.
        ranked: The metric values ranked.
        directions: Value → higher is better.
        n_boot: Bootstrap resamples.
        seed: The bootstrap's random seed.

    Returns:
        One line per row (sorted by ``key``): the key, ``score`` (NaN: not ranked),
        ``rank`` (shared ranks, rule 5), ``rank_lo``, ``rank_hi``, ``point_rank`` (the plain
        rank of the score).
    """
    columns = [*key, "score", "rank", "rank_lo", "rank_hi", "point_rank"]
    if units.empty:
        return pd.DataFrame(columns=columns)
    groups = [
        (k if isinstance(k, tuple) else (k,), g) for k, g in units.groupby(key, sort=True, dropna=False)
    ]
    values = [g.reindex(columns=ranked).to_numpy(dtype=float) for _, g in groups]
    higher = np.array([directions[v] for v in ranked], dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: not reported
        means = np.stack([np.nanmean(v, axis=0) if len(ranked) else np.zeros(0) for v in values])
        score = normalised_scores(means, higher) if ranked else np.full(len(groups), np.nan)
        rng = np.random.default_rng(seed)
        boot = np.stack(
            [
                np.nanmean(v[rng.integers(0, len(v), size=(n_boot, len(v)))], axis=1)
                if len(ranked)
                else np.zeros((n_boot, 0))
                for v in values
            ],
            axis=1,
        )  # (n_boot, rows, metrics)
    boot_scores = normalised_scores(boot, higher) if ranked else np.full((n_boot, len(groups)), np.nan)
    if len(groups) == 1 and len(ranked) and not np.isnan(means).all():
        # A board of one row that reports a ranked value: it is first, trivially.
        score, boot_scores = np.zeros(1), np.zeros((n_boot, 1))
    # A row the point estimate ranks is ranked in every resample (it reports the same metrics).
    boot_ranks = rankdata(boot_scores, axis=1, method="min", nan_policy="omit")
    point = rankdata(score, method="min", nan_policy="omit")
    lo = np.full(len(groups), np.nan)
    hi = np.full(len(groups), np.nan)
    for i in np.flatnonzero(~np.isnan(score)):
        r = boot_ranks[:, i]
        r = r[~np.isnan(r)]
        if len(r):
            lo[i] = np.quantile(r, INTERVAL[0], method="inverted_cdf")
            hi[i] = np.quantile(r, INTERVAL[1], method="inverted_cdf")
    rank = np.full(len(groups), np.nan)
    for i in np.flatnonzero(~np.isnan(score)):
        rank[i] = 1 + int(np.sum(hi[~np.isnan(hi)] < lo[i]))
    out = pd.DataFrame([dict(zip(key, k, strict=True)) for k, _ in groups])
    out["score"] = score
    out["rank"] = rank
    out["rank_lo"] = lo
    out["rank_hi"] = hi
    out["point_rank"] = np.where(np.isnan(score), np.nan, point)
    return out[columns]
