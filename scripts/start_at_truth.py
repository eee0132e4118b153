"""Train each published quadratic-energy model again, starting at the truth.

On a Gaussian dataset the quadratic energy contains the data's density, so a method whose
objective is minimised by the truth, started there, stays within its gradient noise of it.
A method whose stationary point lies elsewhere drifts away whatever its optimiser does:
short-run contrastive divergence, whose chains from noise do not mix in K steps
(Nijkamp et al. 2019, "non-convergent" short-run MCMC), or denoising score matching, whose
optimum is the data convolved with its noise, N(μ, Σ + σ²I) (Vincent 2011). So the
control separates a method's bias at its configuration from its optimisation: a model
that misses a target but also drifts from the truth to about where it ended would miss
it from any start, and no learning rate or longer run fixes that.

For every quadratic model in the results (one per method, and training sampler for
methods that train with one), this script reruns the configuration its seeds ran with
(the tuned choice, from the runs' ``hyperparams``) with ``architecture.quadratic.start=
truth`` (docs/protocol.md, section 7), at the same budget, and prints the Fisher
divergence at the start (the learning curve's first point), the end and the published
value.

Usage::

    python scripts/start_at_truth.py leaderboards/results.csv [--dataset correlated_gaussian]
        [--seeds 0] [--results truth.sqlite] [--method cd] [--sampler hmc]

``--results`` keeps the runs in a store, so that an interrupted check resumes.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

import ebmbench
from ebmbench.leaderboard.aggregate import configuration_text


def published_models(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """One line per quadratic model of ``dataset``: method, training sampler (or "–"),
    the settings its first seed ran with (``overrides`` for :func:`ebmbench.run`: the
    method's, the dataset's, the energy's and, for a method that trains with its sampler,
    the sampler's), its budget, and the published Fisher divergence (mean over its
    finished seeds)."""
    runs = frame[(frame["dataset"] == dataset) & (frame["architecture"] == "quadratic")
                 & (frame["role"] == "run")]
    lines = []
    for (method, sampler), group in runs.groupby(
        [runs["method"], runs["sampler"].where(runs["uses_sampler"].astype(bool), "–")]
    ):
        first = group.sort_values("seed").iloc[0]
        per_seed = group.drop_duplicates("train_key")["metric.fisher_divergence"]
        hyperparams = first["hyperparams"] or {}
        kinds = {"method": method, "dataset": dataset, "architecture": "quadratic"}
        if sampler != "–":
            kinds["sampler"] = sampler
        lines.append({
            "method": method, "sampler": sampler, "budget": first["budget"],
            "overrides": {f"{kind}.{name}.{k}": v for kind, name in kinds.items()
                          for k, v in (hyperparams.get(kind) or {}).items()},
            "configuration": configuration_text(hyperparams),
            # The published model's averaging rule (rows made before the option: none).
            "weight_average": hyperparams.get("weight_average", "none"),
            "published": float(per_seed.mean()),
        })
    return pd.DataFrame(lines)


def from_truth(model: dict[str, Any], dataset: str, seeds: list[int] | str, budget: str,
               results: Path) -> dict[str, float]:
    """Train ``model``'s configuration from the truth; its Fisher divergence at the first
    curve point and at the end (means over ``seeds``)."""
    sets = dict(model["overrides"]) | {"architecture.quadratic.start": "truth"}
    try:
        frame = ebmbench.run(
            methods=[model["method"]], architectures=["quadratic"], datasets=[dataset],
            samplers=[model["sampler"] if model["sampler"] != "–" else "ula"], metrics=["fisher"],
            seeds=seeds, budget=budget, overrides=sets, results=results, checkpoints=False,
            # Where the method takes the truth by the end of its budget is the control's
            # question: its best checkpoint would be the start, and hide its bias.
            checkpoint="last", weight_average=model.get("weight_average", "none"),
        )
    except ebmbench.UserError as exc:  # e.g. a published third-party method not installed here
        return {"start": math.nan, "end": math.nan, "status": f"not run: {exc}"}
    done = frame[frame["status"] == "ok"]
    if not len(done):
        return {"start": math.nan, "end": math.nan, "status": ", ".join(sorted(set(frame["status"])))}
    return {
        "start": float(done["curve"].map(lambda c: c[0]["fisher_divergence"]).mean()),
        "end": float(done["metric.fisher_divergence"].mean()),
        "status": "ok" if len(done) == len(frame) else f"{len(done)}/{len(frame)} ok",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a results store or export")
    parser.add_argument("--dataset", default="correlated_gaussian")
    parser.add_argument("--seeds", default="0", help="seeds to run from the truth, e.g. 0-2")
    parser.add_argument("--budget", default=None,
                        help="budget of the runs from the truth (default: each model's own)")
    parser.add_argument("--results", dest="store", default=None,
                        help="store for the runs from the truth (default: a temporary one)")
    parser.add_argument("--method", action="append", default=None,
                        help="only these methods (repeatable)")
    parser.add_argument("--sampler", action="append", default=None,
                        help="only models trained with these samplers (repeatable)")
    args = parser.parse_args(argv)
    models = published_models(ebmbench.load_results(args.results), args.dataset)
    if args.method:
        models = models[models["method"].isin(args.method)]
    if args.sampler:
        models = models[models["sampler"].isin(args.sampler)]
    store = Path(args.store) if args.store else Path(tempfile.mkdtemp()) / "truth.sqlite"
    body = []
    for model in models.to_dict("records"):
        measured = from_truth(model, args.dataset, args.seeds, args.budget or model["budget"], store)
        body.append([model["method"], model["sampler"], model["configuration"],
                     f"{model['published']:.3g}", f"{measured['start']:.3g}",
                     f"{measured['end']:.3g}", measured["status"]])
        print(f"{model['method']}/{model['sampler']}: from the truth {measured['start']:.3g} → "
              f"{measured['end']:.3g} (published {model['published']:.3g})", flush=True)
    print()
    print(tabulate(body, headers=["method", "sampler", "configuration", "published",
                                  "from the truth: first point", "end", "status"],
                   tablefmt="github", disable_numparse=True))


if __name__ == "__main__":
    main()
