"""The harness's own cost, and what a pool of worker processes gains.

Run with ``pytest tests/benchmarks/test_harness_bench.py --benchmark-enable``.

* Overhead per run: a sweep of runs that train one step (``steps=1``, the least a method
  allows; one sampler step, no metrics) through ``ebmbench.run`` in-process, against the
  same plugin calls made directly in a loop (data, the energy, ``setup``, one training step,
  the finiteness check, sampling). The
  difference per run is what the harness adds: expanding the grid, seeding, version
  stamps, the checkpoint, building the row and committing it to SQLite.
* Speed-up: the process pool with 2 workers against 1 worker on a quick-budget toy grid
  (dsm and ssm × ula × 4 seeds on eight_gaussians: 8 tasks of one training each), one
  torch thread per worker, in interleaved rounds so that other load on the machine slows
  both alike. The ideal is 2×; worker start-up (importing torch, loading plugins, a few
  seconds per worker) and an uneven last task keep it below.

With benchmarks disabled (the default here) the overhead test runs each side once (every
run ok, finite samples); the speed-up test, minutes of training, runs only when
benchmarks are enabled.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import ebmbench
from ebmbench import TrainContext

NO_TRAINING = {"method.dsm.steps": 1, "sampler.ula.steps": 1}
TOY = dict(datasets=["eight_gaussians"], architectures=["mlp"])


def harness(n_runs: int, results: Path) -> pd.DataFrame:
    return ebmbench.run(methods=["dsm"], samplers=["ula"], metrics=[], budget="smoke",
                        seeds=list(range(n_runs)), overrides=NO_TRAINING, results=results,
                        device="cpu", **TOY)


def direct(n_runs: int) -> list[torch.Tensor]:
    """The plugin calls the harness makes for these runs, in a bare loop."""
    out = []
    for seed in range(n_runs):
        dataset = ebmbench.get_dataset("eight_gaussians", budget="smoke")
        method = ebmbench.get_method("dsm", budget="smoke", steps=1)
        sampler = ebmbench.get_sampler("ula", budget="smoke", steps=1)
        architecture = ebmbench.get_architecture("mlp", budget="smoke")
        g = torch.Generator().manual_seed(seed)
        train, _ = dataset.train_data(g), dataset.test_data(g)
        torch.manual_seed(seed)
        energy = architecture.build(dataset.shape)
        method.setup(TrainContext(energy, sampler, dataset, train, torch.device("cpu"), g))
        energy.train()
        method.train_step(train[: method.hparams["batch_size"]])
        energy.eval()
        with torch.no_grad():
            assert torch.isfinite(energy(train[:1024])).all()
        x0 = dataset.init_noise(512, g)
        out.append(sampler.sample(energy, x0, generator=g).x)
    return out


def test_harness_overhead_per_run(benchmark, tmp_path):
    n = 4 if benchmark.disabled else 32
    ebmbench.list_plugins("method")  # load plugins outside the timing
    direct(1)
    counter = iter(range(10_000))

    def run_harness():
        frame = harness(n, tmp_path / f"r{next(counter)}" / "results.sqlite")
        assert len(frame) == n and set(frame.status) == {"ok"}, frame.reason.tolist()
        return frame

    def run_direct():
        return direct(n)

    if benchmark.disabled:
        frame = benchmark(run_harness)
        samples = run_direct()
        assert len(samples) == n and all(torch.isfinite(x).all() for x in samples)
        assert frame["sample_stats"].iloc[0]["energy_evals"] > 0
        return
    times: dict[str, list[float]] = {"harness": [], "direct": []}
    for _ in range(5):
        for key, fn in (("harness", run_harness), ("direct", run_direct)):
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    benchmark.extra_info.update({
        "runs_per_sweep": n,
        "harness_ms_per_run": 1e3 * med["harness"] / n,
        "direct_ms_per_run": 1e3 * med["direct"] / n,
        "overhead_ms_per_run": 1e3 * (med["harness"] - med["direct"]) / n,
        "ratio_vs_direct": med["harness"] / med["direct"],
        "load_average": os.getloadavg()[0],
    })
    benchmark.pedantic(run_harness, rounds=3, iterations=1)


def test_two_workers_over_one_on_the_quick_toy_grid(benchmark):
    if benchmark.disabled:
        pytest.skip("minutes of training: runs with --benchmark-enable only")
    grid = dict(methods=["dsm", "ssm"], samplers=["ula"], metrics=["fisher"], budget="quick",
                seeds=[0, 1, 2, 3], device="cpu", **TOY)
    load_before = os.getloadavg()[0]

    def sweep(workers: int) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            # One torch thread per worker in both: the comparison is of processes, and
            # two threads per process on two busy cores can be many times slower.
            frame = ebmbench.run(executor="process",
                                 executor_params={"workers": workers, "threads": 1},
                                 results=Path(tmp) / "results.sqlite", **grid)
            elapsed = time.perf_counter() - t0
        assert set(frame.status) <= {"ok", "diverged"}, frame.reason.tolist()
        return elapsed

    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(2):
        for workers in (1, 2):
            times[workers].append(sweep(workers))
    med = {w: statistics.median(v) for w, v in times.items()}
    benchmark.extra_info.update({
        "one_worker_s": med[1],
        "two_workers_s": med[2],
        "speedup": med[1] / med[2],
        "cpu_cores": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    })
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
