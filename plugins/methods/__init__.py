"""Built-in training methods."""

from ebmbench import hookimpl

from .score_matching import DenoisingScoreMatching

__all__ = ["DenoisingScoreMatching"]


@hookimpl
def ebmbench_register_methods(register):
    register(DenoisingScoreMatching)
