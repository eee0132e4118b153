"""The fast sampler steps (``step_impl``) on the CPU: what they compute, through the paths a
CPU has.

- ``compile``: the whole transition through ``torch.compile`` (the ``aot_eager`` backend,
  which traces forward and ∇ₓf the way inductor does but runs them eagerly) gives the eager
  chains and statistics, in one graph, compiled once.
- ``cuda_graph`` on CPU chains runs eagerly, bit for bit, and says so in ``notes``.
- The capture logic itself (fixed buffers, the device-side step counter and schedule, the
  acceptance counter, the graph's own generator seeded from the run's) runs on the CPU with
  a stand-in graph that replays the captured function: it must give exactly the chains of
  an eager run whose generator is seeded with the graph's seed.

tests/test_cuda.py checks the real CUDA graphs and inductor on a GPU.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch import Tensor, nn

from ebmbench import STEP_IMPLS, EnergyCounter, MarkovChainSampler, get_sampler, list_plugins

SAMPLERS = ("mh", "ula", "mala", "hmc")
#: Step sizes small enough that most proposals are accepted, so that rounding differences
#: between paths cannot flip an accept decision within a few steps.
EPS = {"mh": 0.2, "ula": 0.01, "mala": 0.01, "hmc": 0.05}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class SmoothEnergy(nn.Module):
    """A SiLU MLP plus a Gaussian term, on vectors or flattened images."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, 16), nn.SiLU(),
                                 nn.Linear(16, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1) - 0.5 * x.flatten(1).pow(2).sum(1)


class ReplayingGraph:
    """A stand-in for a CUDA graph: ``replay`` calls the captured function again."""

    captures = 0

    def warm_up(self, fn, times: int) -> None:
        for _ in range(times):
            fn()

    def capture(self, fn, generator) -> None:
        type(self).captures += 1
        self.fn = fn
        fn()  # a CUDA capture records without running; the sampler reloads the buffers after

    def replay(self) -> None:
        self.fn()


@pytest.fixture
def energy() -> nn.Module:
    torch.manual_seed(0)
    return SmoothEnergy(2)


def sampler(name: str, **params) -> MarkovChainSampler:
    extra = {"leapfrog_steps": 2} if name == "hmc" else {}
    return get_sampler(name, budget="smoke", step_size=EPS[name], **extra, **params)


def graph_seed(seed: int) -> int:
    """The seed the graphed path gives its generator: one draw from the run's generator."""
    return int(torch.randint(0, 2**62, (1,), generator=gen(seed)))


@pytest.mark.parametrize("name", SAMPLERS)
def test_step_impl_is_a_parameter_of_every_sampler_and_eager_by_default(name):
    for budget in ("smoke", "quick", "full"):
        assert get_sampler(name, budget=budget).hparams["step_impl"] == "eager"
    assert get_sampler(name).params["step_impl"].choices == STEP_IMPLS
    with pytest.raises(Exception, match="step_impl"):
        get_sampler(name, step_impl="triton")


def test_every_builtin_mcmc_sampler_has_the_fast_paths():
    for name in list_plugins("sampler"):
        s = get_sampler(name)
        if isinstance(s, MarkovChainSampler):
            assert "step_impl" in s.hparams


# ------------------------------------------------------------------------- compile


@pytest.mark.parametrize("name", SAMPLERS)
def test_compiled_step_gives_the_eager_chains_in_one_graph_compiled_once(name, energy):
    x0 = torch.randn(64, 2, generator=gen(0))
    eager = sampler(name).sample(energy, x0, 6, generator=gen(1))
    fast = sampler(name, step_impl="compile")
    fast.compile_options = {"backend": "aot_eager"}
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    first = fast.sample(energy, x0, 6, generator=gen(1))
    again = fast.sample(energy, x0, 6, generator=gen(1))
    counters = torch._dynamo.utils.counters
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 1  # the second call recompiled nothing
    torch.testing.assert_close(first.x, eager.x, rtol=1e-6, atol=1e-6)
    assert torch.equal(first.x, again.x)
    assert first.stats == eager.stats  # evaluations per chain and acceptance, exactly
    assert first.notes == {}
    assert all(p.grad is None and p.requires_grad for p in energy.parameters())


@pytest.mark.parametrize("name", ["mala", "hmc"])
def test_compiled_step_after_per_chain_warmup_and_with_a_schedule(name, energy):
    """Warm-up adapts ε eagerly (per chain here); the compiled steps then take the frozen
    per-chain ε times the schedule's factor, as the eager loop does."""
    params = dict(warmup=4, adapt="per_chain", schedule="cosine", final_ratio=0.2)
    x0 = torch.randn(32, 2, generator=gen(2))
    eager = sampler(name, **params).sample(energy, x0, 10, generator=gen(3))
    fast = sampler(name, step_impl="compile", **params)
    fast.compile_options = {"backend": "aot_eager"}
    result = fast.sample(energy, x0, 10, generator=gen(3))
    torch.testing.assert_close(result.x, eager.x, rtol=1e-5, atol=1e-6)
    assert result.stats == pytest.approx(eager.stats, rel=1e-6)
    assert torch.is_tensor(fast.state.step_size) and fast.state.step_size.shape == (32,)


def test_a_step_torch_compile_cannot_build_runs_eagerly_with_a_note(energy):
    def broken_backend(graph_module, example_inputs):
        raise RuntimeError("this backend compiles nothing")

    x0 = torch.randn(16, 2, generator=gen(0))
    eager = sampler("mala").sample(energy, x0, 5, generator=gen(1))
    fast = sampler("mala", step_impl="compile")
    fast.compile_options = {"backend": broken_backend}
    torch._dynamo.reset()
    result = fast.sample(energy, x0, 5, generator=gen(1))
    torch.testing.assert_close(result.x, eager.x, rtol=1e-6, atol=1e-6)
    assert result.stats == eager.stats
    assert result.notes["step_impl"] == ("compile failed, the steps ran eagerly: RuntimeError: "
                                         "this backend compiles nothing")


def test_the_compiled_step_draws_the_eager_random_numbers_in_order(energy):
    """MALA draws z (shape of x) and then log u (one per chain) every step: the compiled path
    draws them from the caller's generator in that order, so the generator ends where the
    eager sampler leaves it."""
    x0 = torch.randn(8, 2, generator=gen(0))
    g_eager, g_fast = gen(5), gen(5)
    sampler("mala").sample(energy, x0, 4, generator=g_eager)
    fast = sampler("mala", step_impl="compile")
    fast.compile_options = {"backend": "aot_eager"}
    fast.sample(energy, x0, 4, generator=g_fast)
    assert torch.equal(g_eager.get_state(), g_fast.get_state())


# ---------------------------------------------------------------------- CUDA graphs


@pytest.mark.parametrize("name", SAMPLERS)
def test_cuda_graph_on_cpu_chains_is_exactly_eager_with_a_note(name, energy):
    x0 = torch.randn(32, 2, generator=gen(0))
    eager = sampler(name).sample(energy, x0, 5, generator=gen(1))
    result = sampler(name, step_impl="cuda_graph").sample(energy, x0, 5, generator=gen(1))
    assert torch.equal(result.x, eager.x) and result.stats == eager.stats
    assert result.notes == {
        "step_impl": "cuda_graph needs CUDA chains; these are on cpu, so the steps ran eagerly"
    }


@pytest.mark.parametrize("schedule", ["constant", "geometric"])
@pytest.mark.parametrize("name", SAMPLERS)
def test_captured_step_replays_the_eager_kernel_from_the_graph_seed(name, schedule, energy):
    """The capture logic, with a graph that replays on the CPU: chains, evaluation counts
    and acceptance equal those of an eager run driven by a generator seeded with the seed
    the graph's own generator gets from the run's generator."""
    params = dict(schedule=schedule, final_ratio=0.05)
    x0 = torch.randn(48, 2, generator=gen(0))
    reference = sampler(name, **params).sample(energy, x0, 7, generator=gen(graph_seed(1)))
    graphed = sampler(name, step_impl="cuda_graph", **params)
    graphed.graph_factory = ReplayingGraph
    result = graphed.sample(energy, x0, 7, generator=gen(1))
    # ULA's eager step multiplies by a Python float, the captured one by a tensor: rounding.
    torch.testing.assert_close(result.x, reference.x, rtol=1e-6, atol=1e-6)
    assert result.stats == reference.stats and result.notes == {}


@pytest.mark.parametrize("n_steps", [1, 2])
def test_a_captured_step_of_a_short_call_stays_within_its_schedule(n_steps, energy):
    """Warm-up runs the step twice before capture: with one or two steps per call the
    device-side step counter must not run past the schedule."""
    params = dict(schedule="linear", final_ratio=0.5)
    x0 = torch.randn(8, 2, generator=gen(0))
    reference = sampler("mala", **params).sample(energy, x0, n_steps, generator=gen(graph_seed(4)))
    graphed = sampler("mala", step_impl="cuda_graph", **params)
    graphed.graph_factory = ReplayingGraph
    result = graphed.sample(energy, x0, n_steps, generator=gen(4))
    torch.testing.assert_close(result.x, reference.x, rtol=1e-6, atol=1e-6)
    assert result.stats == reference.stats


def test_a_captured_step_is_reused_across_calls_and_captured_again_when_it_must_be(energy):
    s = sampler("mala", step_impl="cuda_graph")
    s.graph_factory = ReplayingGraph
    ReplayingGraph.captures = 0
    x0 = torch.randn(16, 2, generator=gen(0))
    a = s.sample(energy, x0, 5, generator=gen(1))
    b = s.sample(energy, x0, 5, generator=gen(1))
    c = s.sample(energy, x0, 5, generator=gen(2))
    assert ReplayingGraph.captures == 1
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)  # reproducible from the seed
    assert a.x.data_ptr() != b.x.data_ptr()  # callers get copies, not the graph's buffers
    s.sample(energy, torch.randn(24, 2, generator=gen(0)), 5, generator=gen(1))  # new shape
    s.sample(energy, x0, 6, generator=gen(1))  # a new number of steps
    energy.eval()
    s.sample(energy, x0, 6, generator=gen(1))  # another mode of the energy
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s.sample(energy, x0, 6, generator=gen(1))
    assert ReplayingGraph.captures == 5


def test_a_step_that_cannot_be_captured_runs_eagerly_with_a_note(energy):
    class RefusingGraph(ReplayingGraph):
        def capture(self, fn, generator) -> None:
            raise RuntimeError("operation not permitted when stream is capturing")

    x0 = torch.randn(16, 2, generator=gen(0))
    eager = sampler("hmc").sample(energy, x0, 4, generator=gen(1))
    s = sampler("hmc", step_impl="cuda_graph")
    s.graph_factory = RefusingGraph
    for _ in range(2):  # the failure is remembered: not captured again at every call
        result = s.sample(energy, x0, 4, generator=gen(1))
        assert torch.equal(result.x, eager.x) and result.stats == eager.stats
        assert result.notes["step_impl"] == (
            "CUDA graph capture failed, the steps ran eagerly: RuntimeError: operation not "
            "permitted when stream is capturing"
        )


def test_a_kernel_that_asks_for_more_draws_than_its_first_step_is_refused(energy):
    """The fast paths need the same draws at every step; a kernel that draws more later is
    an error, not silently different chains."""

    class Growing(type(sampler("ula"))):
        name = "growing"
        calls = 0

        def transition(self, fn, chains, eps, generator, need_prob):
            type(self).calls += 1
            for _ in range(type(self).calls):
                noise = self.randn(chains.x, generator)
            chains.x = chains.x + 0.01 * noise
            return None, None

    s = Growing(budget="smoke", step_impl="compile")
    s.compile_options = {"backend": "aot_eager"}
    with pytest.raises(Exception, match="more random draws than its first step"):
        s.sample(energy, torch.zeros(4, 2), 3, generator=gen(0))


# ------------------------------------------------------------------ float32 under autocast


def test_score_and_log_alpha_are_float32_under_bf16_autocast():
    """A plain network under autocast computes f in bf16; the sampler still forms the score
    and the log acceptance ratio in float32 (EnergyCounter casts f to the chains' dtype)."""
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(2, 16), nn.SiLU(), nn.Linear(16, 1), nn.Flatten(0))
    x = torch.randn(32, 2, generator=gen(0))
    seen = {}
    s = sampler("mala")
    metropolis = s.metropolis

    def spy(chains, proposal, log_alpha, generator, need_prob):
        seen.update(log_alpha=log_alpha.dtype, f=proposal.f.dtype, score=proposal.score.dtype)
        return metropolis(chains, proposal, log_alpha, generator, need_prob)

    s.metropolis = spy
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert plain(x).dtype == torch.bfloat16  # the network itself is in bf16 here
        f, score = EnergyCounter(plain).value_and_score(x)
        result = s.sample(plain, x, 3, generator=gen(1))
    assert f.dtype == score.dtype == torch.float32
    assert seen == {"log_alpha": torch.float32, "f": torch.float32, "score": torch.float32}
    assert result.x.dtype == torch.float32 and torch.isfinite(result.x).all()
