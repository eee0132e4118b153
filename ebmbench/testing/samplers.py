"""Checks for samplers: the call contract, invariance of a Gaussian, NaN energies."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..base import Sampler, SampleResult
from .suite import Subject, check

__all__ = [
    "GaussianEnergy",
    "INVARIANCE_CHAINS",
    "INVARIANCE_STEPS",
    "VARIANCE_BIAS",
    "NAN_REGION",
]

#: Chains and steps of the invariance check.
INVARIANCE_CHAINS = 2000
INVARIANCE_STEPS = 100
#: Relative variance error allowed on top of Monte Carlo error: room for the O(ε) bias of
#: unadjusted kernels (ULA at ε = 0.01 on this target: 0.8%).
VARIANCE_BIAS = 0.10
#: Chains whose first coordinate exceeds this see a NaN energy in the isolation check.
NAN_REGION = 6.0


class GaussianEnergy(nn.Module):
    """f(x) = −½‖(x + poison(x) − μ)/s‖², the log-density of N(μ, s²I) up to a constant.

    ``poison`` is NaN (a constant, outside autograd) on the rows where ``nan_where(x)`` is
    true, so those rows get a NaN value *and* a NaN score while every other row keeps its
    exact value and score (a NaN multiplied into a shared graph would leak into all rows).
    μ and log s are parameters, so a sampler that leaves gradients on the energy shows.

    >>> f = GaussianEnergy(torch.zeros(2), 1.0)
    >>> f(torch.tensor([[1.0, 1.0]])).item()
    -1.0
    """

    def __init__(self, mean: Tensor, scale: float, nan_where=None) -> None:  # noqa: ANN001
        super().__init__()
        self.mean = nn.Parameter(mean.clone())
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale), dtype=mean.dtype))
        self.nan_where = nan_where

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        if self.nan_where is not None:
            bad = self.nan_where(flat.detach())
            poison = torch.where(bad, float("nan"), 0.0).to(flat.dtype).unsqueeze(1)
            flat = flat + poison
        z = (flat - self.mean) / self.log_scale.exp()
        return -0.5 * z.pow(2).sum(dim=1)


def _sample(s: Subject, energy: nn.Module, x0: Tensor, n_steps: int | None = None,
            seed: int | None = 0) -> SampleResult:
    sampler: Sampler = s.make()  # type: ignore[assignment]
    generator = None if seed is None else torch.Generator(s.device).manual_seed(seed)
    result = sampler.sample(energy, x0, n_steps, generator=generator)
    assert isinstance(result, SampleResult), f"sample returned {type(result).__name__}"
    return result


@check("sampler_contract", ["sampler"])
def check_sampler_contract(s: Subject) -> None:
    """Shape, dtype and device kept; ``x0`` and the energy's gradients untouched; stats.

    On vectors (256, 2) and images (64, 1, 3, 3): the samples have ``x0``'s shape, dtype
    and device; ``x0`` is not modified in place (callers reuse it: replay buffers, data);
    no ``.grad`` is left on the energy's parameters and their ``requires_grad`` is
    restored; ``stats`` holds finite ``energy_evals`` and ``grad_evals`` (and an
    ``acceptance_rate`` in [0, 1] if given) which grow with ``n_steps``; the same seeded
    generator gives the same samples, and ``generator=None`` works.
    """
    for shape in ((256, 2), (64, 1, 3, 3)):
        d = math.prod(shape[1:])
        energy = GaussianEnergy(torch.zeros(d), 1.0).to(s.device)
        x0 = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(s.device)
        keep = x0.clone()
        result = _sample(s, energy, x0)
        x = result.x
        assert x.shape == x0.shape, f"samples of shape {tuple(x.shape)} from x0 of {shape}"
        assert x.dtype == x0.dtype, f"samples are {x.dtype}, x0 was {x0.dtype}"
        assert x.device == x0.device, f"samples on {x.device}, x0 on {x0.device}"
        assert torch.equal(x0, keep), "sample() modified x0 in place"
        for name, p in energy.named_parameters():
            assert p.grad is None, f"sampling left a gradient on the energy's {name!r}"
            assert p.requires_grad, f"sampling left requires_grad off on the energy's {name!r}"
        stats = result.stats
        for key in ("energy_evals", "grad_evals"):
            assert key in stats, f"stats {sorted(stats)} lack {key!r}"
        for key, value in stats.items():
            assert math.isfinite(float(value)), f"stat {key!r} = {value}"
        if "acceptance_rate" in stats:
            rate = float(stats["acceptance_rate"])
            assert 0.0 <= rate <= 1.0, f"acceptance_rate {rate} outside [0, 1]"
    x0 = torch.randn(128, 2, generator=torch.Generator().manual_seed(2)).to(s.device)
    energy = GaussianEnergy(torch.zeros(2), 1.0).to(s.device)
    a, b = _sample(s, energy, x0, seed=3), _sample(s, energy, x0, seed=3)
    assert torch.equal(a.x, b.x), "the same seeded generator gave different samples"
    _sample(s, energy, x0, seed=None)
    short, long = _sample(s, energy, x0, n_steps=2), _sample(s, energy, x0, n_steps=6)
    work = {k: (float(short.stats[k]), float(long.stats[k])) for k in ("energy_evals",
                                                                       "grad_evals")}
    assert any(lo < hi for lo, hi in work.values()), (
        f"evaluations per chain (n_steps=2, n_steps=6) {work}: n_steps is ignored or the "
        "work is not counted"
    )


@check("sampler_invariance", ["sampler"])
def check_sampler_invariance(s: Subject) -> None:
    """Started at the target N(μ, s²I), the chains stay there, and they move.

    :data:`INVARIANCE_CHAINS` exact draws from N((½, −½), 0.8²I) are run for
    :data:`INVARIANCE_STEPS` steps at the smoke hyper-parameters. An exact kernel leaves
    that law invariant; an unadjusted one nearly so. Each coordinate's mean must be within
    5 standard errors of μ, and its variance within 5 standard errors plus
    :data:`VARIANCE_BIAS` (relative) of s². A wrong sign, a missing √2 or a proposal
    density left out of the acceptance ratio shows here. At least half the chains must
    have moved.
    """
    n, scale = INVARIANCE_CHAINS, 0.8
    mean = torch.tensor([0.5, -0.5])
    g = torch.Generator().manual_seed(4)
    x0 = (mean + scale * torch.randn(n, 2, generator=g)).to(s.device)
    energy = GaussianEnergy(mean, scale).to(s.device)
    x = _sample(s, energy, x0, n_steps=INVARIANCE_STEPS, seed=5).x.detach().double().cpu()
    assert torch.isfinite(x).all(), "non-finite samples from a Gaussian target"
    se_mean = scale / math.sqrt(n)
    err = (x.mean(0) - mean.double()).abs()
    assert (err <= 5 * se_mean).all(), (
        f"mean {x.mean(0).tolist()} vs target {mean.tolist()}: off by {err.tolist()}, "
        f"more than 5 standard errors ({5 * se_mean:.3f})"
    )
    ratio = x.var(0) / scale**2
    allowed = 5 * math.sqrt(2 / (n - 1)) + VARIANCE_BIAS
    assert ((ratio - 1).abs() <= allowed).all(), (
        f"variance / target variance = {ratio.tolist()}, allowed 1 ± {allowed:.3f}"
    )
    moved = (x != x0.double().cpu()).any(dim=1).double().mean().item()
    assert moved >= 0.5, f"only {moved:.0%} of the chains moved in {INVARIANCE_STEPS} steps"


@check("sampler_nan_energy", ["sampler"])
def check_sampler_nan_energy(s: Subject) -> None:
    """An energy that is NaN everywhere never yields finite samples that moved.

    Each chain must come back non-finite (the harness marks the run ``diverged``) or where
    it started (every proposal rejected); raising an exception is accepted too (the run is
    ``failed`` with the traceback). A finite sample that moved was drawn from garbage and
    would be ranked.
    """
    energy = GaussianEnergy(torch.zeros(2), 1.0, nan_where=lambda x: torch.ones_like(x[:, 0],
                                                                              dtype=torch.bool))
    energy = energy.to(s.device)
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(6)).to(s.device)
    try:
        x = _sample(s, energy, x0).x
    except Exception:
        return
    finite = torch.isfinite(x).all(dim=1)
    moved = (x != x0).any(dim=1)
    bad = (finite & moved).sum().item()
    assert bad == 0, f"{bad} of 64 chains moved to finite points on an energy that is all NaN"


@check("sampler_nan_isolation", ["sampler"])
def check_sampler_nan_isolation(s: Subject) -> None:
    """A NaN energy on some chains leaves the other chains finite.

    Half the chains start at x₁ = 10, where f and ∇f are NaN (x₁ > :data:`NAN_REGION`); the
    others start from the target N(0, I), where f is finite. Chains are independent:
    shared state (a step size adapted on the mean acceptance, a norm over all chains) must
    not let one chain's NaN spread to the others. The sampler must not raise, and the
    healthy chains must stay finite.
    """
    energy = GaussianEnergy(torch.zeros(2), 1.0, nan_where=lambda x: x[:, 0] > NAN_REGION)
    energy = energy.to(s.device)
    g = torch.Generator().manual_seed(7)
    healthy = torch.randn(128, 2, generator=g)
    sick = torch.randn(128, 2, generator=g) * 0.1 + torch.tensor([10.0, 0.0])
    x0 = torch.cat([healthy, sick]).to(s.device)
    x = _sample(s, energy, x0).x
    ok = torch.isfinite(x[:128]).all(dim=1)
    assert ok.all(), f"{(~ok).sum().item()} of 128 healthy chains became non-finite"
