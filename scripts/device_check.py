#!/usr/bin/env python
"""The GPU figures of ebmbench in one short call: tests, sampler-step speed, a full-budget sweep.

On one GPU, in about 8 minutes (``--budget-s``), it

1. runs the tests marked ``cuda`` (``pytest -m cuda tests/test_cuda.py``);
2. times one sampler step three ways, ``step_impl`` = ``eager``, ``compile`` and
   ``cuda_graph``, each as a speed-up over a bare eager PyTorch loop doing the same update
   in the same process (the loops of ``tests/benchmarks/test_samplers_bench.py``, with the
   parameters frozen as the samplers run them): a 2-D MLP 2→128→128→1 at 4 096 and 65 536
   chains and a small conv energy on 1×28×28 at 128 chains, for ULA and MALA; every fast
   path is first checked against eager (same chains up to rounding for ``compile``, the
   same seed giving the same chains for ``cuda_graph``);
3. runs a short full-budget sweep on digits with two methods (``dsm`` and ``pcd``, sampler
   ``ula``, architecture ``convnet``; the training steps capped by ``--sweep-steps``);
4. writes one JSON report (``--out``) and prints the markdown table kept in docs/scale.md.

Each part is timed and its failure recorded in the report; one failing part does not stop
the others. ``--dry-run`` runs the same code on the CPU with tiny sizes (and the
``aot_eager`` compile backend, which traces like inductor but compiles nothing) in a few
seconds; the test suite runs it (tests/test_device_check.py).

Usage::

    python scripts/device_check.py --out device_check.json
    python scripts/device_check.py --dry-run --out /tmp/dry.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the bare loops live in the benchmarks
    sys.path.insert(0, str(ROOT))

import ebmbench  # noqa: E402
from ebmbench import frozen_parameters, get_sampler  # noqa: E402
from tests.benchmarks.test_samplers_bench import BARE, ConvEnergy, MLPEnergy  # noqa: E402

IMPLS = ("eager", "compile", "cuda_graph")
#: Step sizes small enough that MALA accepts nearly everything, as in the CPU benchmarks.
EPS = {"ula": 1e-3, "mala": 1e-3, "mh": 0.1, "hmc": 1e-2}
#: name → (energy factory, chains, steps per timed call) on the GPU, and in a dry run.
CASES: dict[str, tuple[Callable[[], torch.nn.Module], int, int]] = {
    "mlp2d-4096": (MLPEnergy, 4096, 50),
    "mlp2d-65536": (MLPEnergy, 65536, 50),
    "conv28-128": (ConvEnergy, 128, 20),
}
DRY_CASES = {"mlp2d-4096": (MLPEnergy, 64, 2), "conv28-128": (ConvEnergy, 2, 1)}
SHAPES = {MLPEnergy: (2,), ConvEnergy: (1, 28, 28)}


# ------------------------------------------------------------------------------- tests


def run_cuda_tests(dry_run: bool, timeout: float) -> dict[str, Any]:
    """``pytest -m cuda`` in a subprocess; counts and the failing tests from its JUnit XML."""
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
               "--benchmark-disable", f"--junitxml={junit}", "tests/test_cuda.py"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        seconds = time.perf_counter() - start
        out: dict[str, Any] = {"command": " ".join(cmd[1:]), "returncode": proc.returncode,
                               "seconds": round(seconds, 1)}
        if not junit.is_file():
            out["error"] = (proc.stdout + proc.stderr)[-2000:]
            return out
        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        failed = [f"{case.get('classname')}::{case.get('name')}"
                  for case in suite.iter("testcase")
                  if case.find("failure") is not None or case.find("error") is not None]
        out |= counts | {"passed": counts["tests"] - counts["failures"] - counts["errors"]
                         - counts["skipped"], "failed_tests": failed}
        if failed:
            out["output_tail"] = proc.stdout[-3000:]
    return out


# --------------------------------------------------------------------------- benchmark


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_sampler_step(case: str, make: Callable[[], torch.nn.Module], chains: int, steps: int,
                      sampler_name: str, device: torch.device, rounds: int,
                      compile_options: dict[str, Any] | None = None,
                      impls: tuple[str, ...] = IMPLS) -> dict[str, Any]:
    """Per-step time of each ``step_impl`` and of the bare eager loop, in interleaved rounds.

    Returns a row with ``<impl>_ms`` (median per step), ``<impl>_speedup`` (bare time over
    the impl's, so > 1 is faster than the bare loop), ``<impl>_setup_s`` (the first call:
    compilation or capture), ``<impl>_note`` (a fallback, if any) and the checks.
    """
    torch.manual_seed(0)
    energy = make().to(device)
    x0 = (torch.randn((chains, *SHAPES[make]), generator=torch.Generator().manual_seed(0))
          * 0.5).to(device)
    eps = EPS[sampler_name]

    def gen() -> torch.Generator:
        return torch.Generator(device).manual_seed(1)

    samplers = {impl: get_sampler(sampler_name, step_size=eps, step_impl=impl) for impl in impls}
    if "compile" in samplers and compile_options:
        samplers["compile"].compile_options = compile_options
    notes: dict[str, str] = {}

    def run_bare() -> torch.Tensor:
        with frozen_parameters(energy):
            return BARE[sampler_name](energy, x0, steps, eps, gen())

    def runner(impl: str) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            result = samplers[impl].sample(energy, x0, steps, generator=gen())
            if result.notes:
                notes[impl] = "; ".join(result.notes.values())
            return result.x
        return run

    fns = {"bare": run_bare} | {impl: runner(impl) for impl in impls}
    row: dict[str, Any] = {"case": case, "sampler": sampler_name, "device": str(device),
                           "chains": chains, "steps_per_call": steps, "rounds": rounds}
    first: dict[str, torch.Tensor] = {}
    for key, fn in fns.items():  # the first call compiles or captures: timed apart
        _sync(device)
        start = time.perf_counter()
        first[key] = fn()
        _sync(device)
        row[f"{key}_setup_s"] = round(time.perf_counter() - start, 3)
    # Checks: eager is the bare update; compile gives the eager chains up to rounding; the
    # graph is reproducible from the seed and finite (its noise is its own generator's).
    row["eager_vs_bare_max_abs"] = float((first["eager"] - first["bare"]).abs().max())
    if "compile" in first:
        row["compile_vs_eager_max_abs"] = float((first["compile"] - first["eager"]).abs().max())
    if "cuda_graph" in first:
        again = fns["cuda_graph"]()
        row["cuda_graph_reproducible"] = bool(torch.equal(again, first["cuda_graph"]))
        row["cuda_graph_finite"] = bool(torch.isfinite(first["cuda_graph"]).all())
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[key].append(time.perf_counter() - start)
    bare_ms = 1e3 * statistics.median(times["bare"]) / steps
    row["bare_ms"] = round(bare_ms, 4)
    for impl in impls:
        ms = 1e3 * statistics.median(times[impl]) / steps
        row[f"{impl}_ms"] = round(ms, 4)
        row[f"{impl}_speedup"] = round(bare_ms / ms, 3)
        if impl in notes:
            row[f"{impl}_note"] = notes[impl]
    return row


def run_benchmarks(device: torch.device, dry_run: bool, samplers: list[str],
                   deadline: float) -> list[dict[str, Any]]:
    cases = DRY_CASES if dry_run else CASES
    options = {"backend": "aot_eager"} if dry_run else None
    rows = []
    for case, (make, chains, steps) in cases.items():
        for name in samplers:
            if time.perf_counter() > deadline:
                rows.append({"case": case, "sampler": name, "skipped": "out of time"})
                continue
            try:
                rows.append(time_sampler_step(case, make, chains, steps, name, device,
                                              rounds=1 if dry_run else 7,
                                              compile_options=options))
            except Exception as exc:
                rows.append({"case": case, "sampler": name, "error": f"{type(exc).__name__}: "
                             f"{exc}", "traceback": traceback.format_exc()[-2000:]})
    return rows


# ------------------------------------------------------------------------------- sweep


def run_sweep(device: str, dry_run: bool, steps: int, methods: list[str], timeout: float,
              results: Path) -> list[dict[str, Any]]:
    """A short sweep on digits at the full budget, in this process; a dry run is at the
    smoke budget and skips FID (torch-fidelity's import alone takes seconds)."""
    frame = ebmbench.run(
        methods=methods, samplers=["ula"], architectures=["convnet"], datasets=["digits"],
        metrics=["cost"] if dry_run else ["fid", "cost"], seeds=[0],
        budget="smoke" if dry_run else "full",
        device=device, timeout=timeout, overrides={"method.*.steps": steps},
        executor="local", results=results,
    )
    keep = ("method", "sampler", "architecture", "status", "reason", "train_seconds",
            "sample_seconds", "peak_memory_mb", "device")
    rows = []
    for _, r in frame.iterrows():
        row = {k: (None if isinstance(r[k], float) and math.isnan(r[k]) else r[k]) for k in keep}
        row["precision"] = r["hyperparams"].get("precision")
        row["metrics"] = {k.removeprefix("metric."): float(r[k]) for k in r.index
                          if k.startswith("metric.") and isinstance(r[k], float)
                          and not math.isnan(r[k])}
        row["notes"] = r["notes"]
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ report


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "ebmbench": ebmbench.__version__, "torch": torch.__version__,
        "python": platform.python_version(), "host": platform.node(), "device": str(device),
    }
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True,
                                       capture_output=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda}
    return env


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The benchmark as the table docs/scale.md keeps: ms per step and speed-up over bare."""
    lines = ["| energy, chains | sampler | bare ms/step | eager | compile | cuda_graph |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        if "bare_ms" not in r:
            lines.append(f"| {r['case']} | `{r['sampler']}` | {r.get('error') or r.get('skipped')}"
                         " | | | |")
            continue
        cells = [f"{r[f'{i}_ms']:.3f} ({r[f'{i}_speedup']:.2f}×)" if f"{i}_ms" in r else "—"
                 for i in IMPLS]
        lines.append(f"| {r['case']} | `{r['sampler']}` | {r['bare_ms']:.3f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("device_check.json"),
                        help="where to write the JSON report")
    parser.add_argument("--dry-run", action="store_true",
                        help="the same code on the CPU with tiny sizes (seconds)")
    parser.add_argument("--budget-s", type=float, default=480.0,
                        help="wall-clock seconds for the whole check (later parts are skipped)")
    parser.add_argument("--samplers", default=None,
                        help="samplers to time (default ula,mala; ula in a dry run)")
    parser.add_argument("--sweep-methods", default="dsm,pcd", help="methods of the sweep")
    parser.add_argument("--sweep-steps", type=int, default=1000,
                        help="training steps of each sweep run (full budget otherwise)")
    parser.add_argument("--skip", default="", help="parts to skip: tests,benchmark,sweep")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    deadline = start + args.budget_s
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device here: run with --dry-run, or on a GPU", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.dry_run else "cuda")
    report: dict[str, Any] = {
        "schema": 1, "dry_run": args.dry_run,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(device), "argv": sys.argv[1:] if argv is None else argv,
    }

    def part(name: str, fn: Callable[[], Any]) -> None:
        if name in skip:
            report[name] = {"skipped": "--skip"}
            return
        if time.perf_counter() > deadline:
            report[name] = {"skipped": "out of time"}
            return
        t0 = time.perf_counter()
        try:
            report[name] = fn()
        except Exception as exc:
            report[name] = {"error": f"{type(exc).__name__}: {exc}",
                            "traceback": traceback.format_exc()[-3000:]}
        report.setdefault("seconds", {})[name] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {report['seconds'][name]} s", file=sys.stderr)

    part("tests", lambda: run_cuda_tests(args.dry_run, timeout=max(30.0, 0.3 * args.budget_s)))
    chosen = args.samplers or ("ula" if args.dry_run else "ula,mala")
    samplers = [s.strip() for s in chosen.split(",") if s.strip()]
    # The sweep gets what the benchmark leaves, at least a quarter of the budget.
    bench_deadline = deadline - 0.25 * args.budget_s
    part("benchmark", lambda: run_benchmarks(device, args.dry_run, samplers, bench_deadline))
    with tempfile.TemporaryDirectory() as tmp:
        remaining = max(10.0, deadline - time.perf_counter())
        methods = [m.strip() for m in args.sweep_methods.split(",") if m.strip()]
        part("sweep", lambda: run_sweep(str(device), args.dry_run,
                                        3 if args.dry_run else args.sweep_steps, methods,
                                        timeout=remaining / (2 * len(methods)),
                                        results=Path(tmp) / "results.sqlite"))
    bench = report.get("benchmark")
    if isinstance(bench, list):
        report["table_markdown"] = markdown_table(bench)
        mlp = [r.get(f"{i}_speedup", 0.0) for r in bench if str(r.get("case")).startswith("mlp")
               for i in ("compile", "cuda_graph")]
        report["goal_mlp_2x"] = {"best_speedup": max(mlp, default=None),
                                 "met": bool(mlp) and max(mlp) >= 2.0}
    report["wall_seconds"] = round(time.perf_counter() - start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if "table_markdown" in report:
        print(report["table_markdown"])
    print(f"report: {args.out} ({report['wall_seconds']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
