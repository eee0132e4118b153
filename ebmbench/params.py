"""Declared hyper-parameters, with a default per budget, allowed values and a search space.

Every plugin declares its hyper-parameters as a ``params`` mapping of name to
:class:`Param`. The ``default`` is the value for the ``quick`` budget; ``smoke`` and
``full`` override it for those budgets. Every value, whether a budget default, a string from
``--set``, a Python value from the API or a tuning trial's draw, goes through
:meth:`Param.coerce`: it is converted to the declared type and checked against ``choices``
and the bounds (``low``, ``high``, ``positive``; floats are always finite), so that a bad
value is refused before any run starts, naming the parameter, the value and what is allowed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import UserError, shown
from .search_space import Search

__all__ = ["Param", "BUDGETS", "check_budget", "resolve_params"]

#: The run budgets: ``smoke`` (seconds, for tests), ``quick`` (a CPU laptop), ``full`` (a GPU).
BUDGETS: tuple[str, ...] = ("smoke", "quick", "full")

_UNSET: Any = object()


def check_budget(budget: str) -> str:
    """Return ``budget`` if it is a known budget, else raise a :class:`UserError`."""
    if not isinstance(budget, str) or budget not in BUDGETS:
        raise UserError(f"unknown budget {budget!r}. Valid budgets: {', '.join(BUDGETS)}")
    return budget


@dataclass(frozen=True)
class Param:
    """One hyper-parameter of a plugin.

    Args:
        default: The value at the ``quick`` budget (and any budget not overridden).
        help: One line saying what the parameter controls.
        type: The value's type; inferred from ``default`` when omitted.
        choices: The allowed values, if the parameter is an enumeration.
        smoke: The value at the ``smoke`` budget, if different.
        full: The value at the ``full`` budget, if different.
        low: The smallest allowed value (inclusive), for numbers.
        high: The largest allowed value (inclusive), for numbers.
        positive: The value must be > 0 (a step size, a learning rate, a scale).
        search: Where ``--tune`` searches it (see :mod:`ebmbench.search_space`); it must lie
            within the bounds.

    A default of ``None`` means "not set": ``None`` is then always accepted.

    >>> p = Param(100, "training steps", smoke=5, low=1)
    >>> p.for_budget("smoke"), p.for_budget("quick"), p.coerce("7", name="steps")
    (5, 100, 7)
    >>> p.coerce("-5", name="method.dsm.steps")
    Traceback (most recent call last):
    ...
    ebmbench.errors.UserError: bad value '-5' for method.dsm.steps: must be an integer ≥ 1
    """

    default: Any
    help: str
    type: type | None = None
    choices: tuple[Any, ...] | None = None
    smoke: Any = field(default=_UNSET, repr=False)
    full: Any = field(default=_UNSET, repr=False)
    low: float | None = None
    high: float | None = None
    positive: bool = False
    search: Search | None = None

    def __post_init__(self) -> None:
        # A plugin's own declaration is checked when it is imported: a default outside
        # its bounds, or a search space reaching outside them, is the author's bug.
        for budget in BUDGETS:
            value = self.for_budget(budget)
            if value is not None and self._problem(value) is not None:
                raise ValueError(
                    f"Param {self.help!r}: the {budget} default {value!r} is not allowed "
                    f"({self._problem(value)})"
                )
        if self.search is not None:
            ends = self.search.choices if self.search.kind == "choice" else (
                self.search.low, self.search.high)
            bad = [v for v in ends if self._problem(v) is not None]
            if bad:
                raise ValueError(f"Param {self.help!r}: its search space reaches {bad[0]!r}, "
                                 f"which is not allowed ({self._problem(bad[0])})")

    @property
    def value_type(self) -> type:
        if self.type is not None:
            return self.type
        return type(self.default) if self.default is not None else str

    def for_budget(self, budget: str) -> Any:
        value = getattr(self, budget, _UNSET) if budget in ("smoke", "full") else _UNSET
        return self.default if value is _UNSET else value

    def with_quick_default(self, value: Any) -> Param:
        """This parameter with ``value`` as its ``quick`` default, the ``smoke`` and ``full``
        values kept: how a method takes what tuning chose most often at ``quick``
        (``scripts/tuned_defaults.py``) without moving the other budgets.

        >>> lr = Param(1e-3, "learning rate", positive=True)
        >>> tuned = lr.with_quick_default(3e-3)
        >>> [tuned.for_budget(b) for b in ("smoke", "quick", "full")]
        [0.001, 0.003, 0.001]
        """
        return replace(self, default=value, smoke=self.for_budget("smoke"),
                       full=self.for_budget("full"))

    def allowed(self) -> str:
        """What values are allowed, in words (for errors and ``ebmbench list -v``).

        >>> Param(0.1, "s", positive=True).allowed(), Param(3, "k", low=1, high=9).allowed()
        ('a finite number > 0', 'an integer in [1, 9]')
        """
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        kind = self.value_type
        if kind is int:
            noun = "an integer"
        elif kind is float:
            noun = "a finite number"
        else:
            return f"a {kind.__name__}"
        if self.low is not None and self.high is not None:
            return f"{noun} in [{self.low:g}, {self.high:g}]"
        parts = []
        if self.positive:
            parts.append("> 0")
        if self.low is not None:
            parts.append(f"≥ {self.low:g}")
        if self.high is not None:
            parts.append(f"≤ {self.high:g}")
        return f"{noun} {' and '.join(parts)}" if parts else noun

    def _problem(self, value: Any) -> str | None:
        """Why ``value`` (already of the declared type) is not allowed, or None."""
        if self.choices is not None:
            return None if value in self.choices else self.allowed()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        out_of_range = (
            (isinstance(value, float) and not math.isfinite(value))
            or (self.positive and not value > 0)
            or (self.low is not None and value < self.low)
            or (self.high is not None and value > self.high)
        )
        return f"must be {self.allowed()}" if out_of_range else None

    def _convert(self, raw: Any, name: str) -> Any:
        kind = self.value_type
        bad = UserError(f"bad value {shown(raw)} for {name}: expected {kind.__name__}")
        if isinstance(raw, str) and kind is not str:
            try:
                if kind is bool:
                    lowered = raw.strip().lower()
                    if lowered not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(raw)
                    return lowered in ("true", "1", "yes")
                if kind in (list, tuple, dict):
                    parsed = json.loads(raw)
                    if not isinstance(parsed, dict if kind is dict else list):
                        raise ValueError(raw)
                    return kind(parsed)
                return kind(raw.strip())
            except (ValueError, TypeError, json.JSONDecodeError):
                raise bad from None
        # Values from Python (the API, a tuning trial) must already have the type; an
        # integral float for an int and an int for a float are the only conversions.
        if kind is bool:
            if not isinstance(raw, bool):
                raise bad
        elif kind is int:
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                raise bad
            if isinstance(raw, float):
                if not raw.is_integer():
                    raise bad
                return int(raw)
        elif kind is float:
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                raise bad
            return float(raw)
        elif kind in (list, tuple):
            if not isinstance(raw, (list, tuple)):
                raise bad
            return kind(raw)
        elif not isinstance(raw, kind):
            raise bad
        return raw

    def coerce(self, raw: Any, *, name: str = "parameter") -> Any:
        """Convert ``raw`` (often a command-line string) to this parameter's type and check
        it against the choices and bounds; raise :class:`UserError` naming the problem."""
        if raw is None and self.default is None:
            return None
        value = self._convert(raw, name)
        problem = self._problem(value)
        if problem is not None:
            if self.choices is not None:
                valid = ", ".join(map(str, self.choices))
                raise UserError(f"bad value {shown(raw)} for {name}. Valid choices: {valid}")
            raise UserError(f"bad value {shown(raw)} for {name}: {problem}")
        return value


def resolve_params(
    owner: str,
    declared: dict[str, Param],
    budget: str,
    given: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge budget defaults with user-given values, rejecting unknown names and bad values.

    Args:
        owner: How to name the plugin in errors, such as ``"method dsm"``.
        declared: The plugin's ``params``.
        budget: One of :data:`BUDGETS`.
        given: Values chosen by the user (strings are coerced).
    """
    values = {name: p.for_budget(budget) for name, p in declared.items()}
    for name, raw in (given or {}).items():
        if name not in declared:
            valid = ", ".join(sorted(declared)) or "(it has none)"
            raise UserError(f"{owner} has no parameter {shown(name)}. Its parameters: {valid}")
        values[name] = declared[name].coerce(raw, name=f"{owner}.{name}")
    return values
