"""Loss + backward of every training method against a bare PyTorch transcription.

Run with ``pytest tests/benchmarks/test_methods_bench.py --benchmark-enable``. Each test
builds the 2-D MLP energy 2 → 128 → 128 → 1 (SiLU) and a batch of 1024 points, then times
the method's ``loss(batch)`` + ``backward()`` and a hand-written transcription of the same
objective, in interleaved rounds so that a busy machine slows both alike; the per-call times
and their ratio go to ``benchmark.extra_info``. With benchmarks disabled (the default here)
each test runs both paths once and checks that, fed the same random numbers, they give the
same loss and the same parameter gradients: the baseline really is the same computation.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ebmbench import TrainContext, get_dataset, get_method, get_sampler

BATCH = 1024
CD_STEPS = 10
ULA_EPS = 1e-2
FLOW = {"flow_transforms": 2, "flow_hidden": 32}


class MLPEnergy(nn.Module):
    """2 → 128 → 128 → 1 with SiLU."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(),
                                 nn.Linear(128, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)


# ------------------------------------------------------------ bare transcriptions


def _score(energy, x: Tensor, create_graph: bool) -> tuple[Tensor, Tensor]:
    x = x.detach().requires_grad_(True)
    f = energy(x)
    (s,) = torch.autograd.grad(f.sum(), x, create_graph=create_graph)
    return x, s


def bare_dsm(energy, x, g, sigma=0.1):
    # The antithetic pairs (dsm's default): half the batch at random, each example with ε and −ε.
    half = x[torch.randperm(len(x), generator=g)[: (len(x) + 1) // 2]]
    eps = torch.randn(half.shape, generator=g)
    x, eps = torch.cat([half, half]), torch.cat([eps, -eps])
    _, s = _score(energy, x + sigma * eps, True)
    return 0.5 * (s + eps / sigma).pow(2).sum(1).mean()


def bare_exact_sm(energy, x, g):
    xg, s = _score(energy, x, True)
    trace = sum(torch.autograd.grad(s[:, i].sum(), xg, create_graph=True)[0][:, i]
                for i in range(x.shape[1]))
    return (0.5 * s.pow(2).sum(1) + trace).mean()


def bare_ssm(energy, x, g, vr=False):
    v = torch.randn((1, *x.shape), generator=g)[0]
    xg, s = _score(energy, x, True)
    sv = (s * v).sum(1)
    (hv,) = torch.autograd.grad(sv.sum(), xg, create_graph=True)
    second = 0.5 * s.pow(2).sum(1) if vr else 0.5 * sv.pow(2)
    return ((hv * v).sum(1) + second).mean()


def bare_nce(energy, x, g, loc, tril, log_z):
    z = torch.randn(x.shape, generator=g)
    y = loc + z @ tril.T

    def log_pn(u):
        w = torch.linalg.solve_triangular(tril, (u - loc).T, upper=False).T
        return (-0.5 * w.pow(2).sum(1) - tril.diagonal().log().sum()
                - 0.5 * x.shape[1] * math.log(2 * math.pi))

    f = energy(torch.cat([x, y]))
    g_x = f[: len(x)] - log_z - log_pn(x)
    g_y = f[len(x):] - log_z - log_pn(y)
    return -(F.logsigmoid(g_x).mean() + F.logsigmoid(-g_y).mean())


def bare_cd(energy, x, g, x0):
    y = x0
    for _ in range(CD_STEPS):
        _, s = _score(energy, y, False)
        y = y + ULA_EPS * s + math.sqrt(2 * ULA_EPS) * torch.randn(y.shape, generator=g)
    f = energy(torch.cat([x, y.detach()]))
    return f[len(x):].mean() - f[: len(x)].mean()


def _flow_sample(flow, n, g):
    dist = flow()
    z = torch.randn((n, 2), generator=g)
    y, ladj = dist.transform.inv.call_and_ladj(z)
    return y, dist.base.log_prob(z) - ladj


def bare_fce(energy, x, g, flow, log_z):
    with torch.no_grad():
        y, log_q_y = _flow_sample(flow, len(x), g)
        log_q_x = flow().log_prob(x)
    f = energy(torch.cat([x, y]))
    g_x = f[: len(x)] - log_z - log_q_x
    g_y = f[len(x):] - log_z - log_q_y
    return -(F.logsigmoid(g_x).mean() + F.logsigmoid(-g_y).mean())


def bare_adversarial(energy, x, g, flow, alpha):
    with torch.no_grad():
        y, _ = _flow_sample(flow, len(x), g)
    f = energy(torch.cat([x, y]))
    f_x, f_y = f[: len(x)], f[len(x):]
    return f_y.mean() - f_x.mean() + alpha * (f_x.pow(2).mean() + f_y.pow(2).mean())


# -------------------------------------------------------------------- harness


def _interleaved(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternating rounds."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


# The bare NCE and FCE losses are written for ν = 1 noise sample per example.
METHODS = {
    "dsm": {}, "exact_sm": {}, "ssm": {}, "ssm_vr": {}, "nce": {"noise_ratio": 1.0},
    # cd from noise, as bare_cd starts (the quick default starts from the data).
    "cd": {"mcmc_steps": CD_STEPS, "chain_start": "noise"},
    "fce": FLOW | {"pretrain_steps": 0, "noise_ratio": 1.0},
    "adversarial": FLOW,
}


def _setup(name: str):
    torch.manual_seed(0)
    energy = MLPEnergy()
    dataset = get_dataset("eight_gaussians", budget="smoke")
    data = dataset.train_data(torch.Generator().manual_seed(0))
    batch = data[:BATCH]
    sampler = get_sampler("ula", step_size=ULA_EPS)
    method = get_method(name, batch_size=BATCH, **METHODS[name])
    method.setup(TrainContext(energy, sampler, dataset, data, torch.device("cpu"),
                              torch.Generator().manual_seed(0)))
    return method, energy, dataset, batch


def _bare(name: str, method, energy, dataset, batch) -> Callable[[torch.Generator], Tensor]:
    if name == "dsm":
        return lambda g: bare_dsm(energy, batch, g, method.hparams["sigma"])
    if name == "exact_sm":
        return lambda g: bare_exact_sm(energy, batch, g)
    if name in ("ssm", "ssm_vr"):
        return lambda g: bare_ssm(energy, batch, g, vr=name == "ssm_vr")
    if name == "nce":
        loc, tril = method.noise_dist.loc, method.noise_dist.scale_tril
        return lambda g: bare_nce(energy, batch, g, loc, tril, method.log_z)
    if name == "cd":
        return lambda g: bare_cd(energy, batch, g,
                                 dataset.init_noise(len(batch), torch.Generator().manual_seed(2)))
    if name == "fce":
        return lambda g: bare_fce(energy, batch, g, method.flow, method.log_z)
    if name == "adversarial":
        return lambda g: bare_adversarial(energy, batch, g, method.flow, method.hparams["alpha"])
    raise KeyError(name)


def _grads(module: nn.Module) -> list[Tensor]:
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone()
            for p in module.parameters()]


@pytest.mark.parametrize("name", list(METHODS))
def test_method_loss_backward_vs_bare(benchmark, name: str) -> None:
    method, energy, dataset, batch = _setup(name)
    bare = _bare(name, method, energy, dataset, batch)

    def run_method() -> Tensor:
        # Same random numbers as the bare path: reseed the method's generators.
        method.ctx.generator.manual_seed(1)
        if hasattr(method, "_noise_generator"):
            method._noise_generator.manual_seed(2)
        method.optimizer.zero_grad(set_to_none=True)
        loss, _ = method.loss(batch)
        loss.backward()
        return loss.detach()

    def run_bare() -> Tensor:
        energy.zero_grad(set_to_none=True)
        loss = bare(torch.Generator().manual_seed(1))
        loss.backward()
        return loss.detach()

    ours = run_method()
    grads = _grads(energy)
    theirs = run_bare()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, _grads(energy), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    if benchmark.disabled:
        benchmark(run_bare)
        return
    rounds = 10 if name in ("exact_sm", "cd") else 30
    med = _interleaved({"method": run_method, "bare": run_bare}, rounds)
    benchmark.extra_info.update({
        "method_ms": 1e3 * med["method"],
        "bare_ms": 1e3 * med["bare"],
        "ratio_vs_bare": med["method"] / med["bare"],
        "batch": BATCH,
        "torch_threads": torch.get_num_threads(),
    })
    benchmark.pedantic(run_method, rounds=rounds, iterations=1)
