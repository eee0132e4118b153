"""Built-in MCMC samplers: random-walk Metropolis-Hastings, ULA, MALA and HMC."""

from ebmbench import hookimpl

from .hmc import HamiltonianMonteCarlo
from .langevin import MetropolisAdjustedLangevin, UnadjustedLangevin
from .metropolis import RandomWalkMetropolis

__all__ = [
    "RandomWalkMetropolis",
    "UnadjustedLangevin",
    "MetropolisAdjustedLangevin",
    "HamiltonianMonteCarlo",
]


@hookimpl
def ebmbench_register_samplers(register):
    register(RandomWalkMetropolis)
    register(UnadjustedLangevin)
    register(MetropolisAdjustedLangevin)
    register(HamiltonianMonteCarlo)
