"""A run that raises, diverges, hangs or kills its worker is recorded; the sweep goes on.

The fault-injection plugins live in a loose .py file written into a ``--plugins-dir``
folder, so that worker processes (which do not share the test's memory) load them too.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

import ebmbench

#: Methods that fail in each way a run can, a sampler that kills its worker, a slow method
#: for interrupting sweeps, and a metric that reports what the samples and the worker were.
FAULT_PLUGINS = '''
"""Fault-injection and probe plugins for the executor tests."""

import os
import signal
import time

import torch

from ebmbench import Method, Metric, Param, SampleResult, Sampler, hookimpl


class Quadratic(Method):
    """Minimises E_data[f²]: trivially trainable."""

    name = "quadratic"
    description = "test: trivially trainable"

    def loss(self, batch):
        return self.energy(batch).pow(2).mean(), {}


class CrashExit(Quadratic):
    name = "crash_exit"
    description = "test: the process exits with code 3 during training"

    def loss(self, batch):
        os._exit(3)


class CrashKill(Quadratic):
    name = "crash_kill"
    description = "test: the process is killed by SIGKILL, as by the out-of-memory killer"

    def loss(self, batch):
        os.kill(os.getpid(), signal.SIGKILL)


class Hang(Quadratic):
    name = "hang"
    description = "test: one training step never returns"

    def loss(self, batch):
        time.sleep(1e6)


class RaiseError(Quadratic):
    name = "raise_error"
    description = "test: raises during training"

    def loss(self, batch):
        raise RuntimeError("deliberate failure in training")


class NaNLoss(Quadratic):
    name = "nan_loss"
    description = "test: the loss is NaN"

    def loss(self, batch):
        return self.energy(batch).mean() * float("nan"), {}


class Nap(Quadratic):
    name = "nap"
    description = "test: sleeps in every step"
    params = Method.params | {"seconds": Param(0.05, "sleep per step")}

    def setup(self, ctx):
        super().setup(ctx)
        log = os.environ.get("EBMBENCH_TEST_EXECUTIONS")
        if log:  # one line per training, naming its data: how often each run was computed
            with open(log, "a") as f:
                f.write(f"{float(ctx.train_data[0, 0]):.9g}\\n")

    def loss(self, batch):
        time.sleep(self.hparams["seconds"])
        return super().loss(batch)


class ExitSampler(Sampler):
    name = "exit_sampler"
    description = "test: the process exits with code 4 while sampling"
    params = {"steps": Param(1, "unused")}

    def sample(self, energy, x0, n_steps=None, *, generator=None):
        os._exit(4)


class Probe(Metric):
    name = "probe"
    description = "test: sample moments, and the process and threads that computed them"
    needs_samples = True
    higher_is_better = {"sample_mean": True, "sample_sq": True, "pid": True, "threads": True}

    def compute(self, ctx):
        x = ctx.samples.double()
        return {"sample_mean": float(x.mean()), "sample_sq": float(x.pow(2).mean()),
                "pid": float(os.getpid()), "threads": float(torch.get_num_threads())}


@hookimpl
def ebmbench_register_methods(register):
    for cls in (Quadratic, CrashExit, CrashKill, Hang, RaiseError, NaNLoss, Nap):
        register(cls)


@hookimpl
def ebmbench_register_samplers(register):
    register(ExitSampler)


@hookimpl
def ebmbench_register_metrics(register):
    register(Probe)
'''


def write_fault_plugins(folder: Path) -> Path:
    """Write the fault-injection plugins as ``folder/ebmbench_fault_plugins.py``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ebmbench_fault_plugins.py").write_text(textwrap.dedent(FAULT_PLUGINS))
    return folder


@pytest.fixture
def fault_plugins(fresh_plugins, tmp_path):
    ebmbench.add_plugins_dir(write_fault_plugins(tmp_path / "plugins"))
    return fresh_plugins


def _by_run(frame):
    return {(r.method, r.sampler): r for _, r in frame.iterrows()}


@pytest.mark.slow
def test_process_pool_records_every_fault_and_finishes_the_other_runs(fault_plugins, tmp_path):
    # Five tasks on two workers: three of them kill their worker (os._exit while sampling,
    # SIGKILL, a hang cut at the hard limit), so later tasks run on replacement workers.
    timeout, grace = 3.0, 3.0
    frame = ebmbench.run(
        methods=["quadratic", "crash_kill", "hang", "raise_error", "nan_loss"],
        samplers=["ula", "exit_sampler"], datasets=["eight_gaussians"], architectures=["mlp"],
        metrics=["fisher", "probe"], budget="smoke", timeout=timeout, executor="process",
        executor_params={"workers": 2, "grace": grace}, results=tmp_path / "r" / "results.sqlite",
    )
    rows = _by_run(frame)
    assert len(rows) == 10
    # A worker that dies after a run finished keeps that run: only the unfinished one fails.
    assert rows["quadratic", "ula"].status == "ok", rows["quadratic", "ula"].reason
    crashed = rows["quadratic", "exit_sampler"]
    assert crashed.status == "failed"
    assert crashed.reason == "the worker process died with exit code 4 while running it"
    for sampler in ("ula", "exit_sampler"):
        killed = rows["crash_kill", sampler]
        assert killed.status == "failed" and "killed by SIGKILL (exit code -9" in killed.reason
        # The driver watched the worker's memory: a killed run still reports a peak (the
        # worker has imported torch, so it is well above a few MiB).
        assert killed.peak_memory_mb > 50, killed.peak_memory_mb
        hung = rows["hang", sampler]
        limit = timeout * 3 + grace
        assert hung.status == "timeout" and f"past its {limit:g} s" in hung.reason, hung.reason
        raised = rows["raise_error", sampler]
        assert raised.status == "failed" and "deliberate failure in training" in raised.traceback
        assert "RuntimeError: deliberate failure in training" == raised.reason
        nan = rows["nan_loss", sampler]
        assert nan.status == "diverged" and "loss became nan" in nan.reason
    # Rows made by the driver for lost runs still carry what is needed to re-run them.
    lost = rows["hang", "ula"]
    assert lost.hyperparams["method"]["steps"] == 30 and lost.versions["method:hang"]
    assert lost.finished_at and lost.seed == 0 and lost.budget == "smoke"
    # The ok runs ran in worker processes, never in this one.
    pids = set(frame.loc[frame.status == "ok", "metric.pid"])
    assert len(pids) >= 1 and os.getpid() not in pids
