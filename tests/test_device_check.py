"""scripts/device_check.py --dry-run: the GPU check's code paths on the CPU, tiny sizes.

The real run (on a GPU) is what fills docs/scale.md; here every part must run and the
report must hold what the real one will: the cuda tests' counts, one benchmark row per
case and sampler with every step implementation checked against eager and timed against
the bare loop, and the sweep's rows with their status, precision and cost.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import load_script


@pytest.fixture(scope="module")
def device_check():
    return load_script("device_check")


def test_dry_run_runs_every_part_and_writes_the_report(device_check, tmp_path):
    out = tmp_path / "report.json"
    assert device_check.main(["--dry-run", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["environment"]["device"] == "cpu"
    tests = report["tests"]
    assert tests["returncode"] == 0 and tests["tests"] >= 5
    assert tests["skipped"] == tests["tests"]  # every cuda test skips without a GPU
    rows = report["benchmark"]
    assert [(r["case"], r["sampler"]) for r in rows] == [("mlp2d-4096", "ula"),
                                                         ("conv28-128", "ula")]
    for row in rows:
        assert row["eager_vs_bare_max_abs"] < 1e-5 and row["compile_vs_eager_max_abs"] < 1e-5
        assert row["cuda_graph_reproducible"] and row["cuda_graph_finite"]
        assert "on cpu, so the steps ran eagerly" in row["cuda_graph_note"]
        for impl in ("eager", "compile", "cuda_graph"):
            assert row[f"{impl}_ms"] > 0
            assert row[f"{impl}_speedup"] == pytest.approx(row["bare_ms"] / row[f"{impl}_ms"],
                                                           rel=0.01)
    assert "| mlp2d-4096 | `ula` |" in report["table_markdown"]
    assert set(report["goal_mlp_2x"]) == {"best_speedup", "met"}
    sweep = {r["method"]: r for r in report["sweep"]}
    assert set(sweep) == {"dsm", "pcd"}
    for row in sweep.values():
        assert row["status"] == "ok", row["reason"]
        assert row["precision"] == "fp32" and row["peak_memory_mb"] > 0
        assert row["metrics"]["grad_evals"] > 0


def test_without_a_gpu_the_real_check_refuses_politely(device_check, tmp_path, capsys):
    if device_check.torch.cuda.is_available():
        pytest.skip("a GPU is here")
    assert device_check.main(["--out", str(tmp_path / "r.json")]) == 2
    assert "run with --dry-run, or on a GPU" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
