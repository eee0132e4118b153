"""Built-in datasets: toy densities with exact, normalised log-density and score.

Two-dimensional (each with a bounding box for quadrature): mixtures (``toy2d``), noise
around curves (``curves``), unimodal densities with awkward geometry (``unimodal2d``) and a
correlated Gaussian (``gaussians``). Higher-dimensional: Gaussian mixtures in 8, 32 and
128 dimensions (``highdim``) and a 16-D correlated Gaussian (``gaussians``).
See docs/datasets.md for the formulas.
"""

from ebmbench import hookimpl

from .curves import Pinwheel, Rings, SwissRoll, TwoMoons, TwoSpirals
from .gaussians import CorrelatedGaussian, CorrelatedGaussian16D
from .highdim import GMM8D, GMM32D, GMM128D, GaussianMixtureND
from .toy2d import Checkerboard, EightGaussians, TwentyFiveGaussians
from .unimodal2d import Banana, Funnel, StudentT

__all__ = [
    "EightGaussians",
    "TwentyFiveGaussians",
    "Checkerboard",
    "Rings",
    "TwoMoons",
    "SwissRoll",
    "TwoSpirals",
    "Pinwheel",
    "Banana",
    "Funnel",
    "StudentT",
    "CorrelatedGaussian",
    "CorrelatedGaussian16D",
    "GaussianMixtureND",
    "GMM8D",
    "GMM32D",
    "GMM128D",
]

#: The registered datasets, in the order ``ebmbench list`` shows them.
DATASETS = (
    EightGaussians,
    TwentyFiveGaussians,
    Checkerboard,
    Rings,
    TwoMoons,
    SwissRoll,
    TwoSpirals,
    Pinwheel,
    Banana,
    Funnel,
    StudentT,
    CorrelatedGaussian,
    CorrelatedGaussian16D,
    GMM8D,
    GMM32D,
    GMM128D,
)


@hookimpl
def ebmbench_register_datasets(register):
    for cls in DATASETS:
        register(cls)
