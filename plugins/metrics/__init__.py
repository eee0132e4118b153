"""Built-in metrics.

* ``fisher``: Fisher divergence against a toy density's exact score.
* ``log_partition``: the exact log Z(θ) of the learned energy (quadrature in 2-D, AIS
  above) and what it gives: ``test_nll`` and ``log_z_abs_error``.
* ``mmd``: unbiased kernel MMD² of samples vs fresh data, with the data-vs-data floor.
* ``c2st``: classifier two-sample test accuracy of samples vs fresh data.
* ``density_figure``: per 2-D run, the learned density on a grid and a sample subset
  (``gallery.npz``), from which the leaderboard draws one gallery per dataset.
* ``cost``: wall-clock seconds and gradient evaluations.

See docs/metrics.md for the formulas, directions and standard errors.
"""

from ebmbench import hookimpl

from .c2st import C2ST
from .cost import WallClockCost
from .figures import DensityFigure
from .fisher import FisherDivergence
from .mmd import MMD
from .partition import LogPartition

__all__ = ["FisherDivergence", "LogPartition", "MMD", "C2ST", "DensityFigure", "WallClockCost"]


@hookimpl
def ebmbench_register_metrics(register):
    register(FisherDivergence)
    register(LogPartition)
    register(MMD)
    register(C2ST)
    register(DensityFigure)
    register(WallClockCost)
