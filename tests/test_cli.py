"""The command line end to end, as a user runs it: real processes in a temp directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ebmbench.cli import main
from tests.helpers import TOY_METHOD_SOURCE

SLICE = ["--method", "dsm", "--sampler", "ula", "--dataset", "eight_gaussians",
         "--architecture", "mlp", "--metric", "fisher,cost", "--budget", "smoke"]


def ebmbench(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "ebmbench.cli", *args], cwd=cwd, capture_output=True, text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.mark.parametrize("args, names", [
    (["run", "--method", "nope"], ["'nope'", "Valid methods:", "dsm"]),
    (["run", "--method", "dsn"], ["Did you mean 'dsm'?"]),
    (["run", "--all", "--budget", "huge"], ["'huge'", "smoke", "quick", "full"]),
    (["run", "--all", "--set", "method.dsm.sigma=abc"], ["bad value 'abc'", "method 'dsm'.sigma"]),
    (["run", "--all", "--set", "nonsense"], ["bad --set 'nonsense'", "kind.name.param=value"]),
    (["run", "--all", "--seeds", "a,b"], ["bad --seeds 'a,b'"]),
    (["run"], ["say what to run"]),
    (["export", "--results", "missing.sqlite"], ["no results store at 'missing.sqlite'"]),
    (["--plugins-dir", "nowhere", "list"], ["nowhere"]),
    (["list", "gizmos"], ["'gizmos'", "method"]),
])
def test_user_errors_exit_2_with_a_short_message_and_no_traceback(
    tmp_path, monkeypatch, capsys, fresh_plugins, args, names
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr()
    assert exit_info.value.code == 2, out.err
    assert "Traceback" not in out.err + out.out
    for name in names:
        assert name in out.err, out.err


def test_a_user_error_in_a_real_process_exits_2_without_traceback(tmp_path):
    proc = ebmbench("run", "--method", "nope", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: unknown method 'nope'") and "Traceback" not in proc.stderr


def test_run_writes_results_and_leaderboard_then_resumes_without_training(tmp_path):
    first = ebmbench("run", *SLICE, "--seeds", "0,1", cwd=tmp_path)
    assert "2 runs: 2 ok" in first.stdout and "(2 run now, 0 already" in first.stdout
    results = tmp_path / "ebmbench-results" / "results.sqlite"
    board = (tmp_path / "ebmbench-results" / "results-leaderboards" / "eight_gaussians.md").read_text()
    assert "| 1 " in board and "dsm" in board and "fisher_divergence ↓" in board
    second = ebmbench("run", *SLICE, "--seeds", "0,1", cwd=tmp_path)
    assert "(0 run now, 2 already in" in second.stdout
    assert results.exists()


def test_export_and_leaderboard_commands(tmp_path):
    ebmbench("run", *SLICE, "--no-leaderboard", "--no-sampler-board", cwd=tmp_path)
    out = ebmbench("export", "--format", "csv", "-o", "runs.csv", cwd=tmp_path)
    frame = pd.read_csv(tmp_path / "runs.csv")
    assert out.stdout.strip() == "runs.csv" and list(frame["status"]) == ["ok"]
    assert frame["metric.fisher_divergence"].notna().all()
    out = ebmbench("leaderboard", "--out", "boards", "--html", "site", cwd=tmp_path)
    assert {p.name for p in (tmp_path / "boards").iterdir()} == {
        "README.md", "eight_gaussians.md", "eight_gaussians-curves.png", "eight_gaussians-pareto.png"}
    assert {p.name for p in (tmp_path / "site").glob("*.html")} == {"index.html", "eight_gaussians.html"}
    assert (tmp_path / "site" / "assets" / "dt_bundle.js").is_file()
    assert out.stdout.strip().endswith("site/index.html")


def test_plugins_dir_method_is_listed_run_and_ranked(tmp_path):
    plugins = tmp_path / "myplugins"
    plugins.mkdir()
    (plugins / "my_method.py").write_text(TOY_METHOD_SOURCE.format(cls="Mine", name="my_method"))
    (plugins / "broken.py").write_text("raise RuntimeError('this plugin is broken')\n")
    listing = ebmbench("--plugins-dir", str(plugins), "list", "method", cwd=tmp_path)
    assert "my_method" in listing.stdout and "dsm" in listing.stdout
    assert "broken.py" in listing.stdout and "this plugin is broken" in listing.stdout
    args = [a if a != "dsm" else "dsm,my_method" for a in SLICE]
    ebmbench("--plugins-dir", str(plugins), "run", *args, cwd=tmp_path)
    board = (tmp_path / "ebmbench-results" / "results-leaderboards" / "eight_gaussians.md").read_text()
    assert "my_method" in board and "dsm" in board


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "ebmbench"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "run" in proc.stdout and "leaderboard" in proc.stdout


def test_a_sweep_without_workers_runs_in_worker_processes(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "EBMBENCH_WORKERS"}
    proc = subprocess.run(
        [sys.executable, "-m", "ebmbench.cli", "run", *SLICE, "--seeds", "0,1", "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 runs: 2 ok" in proc.stdout
