"""Built-in energy architectures."""

from ebmbench import hookimpl

from .mlp import MLPEnergy

__all__ = ["MLPEnergy"]


@hookimpl
def ebmbench_register_architectures(register):
    register(MLPEnergy)
