"""One sampler step against a bare PyTorch loop doing the same update, in the same run.

Run with ``pytest tests/benchmarks/test_samplers_bench.py --benchmark-enable``
(``EBMBENCH_BENCH_THREADS=1`` for one torch thread). Each test
times the sampler and two hand-written loops (parameters requiring grad, as in a training
script, and parameters frozen, as the samplers run them) in interleaved rounds, so that a
busy machine slows all three alike, and records per-step times and the ratios in
``benchmark.extra_info``. With benchmarks disabled (the default in this repository) each
test runs every path once and checks that the sampler and the bare loop, fed the same
random numbers, produce the same chains: the baseline really is the same update.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from ebmbench import frozen_parameters, get_sampler

SAMPLERS = ("mh", "ula", "mala", "hmc")


@pytest.fixture(autouse=True, scope="module")
def bench_threads():
    """``EBMBENCH_BENCH_THREADS=1`` times with one intra-op thread (steadier on a busy
    machine); by default the suite's setting (2 threads) is kept."""
    before = torch.get_num_threads()
    if os.environ.get("EBMBENCH_BENCH_THREADS"):
        torch.set_num_threads(int(os.environ["EBMBENCH_BENCH_THREADS"]))
    yield
    torch.set_num_threads(before)


EPS = {"mh": 0.1, "ula": 1e-3, "mala": 1e-3, "hmc": 1e-2}
LEAPFROG = 3


class ConvEnergy(nn.Module):
    """A small conv energy on 1×28×28: three stride-2 convolutions (SiLU), then linear."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.SiLU(),
            nn.Flatten(), nn.Linear(64 * 4 * 4, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)


class MLPEnergy(nn.Module):
    """2 → 128 → 128 → 1 with SiLU."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(),
                                 nn.Linear(128, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)


CASES = {
    # name: (energy factory, chain shape, steps per timed round)
    "mlp2d-4096": (MLPEnergy, (4096, 2), 10),
    "conv28-128": (ConvEnergy, (128, 1, 28, 28), 2),
}


# ------------------------------------------------------------- the bare loops (baselines)
# They draw on the chains' device with a generator there (scripts/device_check.py runs them
# on a GPU); on the CPU that is exactly the default.


def _value_and_score(energy: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    x = x.detach().requires_grad_(True)
    value = energy(x)
    (score,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), score


def _sq(t: Tensor) -> Tensor:
    return t.flatten(1).pow(2).sum(1)


def _accept(x, f, s, x1, f1, s1, log_alpha, g):
    acc = torch.rand(x.shape[0], generator=g, device=x.device).log() < log_alpha
    m = acc.view(-1, *([1] * (x.dim() - 1)))
    x = torch.where(m, x1, x)
    f = torch.where(acc, f1, f)
    s = torch.where(m, s1, s) if s is not None else None
    return x, f, s


def bare_mh(energy, x, n, eps, g):
    with torch.no_grad():
        f = energy(x)
        for _ in range(n):
            x1 = x + eps * torch.randn(x.shape, generator=g, device=x.device)
            f1 = energy(x1)
            x, f, _ = _accept(x, f, None, x1, f1, None, f1 - f, g)
    return x


def bare_ula(energy, x, n, eps, g):
    for _ in range(n):
        _, s = _value_and_score(energy, x)
        x = x + eps * s + math.sqrt(2 * eps) * torch.randn(x.shape, generator=g, device=x.device)
    return x


def bare_mala(energy, x, n, eps, g):
    f, s = _value_and_score(energy, x)
    for _ in range(n):
        z = torch.randn(x.shape, generator=g, device=x.device)
        x1 = x + eps * s + math.sqrt(2 * eps) * z
        f1, s1 = _value_and_score(energy, x1)
        log_alpha = f1 - f - _sq(x - x1 - eps * s1) / (4 * eps) + 0.5 * _sq(z)
        x, f, s = _accept(x, f, s, x1, f1, s1, log_alpha, g)
    return x


def bare_hmc(energy, x, n, eps0, g):
    f, s = _value_and_score(energy, x)
    shape = (-1,) + (1,) * (x.dim() - 1)
    for _ in range(n):
        # hmc's default step jitter: each chain's ε uniform on [(1 − j)ε₀, (1 + j)ε₀].
        u = torch.rand(x.shape[0], generator=g, device=x.device)
        eps = (eps0 * (1 - HMC_JITTER + 2 * HMC_JITTER * u)).view(shape)
        p = torch.randn(x.shape, generator=g, device=x.device)
        h0 = 0.5 * _sq(p) - f
        p = p + 0.5 * eps * s
        x1 = x
        for i in range(LEAPFROG):
            x1 = x1 + eps * p
            f1, s1 = _value_and_score(energy, x1)
            p = p + (0.5 * eps if i == LEAPFROG - 1 else eps) * s1
        log_alpha = h0 - (0.5 * _sq(p) - f1)
        x, f, s = _accept(x, f, s, x1, f1, s1, log_alpha, g)
    return x


HMC_JITTER = get_sampler("hmc").hparams["step_jitter"]

BARE: dict[str, Callable] = {"mh": bare_mh, "ula": bare_ula, "mala": bare_mala,
                             "hmc": bare_hmc}


def _interleaved(
    fns: dict[str, Callable[[], object]], rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall-clock and process-CPU seconds per call of each function, timed in
    alternating rounds. CPU time is the steadier of the two on a shared machine."""
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            wall[key].append(time.perf_counter() - w0)
            cpu[key].append(time.process_time() - c0)
    med = statistics.median
    return {k: med(v) for k, v in wall.items()}, {k: med(v) for k, v in cpu.items()}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_step_vs_bare_loop(benchmark, name: str, case: str) -> None:
    torch.manual_seed(0)
    make, shape, n = CASES[case]
    if benchmark.disabled:  # a correctness check only: keep it short
        n = max(1, n // 5)
    energy = make()
    x0 = torch.randn(shape) * 0.5
    eps = EPS[name]
    extra = {"leapfrog_steps": LEAPFROG} if name == "hmc" else {}
    sampler = get_sampler(name, step_size=eps, **extra)

    def run_sampler() -> Tensor:
        return sampler.sample(energy, x0, n, generator=torch.Generator().manual_seed(1)).x

    def run_bare() -> Tensor:
        return BARE[name](energy, x0, n, eps, torch.Generator().manual_seed(1))

    def run_bare_frozen() -> Tensor:
        with frozen_parameters(energy):
            return run_bare()

    # Same update, same random numbers: the chains must agree.
    torch.testing.assert_close(run_sampler(), run_bare(), rtol=1e-5, atol=1e-5)
    assert all(p.grad is None and p.requires_grad for p in energy.parameters())
    if benchmark.disabled:
        benchmark(run_bare_frozen)
        return
    run_sampler(), run_bare(), run_bare_frozen()  # warm the allocator and caches
    rounds = 30 if case.startswith("mlp") else 8
    med, cpu = _interleaved({"sampler": run_sampler, "bare": run_bare,
                             "bare_frozen": run_bare_frozen}, rounds)
    benchmark.extra_info.update({
        "steps_per_round": n,
        "sampler_ms_per_step": 1e3 * med["sampler"] / n,
        "bare_ms_per_step": 1e3 * med["bare"] / n,
        "bare_frozen_ms_per_step": 1e3 * med["bare_frozen"] / n,
        "ratio_vs_bare": med["sampler"] / med["bare"],
        "ratio_vs_bare_frozen": med["sampler"] / med["bare_frozen"],
        "cpu_ratio_vs_bare": cpu["sampler"] / cpu["bare"],
        "cpu_ratio_vs_bare_frozen": cpu["sampler"] / cpu["bare_frozen"],
        "torch_threads": torch.get_num_threads(),
    })
    benchmark.pedantic(run_sampler, rounds=rounds, iterations=1)


def test_torchebm_langevin(benchmark) -> None:
    """torchebm's LangevinDynamics on the 2-D MLP, against our ULA in the same run.

    torchebm (checked with 0.8.9) models the energy U = −f and updates
    x − η∇U + √(2η)·noise_scale·z, which with noise_scale = 1 is exactly our ULA.
    """
    torchebm = pytest.importorskip("torchebm")
    from torchebm.core import BaseModel
    from torchebm.samplers import LangevinDynamics

    torch.manual_seed(0)
    energy = MLPEnergy()
    x0 = torch.randn(4096, 2) * 0.5
    n, eps = 2 if benchmark.disabled else 10, 1e-3

    class Negated(BaseModel):
        def __init__(self) -> None:
            super().__init__()
            self.f = energy

        def forward(self, x: Tensor) -> Tensor:
            return -self.f(x)

    theirs = LangevinDynamics(Negated(), step_size=eps, noise_scale=1.0)
    ours = get_sampler("ula", step_size=eps)

    def run_theirs() -> Tensor:
        return theirs.sample(x=x0.clone(), n_steps=n, generator=torch.Generator().manual_seed(1))

    def run_ours() -> Tensor:
        return ours.sample(energy, x0, n, generator=torch.Generator().manual_seed(1)).x

    torch.testing.assert_close(run_ours(), run_theirs(), rtol=1e-4, atol=1e-5)
    if benchmark.disabled:
        benchmark(run_theirs)
        return
    run_theirs(), run_ours()
    med, cpu = _interleaved({"ours": run_ours, "torchebm": run_theirs}, 30)
    benchmark.extra_info.update({
        "torchebm_version": getattr(torchebm, "__version__", "?"),
        "ours_ms_per_step": 1e3 * med["ours"] / n,
        "torchebm_ms_per_step": 1e3 * med["torchebm"] / n,
        "ratio_ours_vs_torchebm": med["ours"] / med["torchebm"],
        "cpu_ratio_ours_vs_torchebm": cpu["ours"] / cpu["torchebm"],
    })
    benchmark.pedantic(run_theirs, rounds=30, iterations=1)
