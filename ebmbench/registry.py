"""Typed registries behind the registration hooks.

One :class:`Registry` per plugin kind holds the registered classes by name. Registration
validates the class in one place (base class, unique name, one-line description, declared
hyper-parameters, kind-specific metadata) so that hook implementations stay trivial and
every plugin, built-in or third-party, meets the same bar.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .base import Metric, Plugin
from .errors import PluginError, UserError, shown, unknown_choice
from .params import Param

__all__ = ["Registry", "PluginInfo", "NameCollision"]

P = TypeVar("P", bound=Plugin)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


@dataclass(frozen=True)
class PluginInfo(Generic[P]):
    """A registered plugin class and where it came from.

    Attributes:
        cls: The plugin class.
        source: The distribution that registered it (``ebmbench`` for built-ins), or the
            file for ``--plugins-dir`` plugins, or ``"<name>"`` for programmatic ones.
        version: The distribution's version, or ``"local"``.
    """

    cls: type[P]
    source: str
    version: str

    @property
    def name(self) -> str:
        return self.cls.name


class NameCollision(PluginError):
    """Two plugins of one kind registered the same name: neither may run under it."""


def _where(info: PluginInfo[Any]) -> str:
    return f"{info.source} ({info.cls.__module__}.{info.cls.__qualname__})"


class Registry(Generic[P]):
    """Plugins of one kind, by name.

    >>> from ebmbench.base import Sampler
    >>> reg = Registry("sampler", Sampler)
    >>> reg.names()
    []
    """

    def __init__(self, kind: str, base: type[P]) -> None:
        self.kind = kind
        self.base = base
        self._items: dict[str, PluginInfo[P]] = {}
        #: Names registered by more than one plugin: every claimant, the first kept in
        #: ``_items`` (so that ``ebmbench list`` still shows it); selecting one is an error.
        self._collisions: dict[str, list[PluginInfo[P]]] = {}

    def register(self, cls: type[P], *, source: str = "<api>", version: str = "local") -> None:
        """Validate ``cls`` and add it; raise :class:`PluginError` when it is unfit.

        A second class under a name already taken raises :class:`NameCollision` and marks
        the name: :meth:`get` then refuses it, naming both sources, instead of silently
        running whichever loaded first.
        """
        self.validate(cls)
        info = PluginInfo(cls, source, version)
        if cls.name in self._items:
            other = self._items[cls.name]
            if other.cls is cls:
                return
            self._collisions.setdefault(cls.name, [other]).append(info)
            raise NameCollision(
                f"{self.kind} name {cls.name!r} from {_where(info)} is already registered by "
                f"{_where(other)}"
            )
        self._items[cls.name] = info

    def validate(self, cls: object) -> None:
        """Raise :class:`PluginError` unless ``cls`` is a complete plugin of this kind."""
        what = getattr(cls, "__qualname__", repr(cls))
        if not (inspect.isclass(cls) and issubclass(cls, self.base)):
            raise PluginError(f"{what} is not a subclass of ebmbench.{self.base.__name__}")
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(cls.__abstractmethods__))
            raise PluginError(f"{self.kind} {what} leaves abstract methods unimplemented: {missing}")
        name = cls.name
        if not isinstance(name, str) or not _NAME.match(name):
            raise PluginError(
                f"{self.kind} {what} has name {name!r}: use lower-case letters, digits, _ and -"
            )
        desc = cls.description
        if not isinstance(desc, str) or not desc.strip() or "\n" in desc.strip():
            raise PluginError(f"{self.kind} {name!r} needs a one-line description")
        if not isinstance(cls.params, dict) or not all(
            isinstance(k, str) and isinstance(v, Param) for k, v in cls.params.items()
        ):
            raise PluginError(f"{self.kind} {name!r}: params must map names to ebmbench.Param")
        if issubclass(cls, Metric):
            # May be empty for a metric that only writes figures (artifacts).
            hib = cls.higher_is_better
            if not isinstance(hib, dict) or not all(
                isinstance(k, str) and isinstance(v, bool) for k, v in hib.items()
            ):
                raise PluginError(
                    f"metric {name!r} must declare higher_is_better: value name → bool"
                )

    def get(self, name: str) -> PluginInfo[P]:
        """The plugin called ``name``; unknown names raise a "did you mean" UserError, and
        so does a name that two plugins registered."""
        if not isinstance(name, str):
            example = next(iter(self.names()), "name")
            raise UserError(f"bad {self.kind} name {shown(name)}: give the name as a string, "
                            f"e.g. {example!r}")
        if name in self._collisions:
            sources = " and by ".join(_where(i) for i in self._collisions[name])
            raise UserError(
                f"{self.kind} {name!r} is registered twice, by {sources}: uninstall one, or "
                f"choose the distributions that load with EBMBENCH_LOAD_PLUGINS"
            )
        try:
            return self._items[name]
        except KeyError:
            raise unknown_choice(self.kind, name, self._items) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[PluginInfo[P]]:
        return (self._items[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._items)
