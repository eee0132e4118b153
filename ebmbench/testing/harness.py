"""End-to-end checks: the plugin through the real harness, at the smoke budget, twice.

The run goes through :func:`ebmbench.sweep.run_sweep`, exactly what ``ebmbench run`` does
(grid expansion, the executor, the runner, the results store), in a temporary folder. Runs
are cached in the process by the *classes* involved, so that the plugins of one slice
(``dsm``, ``ula``, ``mlp``, ``eight_gaussians``, ``local``, ...) share a run instead of
repeating it; a cached run is the same run, since the harness is deterministic.
"""

from __future__ import annotations

import math
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..degenerate import HARNESS_VALUES
from ..grid import Selection
from ..plugins import PluginManager
from ..sweep import run_sweep
from .isolation import isolated_plugins, registration_error
from .partners import GRID_KINDS, Partners, find_partners
from .suite import CheckSkipped, Subject, check

__all__ = ["E2E_TIMEOUT", "harness_run", "clear_run_cache"]

#: Seconds one end-to-end run may take before the harness records a timeout.
E2E_TIMEOUT = 300.0

_RUNS: OrderedDict[Any, dict[str, Any]] = OrderedDict()
_MAX_RUNS = 64


def clear_run_cache() -> None:
    """Forget the end-to-end runs kept for reuse in this process."""
    _RUNS.clear()


def _key(pm: PluginManager, p: Partners, s: Subject, replica: int) -> tuple[Any, ...]:
    classes = tuple(pm.info(k, p.names[k]).cls for k in GRID_KINDS)
    metrics = tuple(pm.info("metric", m).cls for m in p.metrics)
    given = (s.kind, tuple(sorted(s.params.items()))) if s.params else None
    return classes, metrics, pm.info("executor", p.executor).cls, str(s.device), given, replica


def harness_run(s: Subject, replica: int = 0) -> tuple[dict[str, Any], Partners]:
    """The result row of a smoke run of the plugin with its partners, and the partners.

    ``replica`` numbers independent runs of the same thing (for the determinism check).
    """
    with isolated_plugins(s.cls) as pm:
        error = registration_error(pm)
        if error is not None:
            raise AssertionError(f"cannot register it next to the installed plugins: {error}")
        partners = find_partners(pm, s)
        key = _key(pm, partners, s, replica)
        if key in _RUNS:
            _RUNS.move_to_end(key)
            return _RUNS[key], partners
        rows: list[dict[str, Any]] = []
        selection = Selection(
            methods=[partners.names["method"]],
            samplers=[partners.names["sampler"]],
            architectures=[partners.names["architecture"]],
            datasets=[partners.names["dataset"]],
            metrics=partners.metrics,
            seeds=(0,),
            budget="smoke",
            overrides={} if s.kind == "executor" else {
                f"{s.kind}.{s.cls.name}.{k}": v for k, v in s.params.items()
            },
        )
        with tempfile.TemporaryDirectory(prefix="ebmbench-conformance-") as tmp:
            report = run_sweep(
                selection, results=Path(tmp) / "results.sqlite", device=str(s.device),
                timeout=E2E_TIMEOUT, executor=partners.executor, on_row=rows.append,
                executor_params=dict(s.params) if s.kind == "executor" else None,
            )
    if not rows and report.not_applicable:  # an incompatible combination is not a run
        (_, reason), = report.not_applicable
        rows.append({"status": "skipped", "reason": reason})
    assert len(rows) == 1, f"one run was asked for, the harness returned {len(rows)} rows"
    _RUNS[key] = rows[0]
    while len(_RUNS) > _MAX_RUNS:
        _RUNS.popitem(last=False)
    return rows[0], partners


def _require_ok(row: dict[str, Any], partners: Partners) -> None:
    status, reason = row["status"], row["reason"]
    if status == "skipped":
        raise CheckSkipped(f"the harness skipped the run with {partners.describe()}: {reason}")
    if status != "ok":
        tb = row.get("traceback") or ""
        tail = "\n".join(tb.strip().splitlines()[-8:])
        raise AssertionError(
            f"the smoke run with {partners.describe()} ended {status!r}: {reason}"
            + (f"\n{tail}" if tail else "")
        )


def _declared_names(higher_is_better: dict[str, bool]) -> set[str]:
    return set(higher_is_better) | {f"{n}_se" for n in higher_is_better}


@check("end_to_end", stage="harness")
def check_end_to_end(s: Subject) -> None:
    """A smoke run through the real harness with compatible built-in partners ends ``ok``.

    Partners are found in preference order (``dsm``, ``ula``, ``mlp``, ``eight_gaussians``,
    then ``digits``, then any registered plugin); the run uses the ``local`` executor (an
    executor under test runs it through its own ``map``). The row must be ``ok`` with every
    metric value finite and no metric error. A method must log ``loss``; a sampler must
    report ``energy_evals`` and ``grad_evals``; a metric (run alone) must return only
    values declared in ``higher_is_better`` (or ``<value>_se``), and something: values or
    a figure. A run the harness skips (an image set with no local copy) skips the check.
    """
    row, partners = harness_run(s)
    _require_ok(row, partners)
    bad = {k: v for k, v in row["metrics"].items() if not math.isfinite(v)}
    assert not bad, f"non-finite metric values {bad}"
    assert not row["metric_errors"], f"metrics raised: {row['metric_errors']}"
    if s.kind == "method":
        logged = sorted(row["train_logs"])
        assert "loss" in logged, f"train_step logs {logged} lack 'loss'"
    if s.kind == "sampler":
        missing = {"energy_evals", "grad_evals"} - set(row["sample_stats"])
        assert not missing, f"sample stats {sorted(row['sample_stats'])} lack {sorted(missing)}"
    if s.kind == "metric":
        # The harness records a reference of its own beside some metrics' values.
        undeclared = set(row["metrics"]) - _declared_names(s.cls.higher_is_better) - set(HARNESS_VALUES)
        assert not undeclared, (
            f"returned {sorted(undeclared)}, which higher_is_better does not declare "
            f"(declared: {sorted(s.cls.higher_is_better)}; '<value>_se' is also allowed)"
        )
        assert row["metrics"] or row["artifacts"], (
            f"returned no value and wrote no figure on {partners.describe()}"
        )


def _comparable(row: dict[str, Any]) -> dict[str, float]:
    costs = set(row["cost_values"])
    costs |= {f"{c}_se" for c in costs}
    values = {f"metric {k}": v for k, v in row["metrics"].items() if k not in costs}
    if "loss" in row["train_logs"]:
        values["final training loss"] = row["train_logs"]["loss"]
    return values


def _same(a: float, b: float, exact: bool) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b if exact else math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-8)


@check("determinism", stage="harness")
def check_determinism(s: Subject) -> None:
    """Two smoke runs with the same seed give the same metrics (costs aside).

    The harness seeds the data, the initial weights, the batches and the samplers from
    the run's seed; a plugin that draws from an unseeded source (``np.random``, Python's
    ``random``, a fresh ``torch.Generator()``) breaks resumable, comparable leaderboards.
    Values are compared exactly on the CPU (to a relative 1e-5 on CUDA); cost values
    (seconds, memory) are left out.
    """
    first, partners = harness_run(s, replica=0)
    if first["status"] != "ok":
        raise CheckSkipped(f"the first run ended {first['status']!r} (see end_to_end)")
    second, _ = harness_run(s, replica=1)
    _require_ok(second, partners)
    a, b = _comparable(first), _comparable(second)
    assert a.keys() == b.keys(), f"the runs returned different values: {sorted(a)} vs {sorted(b)}"
    exact = s.device.type == "cpu"
    differ = {k: (a[k], b[k]) for k in a if not _same(a[k], b[k], exact)}
    assert not differ, f"same seed, different results (first, second): {differ}"
