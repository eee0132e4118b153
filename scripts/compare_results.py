"""What a protocol change did to the models: two results stores (or exports) compared study
by study.

For every trained model in both (dataset, method, energy, and the training sampler for a
method that trains with one), prints the mean Fisher divergence over its seeds before and
after, its degenerate seeds (as the leaderboards count them) and the values of
``--param`` it ran with, marks a change of more than ``--threshold`` (relative) as better or
worse, and sums it up for the 2-D toys and for the others::

    python scripts/compare_results.py before.sqlite after.sqlite --method cd --param mcmc_steps

With ``--samples S`` it also compares what the evaluation sampler S drew from the
sampler-free models (trained the same in both, so a change is the sampler's): per run row
found in both, the ratio after/before of each sample metric, summed up by its median and
10 % and 90 % quantiles, e.g. after a change to one kernel::

    python scripts/compare_results.py before.sqlite after.sqlite --samples hmc

A published ``leaderboards/results.csv`` is read like a store (``ebmbench.load_results``), so
two publications compare from their commits alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

import ebmbench
from ebmbench.leaderboard.aggregate import protocol_summary, trained_models

METRIC = "metric.fisher_divergence"


def models(frame: pd.DataFrame, methods: list[str] | None, params: list[str]) -> pd.DataFrame:
    """One row per model: mean Fisher divergence over its finished seeds, its degenerate
    seeds (as the leaderboards judge them: ``trained_models``) and seeds."""
    runs = trained_models(frame)
    if methods:
        runs = runs[runs["method"].isin(methods)]
    runs = runs.rename(columns={"sampler": "training sampler"})
    for p in params:
        runs[p] = runs["hyperparams"].map(lambda h, p=p: (h.get("method") or {}).get(p))
    keys = ["dataset", "method", "architecture", "training sampler"]
    return runs.groupby(keys).agg(
        fisher=(METRIC, "mean"), degenerate=("degenerate", "sum"), seeds=("seed", "count"),
        **{p: (p, "first") for p in params},
    )


def protocols(before: pd.DataFrame, after: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    """What each store's compared models ran under (:func:`protocol_summary`, over their
    datasets' trained models), one line each: the protocol change being measured, stated."""
    datasets = set(table.index.get_level_values("dataset"))
    return [
        f"{name}: " + protocol_summary(list(runs[runs["dataset"].isin(datasets)]["hyperparams"]))
        for name, runs in (("before", trained_models(before)), ("after", trained_models(after)))
    ]


def compare(before: pd.DataFrame, after: pd.DataFrame, threshold: float = 0.25) -> pd.DataFrame:
    """The models of both, side by side, with ``change``: better, worse or '' (within
    ``threshold`` relative, either way)."""
    both = before.add_suffix(" before").join(after.add_suffix(" after"), how="inner")
    # Models without a Fisher divergence (images) have nothing to compare here.
    both = both[both["fisher before"].notna() & both["fisher after"].notna()]
    ratio = both["fisher after"] / both["fisher before"]
    both["change"] = ["better" if r < 1 / (1 + threshold) else "worse" if r > 1 + threshold else ""
                      for r in ratio]
    return both


SAMPLE_METRICS = ("mmd", "c2st_accuracy", "kid")


def sample_ratios(before: pd.DataFrame, after: pd.DataFrame, sampler: str) -> pd.DataFrame:
    """Per sample metric: the run rows of sampler-free models evaluated with ``sampler`` in
    both, and the median and 10 % / 90 % quantiles of the ratio after/before."""
    keys = ["dataset", "method", "architecture", "seed"]

    def rows(frame: pd.DataFrame) -> pd.DataFrame:
        keep = ((frame["role"] == "run") & (frame["sampler"] == sampler)
                & ~frame["uses_sampler"].astype(bool))
        return frame[keep].set_index(keys)

    both = pd.merge(rows(before), rows(after), left_index=True, right_index=True,
                    suffixes=(" before", " after"))
    lines = []
    for name in SAMPLE_METRICS:
        column = f"metric.{name}"
        if f"{column} before" not in both:
            continue
        ratio = (both[f"{column} after"] / both[f"{column} before"]).dropna()
        if len(ratio):
            lines.append({"metric": name, "rows": len(ratio), "median": ratio.median(),
                          "q10": ratio.quantile(0.1), "q90": ratio.quantile(0.9)})
    return pd.DataFrame(lines)


def summary(table: pd.DataFrame) -> list[str]:
    """Counts for the 2-D toys and for the other datasets."""
    dims = {name: getattr(ebmbench.get_dataset(name), "dim", None)
            for name in table.index.get_level_values("dataset").unique()}
    lines = []
    for label, keep in (("2-D toys", lambda d: dims[d] == 2), ("other datasets", lambda d: dims[d] != 2)):
        part = table[[keep(d) for d in table.index.get_level_values("dataset")]]
        if part.empty:
            continue
        counts = part["change"].value_counts()
        lines.append(
            f"{label}: {len(part)} models, {counts.get('better', 0)} better, "
            f"{counts.get('worse', 0)} worse, {counts.get('', 0)} about the same; degenerate in "
            f"some seed {int((part['degenerate before'] > 0).sum())} -> "
            f"{int((part['degenerate after'] > 0).sum())} ({int(part['degenerate before'].sum())} -> "
            f"{int(part['degenerate after'].sum())} seeds)"
        )
    return lines


def by_dataset(table: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: its models, how many are better and worse, the geometric mean of the
    ratio after/before of their Fisher divergences, and the best model on each side."""
    lines = []
    for dataset, part in table.groupby(level="dataset", sort=True):
        ratio = part["fisher after"] / part["fisher before"]
        best = {side: "/".join(str(v) for v in part[f"fisher {side}"].idxmin()[1:] if v != "–")
                for side in ("before", "after")}
        lines.append({
            "dataset": dataset, "models": len(part),
            "better": int((part["change"] == "better").sum()),
            "worse": int((part["change"] == "worse").sum()),
            "geometric mean after/before": float(np.exp(np.log(ratio).mean())),
            "best before": f"{best['before']} {part['fisher before'].min():.4g}",
            "best after": f"{best['after']} {part['fisher after'].min():.4g}",
        })
    return pd.DataFrame(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="a results store or export")
    parser.add_argument("after", type=Path, help="a results store or export")
    parser.add_argument("--method", help="only these methods (comma list)")
    parser.add_argument("--param", default="", help="method parameters to show (comma list)")
    parser.add_argument("--threshold", type=float, default=0.25,
                        help="relative change counted as better or worse (default 0.25)")
    parser.add_argument("--samples", metavar="SAMPLER",
                        help="also compare the sample metrics this evaluation sampler gave the "
                             "sampler-free models")
    args = parser.parse_args()
    methods = args.method.split(",") if args.method else None
    params = [p for p in args.param.split(",") if p]
    before, after = ebmbench.load_results(args.before), ebmbench.load_results(args.after)
    table = compare(models(before, methods, params), models(after, methods, params),
                    args.threshold)
    print(table.reset_index().to_markdown(index=False, floatfmt=".4g"))
    print()
    for line in protocols(before, after, table):
        print(line)
    print()
    for line in summary(table):
        print(line)
    print()
    print(by_dataset(table).to_markdown(index=False, floatfmt=".3g"))
    if args.samples:
        print()
        print(f"samples by {args.samples} of the sampler-free models, ratio after/before:")
        print(sample_ratios(before, after, args.samples).to_markdown(index=False, floatfmt=".3g"))


if __name__ == "__main__":
    main()
