"""scripts/publish_results.py turns a sweep's store into a small, checkable published folder
that names nothing of the machine it was made on."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import ebmbench
from ebmbench.leaderboard import PROVENANCE_FILE, check_leaderboards
from ebmbench.published import published_files
from ebmbench.store import ResultStore, read_not_applicable, read_results

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "publish_results.py"
#: What a path of a publishing machine looks like.
MACHINE_PATH = re.compile(r"(/root/|/work/|/home/|/tmp/|/Users/|/private/var/)")


def test_publish_writes_a_light_checkable_export_with_galleries_and_no_machine_paths(tmp_path):
    store = tmp_path / "sweep" / "results.sqlite"
    ebmbench.run(methods=["dsm", "exact_sm"], samplers=["ula", "mala"], architectures=["mlp", "quadratic"],
                 datasets=["eight_gaussians"], metrics=["fisher", "density_figure"],
                 seeds=[0, 1], budget="smoke", results=store)
    # A skip for missing data names the machine's cache path: the publication must not.
    with ResultStore.open(store) as s:
        s.write({"run_id": "offline", "train_key": "offline", "method": "dsm", "sampler": "ula",
                 "architecture": "mlp", "dataset": "mnist", "seed": 0, "budget": "smoke", "status": "skipped",
                 "reason": f"no usable local copy in {tmp_path}/cache/mnist; put the files there",
                 "hyperparams": {"dataset": {"data_dir": str(tmp_path / "cache")}}})
        s.write({"run_id": "trial0", "train_key": "trial0", "method": "dsm", "sampler": "ula",
                 "architecture": "mlp", "dataset": "eight_gaussians", "seed": 0, "budget": "smoke",
                 "status": "ok", "role": "trial", "trial": 0})
    out = tmp_path / "published"
    (out / "artifacts" / "stale").mkdir(parents=True)  # per-run figures of an earlier layout
    proc = publish(store, out, "--command", f"ebmbench run --method dsm,exact_sm --results {store}",
                   "--command", "ebmbench run --seeds 0-1", "--wall-seconds", "90",
                   "--commit", "abc1234", "--note", f"scratch space was {tmp_path}/scratch")
    assert proc.returncode == 0, proc.stderr
    assert check_leaderboards(out / "results.csv", out) == []
    assert not (out / "artifacts").exists()

    # The export: every run, the metric values as stored, configurations by hash.
    published, original = read_results(out / "results.csv"), read_results(store)
    # Every run, but no tuning trial (each run keeps its study's record).
    assert sorted(published["run_id"]) == sorted(set(original["run_id"]) - {"trial0"})
    original = original[original["run_id"] != "trial0"]
    assert "traceback" not in published.columns
    published, original = (f.sort_values("run_id").reset_index(drop=True) for f in (published, original))
    np.testing.assert_allclose(published["metric.fisher_divergence"].astype(float),
                               original["metric.fisher_divergence"].astype(float), rtol=1e-8)
    ok = original["status"] == "ok"
    assert list(published.loc[ok, "hyperparams"]) == list(original.loc[ok, "hyperparams"])
    runs = pd.read_csv(out / "results.csv")
    assert "hyperparams" not in runs.columns and runs["config"].nunique() < len(runs)
    blob = json.loads(published_files(out / "results.csv")["configurations"].read_text())
    assert len(blob["parts"]["hyperparams.metrics"]) == 1  # stored once, not once per run

    # Incompatible combinations (quadratic on a non-Gaussian toy) are counted, not runs.
    assert not (original["architecture"] == "quadratic").any()
    counts = read_not_applicable(out / "results.csv")
    assert counts["combinations"].sum() == 4 and "quadratic" in counts["reason"].iloc[0]
    assert "4 combinations not applicable" in (out / "eight_gaussians.md").read_text()

    # One gallery per 2-D dataset instead of a picture per run.
    gallery = out / "eight_gaussians-gallery.png"
    assert gallery.is_file() and gallery.stat().st_size < 200_000
    from PIL import Image

    assert Image.open(gallery).mode == "P"  # palette-compressed
    assert "![gallery](eight_gaussians-gallery.png)" in (out / "eight_gaussians.md").read_text()
    assert not list(out.glob("**/density.png"))

    # No file names the machine: not the reason, not the hyper-parameters, not RUN.md.
    for path in out.rglob("*"):
        if path.suffix in (".md", ".csv", ".json"):
            text = path.read_text(encoding="utf-8")
            assert not MACHINE_PATH.search(text), (path.name, MACHINE_PATH.search(text))
    reason = published.set_index("run_id").loc["offline", "reason"]
    assert reason == "no usable local copy in …/mnist; put the files there"

    run = (out / PROVENANCE_FILE).read_text()
    assert run.index("run --method dsm,exact_sm") < run.index("run --seeds 0-1")
    for text in ("--results …/results.sqlite", "abc1234", "1.5 min", "## Hardware",
                 "Tuning trials by status: ok 1 (not published",
                 "scratch space was …/scratch", f"torch {__import__('torch').__version__.split('+')[0]}"):
        assert text in run, text

    # A wrong store path is an error before anything published is touched.
    proc = publish(tmp_path / "nowhere.sqlite", out, "--command", "x")
    assert proc.returncode != 0
    assert check_leaderboards(out / "results.csv", out) == []


def publish(store: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(store), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=600)


def test_onto_replaces_the_slices_a_later_sweep_ran_and_keeps_every_other_row(tmp_path):
    first, later = tmp_path / "first" / "results.sqlite", tmp_path / "later" / "results.sqlite"
    common = dict(methods=["dsm"], samplers=["ula"], architectures=["mlp"],
                  metrics=["fisher", "density_figure"], budget="smoke")
    ebmbench.run(datasets=["eight_gaussians", "two_moons"], seeds=[0, 1], results=first, **common)
    ebmbench.run(datasets=["two_moons"], seeds=[2], results=later, **common)
    out = tmp_path / "published"
    assert publish(first, out, "--command", "ebmbench run --seeds 0-1", "--commit", "aaa1111",
                   "--wall-seconds", "60", "--note", "the first sweep").returncode == 0
    before = read_results(out / "results.csv")
    gallery = (out / "eight_gaussians-gallery.png").read_bytes()
    proc = publish(later, out, "--onto", "--command", f"ebmbench run --seeds 2 --results {later}",
                   "--commit", "bbb2222", "--wall-seconds", "30", "--note", "the later sweep")
    assert proc.returncode == 0, proc.stderr
    assert check_leaderboards(out / "results.csv", out) == []
    after = read_results(out / "results.csv")
    # two_moons (mlp) is the later sweep's alone (seed 2); eight_gaussians is as published.
    moons = after[after["dataset"] == "two_moons"]
    assert sorted(moons["seed"]) == [2] and set(moons["run_id"]) == set(read_results(later)["run_id"])
    kept = lambda f: f[f["dataset"] == "eight_gaussians"].sort_values("run_id").reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(kept(after)[["run_id", "status", "metric.fisher_divergence"]],
                                  kept(before)[["run_id", "status", "metric.fisher_divergence"]])
    assert (out / "eight_gaussians-gallery.png").read_bytes() == gallery  # not drawn again
    assert (out / "two_moons-gallery.png").is_file()
    run_md = (out / PROVENANCE_FILE).read_text()
    assert "ebmbench run --seeds 0-1" in run_md
    assert "ebmbench run --seeds 2 --results …/results.sqlite" in run_md
    assert "- the first sweep" in run_md and "- the later sweep" in run_md
    assert "replaced every published run of two_moons (mlp)" in run_md
    assert "`aaa1111, then bbb2222`" in run_md and "Wall-clock time of the sweep: 1.5 min." in run_md
    assert "Runs by status: ok 3." in run_md and run_md.count("## Hardware") == 1
    assert not MACHINE_PATH.search(run_md)
    # Merging the same sweep again changes no row.
    assert publish(later, out, "--onto", "--command", "again").returncode == 0
    again = read_results(out / "results.csv")
    assert sorted(again["run_id"]) == sorted(after["run_id"])


def test_onto_needs_a_publication_to_merge_into(tmp_path):
    store = tmp_path / "s" / "results.sqlite"
    ebmbench.run(methods=["dsm"], samplers=["ula"], architectures=["mlp"], datasets=["two_moons"],
                 metrics=["fisher"], budget="smoke", results=store)
    proc = publish(store, tmp_path / "empty", "--onto", "--command", "x")
    assert proc.returncode != 0 and "no publication in" in proc.stderr


def test_onto_methods_replaces_one_methods_rows_and_keeps_the_others(tmp_path):
    """After a change to one method's code, its rerun replaces that method's rows alone;
    a sweep holding other methods' runs is refused under --methods."""
    first, later = tmp_path / "first" / "results.sqlite", tmp_path / "later" / "results.sqlite"
    common = dict(samplers=["ula"], architectures=["mlp"], datasets=["two_moons"],
                  metrics=["fisher", "density_figure"], budget="smoke", sampler_board=False)
    ebmbench.run(methods=["dsm", "exact_sm"], seeds=[0], results=first, **common)
    ebmbench.run(methods=["dsm"], seeds=[1], results=later, **common)
    out = tmp_path / "published"
    assert publish(first, out, "--command", "ebmbench run --seeds 0").returncode == 0
    before = read_results(out / "results.csv")
    proc = publish(later, out, "--onto", "--methods", "dsm", "--command", "ebmbench run --method dsm")
    assert proc.returncode == 0, proc.stderr
    assert check_leaderboards(out / "results.csv", out) == []
    after = read_results(out / "results.csv")
    assert sorted(after.loc[after["method"] == "dsm", "seed"]) == [1]
    kept = lambda f: sorted(f.loc[f["method"] == "exact_sm", "run_id"])  # noqa: E731
    assert kept(after) == kept(before) and kept(before)
    run_md = (out / PROVENANCE_FILE).read_text()
    assert ("--onto --methods dsm`: their rows replaced every published run of dsm on "
            "two_moons (mlp)") in run_md
    # The gallery still shows exact_sm's model with the old dsm: RUN.md says it predates.
    assert "The gallery figures of two_moons predate the merge" in run_md
    # A sweep with another method's runs cannot be merged as one method's.
    both = tmp_path / "both" / "results.sqlite"
    ebmbench.run(methods=["dsm", "exact_sm"], seeds=[2], results=both, **common)
    proc = publish(both, out, "--onto", "--methods", "dsm", "--command", "x")
    assert proc.returncode != 0 and "also holds runs of exact_sm" in proc.stderr
    assert sorted(read_results(out / "results.csv")["run_id"]) == sorted(after["run_id"])
    proc = publish(later, out, "--methods", "dsm", "--command", "x")
    assert proc.returncode != 0 and "it needs --onto" in proc.stderr
