"""Where a sweep's CPU time went, from py-spy's sampled stacks of the driver and its workers.

Record the default sweep from outside (py-spy is not a dependency of ebmbench)::

    py-spy record --subprocesses --rate 20 --format raw -o stacks.txt -- \\
        ebmbench run --all --results sweep/results.sqlite --no-progress
    python scripts/profile_breakdown.py stacks.txt --rate 20

Each sampled stack is put in the first category whose ebmbench frame it holds (training,
evaluation sampling, one metric, the sampler board, the render, imports), and the samples
are turned into CPU seconds (py-spy samples only threads that are running, so idle
waiting does not count).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

#: (category, a frame that marks it), tried in order; metrics are named after their module.
CATEGORIES = (
    ("training: learning-curve points", "__call__ (ebmbench/learning_curve.py"),
    ("training", "_train (ebmbench/runner.py"),
    ("sampler board", "ebmbench/sampler_board.py"),
    ("render", "write_leaderboards ("),
)
_METRIC = re.compile(r"compute \((plugins/(?:metrics|images)/\w+\.py):\d+\)")
_SAMPLER = re.compile(r"sample \((?:plugins/samplers|ebmbench/mcmc)")


def category(stack: str) -> str:
    """The category of one ``;``-joined stack."""
    for name, marker in CATEGORIES:
        if marker in stack:
            return name
    if "evaluate_spec (" in stack:
        metric = _METRIC.search(stack)
        if metric:
            return f"metric: {Path(metric.group(1)).stem}"
        return "evaluation sampling" if _SAMPLER.search(stack) else "evaluation, other"
    if "_find_and_load" in stack:
        return "imports"
    return "other"


def breakdown(lines, rate: float) -> Counter:
    """CPU seconds per category from py-spy's raw lines (``stack count``)."""
    seconds: Counter = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack:
            seconds[category(stack)] += int(count) / rate
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", type=Path, help="py-spy record --format raw output")
    parser.add_argument("--rate", type=float, default=20, help="py-spy's samples per second")
    args = parser.parse_args()
    with args.stacks.open(encoding="utf-8") as lines:
        seconds = breakdown(lines, args.rate)
    print("| where | CPU s |\n|---|---|")
    for name, value in seconds.most_common():
        print(f"| {name} | {value:.0f} |")


if __name__ == "__main__":
    main()
