"""Durability: a driver killed with SIGKILL loses no finished run, and reruns complete the set.

Real ``ebmbench run`` processes on a shared SQLite store: one killed mid-sweep and run
again; two running at once on overlapping selections.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_fault_isolation import write_fault_plugins

SEEDS = 8


def command(plugins: Path, results: Path, seeds: str, *extra: str) -> list[str]:
    """An ``ebmbench run`` of the ``nap`` method (0.5 s of sleep per run), one run per seed."""
    return [
        sys.executable, "-m", "ebmbench.cli", "--plugins-dir", str(plugins), "run",
        "--method", "nap", "--sampler", "ula", "--dataset", "eight_gaussians",
        "--architecture", "mlp", "--metric", "fisher", "--budget", "smoke", "--seeds", seeds,
        "--set", "method.nap.steps=10", "--set", "method.nap.seconds=0.05",
        "--set", "sampler.ula.steps=2",
        "--results", str(results), "--no-progress", "--no-leaderboard", "--no-sampler-board", *extra,
    ]


def stored(results: Path) -> list[tuple[str, int, str]]:
    """(run_id, seed, status) of every stored row; nothing while the store is not made yet."""
    try:
        with sqlite3.connect(results, timeout=30) as db:
            return db.execute("SELECT run_id, seed, status FROM runs").fetchall()
    except sqlite3.OperationalError:  # no file or no table yet
        return []


def integrity(results: Path) -> str:
    with sqlite3.connect(results, timeout=30) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def group_is_gone(pgid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "process"])
def test_sigkill_mid_sweep_loses_nothing_and_the_same_command_completes_the_set(
    executor, tmp_path
):
    plugins = write_fault_plugins(tmp_path / "plugins")
    results = tmp_path / "results.sqlite"
    extra = ["--executor", executor] + (["--workers", "2"] if executor == "process" else [])
    args = command(plugins, results, f"0-{SEEDS - 1}", *extra)
    log = (tmp_path / "first.log").open("w")
    # A session of its own: the driver and its workers form one process group to watch.
    driver = subprocess.Popen(args, cwd=tmp_path, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while len(stored(results)) < 2 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        before = stored(results)
        assert 2 <= len(before) < SEEDS, f"not killed mid-sweep: {len(before)} rows stored"
        assert integrity(results) == "ok"
        assert {status for _, _, status in before} == {"ok"}
        # Workers notice that their driver is gone and stop: nothing is left running.
        assert group_is_gone(driver.pid, within=15), "worker processes outlived the driver"
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()

    rerun = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{SEEDS} runs: {SEEDS} ok" in rerun.stdout
    assert f"({SEEDS - len(before)} run now, {len(before)} already in" in rerun.stdout
    after = stored(results)
    assert sorted(seed for _, seed, _ in after) == list(range(SEEDS))  # each run exactly once
    assert len({run_id for run_id, _, _ in after}) == SEEDS
    assert set(before) <= set(after) and {s for _, _, s in after} == {"ok"}
    assert integrity(results) == "ok"


@pytest.mark.slow
def test_two_sweeps_writing_one_store_at_once_run_each_run_once(tmp_path):
    # Seeds 3-5 are in both sweeps. Each training appends a line naming its data to the
    # log: every run must be computed exactly once, by one sweep or the other (leases).
    plugins = write_fault_plugins(tmp_path / "plugins")
    results = tmp_path / "results.sqlite"
    log = tmp_path / "executions.log"
    env = {**os.environ, "EBMBENCH_TEST_EXECUTIONS": str(log)}
    sweeps = [
        subprocess.Popen(command(plugins, results, seeds), cwd=tmp_path, text=True, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for seeds in ("0-5", "3-8")
    ]
    outputs = [sweep.communicate(timeout=300) for sweep in sweeps]
    for sweep, (out, err) in zip(sweeps, outputs, strict=True):
        assert sweep.returncode == 0, err
        assert "6 runs: 6 ok" in out
    rows = stored(results)
    assert sorted(seed for _, seed, _ in rows) == list(range(9))
    assert {status for _, _, status in rows} == {"ok"}
    assert integrity(results) == "ok"
    executions = log.read_text().split()
    assert len(executions) == 9 and len(set(executions)) == 9, executions
    ran_now = [int(re.search(r"\((\d+) run now", out)[1]) for out, _ in outputs]
    assert sum(ran_now) == 9, outputs
    # Nothing is left claimed, and no journal was needed.
    with sqlite3.connect(results) as db:
        assert db.execute("SELECT count(*) FROM leases").fetchone()[0] == 0
    assert not (tmp_path / "results.sqlite.pending.jsonl").exists()
