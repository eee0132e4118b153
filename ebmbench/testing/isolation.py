"""Plugin managers for checks, swapped in and out without touching the caller's registry."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .. import plugins as _plugins
from ..base import PLUGIN_KINDS, Plugin
from ..hookspecs import HOOK_KINDS, hookimpl
from ..plugins import ENV_DISABLE_AUTOLOAD, PluginManager

__all__ = ["isolated_plugins", "hook_object", "HOOK_OBJECT_NAME", "registration_error"]

#: The name the conformance suite registers its hook object under.
HOOK_OBJECT_NAME = "ebmbench-conformance"


def _register_all(classes: list[type[Plugin]]):  # noqa: ANN202 - a hook implementation
    def ebmbench_register(register):  # noqa: ANN001, ANN202
        for cls in classes:
            register(cls)

    return ebmbench_register


def hook_object(classes: Sequence[type[Plugin]]) -> object:
    """An object implementing the registration hook of each kind among ``classes``.

    It is what a plugin module looks like to pluggy: one ``@hookimpl`` function per hook,
    each calling ``register`` for its classes.
    """
    namespace = {}
    for kind, hook in HOOK_KINDS.items():
        mine = [c for c in classes if issubclass(c, PLUGIN_KINDS[kind])]
        if mine:
            namespace[hook] = staticmethod(hookimpl(_register_all(mine)))
    return type("ConformanceHooks", (), namespace)()


@contextmanager
def isolated_plugins(
    *classes: type[Plugin], autoload: bool = True
) -> Iterator[PluginManager]:
    """A fresh process-wide plugin manager for the block; the caller's is put back after.

    The new manager holds the installed plugins (entry points, unless ``autoload`` is
    False or the environment disables autoloading) and ``classes``, registered through
    their hooks exactly as a plugin package registers them. Everything that looks plugins
    up by name (``ebmbench.run``, the harness) sees this manager inside the block. Not
    thread-safe: the manager is a process global.

    >>> from ebmbench import list_plugins
    >>> with isolated_plugins(autoload=False):
    ...     list_plugins("method")
    []
    """
    saved = _plugins._manager
    saved_env = os.environ.get(ENV_DISABLE_AUTOLOAD)
    pm = _plugins.reset_plugin_manager()
    try:
        if not autoload:
            os.environ[ENV_DISABLE_AUTOLOAD] = "1"
        pm.load()  # autoloading reads the environment now, and only now
        _restore_env(saved_env)
        if classes:
            # Registered after the installed plugins, so that a clash of names is reported
            # against the classes under test, not against the plugin they collide with.
            pm.register_plugin(hook_object(classes), name=HOOK_OBJECT_NAME)
        yield pm
    finally:
        _plugins._manager = saved
        _restore_env(saved_env)


def _restore_env(value: str | None) -> None:
    if value is None:
        os.environ.pop(ENV_DISABLE_AUTOLOAD, None)
    else:
        os.environ[ENV_DISABLE_AUTOLOAD] = value


def registration_error(pm: PluginManager) -> str | None:
    """Why the conformance hook object failed to register its classes, if it did."""
    errors = [b.error for b in pm.broken if b.name == HOOK_OBJECT_NAME]
    return "; ".join(errors) if errors else None
