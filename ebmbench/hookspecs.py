"""The hooks a plugin implements to contribute to ebmbench.

Every hook is a *registration hook*: it receives a ``register`` callback and calls it
once per class it contributes, in the style of ``llm``'s ``register_models``. The host
validates what is registered (base class, unique name, metadata) in one place, the
registry, so a hook implementation stays a few lines long::

    from ebmbench import Method, hookimpl

    class MyMethod(Method):
        name = "my_method"
        ...

    @hookimpl
    def ebmbench_register_methods(register):
        register(MyMethod)
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from .base import Architecture, Dataset, Executor, Method, Metric, Sampler

__all__ = ["hookspec", "hookimpl", "PROJECT_NAME", "HOOK_KINDS"]

#: pluggy project name and setuptools entry-point group.
PROJECT_NAME = "ebmbench"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def ebmbench_register_methods(register: Callable[[type[Method]], None]) -> None:
    """Register training methods: call ``register(cls)`` for each :class:`Method` subclass."""


@hookspec
def ebmbench_register_samplers(register: Callable[[type[Sampler]], None]) -> None:
    """Register MCMC samplers: call ``register(cls)`` for each :class:`Sampler` subclass."""


@hookspec
def ebmbench_register_architectures(register: Callable[[type[Architecture]], None]) -> None:
    """Register energy architectures: call ``register(cls)`` for each :class:`Architecture`."""


@hookspec
def ebmbench_register_datasets(register: Callable[[type[Dataset]], None]) -> None:
    """Register datasets: call ``register(cls)`` for each :class:`Dataset` subclass."""


@hookspec
def ebmbench_register_metrics(register: Callable[[type[Metric]], None]) -> None:
    """Register metrics: call ``register(cls)`` for each :class:`Metric` subclass."""


@hookspec
def ebmbench_register_executors(register: Callable[[type[Executor]], None]) -> None:
    """Register executors: call ``register(cls)`` for each :class:`Executor` subclass."""


#: Plugin kind → the name of the hook that registers it.
HOOK_KINDS: dict[str, str] = {
    "method": "ebmbench_register_methods",
    "sampler": "ebmbench_register_samplers",
    "architecture": "ebmbench_register_architectures",
    "dataset": "ebmbench_register_datasets",
    "metric": "ebmbench_register_metrics",
    "executor": "ebmbench_register_executors",
}
