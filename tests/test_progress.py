"""A sweep's progress display: runs done, running now, the ETA, failures as they happen."""

from __future__ import annotations

import io
from types import SimpleNamespace as NS

import pytest
from rich.console import Console

import ebmbench
from ebmbench.progress import SweepProgress, describe_problem, live_progress


def _tasks():
    spec = lambda t, s: NS(run_id=f"{t}-{s}", dataset="banana", method=t, architecture="mlp",  # noqa: E731
                           sampler=s, seed=0)
    return [NS(specs=[spec("dsm", "ula"), spec("dsm", "mh")]),
            NS(specs=[spec("cd", "ula")]), NS(specs=[spec("nce", "ula"), spec("nce", "mh")])]


def _row(run_id, status="ok", reason=""):
    method, sampler = run_id.split("-")
    return {"run_id": run_id, "status": status, "reason": reason, "method": method,
            "sampler": sampler, "architecture": "mlp", "dataset": "banana", "seed": 0}


def test_counts_running_tasks_and_eta_follow_the_rows():
    now = [100.0]
    p = SweepProgress(_tasks(), concurrency=2, clock=lambda: now[0])
    assert (p.done, p.total, p.eta()) == (0, 5, None)
    assert p.running() == ["banana/dsm/mlp (2 samplers)", "banana/cd/mlp (ula)"]
    now[0] = 130.0
    assert p.record(_row("cd-ula", "failed", "boom")) is True
    # The first task still has runs to come: it and the next unfinished one run now.
    assert p.running() == ["banana/dsm/mlp (2 samplers)", "banana/nce/mlp (2 samplers)"]
    assert p.eta() == pytest.approx(30.0 / 1 * 4)
    for run_id in ("dsm-ula", "dsm-mh", "nce-ula"):
        p.record(_row(run_id))
    assert p.running() == ["banana/nce/mlp (2 samplers)"]
    assert p.summary() == "4/5 runs, 1 failed · 0:30 elapsed · ETA 0:08"
    p.record(_row("nce-mh", "diverged"))
    assert p.running() == [] and p.eta() == 0
    assert [r["run_id"] for r in p.problems] == ["cd-ula", "nce-mh"]


def test_the_live_display_prints_failures_as_they_happen():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    state = SweepProgress(_tasks(), concurrency=1)
    with live_progress(state, console) as show:
        show(_row("dsm-ula"))
        show(_row("dsm-mh", "timeout", "sampling took 9.0 s, over the 1 s limit"))
        printed_before_the_end = out.getvalue()
        show(_row("cd-ula"))
    text = out.getvalue()
    assert describe_problem(_row("dsm-mh", "timeout", "sampling took 9.0 s, over the 1 s limit")) \
        in printed_before_the_end
    assert "timeout: dsm/mh/mlp/banana seed 0: sampling took 9.0 s" in text
    assert "running: banana/" in text and "3/5 runs, 1 timeout" in text and "ETA" in text


def test_executor_concurrency_for_the_display():
    assert ebmbench.get_executor("local").concurrency() == 1
    assert ebmbench.get_executor("process", workers=3).concurrency() == 3
    assert ebmbench.get_executor("process").concurrency() == ebmbench.usable_cpu_cores()


def test_no_display_when_stderr_is_not_a_terminal(tmp_path, capsys):
    ebmbench.run(methods=["dsm"], samplers=["ula"], architectures=["mlp"],
                 datasets=["eight_gaussians"], metrics=["fisher"], budget="smoke",
                 results=tmp_path / "r.sqlite", progress=True)
    assert "runs ·" not in capsys.readouterr().err  # pytest's captured stderr is no terminal
