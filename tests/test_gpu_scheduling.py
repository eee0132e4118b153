"""GPU-aware placement on a machine without GPUs: the process pool pins each worker to a
GPU through CUDA_VISIBLE_DEVICES, and Ray, given fake GPU resources (``ray.init(num_gpus=2)``),
hands each task the GPU ids it reserved, whole or in the declared fraction.

Each task waits at a barrier (files in a shared folder) until all of them are running, so
the tasks are provably concurrent and the GPUs they see are the ones their placement gave
them, not an accident of one worker taking every task in turn.
"""

from __future__ import annotations

import collections
import os
import time
import types
from pathlib import Path

import pytest
from ebmbench_plugins.executors import process as process_module
from ebmbench_plugins.executors.process import gpu_slots

import ebmbench
from ebmbench import UserError, get_executor


def report_gpu(task: tuple[str, int, int]):
    """Wait until ``n`` tasks have arrived, then report what this process sees."""
    folder, index, n = task
    Path(folder, f"{index}").write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    while len(os.listdir(folder)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    gpu_ids: list = []
    try:
        import ray

        if ray.is_initialized():
            gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    except ImportError:
        pass
    yield {"index": index, "pid": os.getpid(), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
           "ray_gpus": gpu_ids, "together": len(os.listdir(folder)) >= n}


class CudaTask(types.SimpleNamespace):
    """A task that says it runs on CUDA (the executors place by ``task.device``)."""


def test_gpu_slots_give_each_gpu_its_share_of_workers():
    assert gpu_slots(["0", "1"], 1.0) == ["0", "1"]
    assert gpu_slots(["0", "1"], 0.5) == ["0", "1", "0", "1"]
    assert gpu_slots(["0", "1", "2"], 0.3) == ["0", "1", "2"] * 3
    assert gpu_slots([], 0.5) == []
    for bad in (0.0, 1.5, -1.0):
        with pytest.raises(UserError, match="gpu_fraction must be in"):
            gpu_slots(["0"], bad)


def test_process_pool_pins_one_worker_per_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(process_module, "_visible_gpus", lambda: ["0", "1"])
    folder = tmp_path / "barrier"
    folder.mkdir()
    executor = get_executor("process", budget="smoke")  # workers 0: as many as GPU slots
    rows = list(executor.map(report_gpu, [(str(folder), i, 2) for i in range(2)]))
    assert all(r["together"] for r in rows)
    assert len({r["pid"] for r in rows}) == 2
    assert sorted(r["cuda"] for r in rows) == ["0", "1"]


def test_process_pool_caps_workers_at_the_declared_fraction(monkeypatch):
    monkeypatch.setattr(process_module, "_visible_gpus", lambda: ["0", "1"])
    monkeypatch.setattr(process_module, "usable_cpu_cores", lambda: 16)

    def placement(tasks, **params):
        return get_executor("process", **params).placement(tasks)

    cuda = [CudaTask(device="cuda")] * 8
    assert placement(cuda) == ["0", "1"]  # one run per GPU, not one per core
    assert placement(cuda, gpu_fraction=0.5) == ["0", "1", "0", "1"]
    assert placement(cuda, gpu_fraction=0.25, workers=3) == ["0", "1", "0"]
    assert placement(cuda, workers=8) == ["0", "1"]  # the fraction caps the workers
    assert placement(cuda[:1], gpu_fraction=0.5) == ["0"]  # no more workers than tasks
    assert placement(cuda, spread_gpus=False) == [None] * 8  # unpinned: one per core
    cpu = [ebmbench.Task([], {}, "cpu", None, ".", [])] * 3
    assert placement(cpu) == [None] * 3 and placement(cpu, workers=2) == [None] * 2
    monkeypatch.setattr(process_module, "_visible_gpus", lambda: [])
    assert placement(cuda, workers=2) == [None, None]  # CUDA asked for, none visible


@pytest.fixture(scope="module")
def ray_with_fake_gpus():
    """A local Ray that believes it has two GPUs (none is touched)."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        if ray.cluster_resources().get("GPU", 0) >= 2:
            yield ray
            return
        ray.shutdown()  # an earlier test's Ray without GPUs
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_gives_each_task_its_reserved_gpus(ray_with_fake_gpus, tmp_path):
    """Four tasks at half a GPU each, all running at once: two on each fake GPU."""
    folder = tmp_path / "barrier"
    folder.mkdir()
    n_tasks = 4
    executor = get_executor("ray", gpu_fraction=0.5, cpus_per_task=0.5)
    tasks = [CudaTask(device="cuda", args=(str(folder), i, n_tasks)) for i in range(n_tasks)]
    rows = list(executor.map(_report_gpu_of, tasks))
    assert len(rows) == n_tasks and all(r["together"] for r in rows)
    # Ray sets CUDA_VISIBLE_DEVICES from the GPU ids it assigned to the task.
    assert all(r["cuda"] == ",".join(r["ray_gpus"]) and len(r["ray_gpus"]) == 1 for r in rows)
    per_gpu = collections.Counter(r["cuda"] for r in rows)
    assert per_gpu == {"0": n_tasks // 2, "1": n_tasks // 2}


def _report_gpu_of(task: CudaTask):
    yield from report_gpu(task.args)


def test_ray_asks_for_no_gpu_for_cpu_tasks_and_the_fraction_for_cuda_ones():
    executor = get_executor("ray", gpu_fraction=0.25)
    assert executor._gpus(CudaTask(device="cuda"), has_gpus=True) == 0.25
    assert executor._gpus(CudaTask(device="auto"), has_gpus=True) == 0.25
    assert executor._gpus(CudaTask(device="auto"), has_gpus=False) == 0.0
    assert executor._gpus(CudaTask(device="cpu"), has_gpus=True) == 0.0
    assert get_executor("ray", num_gpus=2.0)._gpus(CudaTask(device="cpu"), True) == 2.0
    with pytest.raises(UserError, match="gpu_fraction"):
        get_executor("ray", gpu_fraction=2.0)._gpus(CudaTask(device="cuda"), True)
