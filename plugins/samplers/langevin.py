"""Langevin-dynamics samplers: unadjusted (ULA) and Metropolis-adjusted (MALA)."""

from __future__ import annotations

import math

from torch import Tensor

from ebmbench import Chains, EnergyCounter, MarkovChainSampler, Param, step_size_params

__all__ = ["UnadjustedLangevin", "MetropolisAdjustedLangevin"]


class UnadjustedLangevin(MarkovChainSampler):
    """Unadjusted Langevin algorithm (ULA; Roberts & Tweedie 1996, Bernoulli 2(4)).

        x_{t+1} = x_t + ε ∇ₓf(x_t) + √(2ε) z_t,  z_t ~ N(0, I).

    The Euler-Maruyama discretisation of the Langevin diffusion dx = ∇f dt + √2 dW. With no
    accept step it targets p ∝ exp(f) only as ε → 0: for fixed ε the stationary law is
    biased by O(ε). On N(0, σ²) its stationary variance is exactly σ² / (1 − ε/(2σ²)),
    finite for ε < 2σ². A decaying ``schedule`` trades that bias for mixing.

    One gradient (and energy) evaluation per step and chain.
    """

    name = "ula"
    description = "Unadjusted Langevin: x + ε∇f(x) + √(2ε)z, no accept step"
    has_accept = False
    params = {
        "steps": Param(100, "Langevin steps per chain", smoke=10, full=1000, low=1),
    } | step_size_params(5e-3, target_accept=None, smoke=1e-2, full=1e-3)

    def init_chains(self, fn: EnergyCounter, x: Tensor) -> Chains:
        return Chains(x)

    def transition(self, fn, chains, eps, generator, need_prob):
        x = chains.x
        _, score = fn.value_and_score(x)
        noise = self.randn(x, generator)
        if isinstance(eps, Tensor):
            eps = self.per_chain(eps, x)
            chains.x = x + eps * score + (2 * eps).sqrt() * noise
        else:
            # In place on the fresh noise: one allocation per step, as a hand-written loop.
            chains.x = noise.mul_(math.sqrt(2 * eps)).add_(score, alpha=eps).add_(x)
        return None, None


class MetropolisAdjustedLangevin(MarkovChainSampler):
    """Metropolis-adjusted Langevin algorithm (MALA; Roberts & Tweedie 1996; Roberts &
    Rosenthal 1998, JRSS B 60(1)).

    Propose x' = x + ε ∇f(x) + √(2ε) z and accept with probability min(1, α),

        log α = f(x') − f(x) + log q(x | x') − log q(x' | x),
        log q(b | a) = −‖b − a − ε ∇f(a)‖² / (4ε)  (+ a constant that cancels).

    The proposal is asymmetric, so both densities are needed; log q(x' | x) = −‖z‖²/2.
    Exact for any ε; the optimal acceptance in high dimension is about 0.574. One gradient
    evaluation per step and chain (the current point's f and ∇f are cached).
    """

    name = "mala"
    description = "Metropolis-adjusted Langevin (MALA), per-chain accept, optional ε adaptation"
    params = {
        "steps": Param(100, "MALA steps per chain", smoke=10, full=1000, low=1),
    } | step_size_params(2e-2, target_accept=0.574, full=1e-2)

    def init_chains(self, fn: EnergyCounter, x: Tensor) -> Chains:
        f, score = fn.value_and_score(x)
        return Chains(x, f, score)

    def transition(self, fn, chains, eps, generator, need_prob):
        x, f, score = chains.x, chains.f, chains.score
        e = self.per_chain(eps, x)
        z = self.randn(x, generator)
        noise_scale = (2 * e).sqrt() if isinstance(e, Tensor) else math.sqrt(2 * e)
        x_new = x + e * score + noise_scale * z
        f_new, score_new = fn.value_and_score(x_new)
        backward = self.sq_norm(x - x_new - e * score_new) / (4 * eps)
        log_alpha = f_new - f - backward + 0.5 * self.sq_norm(z)
        return self.metropolis(chains, Chains(x_new, f_new, score_new), log_alpha,
                               generator, need_prob)
