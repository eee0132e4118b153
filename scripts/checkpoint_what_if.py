"""What ``--checkpoint best`` would report for trainings that ran under ``last``: applies
:func:`ebmbench.early_stopping.select_point` to each 2-D training's published learning curve
(validation split) and counts the trainings whose best point is not their last, and the
degenerate ones with an earlier point that passes the NLL test. For trainings that ran
under ``best`` it also counts what they reported (``compute["reported_point"]``): before
their end, and at half their run.

The reference for the test is the row's ``gaussian_nll`` (the Gaussian's NLL on the test
split), standing in for the validation split's, which a published row does not keep; both
are the same Gaussian's NLL on held-out samples of the dataset. Nothing is trained::

    python scripts/checkpoint_what_if.py leaderboards/results.csv   # a publication before 7ab4c61
"""

from __future__ import annotations

import argparse
import math

from ebmbench.early_stopping import point_rank, select_point
from ebmbench.store import read_results


def what_if(path: str) -> dict[str, int]:
    """Counts over the 2-D trainings of ``path`` (a store or export)."""
    frame = read_results(path)
    runs = frame[(frame["role"].fillna("run") == "run") & frame["status"].isin(["ok", "degenerate"])]
    runs = runs.drop_duplicates("train_key")
    out = {"trainings": 0, "earlier": 0, "degenerate": 0, "rescued": 0,
           "reported_earlier": 0, "reported_at_half": 0}
    for _, row in runs.iterrows():
        curve, reference = row["curve"], row.get("metric.gaussian_nll")
        if not isinstance(curve, list) or not curve or "nll" not in curve[-1] \
                or reference is None or math.isnan(reference):
            continue
        index = select_point(curve, "fisher_divergence", reference)
        out["trainings"] += 1
        reported = (row["compute"] or {}).get("reported_point")
        reported = None if reported is None or math.isnan(reported) else int(reported)
        if reported is not None and reported != len(curve) - 1:
            out["reported_earlier"] += 1
            out["reported_at_half"] += abs(curve[reported]["progress"] - 0.5) < 0.05
        earlier = index is not None and index != len(curve) - 1
        out["earlier"] += earlier
        if row["status"] == "degenerate":
            out["degenerate"] += 1
            out["rescued"] += earlier and point_rank(curve[index], "fisher_divergence", reference)[0] == 0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a results store or export (a published results.csv)")
    counts = what_if(parser.parse_args().results)
    print(f"{counts['trainings']} 2-D trainings: {counts['earlier']} report a point before their end; "
          f"{counts['degenerate']} degenerate, {counts['rescued']} of them with an earlier sound point; "
          f"{counts['reported_earlier']} reported a point before their end under --checkpoint best, "
          f"{counts['reported_at_half']} of them the point at half their run")


if __name__ == "__main__":
    main()
