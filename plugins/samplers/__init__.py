"""Built-in MCMC samplers."""

from ebmbench import hookimpl

from .langevin import UnadjustedLangevin

__all__ = ["UnadjustedLangevin"]


@hookimpl
def ebmbench_register_samplers(register):
    register(UnadjustedLangevin)
