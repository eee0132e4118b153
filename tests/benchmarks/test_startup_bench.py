"""Start-up cost of the command line, and of a resumed sweep that has nothing to do.

Run with ``pytest tests/benchmarks/test_startup_bench.py --benchmark-enable``.

* ``ebmbench --help`` and a cached ``ebmbench list``, each in a fresh process, against
  ``python -c pass`` (the interpreter alone) and ``python -c "import torch"`` measured in
  the same rounds: the goal is ≤ 0.5 s, i.e. near the interpreter and far below torch.
* A no-op resume: ``ebmbench run`` again on a finished sweep (the store has every run, the
  leaderboard is current), against ``import torch``: the goal is ≤ 5 s, i.e. a small
  multiple of importing torch (which the sweep needs to expand the grid).

The ratios go to ``extra_info``; nothing asserts a time. What is asserted always (with
benchmarks disabled too): the commands succeed, ``--help`` and the cached ``list`` import
no torch, and the resume trains nothing and renders no page.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

PYTHON = sys.executable
SMALL_SWEEP = ["--method", "dsm", "--sampler", "ula,mh", "--architecture", "mlp",
               "--dataset", "eight_gaussians", "--metric", "fisher,cost", "--seeds", "0-1",
               "--budget", "smoke", "--workers", "1", "--no-progress"]


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "EBMBENCH_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}


def _run(args: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr[-3000:]
    return elapsed, done.stdout + done.stderr


def _imports_torch(args: list[str], env: dict[str, str]) -> bool:
    _, out = _run([PYTHON, "-X", "importtime", *args], env)
    return any(line.rstrip().endswith("| torch") for line in out.splitlines())


def _medians(commands: dict[str, list[str]], env: dict[str, str], rounds: int,
             cwd: Path | None = None) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(rounds):  # interleaved, so that other load slows every command alike
        for key, args in commands.items():
            times[key].append(_run(args, env, cwd)[0])
    return {k: statistics.median(v) for k, v in times.items()}


def test_help_and_cached_list_start_without_torch(benchmark, tmp_path):
    env = _env(tmp_path / "cache")
    _run([PYTHON, "-m", "ebmbench.cli", "list"], env)  # builds the catalogue cache
    assert not _imports_torch(["-m", "ebmbench.cli", "--help"], env)
    assert not _imports_torch(["-m", "ebmbench.cli", "list"], env)
    assert not _imports_torch(["-c", "import ebmbench"], env)
    commands = {
        "python": [PYTHON, "-c", "pass"],
        "import_torch": [PYTHON, "-c", "import torch"],
        "help": [PYTHON, "-m", "ebmbench.cli", "--help"],
        "list": [PYTHON, "-m", "ebmbench.cli", "list"],
    }
    if benchmark.disabled:
        benchmark(_run, commands["help"], env)
        return
    med = _medians(commands, env, rounds=5)
    benchmark.extra_info.update({
        **{f"{k}_s": v for k, v in med.items()},
        "help_over_python": med["help"] / med["python"],
        "help_over_import_torch": med["help"] / med["import_torch"],
        "list_over_import_torch": med["list"] / med["import_torch"],
        "load_average": os.getloadavg()[0],
    })
    benchmark.pedantic(lambda: _run(commands["help"], env), rounds=3, iterations=1)


@pytest.mark.slow
def test_resuming_a_finished_sweep_does_nothing(benchmark, tmp_path):
    env = _env(tmp_path / "cache")
    sweep = [PYTHON, "-m", "ebmbench.cli", "run", *SMALL_SWEEP]
    _, first = _run(sweep, env, tmp_path)
    assert "(4 run now, 0 already in" in first and "(1 dataset tables)" in first, first
    pages = tmp_path / "ebmbench-results" / "results-leaderboards"
    stamps = {p.name: p.stat().st_mtime_ns for p in pages.iterdir()}
    if benchmark.disabled:
        _, again = benchmark(_run, sweep, env, tmp_path)
    else:
        _, again = _run(sweep, env, tmp_path)
    assert "(0 run now, 4 already in" in again and "up to date: no run changed" in again, again
    assert {p.name: p.stat().st_mtime_ns for p in pages.iterdir()} == stamps  # nothing rewritten
    if benchmark.disabled:
        return
    med = _medians({"import_torch": [PYTHON, "-c", "import torch"], "resume": sweep}, env,
                   rounds=5, cwd=tmp_path)
    benchmark.extra_info.update({
        **{f"{k}_s": v for k, v in med.items()},
        "resume_over_import_torch": med["resume"] / med["import_torch"],
        "load_average": os.getloadavg()[0],
    })
    benchmark.pedantic(lambda: _run(sweep, env, tmp_path), rounds=3, iterations=1)
