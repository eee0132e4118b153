"""The pluggy plugin manager: lazy, once-only loading with broken plugins isolated.

Sources, in order:

1. setuptools entry points in the ``ebmbench`` group (the built-ins are registered this
   way too, by the ``ebmbench`` distribution). ``EBMBENCH_DISABLE_PLUGIN_AUTOLOAD=1`` (any
   non-empty value but ``third-party``) turns this off, built-ins included;
   ``EBMBENCH_DISABLE_PLUGIN_AUTOLOAD=third-party`` keeps the built-ins and drops every
   other package; ``EBMBENCH_LOAD_PLUGINS`` (a comma list of distribution names, possibly
   empty) restricts it to those distributions. :meth:`PluginManager.autoload_note` says
   in one line what these variables left out.
2. loose ``.py`` files in every ``--plugins-dir`` folder.
3. objects passed to :func:`register_plugin` (tests, notebooks).

Nothing is imported until a registry is first needed. A plugin that fails to import (even
by calling ``sys.exit``) or whose hook raises is recorded in :attr:`PluginManager.broken`
and never stops the host; ``ebmbench run`` prints one line per such plugin, and an
unknown-name error lists them. ``EBMBENCH_LOAD_PLUGINS`` naming a distribution that has
no ebmbench plugins is a :class:`~ebmbench.UserError`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as importlib_metadata
import importlib.util
import os
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .autoload import (
    BUILTIN_DISTRIBUTION,
    ENV_DISABLE_AUTOLOAD,
    ENV_LOAD_PLUGINS,
    KEEP_BUILTINS,
    autoload_filter,
    autoload_note,
)
from .base import PLUGIN_KINDS, Plugin
from .errors import UserError, shown
from .registry import NameCollision, PluginInfo, Registry

__all__ = [
    "PluginManager",
    "BrokenPlugin",
    "get_plugin_manager",
    "reset_plugin_manager",
    "register_plugin",
    "add_plugins_dir",
    "ENV_LOAD_PLUGINS",
    "ENV_DISABLE_AUTOLOAD",
    "BUILTIN_DISTRIBUTION",
    "KEEP_BUILTINS",
]

#: What a plugin may raise while it is imported or registers, and still be only "broken":
#: ``SystemExit`` too (a module calling ``sys.exit`` at import must not end the host);
#: never ``KeyboardInterrupt``.
_LOAD_FAILURES = (Exception, SystemExit)


def _dist_key(name: str) -> str:
    """A distribution name normalised as packaging does (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that could not be loaded or whose registration failed."""

    name: str
    source: str
    error: str
    traceback: str

    def line(self, limit: int = 160) -> str:
        """One line for a terminal: the plugin, where it comes from, its error cut short."""
        error = " ".join(self.error.split())
        if len(error) > limit:
            error = error[: limit - 1] + "…"
        return f"{self.name} ({self.source}): {error}"


@dataclass(frozen=True)
class _Origin:
    source: str
    version: str


class PluginManager:
    """Loads plugins once and keeps one :class:`Registry` per kind."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.registries: dict[str, Registry[Any]] = {
            kind: Registry(kind, base) for kind, base in PLUGIN_KINDS.items()
        }
        self.broken: list[BrokenPlugin] = []
        self._origins: dict[int, _Origin] = {}
        self._plugins_dirs: list[Path] = []
        self._loaded = False

    # ------------------------------------------------------------------ sources

    def add_plugins_dir(self, path: str | os.PathLike[str]) -> None:
        """Load every ``*.py`` file in ``path`` (now, if plugins are already loaded)."""
        folder = Path(path)
        if not folder.is_dir():
            raise UserError(f"--plugins-dir {str(folder)!r} is not a directory")
        if folder in self._plugins_dirs:
            return
        self._plugins_dirs.append(folder)
        if self._loaded:
            self._call_hooks(self._load_dir(folder))

    def register_plugin(self, plugin: object, name: str | None = None) -> None:
        """Register a module or object with hook implementations directly."""
        source = name or getattr(plugin, "__name__", None) or repr(plugin)
        self._register(plugin, source, _Origin(f"<{source}>", "local"))
        if self._loaded:
            self._call_hooks([plugin])

    def _register(self, plugin: object, name: str, origin: _Origin) -> bool:
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # a malformed hookimpl, a duplicate plugin name
            self._record_broken(name, origin.source, exc)
            return False
        self._origins[id(plugin)] = origin
        return True

    def _entry_points(self) -> list[tuple[Any, str, str]]:
        """The entry points to load, with their distribution's name and version.

        Raises:
            UserError: ``EBMBENCH_LOAD_PLUGINS`` names a distribution with no ebmbench
                entry points (a typo would otherwise silently load nothing from it).
        """
        wanted = autoload_filter()
        if wanted is not None and not wanted:
            return []
        found: list[tuple[Any, str, str]] = []
        seen: set[tuple[str, str]] = set()
        for ep in importlib_metadata.entry_points(group=hookspecs.PROJECT_NAME):
            dist = ep.dist
            dist_name = dist.metadata["Name"] if dist is not None else "<unknown>"
            version = dist.version if dist is not None else "unknown"
            key = (_dist_key(dist_name), ep.name)
            if key in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add(key)
            found.append((ep, dist_name, version))
        if wanted is None:
            return found
        wanted = {_dist_key(d) for d in wanted}
        installed = {_dist_key(name): name for _, name, _ in found}
        unknown = sorted(wanted - set(installed))
        raw = os.environ.get(ENV_LOAD_PLUGINS, "")
        if unknown and ENV_LOAD_PLUGINS in os.environ and not os.environ.get(ENV_DISABLE_AUTOLOAD):
            valid = ", ".join(sorted(installed.values())) or "(none)"
            raise UserError(
                f"bad environment variable {ENV_LOAD_PLUGINS} {shown(raw)}: {shown(unknown[0])} "
                f"is not an installed distribution with ebmbench plugins. Installed: {valid}"
            )
        return [item for item in found if _dist_key(item[1]) in wanted]

    def _load_entry_points(
        self, entry_points: list[tuple[Any, str, str]] | None = None
    ) -> list[object]:
        loaded: list[object] = []
        for ep, dist_name, version in self._entry_points() if entry_points is None else entry_points:
            label = f"{dist_name}:{ep.name}"
            try:
                plugin = ep.load()
            except _LOAD_FAILURES as exc:
                self._record_broken(label, dist_name, exc)
                continue
            if self._register(plugin, label, _Origin(dist_name, version)):
                loaded.append(plugin)
        return loaded

    def _load_dir(self, folder: Path) -> list[object]:
        loaded = []
        for path in sorted(folder.glob("*.py")):
            digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
            module_name = f"ebmbench_plugins_dir_{digest}_{path.stem}"
            try:
                module = _import_file(module_name, path)
            except _LOAD_FAILURES as exc:
                self._record_broken(path.name, str(path), exc)
                continue
            if self._register(module, str(path), _Origin(str(path), "local")):
                loaded.append(module)
        return loaded

    # ------------------------------------------------------------------ loading

    def load(self) -> None:
        """Load every source once; later calls do nothing."""
        if self._loaded:
            return
        self._entry_points()  # a bad EBMBENCH_LOAD_PLUGINS raises before anything loads
        self._loaded = True
        plugins = [p for p in self.pm.get_plugins() if id(p) in self._origins]
        plugins += self._load_entry_points()
        for folder in self._plugins_dirs:
            plugins += self._load_dir(folder)
        self._call_hooks(plugins)

    def _call_hooks(self, plugins: list[object]) -> None:
        # Each implementation is called on its own so that one plugin's exception is
        # attributed to it and cannot stop the others from registering.
        for kind, hook_name in hookspecs.HOOK_KINDS.items():
            registry = self.registries[kind]
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                if impl.plugin not in plugins:
                    continue
                origin = self._origins.get(id(impl.plugin), _Origin("<unknown>", "unknown"))

                def register(
                    cls: type[Plugin], _o: _Origin = origin, _r: Registry[Any] = registry,
                    _name: str = impl.plugin_name,
                ) -> None:
                    try:
                        _r.register(cls, source=_o.source, version=_o.version)
                    except NameCollision as exc:
                        # Recorded, and the hook goes on registering its other plugins;
                        # the registry refuses the name when it is selected.
                        self._record_broken(_name, _o.source, exc)

                try:
                    impl.function(register=register)
                except _LOAD_FAILURES as exc:
                    self._record_broken(impl.plugin_name, origin.source, exc)

    def _record_broken(self, name: str, source: str, exc: BaseException) -> None:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, SystemExit):
            error = f"SystemExit({exc.code!r}): it called sys.exit while being loaded"
        self.broken.append(BrokenPlugin(name, source, error, tb))

    # ------------------------------------------------------------------ queries

    def registry(self, kind: str) -> Registry[Any]:
        """The registry of ``kind`` (``method``, ``sampler``, ...), loading plugins first."""
        if kind not in self.registries:
            valid = ", ".join(self.registries)
            raise UserError(f"unknown plugin kind {kind!r}. Valid kinds: {valid}")
        self.load()
        return self.registries[kind]

    def info(self, kind: str, name: str) -> PluginInfo[Any]:
        """The plugin ``name`` of ``kind``; an unknown name's error also lists the plugins
        that failed to load (one of them may be the one meant)."""
        registry = self.registry(kind)
        try:
            return registry.get(name)
        except UserError as exc:
            if not self.broken or not isinstance(name, str) or name in registry:
                raise
            failed = "; ".join(b.line(limit=100) for b in self.broken[:3])
            more = f" (and {len(self.broken) - 3} more)" if len(self.broken) > 3 else ""
            raise UserError(
                f"{exc}. {len(self.broken)} plugin(s) failed to load, which may be why: "
                f"{failed}{more}; see `ebmbench list`"
            ) from None

    @staticmethod
    def autoload_note() -> str | None:
        """Why installed plugins may be missing (see :func:`ebmbench.autoload.autoload_note`)."""
        return autoload_note()


def _import_file(module_name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


_manager: PluginManager | None = None


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager (created on first use, loaded lazily)."""
    global _manager
    if _manager is None:
        _manager = PluginManager()
    return _manager


def reset_plugin_manager() -> PluginManager:
    """Forget every loaded plugin; the next query loads afresh (for tests)."""
    global _manager
    _manager = PluginManager()
    return _manager


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register a module or object with ``@hookimpl`` functions in the global manager."""
    get_plugin_manager().register_plugin(plugin, name)


def add_plugins_dir(path: str | os.PathLike[str]) -> None:
    """Load loose ``.py`` plugin files from ``path`` into the global manager."""
    get_plugin_manager().add_plugins_dir(path)
