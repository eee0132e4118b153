"""Built-in datasets: toy densities with exact ground truth."""

from ebmbench import hookimpl

from .toy2d import EightGaussians

__all__ = ["EightGaussians"]


@hookimpl
def ebmbench_register_datasets(register):
    register(EightGaussians)
