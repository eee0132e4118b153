"""Checks every plugin kind shares: registration, metadata, construction, bad values."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from ..base import PLUGIN_KINDS, Architecture, Dataset, Method, Metric, Plugin, Sampler
from ..errors import PluginError, UserError
from ..params import BUDGETS, Param
from ..registry import Registry
from .isolation import isolated_plugins, registration_error
from .suite import Subject, check

__all__ = ["CONSTRUCTION_SECONDS", "CONSTRUCTION_TRIES", "DATA_METHODS", "string_form"]

#: The most a constructor may take, at any budget. Constructors run for every plugin
#: whenever a grid is expanded, so they must not load data or build networks; this bound
#: is generous (a cheap constructor takes microseconds) so that a loaded machine passes.
CONSTRUCTION_SECONDS = 1.0

#: Constructions timed per budget; the fastest counts.
CONSTRUCTION_TRIES = 3

#: Dataset methods that touch data; none may run inside a constructor.
DATA_METHODS = ("load", "levels", "train_data", "test_data", "sample")


@check("registration", stage="contract")
def check_registration(s: Subject) -> None:
    """The registry accepts the class, and registering it through its hook works.

    Three steps: the registry's validation (base class, no abstract method left, name,
    one-line description, ``params``, metric directions); registration through the kind's
    hook in an empty plugin manager; and the same next to every installed plugin, which
    catches a name already taken by another plugin of the same kind.
    """
    try:
        Registry(s.kind, PLUGIN_KINDS[s.kind]).validate(s.cls)
    except PluginError as exc:
        raise AssertionError(f"the registry rejects it: {exc}") from None
    for autoload in (False, True):
        with isolated_plugins(s.cls, autoload=autoload) as pm:
            where = "next to the installed plugins" if autoload else "in an empty manager"
            error = registration_error(pm)
            assert error is None, f"registering through its hook failed {where}: {error}"
            registry = pm.registry(s.kind)
            assert s.cls.name in registry, f"not registered {where}"
            assert registry.get(s.cls.name).cls is s.cls, (
                f"{where}, the name {s.cls.name!r} resolves to another class"
            )


def string_form(value: Any) -> str:
    """How a value is written on the command line (``--set kind.name.param=VALUE``).

    >>> string_form(0.5), string_form(True), string_form([1, 2])
    ('0.5', 'True', '[1, 2]')
    """
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def _type_ok(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _check_param(name: str, p: Param) -> None:
    assert isinstance(p.help, str) and p.help.strip(), f"param {name!r} has no help text"
    for budget in BUDGETS:
        value = p.for_budget(budget)
        where = f"param {name!r} at budget {budget!r} ({value!r})"
        if value is None:
            continue  # "not set": there is no string form to round-trip
        assert _type_ok(value, p.value_type), (
            f"{where} is not of its type {p.value_type.__name__}"
        )
        if p.choices is not None:
            assert value in p.choices, f"{where} is not one of its choices {p.choices}"
        try:
            back = p.coerce(string_form(value), name=name)
        except UserError as exc:
            raise AssertionError(f"{where} cannot be given on the command line: {exc}") from None
        same = back == value or (
            isinstance(value, float) and isinstance(back, float)
            and math.isnan(value) and math.isnan(back)
        )
        assert same, f"{where} comes back from its string form as {back!r}"


def _positive_int(cls: type[Plugin], name: str) -> None:
    assert name in cls.params, f"declares no {name!r} param"
    for budget in BUDGETS:
        value = cls.params[name].for_budget(budget)
        assert _type_ok(value, int) and value > 0, (
            f"param {name!r} at budget {budget!r} must be a positive int, got {value!r}"
        )


@check("metadata", stage="contract")
def check_metadata(s: Subject) -> None:
    """Name, description and params are well-formed at every budget.

    Every ``Param`` has help text, and its value at each budget has the declared type,
    is one of its ``choices`` and survives the trip through its command-line string form
    (what ``--set`` gives). Methods declare positive ``steps`` and ``batch_size``, samplers
    ``steps``; a metric's ``cost_values`` and ``reference_values`` have directions in
    ``higher_is_better``; architectures accept ``vector`` and/or ``image`` data.
    """
    cls = s.cls
    assert cls.kind == s.kind, f"its kind attribute is {cls.kind!r}, not {s.kind!r}"
    assert cls.description.strip() == cls.description, "the description has outer spaces"
    for name, p in cls.params.items():
        _check_param(name, p)
    if issubclass(cls, Method):
        _positive_int(cls, "steps")
        _positive_int(cls, "batch_size")
        assert "lr" in cls.params, "a method keeps Method.params (steps, batch_size, lr)"
    if issubclass(cls, Sampler):
        _positive_int(cls, "steps")
    if issubclass(cls, Metric):
        for attr in ("cost_values", "reference_values"):
            extra = set(getattr(cls, attr, ())) - set(cls.higher_is_better)
            assert not extra, f"{attr} {sorted(extra)} have no direction in higher_is_better"
        assert isinstance(cls.needs_samples, bool), "needs_samples must be a bool"
    if issubclass(cls, Architecture):
        assert cls.data_kinds and set(cls.data_kinds) <= {"vector", "image"}, (
            f"data_kinds must be a non-empty subset of vector, image, not {set(cls.data_kinds)}"
        )
        assert all(isinstance(f, str) for f in cls.features), "features must be strings"
    if issubclass(cls, Dataset):
        assert cls.data_kind in ("vector", "image"), f"data_kind {cls.data_kind!r}"


def _spy_subclass(cls: type[Plugin], calls: list[str]) -> type[Plugin]:
    """A subclass of a dataset whose data methods record that they were called."""

    def spy(method: str):  # noqa: ANN202
        original = getattr(cls, method)

        def wrapper(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            calls.append(method)
            return original(self, *args, **kwargs)

        return wrapper

    namespace = {m: spy(m) for m in DATA_METHODS if callable(getattr(cls, m, None))}
    return type(cls.__name__, (cls,), namespace)


@check("construction", stage="contract")
def check_construction(s: Subject) -> None:
    """Constructing at every budget is cheap and gives that budget's values.

    Each constructor must finish within :data:`CONSTRUCTION_SECONDS` (the best of
    :data:`CONSTRUCTION_TRIES` tries), must not touch data
    (for datasets: no call of ``load``, ``train_data``, ``test_data`` or ``sample``), must
    set ``hparams`` to the declared value for the budget, and ``repr`` must work.
    """
    calls: list[str] = []
    cls = _spy_subclass(s.cls, calls) if issubclass(s.cls, Dataset) else s.cls
    for budget in BUDGETS:
        # The best of a few tries: a one-off import or a busy machine is not the plugin's
        # fault, while a constructor that loads data is slow every time.
        took = math.inf
        for _ in range(CONSTRUCTION_TRIES):
            start = time.perf_counter()
            plugin = cls(budget=budget)
            took = min(took, time.perf_counter() - start)
            if took < CONSTRUCTION_SECONDS:
                break
        assert took < CONSTRUCTION_SECONDS, (
            f"constructing at budget {budget!r} took {took:.2f} s; constructors must not "
            "load data or build networks (do it in train_data/load/build)"
        )
        assert not calls, f"the constructor at budget {budget!r} called {calls}: load data lazily"
        expected = {name: p.for_budget(budget) for name, p in s.cls.params.items()}
        got = {name: plugin.hparams.get(name) for name in expected}
        assert got == expected, f"hparams at budget {budget!r} are {got}, declared {expected}"
        assert plugin.budget == budget
        repr(plugin)


def _bad_string(p: Param) -> str | None:
    """A command-line string that ``p`` must reject, if there is an obvious one."""
    if p.choices is not None:
        return "not-one-of-the-choices"
    if p.value_type in (int, float, bool, list, tuple, dict):
        return "not-a-number-or-json"
    return None


@check("hyperparameter_errors", stage="contract")
def check_hyperparameter_errors(s: Subject) -> None:
    """Unknown parameters, bad values and unknown budgets raise ``UserError``.

    The CLI turns a ``UserError`` into a one-line message, so a typo in ``--set`` must not
    surface as a traceback (or, worse, be silently ignored by a constructor that swallows
    keyword arguments).
    """
    try:
        s.cls(budget="smoke", not_a_parameter_of_this_plugin=1)
    except UserError:
        pass
    else:
        raise AssertionError("an unknown hyper-parameter was accepted silently")
    try:
        s.cls(budget="no-such-budget")
    except UserError:
        pass
    else:
        raise AssertionError("an unknown budget was accepted")
    for name, p in s.cls.params.items():
        bad = _bad_string(p)
        if bad is None:
            continue
        try:
            s.cls(budget="smoke", **{name: bad})
        except UserError:
            pass
        else:
            raise AssertionError(f"param {name!r} accepted the bad value {bad!r}")
