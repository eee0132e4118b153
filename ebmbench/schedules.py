"""Step-size schedules, step-size adaptation and a base class for MCMC samplers.

Everything here is shared machinery for :class:`~ebmbench.Sampler` plugins; no sampler
lives here. A sampler built on :class:`MarkovChainSampler` writes only its one-step
transition; the base class runs the chains and supplies, through hyper-parameters:

- a step-size **schedule** over the sampling steps of a call (:func:`schedule_factors`),
- **adaptation** of the step size toward a target acceptance rate during a warm-up only
  (:class:`StepSizeAdapter`, Robbins-Monro on log ε),
- **persistent** state (the last chains and the adapted step size, :class:`ChainState`),
- the diagnostics every sampler reports (``energy_evals``, ``grad_evals`` per chain,
  ``acceptance_rate``, ``step_size``),
- an optional ``torch.compile`` of the energy (off by default; meant for CUDA).

It also holds the annealing schedules (inverse temperatures) used by
:func:`ebmbench.annealed_importance_sampling`.
"""

from __future__ import annotations

import math
import weakref
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from .base import EnergyFn, Sampler, SampleResult
from .functional import frozen_parameters
from .params import Param

__all__ = [
    "SCHEDULES",
    "ANNEALING_SCHEDULES",
    "ADAPT_MODES",
    "schedule_factors",
    "annealing_schedule",
    "StepSizeAdapter",
    "ChainState",
    "Chains",
    "EnergyCounter",
    "MarkovChainSampler",
    "step_size_params",
]

#: Step-size decay shapes over the steps of a run (see :func:`schedule_factors`).
SCHEDULES: tuple[str, ...] = ("constant", "linear", "cosine", "geometric")

#: Inverse-temperature spacings for annealing (see :func:`annealing_schedule`).
ANNEALING_SCHEDULES: tuple[str, ...] = ("geometric", "linear", "sigmoid")

#: How the step size adapts during warm-up: not at all, one ε for all chains, one per chain.
ADAPT_MODES: tuple[str, ...] = ("none", "global", "per_chain")


def schedule_factors(kind: str, n_steps: int, final: float = 0.1) -> list[float]:
    """Multipliers of the base step size for steps t = 0 … n−1 of a run.

    With u = t / (n − 1) ∈ [0, 1] and r = ``final`` (the last step's factor):

    - ``constant``: 1,
    - ``linear``: 1 + (r − 1) u,
    - ``cosine``: r + (1 − r)(1 + cos πu) / 2 (Loshchilov & Hutter 2017, SGDR),
    - ``geometric``: r^u (exponential decay).

    Every shape starts at 1 and ends at r. Metropolis-adjusted kernels stay exact under any
    schedule (each step is p-invariant); for ULA a decay shrinks the O(ε) bias.

    >>> [round(v, 3) for v in schedule_factors("geometric", 3, final=0.01)]
    [1.0, 0.1, 0.01]
    >>> schedule_factors("linear", 3, final=0.5)
    [1.0, 0.75, 0.5]
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown schedule {kind!r}; valid: {', '.join(SCHEDULES)}")
    if kind == "constant" or n_steps <= 1:
        return [1.0] * n_steps
    if final <= 0:
        raise ValueError(f"the final step-size factor must be positive, got {final}")
    us = [t / (n_steps - 1) for t in range(n_steps)]
    if kind == "linear":
        return [1 + (final - 1) * u for u in us]
    if kind == "cosine":
        return [final + (1 - final) * (1 + math.cos(math.pi * u)) / 2 for u in us]
    return [final**u for u in us]


def annealing_schedule(
    kind: str | Sequence[float] | Tensor, n_temperatures: int, *, beta_min: float = 1e-4,
    sharpness: float = 4.0,
) -> Tensor:
    """Inverse temperatures 0 = β₀ < β₁ < … < β_K = 1 (K = ``n_temperatures``), float64.

    - ``linear``: β_k = k / K.
    - ``geometric``: β₁ … β_K evenly spaced in log from ``beta_min`` to 1 (Neal 2001, §5,
      spends the temperatures where log p changes fastest for a broad base).
    - ``sigmoid``: β̃_k = σ(δ(2k/K − 1)) rescaled to [0, 1], δ = ``sharpness`` (Grosse,
      Ghahramani & Adams 2015, "Sandwiching the marginal likelihood", arXiv:1511.02543).

    A sequence or tensor is taken as the full schedule itself (it must rise from 0 to 1).

    >>> annealing_schedule("linear", 4).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    >>> b = annealing_schedule("geometric", 3, beta_min=0.01)
    >>> [round(v, 4) for v in b.tolist()]
    [0.0, 0.01, 0.1, 1.0]
    """
    if not isinstance(kind, str):
        betas = torch.as_tensor(kind, dtype=torch.float64).flatten()
        if betas.numel() < 2 or betas[0] != 0 or betas[-1] != 1 or (betas.diff() < 0).any():
            raise ValueError("a custom annealing schedule must rise from 0 to 1")
        return betas
    if n_temperatures < 1:
        raise ValueError(f"need at least one temperature, got {n_temperatures}")
    k = torch.arange(n_temperatures + 1, dtype=torch.float64)
    if kind == "linear":
        return k / n_temperatures
    if kind == "geometric":
        if n_temperatures == 1:
            return torch.tensor([0.0, 1.0], dtype=torch.float64)
        betas = torch.logspace(math.log10(beta_min), 0.0, n_temperatures, dtype=torch.float64)
        return torch.cat([betas.new_zeros(1), betas])
    if kind == "sigmoid":
        s = torch.sigmoid(sharpness * (2 * k / n_temperatures - 1))
        return (s - s[0]) / (s[-1] - s[0])
    raise ValueError(
        f"unknown annealing schedule {kind!r}; valid: {', '.join(ANNEALING_SCHEDULES)}"
    )


class StepSizeAdapter:
    """Robbins-Monro adaptation of log ε toward a target acceptance, during warm-up only.

    At adaptation step t = 0, 1, … (counted from the sampler's first step),

        log ε ← log ε + γ₀ (t + 1)^(−κ) (ᾱ_t − α*),

    where ᾱ_t is the Metropolis acceptance probability min(1, e^{log α}) (averaged over
    chains in ``global`` mode, per chain in ``per_chain`` mode) and α* the target. The gains
    satisfy Σγ = ∞, Σγ² < ∞ for κ ∈ (½, 1] (Robbins & Monro 1951; Andrieu & Thoms 2008,
    "A tutorial on adaptive MCMC", §4 and §5). Adaptation stops after ``warmup`` steps so
    that the chains afterwards run a fixed, exact kernel.

    Args:
        step_size: The starting ε: a number, or a tensor of shape () or (n_chains,).
        mode: One of :data:`ADAPT_MODES`.
        target: The target acceptance α*.
        warmup: How many steps (in total, see ``done``) adapt.
        n_chains: The number of chains (for ``per_chain``).
        like: A tensor giving the device and dtype of the step sizes.
        done: Steps already run by earlier calls (persistent samplers).

    >>> a = StepSizeAdapter(1.0, mode="global", target=0.5, warmup=2, n_chains=3,
    ...                     like=torch.zeros(1))
    >>> a.update(torch.ones(3)); a.update(torch.ones(3)); a.update(torch.zeros(3))
    >>> round(float(a.current()), 4), a.adapting   # 1 · e^{0.5·0.5} · e^{0.5·0.5/2^0.6}
    (1.5143, False)
    """

    gain: ClassVar[float] = 0.5
    decay: ClassVar[float] = 0.6

    def __init__(
        self,
        step_size: float | Tensor,
        *,
        mode: str,
        target: float,
        warmup: int,
        n_chains: int,
        like: Tensor,
        done: int = 0,
    ) -> None:
        if mode not in ADAPT_MODES:
            raise ValueError(f"unknown adaptation mode {mode!r}; valid: {', '.join(ADAPT_MODES)}")
        self.mode, self.target, self.warmup, self.done = mode, target, warmup, done
        self.adapting = mode != "none" and done < warmup
        if isinstance(step_size, Tensor):
            eps = step_size.detach().to(device=like.device, dtype=like.dtype)
            if eps.dim() > 0 and eps.numel() not in (1, n_chains):
                # A different number of chains than last time: fall back to the typical ε.
                eps = eps.log().mean().exp()
            if eps.numel() == 1:
                eps = eps.reshape(())
        else:
            eps = float(step_size)
        if self.adapting:
            log_eps = torch.as_tensor(eps, device=like.device, dtype=like.dtype).log()
            if mode == "per_chain" and log_eps.dim() == 0:
                log_eps = log_eps.expand(n_chains)
            self._log_eps: Tensor | None = log_eps.clone()
        else:
            self._log_eps = None
        self._eps: float | Tensor = eps

    def current(self) -> float | Tensor:
        """ε now: a Python float, or a tensor of shape () or (n_chains,)."""
        return self._log_eps.exp() if self._log_eps is not None else self._eps

    def update(self, accept_prob: Tensor | None) -> None:
        """Record one step; while adapting, move log ε using ``accept_prob`` (n_chains,)."""
        self.done += 1
        if not self.adapting:
            return
        stat = accept_prob if self.mode == "per_chain" else accept_prob.mean()
        # Warm-up starts at the sampler's first step, so ``done`` is the adaptation index,
        # also for a persistent sampler whose warm-up spans several calls.
        gain = self.gain / self.done**self.decay
        self._log_eps = self._log_eps + gain * (stat - self.target)
        if self.done >= self.warmup:
            self.adapting = False
            eps = self._log_eps.exp()
            self._log_eps = None
            # One device sync when warm-up ends buys plain-float arithmetic afterwards.
            self._eps = float(eps) if eps.dim() == 0 else eps


@dataclass
class ChainState:
    """What a sampler remembers after :meth:`~MarkovChainSampler.sample`.

    Attributes:
        x: The last state of every chain (detached), shape of ``x0``. Pass it back as
            ``x0`` to continue the chains.
        step_size: The base step size after adaptation: a float, or a tensor of shape ()
            or (n_chains,) for per-chain adaptation.
        steps_done: Steps run so far (across calls for a persistent sampler), which is how
            warm-up is counted.
    """

    x: Tensor
    step_size: float | Tensor
    steps_done: int


@dataclass
class Chains:
    """The mutable per-chain quantities a transition carries from step to step.

    Attributes:
        x: Positions, shape (n, *shape).
        f: f(x), shape (n,), when the kernel caches it.
        score: ∇ₓf(x), shape of ``x``, when the kernel caches it.
    """

    x: Tensor
    f: Tensor | None = None
    score: Tensor | None = None


class EnergyCounter:
    """Evaluates f (and its score) on a batch of chains and counts the batched calls.

    Every call evaluates all chains at once, so the counts are evaluations *per chain*.
    """

    __slots__ = ("energy", "energy_evals", "grad_evals")

    def __init__(self, energy: EnergyFn) -> None:
        self.energy = energy
        self.energy_evals = 0
        self.grad_evals = 0

    def value(self, x: Tensor) -> Tensor:
        """f(x), shape (n,), without building a graph."""
        self.energy_evals += 1
        with torch.no_grad():
            return self.energy(x)

    def value_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """f(x) (detached) and ∇ₓf(x); gradients are taken with respect to x only."""
        self.energy_evals += 1
        self.grad_evals += 1
        if not torch.is_grad_enabled():
            with torch.enable_grad():
                return self._value_and_score(x)
        return self._value_and_score(x)

    def _value_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.detach().requires_grad_(True)
        value = self.energy(x)
        (score,) = torch.autograd.grad(value.sum(), x)
        return value.detach(), score


def step_size_params(
    step_size: float,
    *,
    target_accept: float | None,
    smoke: float | None = None,
    full: float | None = None,
) -> dict[str, Param]:
    """The hyper-parameters :class:`MarkovChainSampler` reads, with a sampler's defaults.

    Args:
        step_size: The default base step size ε (quick budget).
        target_accept: The target acceptance for adaptation, or ``None`` for kernels without
            an accept step (then no adaptation parameters are declared).
        smoke: ε at the smoke budget, if different.
        full: ε at the full budget, if different.
    """
    budget_eps: dict[str, Any] = {}
    if smoke is not None:
        budget_eps["smoke"] = smoke
    if full is not None:
        budget_eps["full"] = full
    params = {
        "step_size": Param(step_size, "base step size ε", **budget_eps),
        "schedule": Param("constant", "step-size decay over the sampling steps",
                          choices=SCHEDULES),
        "final_ratio": Param(0.1, "last step's ε as a fraction of the first (decaying schedules)"),
    }
    if target_accept is not None:
        params |= {
            "adapt": Param("global", "warm-up adaptation of ε: none, global or per_chain",
                           choices=ADAPT_MODES),
            "target_accept": Param(target_accept, "target acceptance rate for adaptation"),
            "warmup": Param(0, "steps that adapt ε (then it is frozen); 0 = no adaptation"),
        }
    return params | {
        "persistent": Param(False, "keep the adapted ε and warm-up count across calls"),
        "compile": Param(False, "torch.compile the energy (meant for CUDA; off on CPU)"),
    }


class MarkovChainSampler(Sampler):
    """A sampler defined by a one-step transition kernel, vectorised over chains.

    Subclasses set ``has_accept`` (True for Metropolis-adjusted kernels) and implement
    :meth:`init_chains` and :meth:`transition`; ``params`` come from
    :func:`step_size_params` plus ``steps`` and the kernel's own.

    **Initialisation** is the caller's: ``x0`` may be noise (``dataset.init_noise``), data,
    replay-buffer entries, or ``sampler.state.x`` to continue the last chains.

    **Warm-up**: the first ``warmup`` steps adapt ε (see :class:`StepSizeAdapter`); later
    steps use the frozen ε, so the samples after warm-up come from an exact kernel. The
    step-size ``schedule`` runs over the steps after warm-up. ``acceptance_rate`` is the
    fraction of accepted proposals over the post-warm-up steps (over all steps when the
    whole call was warm-up).

    **State**: after every call :attr:`state` holds a :class:`ChainState`. With
    ``persistent=True`` the next call starts from that state's step size and warm-up count
    (warm-up then spans the first ``warmup`` steps over all calls); otherwise every call
    starts afresh from ``hparams["step_size"]``. :meth:`reset` forgets the state.

    **Compilation**: ``compile=True`` wraps the energy in ``torch.compile(energy,
    **compile_options)`` (cached per energy). It is off by default at every budget.
    """

    has_accept: ClassVar[bool] = True
    #: Keyword arguments for ``torch.compile`` when ``compile=True``.
    compile_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state: ChainState | None = None
        self._compiled: tuple[weakref.ref, Any] | None = None

    # -------------------------------------------------------------- what subclasses write

    @abstractmethod
    def init_chains(self, fn: EnergyCounter, x: Tensor) -> Chains:
        """Evaluate what the kernel caches at the starting points ``x``."""

    @abstractmethod
    def transition(
        self,
        fn: EnergyCounter,
        chains: Chains,
        eps: float | Tensor,
        generator: torch.Generator | None,
        need_prob: bool,
    ) -> tuple[Tensor | None, Tensor | None]:
        """Advance every chain one step, updating ``chains`` in place.

        Args:
            fn: The energy, counting evaluations.
            chains: The current chains.
            eps: The step size: a float, or a tensor of shape () or (n,).
            generator: The source of randomness (may be None; may live on another device).
            need_prob: Whether to return acceptance probabilities (during adaptation).

        Returns:
            (accepted, accept_prob): a bool tensor (n,) and, when ``need_prob``, the
            Metropolis acceptance probability (n,); both None for kernels without an accept
            step.
        """

    # -------------------------------------------------------------------- helpers for them

    @staticmethod
    def randn(x: Tensor, generator: torch.Generator | None) -> Tensor:
        """Standard normal noise shaped like ``x``, drawn from ``generator``.

        A generator on another device than ``x`` (a CPU generator for CUDA chains) is
        honoured by drawing there and copying, so results stay reproducible.
        """
        if generator is None or generator.device == x.device:
            return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return torch.randn(x.shape, generator=generator, device=generator.device,
                           dtype=x.dtype).to(x.device)

    @staticmethod
    def log_uniform(x: Tensor, generator: torch.Generator | None) -> Tensor:
        """log U, U ~ Uniform(0, 1), one per chain (shape (n,))."""
        shape = (x.shape[0],)
        if generator is None or generator.device == x.device:
            u = torch.rand(shape, generator=generator, device=x.device, dtype=x.dtype)
        else:
            u = torch.rand(shape, generator=generator, device=generator.device,
                           dtype=x.dtype).to(x.device)
        return u.log_()

    @staticmethod
    def per_chain(eps: float | Tensor, x: Tensor) -> float | Tensor:
        """``eps`` shaped to broadcast against ``x`` (a float stays a float)."""
        if isinstance(eps, Tensor) and eps.dim() == 1:
            return eps.view(-1, *([1] * (x.dim() - 1)))
        return eps

    @staticmethod
    def sq_norm(t: Tensor) -> Tensor:
        """‖t_i‖² per chain, shape (n,)."""
        return t.flatten(1).pow(2).sum(dim=1)

    def metropolis(
        self,
        chains: Chains,
        proposal: Chains,
        log_alpha: Tensor,
        generator: torch.Generator | None,
        need_prob: bool,
    ) -> tuple[Tensor, Tensor | None]:
        """Accept each chain's proposal with probability min(1, exp(log α)), in place.

        A NaN log α (a proposal where f is not finite) is a rejection.
        """
        x = chains.x
        accepted = self.log_uniform(x, generator) < log_alpha
        mask = accepted.view(-1, *([1] * (x.dim() - 1)))
        chains.x = torch.where(mask, proposal.x, x)
        if chains.f is not None:
            chains.f = torch.where(accepted, proposal.f, chains.f)
        if chains.score is not None:
            chains.score = torch.where(mask, proposal.score, chains.score)
        prob = log_alpha.clamp(max=0).exp().nan_to_num_(0.0) if need_prob else None
        return accepted, prob

    # ------------------------------------------------------------------------ the driver

    def reset(self) -> None:
        """Forget the persistent state (chains and adapted step size)."""
        self.state = None

    def resume(
        self, energy: EnergyFn, n_steps: int | None = None, *,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        """Continue the chains of the last call: ``sample(energy, self.state.x, ...)``."""
        if self.state is None:
            raise RuntimeError(f"sampler {self.name!r} has no chains to resume yet")
        return self.sample(energy, self.state.x, n_steps, generator=generator)

    def _energy(self, energy: EnergyFn) -> EnergyFn:
        if not self.hparams.get("compile", False):
            return energy
        cached = self._compiled
        if cached is not None and cached[0]() is energy:
            return cached[1]
        compiled = torch.compile(energy, **self.compile_options)
        try:
            self._compiled = (weakref.ref(energy), compiled)
        except TypeError:  # not weak-referenceable: compile per call
            self._compiled = None
        return compiled

    def _adapter(self, x: Tensor) -> StepSizeAdapter:
        hp = self.hparams
        step_size: float | Tensor = hp["step_size"]
        done = 0
        if hp.get("persistent", False) and self.state is not None:
            step_size, done = self.state.step_size, self.state.steps_done
        return StepSizeAdapter(
            step_size,
            mode=hp.get("adapt", "none") if self.has_accept else "none",
            target=hp.get("target_accept", 0.5),
            warmup=hp.get("warmup", 0),
            n_chains=x.shape[0],
            like=x,
            done=done,
        )

    def sample(
        self,
        energy: EnergyFn,
        x0: Tensor,
        n_steps: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        """Run every chain in ``x0`` for ``n_steps`` (default ``hparams["steps"]``)."""
        steps = self.hparams["steps"] if n_steps is None else int(n_steps)
        hp = self.hparams
        adapter = self._adapter(x0)
        fn = EnergyCounter(self._energy(energy))
        n_warm = max(0, min(steps, adapter.warmup - adapter.done)) if adapter.adapting else 0
        factors = schedule_factors(
            hp.get("schedule", "constant"), steps - n_warm, hp.get("final_ratio", 0.1)
        )
        x = x0.detach()
        # Acceptances are summed on the device: one sync at the end, not one per step.
        accepted_sum = torch.zeros(x.shape[0], device=x.device) if self.has_accept else None
        count_warm = n_warm == steps  # a call that is all warm-up reports its own rate
        transition = self.transition
        with frozen_parameters(energy):
            chains = self.init_chains(fn, x)
            for _ in range(n_warm):
                accepted, prob = transition(fn, chains, adapter.current(), generator, True)
                adapter.update(prob)
                if count_warm and accepted_sum is not None:
                    accepted_sum.add_(accepted)
            # After warm-up the kernel is fixed: a lean loop, as a hand-written one would be.
            eps = adapter.current()
            for factor in factors:
                accepted, _ = transition(
                    fn, chains, eps if factor == 1.0 else eps * factor, generator, False
                )
                if accepted_sum is not None:
                    accepted_sum.add_(accepted)
        adapter.done += len(factors)
        counted = len(factors) or (n_warm if count_warm else 0)
        stats: dict[str, float] = {
            "energy_evals": float(fn.energy_evals),
            "grad_evals": float(fn.grad_evals),
        }
        final_eps = adapter.current()
        if accepted_sum is not None:
            stats["acceptance_rate"] = (
                float(accepted_sum.mean()) / counted if counted else float("nan")
            )
        stats["step_size"] = (
            float(final_eps.mean()) if isinstance(final_eps, Tensor) else float(final_eps)
        )
        self.state = ChainState(chains.x.detach(), final_eps, adapter.done)
        return SampleResult(chains.x.detach(), stats)
