"""Annealed importance sampling (Neal 2001) for log Z of an energy-based model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from .base import EnergyFn, Sampler
from .functional import frozen_parameters
from .schedules import annealing_schedule

__all__ = ["AISResult", "AnnealedEnergy", "annealed_importance_sampling", "log_mean_exp_with_se"]


@dataclass
class AISResult:
    """The outcome of :func:`annealed_importance_sampling`.

    Attributes:
        log_z: log Ẑ = log (1/n Σᵢ wᵢ), the estimate of log Z = log ∫ exp(f).
        log_z_se: Its delta-method standard error, sd(w) / (√n · mean(w)).
        ess: The effective sample size (Σw)² / Σw² (Kong 1992), between 1 and n.
        log_w: The log importance weights, shape (n_chains,), float64, on the chains' device.
        x: The final states of the chains (approximately from p ∝ exp(f)).
        betas: The inverse temperatures used, float64.
        stats: The kernel's diagnostics summed (evaluations) or averaged (acceptance) over
            temperatures, plus the energy evaluations for the weights.
    """

    log_z: float
    log_z_se: float
    ess: float
    log_w: Tensor
    x: Tensor
    betas: Tensor
    stats: dict[str, float] = field(default_factory=dict)


def log_mean_exp_with_se(log_w: Tensor) -> tuple[float, float, float]:
    """log(mean wᵢ), its delta-method standard error, and the ESS, computed stably.

    With w̃ᵢ = exp(log wᵢ − max log w) ∈ (0, 1] (the shift cancels in every ratio):

        log Ẑ = max log w + log mean(w̃),
        se(log Ẑ) ≈ sd(Ẑ) / Ẑ = sd(w̃) / (√n mean(w̃)),
        ESS = (Σw̃)² / Σw̃².

    >>> log_mean_exp_with_se(torch.zeros(4))
    (0.0, 0.0, 4.0)
    >>> lz, se, ess = log_mean_exp_with_se(torch.tensor([0.0, math.log(3.0)]))
    >>> round(lz, 6), round(se, 6), round(ess, 6)   # mean 2, sd √2, ESS 16/10
    (0.693147, 0.5, 1.6)
    """
    log_w = log_w.detach().double()
    n = log_w.numel()
    finite = torch.isfinite(log_w)
    if not bool(finite.any()):
        return float("nan"), float("nan"), 0.0
    shift = log_w[finite].max()
    w = (log_w - shift).exp().nan_to_num(0.0)  # NaN weights count as zero
    mean = w.mean()
    log_z = float(shift + mean.log())
    se = float(w.std(correction=1) / (math.sqrt(n) * mean)) if n > 1 else float("inf")
    ess = float(w.sum() ** 2 / w.pow(2).sum())
    return log_z, se, ess


class AnnealedEnergy(nn.Module):
    """The intermediate log-density f_β(x) = (1 − β) log p₀(x) + β f(x).

    One object serves every temperature: ``beta`` is a buffer updated in place, so a kernel
    that compiles its energy (``compile=True``) compiles it once, not once per β.

    >>> from torch.distributions import Independent, Normal
    >>> base = Independent(Normal(torch.zeros(1), torch.ones(1)), 1)
    >>> f_beta = AnnealedEnergy(lambda x: -x.pow(2).sum(1), base)
    >>> f_beta.set_beta(0.5)
    >>> round(float(f_beta(torch.zeros(1, 1))), 4)   # ½ log N(0; 0, 1) + ½ · 0
    -0.4595
    """

    def __init__(
        self, energy: EnergyFn, base: Distribution, device: torch.device | str | None = None
    ) -> None:
        super().__init__()
        self.energy = energy
        self.base = base
        self.register_buffer("beta", torch.zeros((), dtype=torch.float64, device=device))

    def set_beta(self, beta: float) -> None:
        self.beta.fill_(beta)

    def forward(self, x: Tensor) -> Tensor:
        return (1 - self.beta) * self.base.log_prob(x) + self.beta * self.energy(x)


def _sample_base(base: Distribution, n: int, generator: torch.Generator | None) -> Tensor:
    """``n`` draws from ``base``, reproducible from ``generator``.

    ``Distribution.sample`` takes no generator, so with one the global RNGs are forked and
    seeded from it: the caller's global RNG state is left untouched.
    """
    if generator is None:
        return base.sample((n,))
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        return base.sample((n,))


def annealed_importance_sampling(
    energy: EnergyFn,
    base: Distribution,
    kernel: Sampler,
    *,
    n_chains: int,
    n_temperatures: int,
    steps_per_temperature: int = 1,
    schedule: str | Sequence[float] | Tensor = "geometric",
    generator: torch.Generator | None = None,
) -> AISResult:
    """Estimate log Z = log ∫ exp f(x) dx by annealed importance sampling (Neal 2001).

    The intermediate log-densities are f_β(x) = (1 − β) log p₀(x) + β f(x) for
    0 = β₀ < β₁ < … < β_K = 1 (K = ``n_temperatures``). Each chain starts at x₀ ~ p₀ and

        log w = Σ_{k=1..K} (β_k − β_{k−1}) (f(x_{k−1}) − log p₀(x_{k−1})),

    where x_k is x_{k−1} moved by ``steps_per_temperature`` steps of ``kernel`` on
    f_{β_k} (k = 1 … K−1). Since p₀ is normalised, E[w] = Z, so log Ẑ = log mean w; its
    standard error is the delta-method one from :func:`log_mean_exp_with_se`. The estimate
    is unbiased in Z only when the kernel leaves each f_β invariant: exact for MH, MALA and
    HMC; ULA adds an O(ε) bias.

    Args:
        energy: f, mapping (n, d) to (n,): the log of the unnormalised target density.
        base: A normalised torch distribution over event shape (d,), with ``sample`` and
            ``log_prob``; its device decides the chains' device.
        kernel: Any :class:`~ebmbench.Sampler`; ``kernel.sample(f_β, x, n_steps=k,
            generator=generator)`` is run at every intermediate temperature.
        n_chains: Independent AIS runs (importance samples).
        n_temperatures: K, the number of annealing steps.
        steps_per_temperature: Kernel steps at each intermediate temperature.
        schedule: ``"geometric"``, ``"linear"``, ``"sigmoid"`` (see
            :func:`~ebmbench.annealing_schedule`) or an explicit rising sequence from 0 to 1.
        generator: Makes the whole run reproducible (may be None).

    Returns:
        An :class:`AISResult`.

    >>> from torch.distributions import Independent, Normal
    >>> from ebmbench import get_sampler
    >>> base = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
    >>> f = lambda x: -0.5 * x.pow(2).sum(1)        # Z = 2π
    >>> r = annealed_importance_sampling(f, base, get_sampler("mh"), n_chains=64,
    ...         n_temperatures=5, generator=torch.Generator().manual_seed(0))
    >>> round(r.log_z, 4) == round(math.log(2 * math.pi), 4), r.log_z_se < 1e-6
    (True, True)
    """
    betas = annealing_schedule(schedule, n_temperatures)
    x = _sample_base(base, n_chains, generator)
    log_w = torch.zeros(n_chains, dtype=torch.float64, device=x.device)
    evals = {"energy_evals": 0.0, "grad_evals": 0.0}
    accept_rates: list[float] = []
    f_beta = AnnealedEnergy(energy, base, x.device)
    with frozen_parameters(energy), torch.no_grad():
        for k in range(1, len(betas)):
            f_x = energy(x)
            log_p0 = base.log_prob(x)
            evals["energy_evals"] += 1
            log_w += (betas[k] - betas[k - 1]).item() * (f_x - log_p0).double()
            if k == len(betas) - 1:
                break
            f_beta.set_beta(float(betas[k]))
            result = kernel.sample(f_beta, x, n_steps=steps_per_temperature,
                                   generator=generator)
            x = result.x
            for key in evals:
                evals[key] += float(result.stats.get(key, 0.0))
            if "acceptance_rate" in result.stats:
                accept_rates.append(result.stats["acceptance_rate"])
    log_z, log_z_se, ess = log_mean_exp_with_se(log_w)
    stats = dict(evals)
    if accept_rates:
        stats["acceptance_rate"] = sum(accept_rates) / len(accept_rates)
    return AISResult(log_z, log_z_se, ess, log_w, x.detach(), betas, stats)
