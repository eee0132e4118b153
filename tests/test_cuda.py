"""Tests that need a CUDA GPU (marked ``cuda``; skipped elsewhere).

``scripts/device_check.py`` runs them on a GPU. They check what the CPU tests cannot: real
CUDA-graph capture and replay (the graph's noise comes from a generator registered with the
graph, so the same seed gives the same chains), inductor-compiled steps, bf16 autocast on
CUDA, and a harness run on the GPU with its peak memory recorded.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import ebmbench
from ebmbench import get_architecture, get_sampler

pytestmark = pytest.mark.cuda

SAMPLERS = ("mh", "ula", "mala", "hmc")
EPS = {"mh": 0.2, "ula": 0.01, "mala": 0.01, "hmc": 0.05}


def cuda_gen(seed: int) -> torch.Generator:
    return torch.Generator("cuda").manual_seed(seed)


def graph_seed(seed: int) -> int:
    """The seed the graphed path gives its generator: one draw from the run's generator."""
    return int(torch.randint(0, 2**62, (1,), generator=cuda_gen(seed), device="cuda"))


class SmoothEnergy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 64), nn.SiLU(), nn.Linear(64, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1) - 0.5 * x.pow(2).sum(1)


def assert_same_chains(a: Tensor, b: Tensor, tol: float = 1e-4) -> None:
    """All but a few chains agree to ``tol``: a rounding difference (ε as a float or as a
    tensor, fused kernels) may flip a rare accept decision that sits on its threshold, and
    that chain then goes its own way."""
    close = (a - b).abs().flatten(1).amax(1) <= tol
    assert close.float().mean() >= 0.99, f"{int((~close).sum())} of {len(close)} chains differ"


@pytest.fixture
def energy() -> nn.Module:
    torch.manual_seed(0)
    return SmoothEnergy().cuda()


def sampler(name: str, **params):
    extra = {"leapfrog_steps": 2} if name == "hmc" else {}
    return get_sampler(name, budget="smoke", step_size=EPS[name], **extra, **params)


@pytest.mark.parametrize("name", SAMPLERS)
def test_cuda_graph_replays_the_eager_kernel_reproducibly(name, energy):
    """Replays draw from the graph's generator, seeded from the run's generator: the chains
    equal an eager run on a CUDA generator with that seed (philox offsets advance alike),
    and the same seed gives the same chains."""
    x0 = torch.randn(512, 2, generator=torch.Generator().manual_seed(0)).cuda()
    graphed = sampler(name, step_impl="cuda_graph")
    a = graphed.sample(energy, x0, 20, generator=cuda_gen(1))
    b = graphed.sample(energy, x0, 20, generator=cuda_gen(1))
    c = graphed.sample(energy, x0, 20, generator=cuda_gen(2))
    assert a.notes == {}, a.notes
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    reference = sampler(name).sample(energy, x0, 20, generator=cuda_gen(graph_seed(1)))
    assert_same_chains(a.x, reference.x)
    assert a.stats["energy_evals"] == reference.stats["energy_evals"]
    if "acceptance_rate" in a.stats:
        assert a.stats["acceptance_rate"] == pytest.approx(reference.stats["acceptance_rate"],
                                                           abs=0.01)


def test_cuda_graph_mala_is_exact_on_a_gaussian():
    """Exactness survives the capture: MALA's samples of N(0, I) have its moments."""
    gaussian = lambda x: -0.5 * x.pow(2).sum(1)  # noqa: E731
    x0 = 3 * torch.randn(20_000, 2, generator=torch.Generator().manual_seed(0)).cuda()
    result = get_sampler("mala", step_size=0.5, step_impl="cuda_graph").sample(
        gaussian, x0, 300, generator=cuda_gen(3))
    assert result.notes == {}
    mean, var = result.x.mean(0), result.x.var(0)
    assert mean.abs().max() < 0.05 and (var - 1).abs().max() < 0.05


@pytest.mark.parametrize("name", ["ula", "mala"])
def test_inductor_compiled_step_matches_eager(name, energy):
    x0 = torch.randn(1024, 2, generator=torch.Generator().manual_seed(0)).cuda()
    eager = sampler(name).sample(energy, x0, 10, generator=cuda_gen(1))
    compiled = sampler(name, step_impl="compile").sample(energy, x0, 10, generator=cuda_gen(1))
    assert compiled.notes == {}, compiled.notes
    assert_same_chains(compiled.x, eager.x)
    assert compiled.stats["grad_evals"] == eager.stats["grad_evals"]


@pytest.mark.parametrize("name", ["mlp", "convnet", "wide_resnet"])
def test_bf16_on_cuda_gives_float32_f_and_score_close_to_fp32(name):
    shape = (2,) if name == "mlp" else (3, 32, 32)
    torch.manual_seed(0)
    fp32 = get_architecture(name, budget="smoke").build(shape).cuda().eval()
    bf16 = get_architecture(name, budget="smoke", precision="bf16").build(shape).cuda().eval()
    bf16.load_state_dict(fp32.state_dict())
    x = torch.randn(16, *shape, device="cuda")
    f_lo, s_lo = ebmbench.energy_and_score(bf16, x)
    f_hi, s_hi = ebmbench.energy_and_score(fp32, x)
    assert f_lo.dtype == s_lo.dtype == torch.float32
    scale = f_hi.abs().max() + 1e-3
    assert (f_lo - f_hi).abs().max() < 0.02 * scale
    assert (s_lo - s_hi).norm() < 0.05 * s_hi.norm()


def test_a_run_on_cuda_with_a_captured_sampler_records_gpu_cost(tmp_path):
    frame = ebmbench.run(
        methods=["dsm"], samplers=["mala"], architectures=["convnet"], datasets=["digits"],
        metrics=["cost"], budget="smoke", device="cuda", results=tmp_path / "r.sqlite",
        overrides={"sampler.mala.step_impl": "cuda_graph",
                   "architecture.convnet.precision": "bf16"},
    )
    row = frame.iloc[0]
    assert row.status == "ok", row.reason
    assert row.device.startswith("cuda") and row.peak_memory_mb > 0
    assert row.hyperparams["precision"] == "bf16"
    assert "sampler_step_impl" not in row.notes  # no fallback: the graph ran


def test_process_pool_runs_on_the_gpu(tmp_path):
    frame = ebmbench.run(
        methods=["dsm"], samplers=["ula"], architectures=["mlp"], datasets=["eight_gaussians"],
        metrics=["cost"], budget="smoke", device="cuda", results=tmp_path / "r.sqlite",
        executor="process", executor_params={"gpu_fraction": 0.5},
    )
    assert set(frame.status) == {"ok"} and all(d.startswith("cuda") for d in frame.device)
