"""ebmbench: a plugin-based benchmark for energy-based models.

The public API. Plugins (built-in ones included) import only from here. Names are
imported on first use (PEP 562 ``__getattr__``): ``import ebmbench`` itself imports neither
torch nor pandas, which keeps the command line's start-up short.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Every public name → the submodule defining it. Nothing is imported until a name is first
# used (PEP 562), so `ebmbench --help` and `import ebmbench.cli` do not pay for torch.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["AISResult", "AnnealedEnergy", "ais_log_partition",
                     "ais_unreliable_reason", "annealed_importance_sampling",
                     "log_mean_exp_with_se", "replicate_log_mean_exp",
                     "thermodynamic_schedule"], "ais"),
    **dict.fromkeys(["get_architecture", "get_dataset", "get_executor", "get_method",
                     "get_metric", "get_sampler", "list_plugins", "load_results", "run"], "api"),
    **dict.fromkeys(["Architecture", "Combination", "Dataset", "EnergyFn", "EvalContext",
                     "Executor", "ImageDataset", "Method", "Metric", "Plugin", "Sampler",
                     "SampleResult", "ToyDensity", "TrainContext", "UNRELIABLE_PREFIX",
                     "uniform_in_box", "unreliable_values"], "base"),
    **dict.fromkeys(["default_workers", "usable_cpu_cores"], "device"),
    **dict.fromkeys(["EnvironmentFailure", "PluginError", "UserError"], "errors"),
    **dict.fromkeys(["flow_rsample", "path_log_prob", "standardised_maf"], "flows"),
    **dict.fromkeys(["energy_and_score", "frozen_parameters"], "functional"),
    **dict.fromkeys(["RunSpec", "Task", "hard_time_limit", "portable_task"], "grid"),
    **dict.fromkeys(["hookimpl"], "hookspecs"),
    **dict.fromkeys(["ADAPT_MODES", "STEP_IMPLS", "Chains", "ChainState", "EnergyCounter",
                     "MarkovChainSampler", "NoiseTape", "StepSizeAdapter", "step_size_params"],
                    "mcmc"),
    **dict.fromkeys(["TrainedModel", "load_model", "train"], "model"),
    **dict.fromkeys(["BUDGETS", "Param"], "params"),
    **dict.fromkeys(["add_plugins_dir", "register_plugin"], "plugins"),
    **dict.fromkeys(["PRECISIONS", "MixedPrecisionEnergy", "autocast_for", "energy_precision",
                     "precision_param"], "precision"),
    **dict.fromkeys(["box_rule_2d", "gauss_legendre", "gauss_legendre_panels",
                     "log_integrate_2d", "uniform_grid_2d"], "quadrature"),
    **dict.fromkeys(["ReplayBuffer"], "replay"),
    **dict.fromkeys(["execute_task", "unfinished_rows"], "runner"),
    **dict.fromkeys(["ANNEALING_SCHEDULES", "LR_SCHEDULES", "SCHEDULES", "annealing_schedule",
                     "lr_factor", "schedule_factors"], "schedules"),
    **dict.fromkeys(["Search", "choice", "int_range", "log_uniform", "uniform"], "search_space"),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ebmbench")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    else:
        try:  # a submodule: ebmbench.plugins, ebmbench.testing, ...
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports lazily
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
        uniform_in_box,
        unreliable_values,
    )
    from .device import default_workers, usable_cpu_cores
    from .errors import EnvironmentFailure, PluginError, UserError
    from .flows import flow_rsample, path_log_prob, standardised_maf
    from .functional import energy_and_score, frozen_parameters
    from .grid import RunSpec, Task, hard_time_limit, portable_task
    from .hookspecs import hookimpl
    from .mcmc import (
        ADAPT_MODES,
        STEP_IMPLS,
        Chains,
        ChainState,
        EnergyCounter,
        MarkovChainSampler,
        NoiseTape,
        StepSizeAdapter,
        step_size_params,
    )
    from .model import TrainedModel, load_model, train
    from .params import BUDGETS, Param
    from .plugins import add_plugins_dir, register_plugin
    from .precision import (
        PRECISIONS,
        MixedPrecisionEnergy,
        autocast_for,
        energy_precision,
        precision_param,
    )
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
        ANNEALING_SCHEDULES,
        LR_SCHEDULES,
        SCHEDULES,
        annealing_schedule,
        lr_factor,
        schedule_factors,
    )
    from .search_space import Search, choice, int_range, log_uniform, uniform
    __version__: str

__all__ = [
    "__version__",
    "hookimpl",
    # contracts
    "Plugin",
    "Param",
    "BUDGETS",
    "Search",
    "log_uniform",
    "uniform",
    "int_range",
    "choice",
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
    "uniform_in_box",
    "Metric",
    "EvalContext",
    "Executor",
    "UNRELIABLE_PREFIX",
    "unreliable_values",
    # helpers
    "energy_and_score",
    "standardised_maf",
    "flow_rsample",
    "path_log_prob",
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
    "LR_SCHEDULES",
    "lr_factor",
    "ADAPT_MODES",
    "STEP_IMPLS",
    "NoiseTape",
    "annealed_importance_sampling",
    "AISResult",
    "AnnealedEnergy",
    "log_mean_exp_with_se",
    "replicate_log_mean_exp",
    "thermodynamic_schedule",
    "ais_log_partition",
    "ais_unreliable_reason",
    "ReplayBuffer",
    # mixed precision (bf16 autocast with a float32 output)
    "PRECISIONS",
    "MixedPrecisionEnergy",
    "autocast_for",
    "energy_precision",
    "precision_param",
    # quadrature (log-space, composite Gauss–Legendre)
    "gauss_legendre",
    "gauss_legendre_panels",
    "box_rule_2d",
    "log_integrate_2d",
    "uniform_grid_2d",
    # errors
    "UserError",
    "EnvironmentFailure",
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
    # trained models
    "train",
    "load_model",
    "TrainedModel",
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
