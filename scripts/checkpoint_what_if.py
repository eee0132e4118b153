"""What ``--checkpoint best`` would report for trainings that ran under ``last``: applies
:func:`ebmbench.early_stopping.select_point` to each 2-D training's published learning curve
(validation split) and counts the trainings whose best point is not their last, and the
degenerate ones with an earlier point that passes the NLL test.

The reference for the test is the row's ``gaussian_nll`` (the Gaussian's NLL on the test
split), standing in for the validation split's, which a published row does not keep; both
are the same Gaussian's NLL on held-out samples of the dataset. Nothing is trained::

    python scripts/checkpoint_what_if.py leaderboards/results.csv   # a publication before 7ab4c61
"""

from __future__ import annotations

import argparse
import math

from ebmbench.degenerate import nll_margin
from ebmbench.early_stopping import select_point
from ebmbench.store import read_results


def what_if(path: str) -> dict[str, int]:
    """Counts over the 2-D trainings of ``path`` (a store or export)."""
    frame = read_results(path)
    runs = frame[(frame["role"].fillna("run") == "run") & frame["status"].isin(["ok", "degenerate"])]
    runs = runs.drop_duplicates("train_key")
    out = {"trainings": 0, "earlier": 0, "degenerate": 0, "rescued": 0}
    for _, row in runs.iterrows():
        curve, reference = row["curve"], row.get("metric.gaussian_nll")
        if not isinstance(curve, list) or not curve or "nll" not in curve[-1] \
                or reference is None or math.isnan(reference):
            continue
        index = select_point(curve, "fisher_divergence", reference)
        out["trainings"] += 1
        earlier = index is not None and index != len(curve) - 1
        out["earlier"] += earlier
        if row["status"] == "degenerate":
            out["degenerate"] += 1
            out["rescued"] += earlier and curve[index]["nll"] <= reference + nll_margin(reference)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a results store or export (a published results.csv)")
    counts = what_if(parser.parse_args().results)
    print(f"{counts['trainings']} 2-D trainings: {counts['earlier']} report a point before their end; "
          f"{counts['degenerate']} degenerate, {counts['rescued']} of them with an earlier sound point")


if __name__ == "__main__":
    main()
