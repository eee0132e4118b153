"""The check registry and the three ways to run it: one call, an iterator, pytest.

A *check* is a function of a :class:`Subject` (the plugin class under test, its kind and
the device) that raises :class:`AssertionError` when the plugin breaks a contract and
:class:`CheckSkipped` when the check cannot apply (an image set with no local copy, a
2-D-only check on a 5-D density). Checks are registered in order with :func:`check`; the
kind modules (``common``, ``methods``, ``samplers``, ...) register theirs on import.
"""

from __future__ import annotations

import unittest
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ..base import PLUGIN_KINDS, Plugin
from ..errors import UserError

__all__ = [
    "CheckSkipped",
    "Subject",
    "PluginCheck",
    "check",
    "iter_checks",
    "list_checks",
    "check_plugin",
    "parametrize_with_checks",
    "kind_of",
]


class CheckSkipped(unittest.SkipTest):
    """A check does not apply to this plugin here; pytest reports it as skipped.

    It subclasses :class:`unittest.SkipTest`, which pytest (and unittest) treat as a skip,
    so the suite needs no pytest import.
    """


@dataclass
class Subject:
    """What a check receives.

    Attributes:
        cls: The plugin class under test.
        kind: Its kind (``method``, ``sampler``, ...).
        device: Where tensors live during the check.
        params: Hyper-parameter values given to every instance the checks build of the
            plugin (as ``--set`` would), over the budget's defaults.
    """

    cls: type[Plugin]
    kind: str
    device: torch.device
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.cls.name!r}"

    def make(self, budget: str = "smoke") -> Any:
        """An instance of the plugin under test at ``budget``, with :attr:`params`."""
        return self.cls(budget=budget, **self.params)


CheckFn = Callable[[Subject], None]


@dataclass(frozen=True)
class _Registered:
    name: str
    kinds: tuple[str, ...]
    fn: CheckFn
    applies: Callable[[type[Plugin]], bool] | None = None
    stage: int = 1


_CHECKS: list[_Registered] = []

#: Check stages, run in this order: contract checks of every kind, kind-specific checks,
#: checks through the harness (slowest, last).
STAGES = {"contract": 0, "kind": 1, "harness": 2}


def check(
    name: str,
    kinds: Iterable[str] | None = None,
    *,
    applies: Callable[[type[Plugin]], bool] | None = None,
    stage: str = "kind",
) -> Callable[[CheckFn], CheckFn]:
    """Register the decorated function as the check ``name`` for ``kinds`` (None: all).

    ``applies(cls)`` narrows it further (e.g. toy densities among datasets); a check that
    does not apply is not yielded at all, rather than skipped. Checks run by ``stage``
    (see :data:`STAGES`), then in the order they were registered.
    """
    chosen = tuple(PLUGIN_KINDS) if kinds is None else tuple(kinds)
    unknown = set(chosen) - set(PLUGIN_KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}")

    def decorate(fn: CheckFn) -> CheckFn:
        if any(c.name == name for c in _CHECKS):
            raise ValueError(f"check {name!r} is registered twice")
        _CHECKS.append(_Registered(name, chosen, fn, applies, STAGES[stage]))
        _CHECKS.sort(key=lambda c: c.stage)  # stable: registration order within a stage
        return fn

    return decorate


def kind_of(cls: Any, kind: str | None = None) -> str:
    """The plugin kind of ``cls``, checked against ``kind`` when given.

    >>> from ebmbench import Sampler
    >>> kind_of(Sampler)
    'sampler'
    """
    if not isinstance(cls, type) or not issubclass(cls, Plugin):
        raise UserError(f"{cls!r} is not an ebmbench plugin class")
    found = next((k for k, base in PLUGIN_KINDS.items() if issubclass(cls, base)), None)
    if found is None:
        kinds = ", ".join(PLUGIN_KINDS)
        raise UserError(f"{cls.__qualname__} subclasses none of the plugin kinds ({kinds})")
    if kind is not None and kind != found:
        raise UserError(f"{cls.__qualname__} is a {found}, not a {kind}")
    return found


@dataclass(frozen=True)
class PluginCheck:
    """One check bound to one plugin: call it to run it.

    Calling runs the check with torch's random state forked and seeded (the caller's
    generators are untouched, the check is reproducible). A failure raises
    :class:`AssertionError` naming the plugin and the check; an unexpected exception inside
    the check is turned into one, chained to the original.
    """

    check: str
    kind: str
    plugin: type[Plugin]
    device: str = "cpu"
    params: tuple[tuple[str, Any], ...] = ()
    fn: CheckFn = field(default=lambda s: None, repr=False, compare=False)
    doc: str = field(default="", repr=False, compare=False)

    @property
    def id(self) -> str:
        """``kind:name:check``, a stable pytest id."""
        return f"{self.kind}:{self.plugin.name}:{self.check}"

    def __call__(self) -> None:
        subject = Subject(self.plugin, self.kind, torch.device(self.device), dict(self.params))
        if subject.device.type == "cuda" and not torch.cuda.is_available():
            raise CheckSkipped("device='cuda' was asked for, but CUDA is not available")
        prefix = f"{subject.label} failed check {self.check!r}"
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(0)
                self.fn(subject)
        except unittest.SkipTest:
            raise
        except AssertionError as exc:
            raise AssertionError(f"{prefix}: {exc}") from exc
        except Exception as exc:
            raise AssertionError(f"{prefix}: it raised {type(exc).__name__}: {exc}") from exc


def list_checks(kind: str | None = None) -> list[tuple[str, tuple[str, ...], str]]:
    """Every registered check as (name, kinds, first line of its docstring).

    >>> "registration" in [name for name, _, _ in list_checks("method")]
    True
    """
    out = []
    for c in _CHECKS:
        if kind is None or kind in c.kinds:
            doc = (c.fn.__doc__ or "").strip().splitlines()
            out.append((c.name, c.kinds, doc[0] if doc else ""))
    return out


def iter_checks(
    cls: type[Plugin], *, kind: str | None = None, device: str = "cpu",
    skip: Iterable[str] = (), params: dict[str, Any] | None = None,
) -> Iterator[tuple[str, PluginCheck]]:
    """Yield ``(check name, callable)`` for every check that applies to ``cls``.

    Args:
        cls: The plugin class.
        kind: Its kind; inferred from the base class when omitted.
        device: ``cpu`` or ``cuda``: where the checks put tensors and run the harness.
        skip: Names of checks to leave out.
        params: Hyper-parameter values for the plugin under test, over the smoke defaults
            (e.g. ``{"download": False}`` to keep a test offline). The checks of
            construction and of bad values use the declared defaults alone.
    """
    kind = kind_of(cls, kind)
    frozen = tuple(sorted((params or {}).items()))
    skip = set(skip)
    known = {c.name for c in _CHECKS}
    if skip - known:
        raise UserError(f"unknown checks to skip: {sorted(skip - known)}")
    for c in _CHECKS:
        if kind in c.kinds and c.name not in skip and (c.applies is None or c.applies(cls)):
            doc = (c.fn.__doc__ or "").strip()
            yield c.name, PluginCheck(c.name, kind, cls, device, frozen, c.fn, doc)


def check_plugin(
    cls: type[Plugin], *, kind: str | None = None, device: str = "cpu",
    skip: Iterable[str] = (), params: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Run every check on ``cls``; raise one :class:`AssertionError` naming each failure.

    The arguments are those of :func:`iter_checks`.

    Returns:
        Check name → ``"passed"`` or ``"skipped: <reason>"`` when every check passed.
    """
    outcome: dict[str, str] = {}
    failures: list[str] = []
    for name, plugin_check in iter_checks(cls, kind=kind, device=device, skip=skip,
                                          params=params):
        try:
            plugin_check()
        except unittest.SkipTest as exc:
            outcome[name] = f"skipped: {exc}"
        except AssertionError as exc:
            outcome[name] = "failed"
            failures.append(f"- {name}: {exc}")
        else:
            outcome[name] = "passed"
    if failures:
        label = f"{kind_of(cls, kind)} {cls.name!r}"
        raise AssertionError(
            f"{label} failed {len(failures)} conformance check(s):\n" + "\n".join(failures)
        )
    return outcome


def parametrize_with_checks(
    *classes: type[Plugin], device: str = "cpu", params: dict[str, Any] | None = None
) -> Any:
    """A ``pytest.mark.parametrize`` over every check of every class, with readable ids.

    Use it on a test taking one argument, ``plugin_check``, that calls it::

        from ebmbench.testing import parametrize_with_checks

        @parametrize_with_checks(MyMethod)
        def test_conformance(plugin_check):
            plugin_check()
    """
    import pytest

    flat: list[type[Plugin]] = []
    for item in classes:
        flat.extend(item if isinstance(item, (list, tuple)) else [item])
    checks = [pc for cls in flat for _, pc in iter_checks(cls, device=device, params=params)]
    return pytest.mark.parametrize("plugin_check", checks, ids=[pc.id for pc in checks])
