"""ebmbench: a plugin-based benchmark for energy-based models.

The public API. Plugins (built-in ones included) import only from here.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .ais import (
    AISResult,
    AnnealedEnergy,
    ais_log_partition,
    ais_unreliable_reason,
    annealed_importance_sampling,
    log_mean_exp_with_se,
    replicate_log_mean_exp,
    thermodynamic_schedule,
)
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
    UNRELIABLE_PREFIX,
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
    Sampler,
    SampleResult,
    ToyDensity,
    TrainContext,
    unreliable_values,
)
from .device import default_workers, usable_cpu_cores
from .errors import PluginError, UserError
from .flows import flow_rsample, standardised_maf
from .functional import energy_and_score, frozen_parameters
from .grid import RunSpec, Task, hard_time_limit, portable_task
from .hookspecs import hookimpl
from .params import BUDGETS, Param
from .plugins import add_plugins_dir, register_plugin
from .quadrature import (
    box_rule_2d,
    gauss_legendre,
    gauss_legendre_panels,
    log_integrate_2d,
    uniform_grid_2d,
)
from .replay import ReplayBuffer
from .runner import execute_task, unfinished_rows
from .schedules import (
    ADAPT_MODES,
    ANNEALING_SCHEDULES,
    SCHEDULES,
    Chains,
    ChainState,
    EnergyCounter,
    MarkovChainSampler,
    StepSizeAdapter,
    annealing_schedule,
    schedule_factors,
    step_size_params,
)

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
    "UNRELIABLE_PREFIX",
    "unreliable_values",
    # helpers
    "energy_and_score",
    "standardised_maf",
    "flow_rsample",
    "frozen_parameters",
    # samplers: schedules, adaptation, a base class; annealed importance sampling
    "MarkovChainSampler",
    "Chains",
    "ChainState",
    "EnergyCounter",
    "StepSizeAdapter",
    "step_size_params",
    "schedule_factors",
    "annealing_schedule",
    "SCHEDULES",
    "ANNEALING_SCHEDULES",
    "ADAPT_MODES",
    "annealed_importance_sampling",
    "AISResult",
    "AnnealedEnergy",
    "log_mean_exp_with_se",
    "replicate_log_mean_exp",
    "thermodynamic_schedule",
    "ais_log_partition",
    "ais_unreliable_reason",
    "ReplayBuffer",
    # quadrature (log-space, composite Gauss–Legendre)
    "gauss_legendre",
    "gauss_legendre_panels",
    "box_rule_2d",
    "log_integrate_2d",
    "uniform_grid_2d",
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
    # executors: the unit of work and the function they ship
    "RunSpec",
    "Task",
    "hard_time_limit",
    "portable_task",
    "usable_cpu_cores",
    "default_workers",
    "execute_task",
    "unfinished_rows",
]
