"""A sampler step three ways (``step_impl`` eager, compile, cuda_graph) against the bare loop.

Run with ``pytest tests/benchmarks/test_step_impl_bench.py --benchmark-enable``: on a GPU
when there is one (else the CPU, where ``cuda_graph`` runs eagerly and ``compile`` uses
inductor's C++ backend, compiled once per case, seconds to a minute). The measurement is
``scripts/device_check.py``'s (`time_sampler_step`): interleaved rounds in one process, the
bare loop of test_samplers_bench.py with frozen parameters as the baseline; per-step times,
speed-ups over the bare loop and the first call's setup (compilation, capture) go to
``benchmark.extra_info``. With benchmarks disabled (the default) each case runs once,
tiny, and checks every path against eager, as the dry run of the device check does.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("device_check", ROOT / "scripts" / "device_check.py")
device_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(device_check)


@pytest.mark.parametrize("sampler", ["ula", "mala"])
@pytest.mark.parametrize("case", ["mlp2d-4096", "conv28-128"])
def test_step_impls_vs_bare_loop(benchmark, case: str, sampler: str) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    make, chains, steps = device_check.CASES[case]
    if benchmark.disabled:  # a correctness check only: tiny and quick
        make, chains, steps = device_check.DRY_CASES[case]
        row = device_check.time_sampler_step(case, make, chains, steps, sampler, device,
                                             rounds=1, compile_options={"backend": "aot_eager"})
        assert row["eager_vs_bare_max_abs"] < 1e-5 and row["compile_vs_eager_max_abs"] < 1e-5
        assert row["cuda_graph_reproducible"] and row["cuda_graph_finite"]
        benchmark(lambda: None)
        return
    if device.type == "cpu":
        steps = max(2, steps // 5)
    row = device_check.time_sampler_step(case, make, chains, steps, sampler, device, rounds=7)
    assert row["eager_vs_bare_max_abs"] < 1e-4 and row["compile_vs_eager_max_abs"] < 1e-3
    benchmark.extra_info.update(row)
    energy = make().to(device)
    x0 = torch.randn((chains, *device_check.SHAPES[make]), device=device)
    fastest = min(("eager", "compile", "cuda_graph"), key=lambda i: row[f"{i}_ms"])
    s = device_check.get_sampler(sampler, step_size=device_check.EPS[sampler], step_impl=fastest)
    benchmark.extra_info["timed_by_pytest_benchmark"] = fastest
    benchmark.pedantic(lambda: s.sample(energy, x0, steps).x.sum().item(), rounds=5,
                       iterations=1, warmup_rounds=1)
