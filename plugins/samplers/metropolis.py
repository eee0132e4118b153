"""Random-walk Metropolis-Hastings."""

from __future__ import annotations

from torch import Tensor

from ebmbench import Chains, EnergyCounter, MarkovChainSampler, Param, step_size_params

__all__ = ["RandomWalkMetropolis"]


class RandomWalkMetropolis(MarkovChainSampler):
    """Random-walk Metropolis-Hastings (Metropolis et al. 1953; Hastings 1970).

    Propose x' = x + ε z, z ~ N(0, I), and accept with probability

        min(1, exp(f(x') − f(x)))

    (the Gaussian proposal is symmetric, so its densities cancel). Gradient-free: one energy
    evaluation per step and chain. The optimal acceptance in high dimension is about 0.234
    (Roberts, Gelman & Gilks 1997), reached near ε ≈ 2.38 σ / √d on a Gaussian of scale σ.
    """

    name = "mh"
    description = "Random-walk Metropolis-Hastings with a Gaussian proposal, per-chain accept"
    params = {
        "steps": Param(200, "Metropolis-Hastings steps per chain", smoke=10, full=2000, low=1),
    } | step_size_params(0.3, target_accept=0.234, smoke=0.3)

    def init_chains(self, fn: EnergyCounter, x: Tensor) -> Chains:
        return Chains(x, fn.value(x))

    def transition(self, fn, chains, eps, generator, need_prob):
        x = chains.x
        x_new = x + self.per_chain(eps, x) * self.randn(x, generator)
        f_new = fn.value(x_new)
        return self.metropolis(chains, Chains(x_new, f_new), f_new - chains.f,
                               generator, need_prob)
