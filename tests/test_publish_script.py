"""scripts/publish_results.py turns a sweep's store into a checkable published folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

import ebmbench
from ebmbench.leaderboard import PROVENANCE_FILE, check_leaderboards
from ebmbench.store import read_results

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "publish_results.py"


def test_publish_copies_results_figures_and_provenance_and_passes_the_check(tmp_path):
    store = tmp_path / "sweep" / "results.sqlite"
    ebmbench.run(methods=["dsm", "exact_sm"], samplers=["ula"], architectures=["mlp", "quadratic"],
                 datasets=["eight_gaussians"], metrics=["fisher", "density_figure"],
                 seeds=[0, 1], budget="smoke", results=store)
    out = tmp_path / "published"
    (out / "artifacts" / "stale").mkdir(parents=True)  # from an earlier publication
    proc = publish(store, out, "--command", "ebmbench run --method dsm,exact_sm",
                   "--command", "ebmbench run --seeds 0-1", "--wall-seconds", "90",
                   "--commit", "abc1234")
    assert proc.returncode == 0, proc.stderr
    assert check_leaderboards(out / "results.csv", out) == []
    published, original = read_results(out / "results.csv"), read_results(store)
    assert sorted(published["run_id"]) == sorted(original["run_id"])
    assert "traceback" not in published.columns
    published, original = (f.sort_values("run_id").reset_index(drop=True) for f in (published, original))
    pd.testing.assert_series_equal(published["metric.fisher_divergence"],
                                   original["metric.fisher_divergence"])
    ok = original["status"] == "ok"
    assert list(published.loc[ok, "hyperparams"]) == list(original.loc[ok, "hyperparams"])
    assert (~ok).sum() == 4  # the quadratic energy is skipped on a non-Gaussian dataset
    assert all(h == {} for h in published.loc[~ok, "hyperparams"])
    assert not (out / "artifacts" / "stale").exists()
    figures = sorted(out.glob("artifacts/*/density.png"))
    assert len(figures) == 2  # the linked ones: each combination's first seed, of 4 runs
    from PIL import Image

    assert Image.open(figures[0]).mode == "P"  # palette-compressed
    page = (out / "eight_gaussians.md").read_text()
    for figure in figures:
        assert f"artifacts/{figure.parent.name}/density.png" in page
    run = (out / PROVENANCE_FILE).read_text()
    assert run.index("run --method dsm,exact_sm") < run.index("run --seeds 0-1")
    for text in ("ebmbench run --method dsm,exact_sm", "abc1234", "1.5 min", "ok 4", "## Hardware",
                 f"torch {__import__('torch').__version__.split('+')[0]}"):
        assert text in run, text

    # A wrong store path is an error before anything published is touched.
    proc = publish(tmp_path / "nowhere.sqlite", out, "--command", "x")
    assert proc.returncode != 0
    assert check_leaderboards(out / "results.csv", out) == []


def publish(store: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(store), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=300)
