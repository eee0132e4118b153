"""What tuning chose, per method and hyper-parameter, across the studies of a tuned sweep.

After a tuned publication the quick defaults are set to what tuning chose most often, so
that an untuned ``ebmbench run`` is sensible too (docs/protocol.md, "Honest defaults"). This
script reads the tuned runs of a results store (or export) and prints, for every searched
hyper-parameter of every method, the value to make the default:

- for a ``choice`` or integer space, the value chosen by the most studies (ties: the
  smaller);
- for a continuous space, the median of the chosen values in log space (log-uniform) or
  in value (uniform), rounded to one significant figure.

Usage::

    python scripts/tuned_defaults.py leaderboards/results.csv [--markdown]
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import ebmbench
from ebmbench.tuning import SCHEDULE


def _one_significant(value: float) -> float:
    if value == 0:
        return 0.0
    digits = -int(math.floor(math.log10(abs(value))))
    return round(value, digits)


def chosen_values(frame: Any) -> dict[str, dict[str, list[Any]]]:
    """method → parameter → the value each tuned study chose (one per study)."""
    seen: set[str] = set()
    out: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for _, row in frame.iterrows():
        record = (row.get("hyperparams") or {}).get("tuning") or {}
        study = record.get("study")
        if not study or study in seen or "chosen" not in record:
            continue
        seen.add(study)
        for name, value in record["chosen"].items():
            if name == SCHEDULE:  # the harness's (--lr-schedule tuned), not a method default
                continue
            out[row["method"]][name].append(value)
    return out


def proposal(method: str, name: str, values: list[Any]) -> Any:
    """The default to propose for ``method``'s ``name`` from the values studies chose."""
    space = type(ebmbench.get_method(method)).params[name].search
    if space is None or space.kind in ("choice", "int"):
        counts = Counter(values)
        best = max(counts.values())
        return min(v for v, c in counts.items() if c == best)
    if space.kind == "log_uniform":
        return _one_significant(math.exp(statistics.median(math.log(v) for v in values)))
    return _one_significant(statistics.median(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a results store or export")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    frame = ebmbench.load_results(args.results)
    frame = frame[frame.get("role", "run") == "run"] if "role" in frame else frame
    table = chosen_values(frame)
    if args.markdown:
        print("| method | parameter | default now | studies | proposed |")
        print("|---|---|---|---|---|")
    for method in sorted(table):
        params = type(ebmbench.get_method(method)).params
        for name in sorted(table[method]):
            values = table[method][name]
            now = params[name].default
            new = proposal(method, name, values)
            if args.markdown:
                print(f"| `{method}` | `{name}` | {now} | {len(values)} | {new} |")
            else:
                print(f"{method}.{name}: {now} -> {new} ({len(values)} studies)")


if __name__ == "__main__":
    main()
