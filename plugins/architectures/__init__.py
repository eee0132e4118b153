"""Built-in energy architectures."""

from ebmbench import hookimpl

from .mlp import MLPEnergy
from .quadratic import QuadraticEnergy

__all__ = ["MLPEnergy", "QuadraticEnergy"]


@hookimpl
def ebmbench_register_architectures(register):
    register(MLPEnergy)
    register(QuadraticEnergy)
