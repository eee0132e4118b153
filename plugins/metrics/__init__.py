"""Built-in metrics."""

from ebmbench import hookimpl

from .cost import WallClockCost
from .fisher import FisherDivergence

__all__ = ["FisherDivergence", "WallClockCost"]


@hookimpl
def ebmbench_register_metrics(register):
    register(FisherDivergence)
    register(WallClockCost)
