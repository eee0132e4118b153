"""How much a tuned result owes to its tuning draws: several results stores, each one draw of
the same tuned sweep (``ebmbench run --tune N --tune-draw D``), compared model by model.

Every study searches with N trials, and which configurations those trials try is chance:
TPE's seed, the random start, the trials' data. A reviewer asks whether a ranking is the
methods' or the draws'. AlgoPerf's rules answer it by repeating each workload's tuning in
three independent studies of five trials "to capture variance" and scoring the median of
the studies' best (its DOCUMENTATION.md, "Tuning"); this script reads such repetitions.

For every trained model found in every store (dataset, method, energy, training sampler),
it prints the mean Fisher divergence over the model's seeds in each draw, their median
(AlgoPerf's score, over draws), the spread (largest over smallest mean), the seeds each
draw left degenerate (as the leaderboards judge them) and, with ``--target T``, in how many
draws the mean reaches T and for how many models the median does. Then, per dataset and
energy, how far the draws agree on the models' order: Kendall's τ between every two draws'
rankings by that mean, and whether they name the same best model::

    python scripts/tuning_draws.py leaderboards/results.csv draw1.sqlite draw2.sqlite \\
        --dataset correlated_gaussian --architecture quadratic --target 0.05

The published ``leaderboards/results.csv`` is draw 0 (a store or export of any draw will do;
the draws are named by their order on the command line).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import pandas as pd

import ebmbench
from ebmbench.leaderboard.aggregate import trained_models

METRIC = "metric.fisher_divergence"
MODEL = ["dataset", "architecture", "method", "training sampler"]


def per_draw(frames: list[pd.DataFrame], datasets: list[str] | None = None,
             architectures: list[str] | None = None) -> pd.DataFrame:
    """One row per model found in every draw: ``fisher <k>`` (the mean over its finished
    seeds) and ``degenerate <k>`` (its degenerate seeds) for draw k, ``median``, the median
    of the draws' means, and ``spread``, the largest mean over the smallest."""
    columns = []
    for k, frame in enumerate(frames):
        runs = trained_models(frame).rename(columns={"sampler": "training sampler"})
        if datasets:
            runs = runs[runs["dataset"].isin(datasets)]
        if architectures:
            runs = runs[runs["architecture"].isin(architectures)]
        columns.append(runs.groupby(MODEL).agg(**{
            f"fisher {k}": (METRIC, "mean"), f"degenerate {k}": ("degenerate", "sum")}))
    table = pd.concat(columns, axis=1, join="inner")
    means = table[[f"fisher {k}" for k in range(len(frames))]]
    table["median"] = means.median(axis=1)
    table["spread"] = means.max(axis=1) / means.min(axis=1)
    return table


def reaching(table: pd.DataFrame, target: float) -> pd.Series:
    """For each model, in how many draws its mean reaches ``target`` or lower.

    >>> table = pd.DataFrame({"fisher 0": [0.01, 0.2], "fisher 1": [0.04, 0.03]})
    >>> reaching(table, 0.05).tolist()
    [2, 1]
    """
    means = table[[c for c in table if c.startswith("fisher ")]]
    return (means <= target).sum(axis=1)


def median_reaching(table: pd.DataFrame, target: float) -> int:
    """How many models' median over draws reaches ``target`` or lower.

    >>> median_reaching(pd.DataFrame({"median": [0.01, 0.2, 0.05]}), 0.05)
    2
    """
    return int((table["median"] <= target).sum())


def agreement(table: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, energy) and pair of draws: Kendall's τ between the draws' orders of the
    models by mean Fisher divergence (1: the same order; −1: reversed), and whether the two
    draws name the same best model.

    >>> index = pd.MultiIndex.from_tuples(
    ...     [("d", "quadratic", m, "–") for m in "abc"], names=MODEL)
    >>> table = pd.DataFrame({"fisher 0": [1.0, 2.0, 3.0], "fisher 1": [2.0, 1.0, 3.0]},
    ...                      index=index)
    >>> (line,) = agreement(table).to_dict("records")
    >>> line["draws"], line["models"], round(line["kendall tau"], 3), line["same best"]
    ('0 vs 1', 3, 0.333, False)
    """
    draws = [c.split(" ", 1)[1] for c in table if c.startswith("fisher ")]
    lines = []
    for (dataset, energy), part in table.groupby(level=["dataset", "architecture"]):
        for a, b in itertools.combinations(draws, 2):
            x, y = part[f"fisher {a}"], part[f"fisher {b}"]
            lines.append({
                "dataset": dataset, "architecture": energy, "draws": f"{a} vs {b}",
                "models": len(part), "kendall tau": x.corr(y, method="kendall"),
                "same best": bool(x.idxmin() == y.idxmin()),
            })
    return pd.DataFrame(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+",
                        help="one results store or export per draw (at least two)")
    parser.add_argument("--dataset", help="only these datasets (comma list)")
    parser.add_argument("--architecture", help="only these energies (comma list)")
    parser.add_argument("--target", type=float, help="count the draws whose mean reaches it")
    args = parser.parse_args()
    if len(args.results) < 2:
        parser.error("give at least two stores: one per tuning draw")
    datasets = args.dataset.split(",") if args.dataset else None
    architectures = args.architecture.split(",") if args.architecture else None
    table = per_draw([ebmbench.load_results(p) for p in args.results], datasets, architectures)
    if args.target is not None:
        table[f"draws <= {args.target:g}"] = reaching(table, args.target)
    print(table.reset_index().to_markdown(index=False, floatfmt=".3g"))
    print()
    print(agreement(table).to_markdown(index=False, floatfmt=".2f"))
    if args.target is not None:
        counts = table[f"draws <= {args.target:g}"]
        print()
        print(f"{len(table)} models; reaching {args.target:g} in " + ", ".join(
            f"{n} of {len(args.results)} draws: {int((counts == n).sum())}"
            for n in range(len(args.results), -1, -1))
            + f"; the median over draws reaches it for {median_reaching(table, args.target)}")


if __name__ == "__main__":
    main()
