"""ebmbench: a plugin-based benchmark for energy-based models.

The public API. Plugins (built-in ones included) import only from here.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .api import (
    get_architecture,
    get_dataset,
    get_executor,
    get_method,
    get_metric,
    get_sampler,
    list_plugins,
    load_results,
    run,
)
from .base import (
    Architecture,
    Combination,
    Dataset,
    EnergyFn,
    EvalContext,
    Executor,
    ImageDataset,
    Method,
    Metric,
    Plugin,
    SampleResult,
    Sampler,
    ToyDensity,
    TrainContext,
)
from .errors import PluginError, UserError
from .functional import energy_and_score
from .hookspecs import hookimpl
from .params import BUDGETS, Param
from .plugins import add_plugins_dir, register_plugin

try:
    __version__ = version("ebmbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "__version__",
    "hookimpl",
    # contracts
    "Plugin",
    "Param",
    "BUDGETS",
    "Combination",
    "Architecture",
    "Dataset",
    "ToyDensity",
    "ImageDataset",
    "Sampler",
    "SampleResult",
    "EnergyFn",
    "Method",
    "TrainContext",
    "Metric",
    "EvalContext",
    "Executor",
    # helpers
    "energy_and_score",
    # errors
    "UserError",
    "PluginError",
    # API
    "list_plugins",
    "get_method",
    "get_sampler",
    "get_architecture",
    "get_dataset",
    "get_metric",
    "get_executor",
    "register_plugin",
    "add_plugins_dir",
    "run",
    "load_results",
]
