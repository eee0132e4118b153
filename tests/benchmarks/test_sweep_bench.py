"""Where a sweep's time goes: one-off imports, training, sampling, each metric, the harness.

Run with ``pytest tests/benchmarks/test_sweep_bench.py --benchmark-enable``; the numbers go
to ``extra_info`` (docs/scale.md quotes them).

* One-off imports, each in a fresh process, as ratios to ``import torch``: the first
  optimiser (``torch.optim.Adam`` imports ``torch._dynamo`` through
  ``Optimizer.add_param_group``'s ``torch._disable_dynamo`` wrapper, whatever its
  ``foreach``/``fused`` arguments), and the first ``MultivariateNormal`` (sympy, through
  ``torch.broadcast_shapes``). A process-pool worker pays them when it starts, before its
  first task; an in-process run (``local``, ``ebmbench.train``) pays them once.
* A quick-budget slice of ``run --all`` (dsm, nce and cd × the four samplers on a 2-D toy,
  an 8-D mixture and digits), run in-process by ``execute_task`` with every metric timed:
  the shares of training, sampling, each metric and the rest (data, setup, checkpoints,
  rows) of the task time, and hmc's sampling time over mala's (about 1: the evaluation
  samplers' default chains spend equal gradient evaluations).

With benchmarks disabled (the default) only a smoke-budget version of the slice runs, to
check that the timing hooks see every stage.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time

import pytest

from ebmbench.grid import Selection, Task, expand, group_tasks
from ebmbench.plugins import get_plugin_manager
from ebmbench.runner import execute_task

ONE_OFF = {
    "import_torch": "import torch",
    "first_adam": "import torch, time; t = time.perf_counter(); "
                  "torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))]); "
                  "print(time.perf_counter() - t)",
    "first_multivariate_normal": "import torch, time; t = time.perf_counter(); "
                                 "torch.distributions.MultivariateNormal(torch.zeros(2), "
                                 "torch.eye(2)); print(time.perf_counter() - t)",
}
SLICE = dict(methods=["dsm", "nce", "cd"], architectures=["mlp"],
             datasets=["eight_gaussians", "gmm_8d", "digits"])
#: What runs with benchmarks disabled: enough to see every stage.
SMOKE_SLICE = dict(methods=["dsm", "cd"], architectures=["mlp"], datasets=["eight_gaussians"],
                   samplers=["ula", "mh"])


def _in_fresh_process(code: str) -> float:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    elapsed = time.perf_counter() - t0
    return float(out.stdout.strip()) if out.stdout.strip() else elapsed


def breakdown(budget: str, grid: dict, results_dir: str, monkeypatch) -> dict[str, float]:
    """Seconds of training, sampling, each metric and the rest, over the slice's tasks."""
    pm = get_plugin_manager()
    metric_seconds: collections.Counter[str] = collections.Counter()
    for info in pm.registry("metric"):
        original = info.cls.compute

        def timed(self, ctx, _original=original, _name=info.name):
            t0 = time.perf_counter()
            try:
                return _original(self, ctx)
            finally:
                metric_seconds[_name] += time.perf_counter() - t0

        monkeypatch.setattr(info.cls, "compute", timed)
    specs, metrics = expand(Selection(budget=budget, **grid), pm)
    tasks = [Task(group, metrics, "cpu", None, results_dir, [], checkpoints=True)
             for group in group_tasks([s for s in specs if not s.skip_reason])]
    train = sample = 0.0
    by_sampler: collections.Counter[str] = collections.Counter()
    rows = 0
    t0 = time.perf_counter()
    for task in tasks:
        for row in execute_task(task):
            assert row["status"] in ("ok", "degenerate", "diverged"), row["reason"]
            rows += 1
            sample += row["sample_seconds"]
            by_sampler[row["sampler"]] += row["sample_seconds"]
        train += row["train_seconds"]
    total = time.perf_counter() - t0
    out = {"tasks": len(tasks), "runs": rows, "total_s": total, "train_s": train,
           "sample_s": sample, **{f"metric_{k}_s": v for k, v in metric_seconds.items()}}
    out["rest_s"] = total - train - sample - sum(metric_seconds.values())
    # Not part of the shares: each evaluation sampler's part of sample_s.
    out |= {f"sampling_by_{k}": v for k, v in by_sampler.items()}
    return out


def test_where_a_sweeps_time_goes(benchmark, tmp_path, monkeypatch):
    # One torch thread, as a pool worker on two cores (conftest sets it for every test).
    if benchmark.disabled:
        parts = benchmark(breakdown, "smoke", SMOKE_SLICE, str(tmp_path), monkeypatch)
        assert parts["runs"] == 2 * 2 and parts["tasks"] == 3  # cd trains once per sampler
        assert parts["train_s"] > 0 and parts["sample_s"] > 0
        assert parts["metric_fisher_s"] > 0 and parts["metric_c2st_s"] > 0
        assert set(k for k in parts if k.startswith("sampling_by_")) == {"sampling_by_ula", "sampling_by_mh"}
        return
    one_off = {k: _in_fresh_process(code) for k, code in ONE_OFF.items()}
    parts = breakdown("quick", SLICE, str(tmp_path), monkeypatch)
    shares = {f"share_{k[:-2]}": v / parts["total_s"] for k, v in parts.items()
              if k.endswith("_s") and k != "total_s"}
    benchmark.extra_info.update({
        **parts, **shares,
        **{f"one_off_{k}_s": v for k, v in one_off.items()},
        "first_adam_over_import_torch": one_off["first_adam"] / one_off["import_torch"],
        # Evaluation at equal gradient cost: hmc's default chain against mala's (about 1).
        "hmc_over_mala_sampling": parts["sampling_by_hmc"] / parts["sampling_by_mala"],
        "load_average": os.getloadavg()[0],
    })
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


@pytest.mark.parametrize("foreach", [None, False])
def test_the_first_optimiser_imports_dynamo_whatever_its_arguments(foreach):
    """Why the harness cannot avoid the torch._dynamo import: it is torch's own wrapper."""
    code = ("import sys, torch; torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], "
            f"foreach={foreach}); print(int('torch._dynamo' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.strip() == "1"
