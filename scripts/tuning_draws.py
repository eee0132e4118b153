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

``--against STORE`` (repeatable) judges a changed protocol by the draws' spread, so that the
tuning's chance is not credited to the change: per model, the store's mean is ``better``
(``worse``) when it lies below (above) every draw's mean by more than ``--margin`` (10 %),
and, per dataset and energy, the counts, the geometric mean of its means over the draws'
medians, Kendall's τ against each draw and its best model::

    python scripts/tuning_draws.py leaderboards/results.csv draw1.sqlite draw2.sqlite \
        --dataset banana --against best.sqlite
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pandas as pd

import ebmbench
from ebmbench.leaderboard.aggregate import protocol_summary, trained_models

METRIC = "metric.fisher_divergence"
MODEL = ["dataset", "architecture", "method", "training sampler"]


def per_draw(frames: list[pd.DataFrame], datasets: list[str] | None = None,
             architectures: list[str] | None = None) -> pd.DataFrame:
    """One row per model found in every draw: ``fisher <k>`` (the mean over its finished
    seeds) and ``degenerate <k>`` (its degenerate seeds) for draw k, ``median``, the median
    of the draws' means, and ``spread``, the largest mean over the smallest."""
    columns = []
    for k, frame in enumerate(frames):
        runs = _selected(frame, datasets, architectures).rename(
            columns={"sampler": "training sampler"})
        columns.append(runs.groupby(MODEL).agg(**{
            f"fisher {k}": (METRIC, "mean"), f"degenerate {k}": ("degenerate", "sum")}))
    table = pd.concat(columns, axis=1, join="inner")
    means = table[[f"fisher {k}" for k in range(len(frames))]]
    table["median"] = means.median(axis=1)
    table["spread"] = means.max(axis=1) / means.min(axis=1)
    return table


def _selected(frame: pd.DataFrame, datasets: list[str] | None,
              architectures: list[str] | None) -> pd.DataFrame:
    runs = trained_models(frame)
    if datasets:
        runs = runs[runs["dataset"].isin(datasets)]
    if architectures:
        runs = runs[runs["architecture"].isin(architectures)]
    return runs


def protocol_line(frame: pd.DataFrame, datasets: list[str] | None = None,
                  architectures: list[str] | None = None) -> str:
    """The protocol settings the selected trained models of one store ran under: each with
    its one value, or ``mixed`` where they differ (a tuned schedule's choices, or a store
    that holds two protocols).
    """
    return protocol_summary(list(_selected(frame, datasets, architectures)["hyperparams"]))


def reaching(table: pd.DataFrame, target: float) -> pd.Series:
    """For each model, in how many draws its mean reaches ``target`` or lower.

    >>> table = pd.DataFrame({"fisher 0": [0.01, 0.2], "fisher 1": [0.04, 0.03]})
    >>> reaching(table, 0.05).tolist()
    [2, 1]
    """
    means = table[draw_columns(table)]
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
    draws = [c.split(" ", 1)[1] for c in draw_columns(table)]
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


def draw_columns(table: pd.DataFrame) -> list[str]:
    """The columns of ``table`` that hold one draw's mean each (``fisher 0``, ...)."""
    return [c for c in table if c.startswith("fisher ")]


def model_text(model: tuple) -> str:
    """A model index (dataset, energy, method, sampler) as ``method/sampler``."""
    return "/".join(x for x in model[2:] if x != "–")


def judged(table: pd.DataFrame, other: pd.Series, margin: float = 0.1) -> pd.DataFrame:
    """Each model of ``table`` (the draws) that ``other`` (a changed protocol's mean Fisher
    divergence per model) has: ``changed`` mean, and ``verdict``, ``better`` below every
    draw's mean over (1 + ``margin``), ``worse`` above every draw's mean times (1 +
    ``margin``), else ``within``; ``ratio`` is the changed mean over the draws' median.

    >>> index = pd.MultiIndex.from_tuples([("d", "e", m, "–") for m in "abc"], names=MODEL)
    >>> draws = pd.DataFrame({"fisher 0": [1.0, 1.0, 1.0], "fisher 1": [2.0, 2.0, 2.0],
    ...                       "median": [1.5, 1.5, 1.5]}, index=index)
    >>> judged(draws, pd.Series([0.5, 1.95, 2.5], index=index))["verdict"].tolist()
    ['better', 'within', 'worse']
    """
    draws = table[draw_columns(table)]
    part = table.join(other.rename("changed"), how="inner")
    low, high = draws.min(axis=1) / (1 + margin), draws.max(axis=1) * (1 + margin)
    part["verdict"] = ["better" if v < lo else "worse" if v > hi else "within"
                       for v, lo, hi in zip(part["changed"], low[part.index], high[part.index],
                                            strict=True)]
    part["ratio"] = part["changed"] / part["median"]
    return part


def judged_summary(part: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, energy): models better / worse / within, the geometric mean of
    ``ratio``, Kendall's τ of the changed order against each draw's (smallest and largest)
    and the changed protocol's best model.

    >>> index = pd.MultiIndex.from_tuples([("d", "e", m, "–") for m in "ab"], names=MODEL)
    >>> part = pd.DataFrame({"fisher 0": [1.0, 2.0], "changed": [0.5, 1.0],
    ...                      "ratio": [0.5, 0.5], "verdict": ["better", "within"]}, index=index)
    >>> line = judged_summary(part).iloc[0]
    >>> int(line["better"]), round(float(line["geometric mean ratio"]), 3), line["best"]
    (1, 0.5, 'a')
    """
    draws = draw_columns(part)
    lines = []
    for (dataset, energy), group in part.groupby(level=["dataset", "architecture"]):
        taus = [group["changed"].corr(group[c], method="kendall") for c in draws]
        best = group["changed"].idxmin()
        lines.append({
            "dataset": dataset, "architecture": energy, "models": len(group),
            **{v: int((group["verdict"] == v).sum()) for v in ("better", "worse", "within")},
            "geometric mean ratio": float(np.exp(np.log(group["ratio"]).mean())),
            "tau vs draws": f"{min(taus):.2f}–{max(taus):.2f}",
            "best": model_text(best),
        })
    return pd.DataFrame(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+",
                        help="one results store or export per draw (at least two)")
    parser.add_argument("--dataset", help="only these datasets (comma list)")
    parser.add_argument("--architecture", help="only these energies (comma list)")
    parser.add_argument("--target", type=float, help="count the draws whose mean reaches it")
    parser.add_argument("--against", type=Path, action="append", default=[],
                        help="a store of a changed protocol, judged by the draws' spread")
    parser.add_argument("--margin", type=float, default=0.1,
                        help="how far outside every draw a changed model must be [0.1]")
    args = parser.parse_args()
    if len(args.results) < 2:
        parser.error("give at least two stores: one per tuning draw")
    datasets = args.dataset.split(",") if args.dataset else None
    architectures = args.architecture.split(",") if args.architecture else None
    frames = [ebmbench.load_results(p) for p in args.results]
    # The draws must differ only by their draws: a setting that differs between them (a
    # store made before a default changed) would be counted as the tuning's chance.
    lines = [protocol_line(f, datasets, architectures) for f in frames]
    for k, (path, line) in enumerate(zip(args.results, lines, strict=True)):
        print(f"draw {k} ({path.name}): {line}")
    if len(set(lines)) > 1:
        print("WARNING: the draws ran under different protocol settings, so their spread "
              "mixes those settings' effect with the draws'")
    print()
    table = per_draw(frames, datasets, architectures)
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
    for path in args.against:
        frame = ebmbench.load_results(path)
        changed = per_draw([frame], datasets, architectures)["fisher 0"]
        part = judged(table, changed, args.margin)
        print(f"\n{path.name} ({protocol_line(frame, datasets, architectures)}) against the "
              f"draws (outside every draw by more than {args.margin:.0%}):")
        print(judged_summary(part).to_markdown(index=False, floatfmt=".2f"))
        moved = part[part["verdict"] != "within"]
        for model, line in moved.iterrows():
            draws = line[draw_columns(part)]
            print(f"- {line['verdict']}: {model_text(model)} "
                  f"({model[0]}, {model[1]}) {line['changed']:.3g}, draws "
                  f"{draws.min():.3g}–{draws.max():.3g}")
        if args.target is not None:
            print(f"reaching {args.target:g}: {int((part['changed'] <= args.target).sum())} "
                  f"of {len(part)}")


if __name__ == "__main__":
    main()
