"""Executors: the process pool, Ray and submitit run the grid with the same numbers as in-process.

Per-run seeds derive from the run specs, never from the executor, the worker or the
order: the same selection gives bit-identical training losses, Fisher divergences and
sample moments in this process, in a pool of worker processes (one torch thread each), on
a local Ray (started once for the module) and in submitit jobs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import types

import pandas as pd
import pytest
import torch

import ebmbench
from ebmbench.cli import main
from ebmbench.grid import Selection, expand, group_tasks
from ebmbench.plugins import reset_plugin_manager
from tests.test_fault_isolation import write_fault_plugins

#: dsm trains once for both samplers (one task of two runs); cd trains per sampler.
GRID = dict(
    methods=["dsm", "cd"], samplers=["ula", "mala"], datasets=["eight_gaussians"],
    architectures=["mlp"], metrics=["fisher", "probe"], budget="smoke", seeds=[0],
    overrides={"method.*.steps": 5},  # bit-identical after 5 steps is as telling as after 30
)
#: Values that must be identical whatever runs them.
SAME = ["metric.fisher_divergence", "metric.sample_mean", "metric.sample_sq", "final_loss",
        "acceptance"]


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    return write_fault_plugins(tmp_path_factory.mktemp("plugins"))


def sweep(results, plugin_dir, executor="local", params=None, **selection):
    """Run a selection with fresh plugins (the built-ins and the test plugins)."""
    reset_plugin_manager()
    try:
        ebmbench.add_plugins_dir(plugin_dir)
        frame = ebmbench.run(executor=executor, executor_params=params or {},
                             results=results, **(GRID | selection))
    finally:
        reset_plugin_manager()
    frame = frame.set_index("run_id").sort_index()
    frame["final_loss"] = [logs.get("loss") for logs in frame["train_logs"]]
    frame["acceptance"] = [s.get("acceptance_rate", -1.0) for s in frame["sample_stats"]]
    return frame


@pytest.fixture(scope="module")
def reference(tmp_path_factory, plugin_dir):
    """The grid run in this process (local executor)."""
    frame = sweep(tmp_path_factory.mktemp("local") / "results.sqlite", plugin_dir)
    assert set(frame.status) == {"ok"}, frame.reason.tolist()
    assert set(frame["metric.pid"]) == {os.getpid()}
    return frame


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with two CPUs, started once (about 2.5 s) unless one is up already."""
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def assert_same_numbers(frame: pd.DataFrame, reference: pd.DataFrame) -> None:
    assert list(frame.index) == list(reference.index)
    assert set(frame.status) == {"ok"}, frame.reason.tolist()
    pd.testing.assert_frame_equal(frame[SAME], reference[SAME], check_exact=True)


def test_process_pool_gives_the_same_numbers_as_in_process(reference, plugin_dir, tmp_path):
    frame = sweep(tmp_path / "results.sqlite", plugin_dir, "process", {"workers": 2})
    assert_same_numbers(frame, reference)
    # Every run ran in a worker process with 2 cores / 2 workers = 1 torch thread.
    assert os.getpid() not in set(frame["metric.pid"])
    assert set(frame["metric.threads"]) == {1.0}


def test_ray_runs_the_grid_with_the_same_numbers_as_in_process(
    reference, plugin_dir, local_ray, tmp_path
):
    frame = sweep(tmp_path / "results.sqlite", plugin_dir, "ray")
    assert_same_numbers(frame, reference)
    assert os.getpid() not in set(frame["metric.pid"])
    assert local_ray.is_initialized()  # the executor reused this Ray and left it running


def test_ray_records_every_fault_and_finishes_the_other_runs(plugin_dir, local_ray, tmp_path):
    # The hard limit (2 × timeout + grace) also covers a fresh worker's plugin imports:
    # at 9 s, raise_error timed out twice while another sweep loaded the 2-core machine,
    # and at 14 s once while two sweeps' workers and the test suite shared it (2026-12-01).
    timeout, grace = 3.0, 14.0
    frame = sweep(
        tmp_path / "results.sqlite", plugin_dir, "ray", {"grace": grace},
        methods=["quadratic", "crash_exit", "hang", "raise_error", "nan_loss"], samplers=["ula"],
        metrics=["fisher"], timeout=timeout,
    )
    status = dict(zip(frame.method, zip(frame.status, frame.reason, strict=True), strict=True))
    assert status["quadratic"] == ("ok", "")
    assert status["crash_exit"][0] == "failed"
    assert "the Ray worker died while running it (WorkerCrashedError" in status["crash_exit"][1]
    assert status["hang"][0] == "timeout"
    assert f"past its {timeout * 2 + grace:g} s" in status["hang"][1]
    assert "Ray killed its worker" in status["hang"][1]
    assert status["raise_error"] == ("failed", "RuntimeError: deliberate failure in training")
    assert status["nan_loss"][0] == "diverged" and "loss became nan" in status["nan_loss"][1]


def test_submitit_local_runs_each_task_as_a_job_and_keeps_what_a_dead_job_finished(
    reference, plugin_dir, tmp_path
):
    pytest.importorskip("submitit")
    frame = sweep(
        tmp_path / "results.sqlite", plugin_dir, "slurm",
        {"cluster": "local", "array_parallelism": 2},
        methods=["dsm", "crash_exit"], samplers=["ula", "exit_sampler"],
    )
    rows = {(r.method, r.sampler): r for _, r in frame.iterrows()}
    ok = rows["dsm", "ula"]
    assert ok.status == "ok" and ok["metric.pid"] != os.getpid()
    # dsm/ula ran before the job died in exit_sampler: its row came from the spill file.
    same = reference[(reference.method == "dsm") & (reference.sampler == "ula")].iloc[0]
    assert ok["metric.fisher_divergence"] == same["metric.fisher_divergence"]
    died = rows["dsm", "exit_sampler"]
    assert died.status == "failed" and "ended without a result" in died.reason
    for sampler in ("ula", "exit_sampler"):
        assert rows["crash_exit", sampler].status == "failed"
    assert not list((tmp_path / "submitit" / "rows").iterdir())  # spill files cleaned up


def test_submitit_debug_runs_jobs_in_this_process(reference, plugin_dir, tmp_path):
    pytest.importorskip("submitit")
    frame = sweep(tmp_path / "results.sqlite", plugin_dir, "slurm", {"cluster": "debug"},
                  methods=["dsm"])
    assert_same_numbers(frame, reference[reference.method == "dsm"])
    assert set(frame["metric.pid"]) == {os.getpid()}


def test_unfinished_rows_cover_exactly_the_runs_that_did_not_come_back(fresh_plugins):
    specs, metrics = expand(Selection(methods=["dsm"], samplers=["ula", "mala", "mh"],
                                      datasets=["eight_gaussians"], architectures=["mlp"],
                                      metrics=["fisher"], budget="smoke"))
    (group,) = group_tasks(specs)
    task = ebmbench.Task(group, metrics, "cpu", 5.0, "results", [])
    done = {group[0].run_id}
    rows = ebmbench.unfinished_rows(task, done, "timeout", "killed at the limit", "log")
    assert [r["run_id"] for r in rows] == [s.run_id for s in group[1:]]
    assert {(r["status"], r["reason"], r["traceback"]) for r in rows} == {
        ("timeout", "killed at the limit", "log")
    }
    assert all(r["finished_at"] and r["versions"]["method:dsm"] for r in rows)
    assert rows[0]["hyperparams"]["sampler"] == group[1].params["sampler"]
    with pytest.raises(ValueError, match="unknown status 'lost'"):
        ebmbench.unfinished_rows(task, done, "lost", "?")


@pytest.mark.parametrize("env, cuda, args, executor, params", [
    (None, False, [], "process", {"workers": 3}),          # on the CPU: one worker per core
    (None, True, [], "local", {}),                         # on a GPU: one process
    ("1", False, [], "local", {}),                         # EBMBENCH_WORKERS sizes the default
    ("2", False, [], "process", {"workers": 2}),
    ("1", False, ["--workers", "3"], "process", {"workers": 3}),   # the flag wins
    (None, False, ["--workers", "1"], "local", {}),
    (None, False, ["--executor", "local"], "local", {}),
    (None, False, ["--executor", "process", "--workers", "1"], "process", {"workers": 1}),
    (None, False, ["--address", "ray://head:10001"], "ray", {"address": "ray://head:10001"}),
    ("2", False, ["--address", "ray://head:10001"], "ray", {"address": "ray://head:10001"}),
    ("2", False, ["--executor", "slurm"], "slurm", {}),    # nor an executor chosen by name
])
def test_cli_workers_and_address_choose_the_executor(
    monkeypatch, tmp_path, env, cuda, args, executor, params
):
    seen = {}

    def fake_sweep(selection, **kwargs):
        seen.update(kwargs)
        return types.SimpleNamespace(frame=pd.DataFrame(), counts={}, ran=0, resumed=0,
                                     results=kwargs["results"])

    monkeypatch.setattr("ebmbench.sweep.run_sweep", fake_sweep)
    monkeypatch.setattr("ebmbench.cli._print_summary", lambda report: None)
    monkeypatch.setattr("ebmbench.device.usable_cpu_cores", lambda: 3)
    monkeypatch.setattr("ebmbench.device.resolve_device",
                        lambda name: torch.device("cuda" if cuda else "cpu"))
    if env is None:
        monkeypatch.delenv("EBMBENCH_WORKERS", raising=False)
    else:
        monkeypatch.setenv("EBMBENCH_WORKERS", env)
    main(["run", "--method", "dsm", "--results", str(tmp_path / "r.sqlite"), *args])
    assert seen["executor"] == executor and seen["executor_params"] == params


def test_every_executor_is_registered_with_its_parameters(fresh_plugins):
    assert set(ebmbench.list_plugins("executor")) >= {"local", "process", "ray", "slurm"}
    assert ebmbench.get_executor("process", workers=2).hparams["workers"] == 2
    assert ebmbench.get_executor("ray", address="auto").hparams["address"] == "auto"
    slurm = ebmbench.get_executor("slurm", partition="gpu", sbatch='{"account": "x"}')
    assert slurm.hparams["partition"] == "gpu" and slurm.hparams["sbatch"] == {"account": "x"}
    with pytest.raises(ebmbench.UserError, match="Valid choices: auto, slurm, local, debug"):
        ebmbench.get_executor("slurm", cluster="lsf")


def test_an_unreachable_ray_address_is_a_user_error_naming_it(tmp_path):
    pytest.importorskip("ray")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"ray://127.0.0.1:{port}"
    proc = subprocess.run(
        [sys.executable, "-m", "ebmbench.cli", "run", "--method", "dsm", "--sampler", "ula",
         "--dataset", "eight_gaussians", "--architecture", "mlp", "--budget", "smoke",
         "--address", address, "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"cannot reach Ray at --address '{address}'" in proc.stderr
    assert "Traceback" not in proc.stderr
