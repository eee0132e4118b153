"""Train every configuration of a grid, as a run would, and print what each reports.

The oracle check of a target. When a tuned model misses a target, either the search missed
a configuration of its space that meets it (the tuning's miss: more trials would find it)
or no configuration does (the method's). Tuning more (``ebmbench run --tune 32`` on the
same store extends a study's 8 trials: the search is deterministic given its stored
trials) answers the first; a grid over the space's corners answers the second. Each grid
point is one run of the harness (``ebmbench.run`` with ``--set`` values: same data,
budget, learning curve and reported checkpoint as a sweep's run, kept in a store, so an
interrupted grid resumes), and the table gives, per point, the test Fisher divergence of
the model the run reports and where on its curve that model is, the validation
Fisher divergence the tuning would have scored it by and the last curve point's.

Usage::

    python scripts/grid_search.py --method cd --sampler ula --architecture quadratic \\
        --dataset correlated_gaussian --grid mcmc_steps=100 \\
        --grid chain_step_scale=0.3,1,3,10,30 --grid lr=0.003,0.01,0.03 [--seeds 0] \\
        [--budget quick] [--results grid.sqlite]

``--grid NAME=V1,V2,…`` sets the method's parameter NAME (repeatable; the grid is their
product). docs/protocol.md section 7 has the grid of ``cd`` with ``ula`` on the quadratic
energy.
"""

from __future__ import annotations

import argparse
import itertools
import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

import ebmbench
from ebmbench.averaging import WEIGHT_AVERAGES
from ebmbench.tuning import reported_point


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """``["lr=0.001,0.01", "mcmc_steps=100"]`` → ``{"lr": ["0.001", "0.01"], …}``: text, as
    ``--set`` gives it, which the method's ``Param`` reads and checks.

    >>> parse_grid(["lr=0.001,0.01", "mcmc_steps=100"])
    {'lr': ['0.001', '0.01'], 'mcmc_steps': ['100']}
    """
    grid: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name or not values:
            raise ValueError(f"--grid takes NAME=V1,V2,…, got {item!r}")
        grid[name] = [v.strip() for v in values.split(",")]
    return grid


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in order.

    >>> grid_points({"lr": [0.1, 0.2], "steps": [5]})
    [{'lr': 0.1, 'steps': 5}, {'lr': 0.2, 'steps': 5}]
    """
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def run_point(point: dict[str, Any], args: argparse.Namespace, store: Path) -> list[dict[str, Any]]:
    """One grid point's runs (one per seed): what each reports."""
    frame = ebmbench.run(
        methods=[args.method], samplers=[args.sampler], architectures=[args.architecture],
        datasets=[args.dataset], metrics=["fisher"], seeds=args.seeds, budget=args.budget,
        overrides={f"method.{args.method}.{k}": v for k, v in point.items()},
        results=store, checkpoints=False, sampler_board=False,
        weight_average=args.weight_average,
    )
    rows = []
    for row in frame.to_dict("records"):
        curve = row.get("curve") or []
        reported = reported_point(row) or {}
        rows.append(point | {
            "seed": row["seed"], "status": row["status"],
            "test fisher": row.get("metric.fisher_divergence", math.nan),
            "reported at": reported.get("progress", math.nan),
            "validation fisher, reported": reported.get("fisher_divergence", math.nan),
            "validation fisher, last": curve[-1].get("fisher_divergence", math.nan) if curve else math.nan,
        })
    return rows


def _print_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:  # as each point finishes: a long grid shows its progress
        print(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in row.items()), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", required=True)
    parser.add_argument("--sampler", default="ula",
                        help="the training sampler (a sampler-free method ignores it)")
    parser.add_argument("--architecture", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--grid", action="append", required=True, metavar="NAME=V1,V2,…")
    parser.add_argument("--seeds", default="0", help="seeds of every point, e.g. 0-2")
    parser.add_argument("--budget", default="quick")
    parser.add_argument("--weight-average", default="best", choices=WEIGHT_AVERAGES,
                        help="what each run reports, as ebmbench run's --weight-average")
    parser.add_argument("--results", default=None,
                        help="store for the runs (default: a temporary one)")
    args = parser.parse_args(argv)
    store = Path(args.results) if args.results else Path(tempfile.mkdtemp()) / "grid.sqlite"
    # Bad input (a malformed --grid, an unknown name or value): one line, exit 2.
    try:
        grid = parse_grid(args.grid)
    except ValueError as exc:
        parser.error(str(exc))
    rows = []
    for point in grid_points(grid):
        try:
            rows += _print_rows(run_point(point, args, store))
        except ebmbench.UserError as exc:
            parser.error(str(exc))
    table = pd.DataFrame(rows)
    print()
    print(table.to_markdown(index=False, floatfmt=".3g"))
    scored = table["validation fisher, reported"].dropna()
    if len(scored):
        best = table.loc[scored.idxmin()]
        print(f"\nlowest validation Fisher divergence a run reports: "
              f"{best['validation fisher, reported']:.3g} ("
              + ", ".join(f"{k}={best[k]}" for k in grid) + f", seed {best['seed']})")


if __name__ == "__main__":
    main()
