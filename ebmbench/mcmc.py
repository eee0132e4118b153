"""MCMC machinery for sampler plugins, and the fast paths of a sampler step.

Everything here is shared machinery for :class:`~ebmbench.Sampler` plugins; no sampler
lives here. A sampler built on :class:`MarkovChainSampler` writes only its one-step
transition; the base class runs the chains and supplies, through hyper-parameters:

- a step-size **schedule** over the sampling steps of a call
  (:func:`~ebmbench.schedule_factors`),
- **adaptation** of the step size toward a target acceptance rate during a warm-up only
  (:class:`StepSizeAdapter`, Robbins-Monro on log ε),
- **persistent** state (the last chains and the adapted step size, :class:`ChainState`),
- the diagnostics every sampler reports (``energy_evals``, ``grad_evals`` per chain,
  ``acceptance_rate``, ``step_size``),
- how a step is executed, ``step_impl`` (:data:`STEP_IMPLS`): ``eager`` (the default),
  ``compile`` (``torch.compile`` of the whole step) or ``cuda_graph`` (one step captured in
  a CUDA graph and replayed), and an optional ``torch.compile`` of the energy alone.

Small energies are launch-bound on a GPU: a Langevin step on a 2-D MLP is a few dozen
kernels of microseconds each, and the Python and launch overhead between them dominates.
Compiling the step fuses them; a CUDA graph removes the per-kernel launch cost altogether.
Both fast paths keep the meaning of every statistic (acceptance over the post-warm-up
steps, evaluations per chain); see :meth:`MarkovChainSampler.sample` for how each draws its
random numbers.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from .base import EnergyFn, Sampler, SampleResult
from .functional import frozen_parameters
from .params import Param
from .schedules import SCHEDULES, schedule_factors

__all__ = [
    "ADAPT_MODES",
    "STEP_IMPLS",
    "StepSizeAdapter",
    "ChainState",
    "Chains",
    "EnergyCounter",
    "NoiseTape",
    "MarkovChainSampler",
    "step_size_params",
]

#: How the step size adapts during warm-up: not at all, one ε for all chains, one per chain.
ADAPT_MODES: tuple[str, ...] = ("none", "global", "per_chain")

#: How a sampler step runs: plain PyTorch, ``torch.compile`` of the whole step, or one step
#: captured in a CUDA graph and replayed (CUDA only; elsewhere it runs eagerly, with a note).
STEP_IMPLS: tuple[str, ...] = ("eager", "compile", "cuda_graph")


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
    f is returned in the chains' dtype: under a bf16 autocast (or an energy computing in
    bf16) the energy's output is cast back, so that acceptance ratios, which subtract
    nearby values of f, are formed in float32. ∇ₓf has the chains' dtype by construction
    (autograd returns a gradient in its input's dtype).
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
            return _like(self.energy(x), x)

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
        return _like(value.detach(), x), score


class _UncountedEnergy(EnergyCounter):
    """An :class:`EnergyCounter` that does not count: inside a compiled step a Python
    counter would be a guard (one recompilation per value); steps are counted apart."""

    __slots__ = ()

    def value(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return _like(self.energy(x), x)

    def value_and_score(self, x: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            return self._value_and_score(x)


def _like(value: Tensor, x: Tensor) -> Tensor:
    """``value`` in ``x``'s floating dtype (a no-op when it already is)."""
    return value if value.dtype == x.dtype else value.to(x.dtype)


# ------------------------------------------------------------------------ random numbers


def _draw(kind: str, shape: Sequence[int], dtype: torch.dtype, device: torch.device,
          generator: torch.Generator | None) -> Tensor:
    """One draw of ``kind`` (``randn``, ``uniform`` or ``log_uniform``), reproducible from
    ``generator``.

    A generator on another device than the chains (a CPU generator for CUDA chains) is
    honoured by drawing on its device and copying.
    """
    here = generator is None or generator.device == device
    where = device if here else generator.device
    if kind == "randn":
        out = torch.randn(shape, generator=generator, device=where, dtype=dtype)
    else:
        out = torch.rand(shape, generator=generator, device=where, dtype=dtype)
    if not here:
        out = out.to(device)
    return out.log_() if kind == "log_uniform" else out


class NoiseTape:
    """Random tensors drawn in advance, handed to a transition in place of its generator.

    :meth:`MarkovChainSampler.randn`, :meth:`~MarkovChainSampler.uniform` and
    :meth:`~MarkovChainSampler.log_uniform` take the
    next tensor from the tape instead of drawing. The compiled step (``step_impl="compile"``)
    runs on tapes: ``torch.compile`` cannot trace a ``torch.Generator``, and drawing the
    numbers outside the compiled region from the caller's generator, in the order the eager
    step draws them, gives the compiled chains the eager sampler's random numbers.
    """

    __slots__ = ("draws", "position")

    def __init__(self, draws: Sequence[Tensor]) -> None:
        self.draws = draws
        self.position = 0

    def take(self, kind: str, shape: Sequence[int]) -> Tensor:
        if self.position >= len(self.draws):
            raise RuntimeError(
                f"the transition asked for more random draws than its first step made "
                f"({len(self.draws)}): a fast step_impl needs the same draws at every step"
            )
        out = self.draws[self.position]
        if tuple(out.shape) != tuple(shape):
            raise RuntimeError(
                f"the transition asked for a {kind} draw of shape {tuple(shape)} where its first "
                f"step drew {tuple(out.shape)}: a fast step_impl needs the same draws at every step"
            )
        self.position += 1
        return out


class _NoiseRecorder:
    """Draws from a generator like the eager step, and records what was drawn."""

    __slots__ = ("generator", "draws")

    def __init__(self, generator: torch.Generator | None) -> None:
        self.generator = generator
        self.draws: list[tuple[str, tuple[int, ...], torch.dtype, torch.device]] = []

    def take(self, kind: str, shape: Sequence[int], dtype: torch.dtype,
             device: torch.device) -> Tensor:
        self.draws.append((kind, tuple(shape), dtype, device))
        return _draw(kind, shape, dtype, device, self.generator)

    def replay(self) -> list[Tensor]:
        """A fresh set of the recorded draws, from the generator, in the same order."""
        return [_draw(*spec, self.generator) for spec in self.draws]


# ------------------------------------------------------------------------ parameters


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
        "step_size": Param(step_size, "base step size ε", positive=True, **budget_eps),
        "schedule": Param("constant", "step-size decay over the sampling steps",
                          choices=SCHEDULES),
        "final_ratio": Param(0.1, "last step's ε as a fraction of the first (decaying schedules)",
                             positive=True, high=1),
    }
    if target_accept is not None:
        params |= {
            "adapt": Param("global", "warm-up adaptation of ε: none, global or per_chain",
                           choices=ADAPT_MODES),
            # Bounds are inclusive, and a target of 1 would drive ε to 0.
            "target_accept": Param(target_accept, "target acceptance rate for adaptation",
                                   positive=True, high=0.99),
            "warmup": Param(0, "steps that adapt ε (then it is frozen); 0 = no adaptation", low=0),
        }
    return params | {
        "persistent": Param(False, "keep the adapted ε and warm-up count across calls"),
        "compile": Param(False, "torch.compile the energy (meant for CUDA; off on CPU)"),
        "step_impl": Param("eager", "how a step runs: eager, compile (torch.compile the "
                           "whole step) or cuda_graph (replay a captured step; CUDA only)",
                           choices=STEP_IMPLS),
    }


# ------------------------------------------------------------------------ the base class


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

    **Compilation of the energy**: ``compile=True`` wraps the energy in
    ``torch.compile(energy, **compile_options)`` (cached per energy). Off by default.

    **Step implementation** (``step_impl``, see :meth:`sample`): ``eager`` (default),
    ``compile`` or ``cuda_graph``. Warm-up steps always run eagerly (they adapt ε on the
    host); the fast paths run the post-warm-up steps. Kernels must draw their random numbers
    through :meth:`randn` and :meth:`log_uniform`, the same draws at every step, and must not
    synchronise with the host inside :meth:`transition` (no ``.item()``), as the built-in
    kernels do.
    """

    has_accept: ClassVar[bool] = True
    #: Keyword arguments for ``torch.compile`` when ``compile=True`` or
    #: ``step_impl="compile"`` (e.g. ``{"backend": "aot_eager"}`` for a quick CPU check,
    #: ``{"mode": "max-autotune-no-cudagraphs"}`` to tune on a GPU).
    compile_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state: ChainState | None = None
        self._compiled: tuple[weakref.ref, Any] | None = None
        self._compiled_step: tuple[Any, Callable[..., Any]] | None = None
        self._graphed: _GraphedSteps | None = None
        #: What captures a step: None (a CUDA graph on CUDA chains, eager elsewhere) or a
        #: factory of objects with ``capture(fn, generator)`` and ``replay()``; tests set
        #: it to run the capture logic on the CPU.
        self.graph_factory: Callable[[], Any] | None = None

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
            generator: The source of randomness, to pass to :meth:`randn` and
                :meth:`log_uniform` (may be None, may live on another device, may be a
                :class:`NoiseTape`).
            need_prob: Whether to return acceptance probabilities (during adaptation).

        Returns:
            (accepted, accept_prob): a bool tensor (n,) and, when ``need_prob``, the
            Metropolis acceptance probability (n,); both None for kernels without an accept
            step.
        """

    # -------------------------------------------------------------------- helpers for them

    @staticmethod
    def randn(x: Tensor, generator: Any) -> Tensor:
        """Standard normal noise shaped like ``x``, drawn from ``generator``.

        A generator on another device than ``x`` (a CPU generator for CUDA chains) is
        honoured by drawing there and copying, so results stay reproducible.
        """
        return _take("randn", x.shape, x, generator)

    @staticmethod
    def log_uniform(x: Tensor, generator: Any) -> Tensor:
        """log U, U ~ Uniform(0, 1), one per chain (shape (n,))."""
        return _take("log_uniform", (x.shape[0],), x, generator)

    @staticmethod
    def uniform(x: Tensor, generator: Any) -> Tensor:
        """U ~ Uniform(0, 1), one per chain (shape (n,))."""
        return _take("uniform", (x.shape[0],), x, generator)

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
        generator: Any,
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
        """Forget the persistent state (chains and adapted step size) and captured steps."""
        self.state = None
        self._graphed = None

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
        """Run every chain in ``x0`` for ``n_steps`` (default ``hparams["steps"]``).

        The post-warm-up steps run as ``step_impl`` says:

        - ``eager``: one :meth:`transition` call per step.
        - ``compile``: the first step runs eagerly and records the random draws it makes;
          every later step draws the same kinds of numbers from ``generator``, in the same
          order, and runs ``torch.compile`` of the whole transition on them (forward,
          ∇ₓf and the accept step fused; ``compile_options`` are passed on). The chains are
          those of ``eager`` up to floating-point rounding. Compiling costs seconds on the
          first call (counted in the run's sampling time); compiled steps are reused while
          the energy object stays the same. If compilation fails, the steps run eagerly
          and ``notes["step_impl"]`` says why.
        - ``cuda_graph`` (CUDA chains only): one transition is captured in a CUDA graph
          over fixed buffers and replayed once per step, so a step costs one launch. The
          noise is drawn inside the graph from a CUDA generator registered with it and
          seeded, at every call, by one draw from ``generator``: chains are reproducible
          from the run's seed (they are not the eager chains, which draw from
          ``generator`` itself). The graph is kept for the next call with the same energy,
          shapes, step count and modes (CD calls the sampler at every update). On chains
          that are not on CUDA, or if capture fails, the steps run eagerly (exactly the
          eager chains) and ``notes["step_impl"]`` says why.

        Evaluation counts of the fast paths are those of one step times the steps run.
        """
        steps = self.hparams["steps"] if n_steps is None else int(n_steps)
        hp = self.hparams
        adapter = self._adapter(x0)
        impl = hp.get("step_impl", "eager")
        fn = EnergyCounter(energy if impl == "compile" else self._energy(energy))
        n_warm = max(0, min(steps, adapter.warmup - adapter.done)) if adapter.adapting else 0
        factors = schedule_factors(
            hp.get("schedule", "constant"), steps - n_warm, hp.get("final_ratio", 0.1)
        )
        x = x0.detach()
        # Acceptances are summed on the device: one sync at the end, not one per step.
        accepted_sum = torch.zeros(x.shape[0], device=x.device) if self.has_accept else None
        count_warm = n_warm == steps  # a call that is all warm-up reports its own rate
        notes: dict[str, str] = {}
        with frozen_parameters(energy):
            chains = self.init_chains(fn, x)
            for _ in range(n_warm):
                accepted, prob = self.transition(fn, chains, adapter.current(), generator, True)
                adapter.update(prob)
                if count_warm and accepted_sum is not None:
                    accepted_sum.add_(accepted)
            eps = adapter.current()
            if impl == "cuda_graph" and factors:
                done = self._run_graphed(energy, fn, chains, eps, factors, generator,
                                         accepted_sum, notes)
                if not done:
                    self._run_eager(fn, chains, eps, factors, generator, accepted_sum)
            elif impl == "compile" and factors:
                self._run_compiled(energy, fn, chains, eps, factors, generator,
                                   accepted_sum, notes)
            else:
                self._run_eager(fn, chains, eps, factors, generator, accepted_sum)
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
        return SampleResult(chains.x.detach(), stats, notes)

    # ----------------------------------------------------------------- the step loops

    def _run_eager(self, fn: EnergyCounter, chains: Chains, eps: float | Tensor,
                   factors: list[float], generator: Any, accepted_sum: Tensor | None) -> None:
        # After warm-up the kernel is fixed: a lean loop, as a hand-written one would be.
        transition = self.transition
        for factor in factors:
            accepted, _ = transition(
                fn, chains, eps if factor == 1.0 else eps * factor, generator, False
            )
            if accepted_sum is not None:
                accepted_sum.add_(accepted)

    def _tape_step(self, fn: EnergyCounter, x: Tensor, f: Tensor | None,
                   score: Tensor | None, eps: Tensor, draws: list[Tensor]) -> tuple:
        """One transition as a pure function of tensors (what ``compile`` compiles)."""
        chains = Chains(x, f, score)
        accepted, _ = self.transition(fn, chains, eps, NoiseTape(draws), False)
        return chains.x, chains.f, chains.score, accepted

    def _step_function(self, energy: EnergyFn) -> Callable[..., tuple]:
        """The compiled step for ``energy``, cached while the energy object lives."""
        cached = self._compiled_step
        if cached is not None and cached[0]() is energy:
            return cached[1]
        counter = _UncountedEnergy(energy)

        def step(x: Tensor, f: Tensor | None, score: Tensor | None, eps: Tensor,
                 draws: list[Tensor]) -> tuple:
            return self._tape_step(counter, x, f, score, eps, draws)

        compiled = torch.compile(step, **self.compile_options)
        try:
            self._compiled_step = (weakref.ref(energy), compiled)
        except TypeError:
            self._compiled_step = None
        return compiled

    def _run_compiled(self, energy: EnergyFn, fn: EnergyCounter, chains: Chains,
                      eps: float | Tensor, factors: list[float], generator: Any,
                      accepted_sum: Tensor | None, notes: dict[str, str]) -> None:
        # The first step runs eagerly and records its draws and its evaluations.
        recorder = _NoiseRecorder(generator)
        evals = fn.energy_evals, fn.grad_evals
        accepted, _ = self.transition(fn, chains, eps if factors[0] == 1.0 else eps * factors[0],
                                      recorder, False)
        if accepted_sum is not None:
            accepted_sum.add_(accepted)
        rest = len(factors) - 1
        if not rest:
            return
        per_step = fn.energy_evals - evals[0], fn.grad_evals - evals[1]
        eps_steps = _step_sizes(eps, factors, chains.x)
        step: Callable[..., tuple] = self._step_function(energy)
        eager = functools.partial(self._tape_step, _UncountedEnergy(energy))
        with _trace_autograd():
            for t in range(1, len(factors)):
                args = (chains.x, chains.f, chains.score, eps_steps[t], recorder.replay())
                try:
                    out = step(*args)
                except Exception as exc:  # an energy torch.compile cannot trace
                    if step is eager:
                        raise
                    notes["step_impl"] = f"compile failed, the steps ran eagerly: {_why(exc)}"
                    self._compiled_step = None
                    step = eager
                    out = step(*args)
                chains.x, chains.f, chains.score, accepted = out
                if accepted_sum is not None:
                    accepted_sum.add_(accepted)
        fn.energy_evals += per_step[0] * rest
        fn.grad_evals += per_step[1] * rest

    def _run_graphed(self, energy: EnergyFn, fn: EnergyCounter, chains: Chains,
                     eps: float | Tensor, factors: list[float], generator: Any,
                     accepted_sum: Tensor | None, notes: dict[str, str]) -> bool:
        """Run the steps by replaying a captured one; False when they must run eagerly."""
        factory = self.graph_factory
        if factory is None:
            if chains.x.device.type != "cuda":
                notes["step_impl"] = (f"cuda_graph needs CUDA chains; these are on "
                                      f"{chains.x.device.type}, so the steps ran eagerly")
                return False
            factory = _CudaGraph
        key = _graph_key(energy, chains, eps, len(factors))
        graphed = self._graphed
        if graphed is None or graphed.key != key:
            self._graphed = None  # free the old graph's memory before capturing anew
            try:
                graphed = _GraphedSteps(self, fn.energy, chains, eps, len(factors), factory, key)
            except Exception as exc:  # something in the step cannot be captured
                graphed = _GraphedSteps.failed(key, _why(exc))
            self._graphed = graphed
        if graphed.error:
            notes["step_impl"] = f"CUDA graph capture failed, the steps ran eagerly: {graphed.error}"
            return False
        accepted = graphed.run(chains, eps, factors, _seed_from(generator))
        if accepted_sum is not None and accepted is not None:
            accepted_sum.add_(accepted)
        fn.energy_evals += graphed.evals_per_step[0] * len(factors)
        fn.grad_evals += graphed.evals_per_step[1] * len(factors)
        return True


def _take(kind: str, shape: Sequence[int], x: Tensor, generator: Any) -> Tensor:
    if isinstance(generator, NoiseTape):
        return generator.take(kind, shape)
    if isinstance(generator, _NoiseRecorder):
        return generator.take(kind, shape, x.dtype, x.device)
    return _draw(kind, shape, x.dtype, x.device, generator)


def _step_sizes(eps: float | Tensor, factors: Sequence[float], like: Tensor) -> Tensor:
    """ε at every step, on the chains' device: shape (T,), or (T, n) for per-chain ε."""
    base = torch.as_tensor(eps, dtype=like.dtype, device=like.device)
    scale = torch.tensor(list(factors), dtype=like.dtype, device=like.device)
    return scale.view(-1, *([1] * base.dim())) * base


def _why(exc: BaseException) -> str:
    """``Type: first line`` of an exception, of the one inside for a compiler's wrapper."""
    inner = getattr(exc, "inner_exception", None)  # torch._dynamo's BackendCompilerFailed
    if isinstance(inner, BaseException):
        exc = inner
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}".rstrip(": ")


@contextlib.contextmanager
def _trace_autograd():
    """Let torch.compile trace ``torch.autograd.grad`` (∇ₓf) into the compiled step.

    Without it Dynamo breaks the graph at every ∇ₓf, and the step is several graphs.
    """
    config = torch._dynamo.config
    if hasattr(config, "trace_autograd_ops"):
        with config.patch(trace_autograd_ops=True):
            yield
    else:  # an older torch: graph breaks, still correct
        yield


def _seed_from(generator: torch.Generator | None) -> int:
    """A seed for the graph's generator: one draw from the caller's (or the global) RNG."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=device))


# ------------------------------------------------------------------------ CUDA graphs


class _CudaGraph:
    """Captures a function in a ``torch.cuda.CUDAGraph`` and replays it."""

    def __init__(self) -> None:
        self.graph = torch.cuda.CUDAGraph()

    def warm_up(self, fn: Callable[[], None], times: int) -> None:
        # Lazy initialisations (cuBLAS workspaces, autograd's device threads) must happen
        # before capture, on the stream that will capture (PyTorch's CUDA-graph notes).
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(times):
                fn()
        torch.cuda.current_stream().wait_stream(stream)

    def capture(self, fn: Callable[[], None], generator: torch.Generator) -> None:
        self.graph.register_generator_state(generator)
        with torch.cuda.graph(self.graph):
            fn()

    def replay(self) -> None:
        self.graph.replay()


def _graph_key(energy: EnergyFn, chains: Chains, eps: float | Tensor, n_steps: int) -> tuple:
    """What a captured step depends on, beyond the values in its buffers."""
    x = chains.x
    modes = tuple(m.training for m in energy.modules()) if isinstance(energy, torch.nn.Module) \
        else ()
    return (id(energy), tuple(x.shape), x.dtype, x.device, chains.f is not None,
            chains.score is not None, tuple(eps.shape) if isinstance(eps, Tensor) else None,
            n_steps, modes, _autocast_state(x.device.type))


def _autocast_state(device_type: str) -> tuple:
    """Whether autocast is on for ``device_type``, and its dtype (across torch versions)."""
    try:
        return (torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type))
    except (TypeError, AttributeError, RuntimeError):  # torch < 2.4
        return (torch.is_autocast_enabled(),)


class _GraphedSteps:
    """One transition captured over fixed buffers; each replay advances the chains a step.

    The captured function reads the chains from the buffers, runs :meth:`transition` with
    ε = base ε × factor[t] (t a device counter it increments, so a schedule needs no host
    work between replays), writes the new chains back into the same buffers and adds the
    acceptances to a device counter. Random numbers come from ``self.generator``, a
    generator on the chains' device registered with the graph, re-seeded at every call.
    """

    error: str = ""

    def __init__(self, sampler: MarkovChainSampler, energy: EnergyFn, chains: Chains,
                 eps: float | Tensor, n_steps: int, factory: Callable[[], Any],
                 key: tuple) -> None:
        x = chains.x
        self.key = key
        self.sampler = sampler
        # Holding the energy keeps id(energy) in the key from being reused by another one.
        self.counter = EnergyCounter(energy)
        self.generator = torch.Generator(x.device)
        self.x = x.detach().clone()
        self.f = None if chains.f is None else chains.f.detach().clone()
        self.score = None if chains.score is None else chains.score.detach().clone()
        self.base_eps = torch.as_tensor(eps, dtype=x.dtype, device=x.device).clone()
        self.factors = torch.ones(n_steps, dtype=x.dtype, device=x.device)
        self.t = torch.zeros(1, dtype=torch.long, device=x.device)
        self.accepted = (torch.zeros(x.shape[0], device=x.device)
                         if sampler.has_accept else None)
        self.graph = factory()
        warm_up = getattr(self.graph, "warm_up", None)
        if warm_up is not None:
            warm_up(self._first_step, 2)
        self.t.zero_()  # (a capture that also runs the step stays within the schedule)
        before = self.counter.energy_evals, self.counter.grad_evals
        self.graph.capture(self._step, self.generator)
        self.evals_per_step = (self.counter.energy_evals - before[0],
                               self.counter.grad_evals - before[1])

    @classmethod
    def failed(cls, key: tuple, error: str) -> _GraphedSteps:
        """A placeholder remembering that capture failed for ``key`` (not retried)."""
        out = cls.__new__(cls)
        out.key, out.error = key, error
        return out

    def _first_step(self) -> None:
        """A step at t = 0 (warm-up runs may exceed the schedule's length)."""
        self.t.zero_()
        self._step()

    def _step(self) -> None:
        eps = self.base_eps * torch.index_select(self.factors, 0, self.t).view(())
        self.t.add_(1)
        chains = Chains(self.x, self.f, self.score)
        accepted, _ = self.sampler.transition(self.counter, chains, eps, self.generator, False)
        self.x.copy_(chains.x)
        if self.f is not None:
            self.f.copy_(chains.f)
        if self.score is not None:
            self.score.copy_(chains.score)
        if self.accepted is not None:
            self.accepted.add_(accepted)

    def run(self, chains: Chains, eps: float | Tensor, factors: Sequence[float],
            seed: int) -> Tensor | None:
        """Load the chains, replay once per step, and put the result back in ``chains``."""
        self.x.copy_(chains.x)
        if self.f is not None:
            self.f.copy_(chains.f)
        if self.score is not None:
            self.score.copy_(chains.score)
        if isinstance(eps, Tensor):
            self.base_eps.copy_(eps)
        else:
            self.base_eps.fill_(eps)
        self.factors.copy_(torch.tensor(list(factors), dtype=self.factors.dtype))
        self.t.zero_()
        if self.accepted is not None:
            self.accepted.zero_()
        self.generator.manual_seed(seed)
        for _ in factors:
            self.graph.replay()
        # The buffers are overwritten by the next call: the caller gets copies.
        chains.x = self.x.clone()
        chains.f = chains.score = None
        return None if self.accepted is None else self.accepted.clone()
