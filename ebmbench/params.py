"""Declared hyper-parameters, with a default per budget.

Every plugin declares its hyper-parameters as a ``params`` mapping of name to
:class:`Param`. The ``default`` is the value for the ``quick`` budget; ``smoke`` and
``full`` override it for those budgets. Values given on the command line as strings are
coerced to the declared type and checked against ``choices``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import UserError

__all__ = ["Param", "BUDGETS", "check_budget", "resolve_params"]

#: The run budgets: ``smoke`` (seconds, for tests), ``quick`` (a CPU laptop), ``full`` (a GPU).
BUDGETS: tuple[str, ...] = ("smoke", "quick", "full")

_UNSET: Any = object()


def check_budget(budget: str) -> str:
    """Return ``budget`` if it is a known budget, else raise a :class:`UserError`."""
    if budget not in BUDGETS:
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

    >>> p = Param(100, "training steps", smoke=5)
    >>> p.for_budget("smoke"), p.for_budget("quick"), p.coerce("7", name="steps")
    (5, 100, 7)
    """

    default: Any
    help: str
    type: type | None = None
    choices: tuple[Any, ...] | None = None
    smoke: Any = field(default=_UNSET, repr=False)
    full: Any = field(default=_UNSET, repr=False)

    @property
    def value_type(self) -> type:
        if self.type is not None:
            return self.type
        return type(self.default) if self.default is not None else str

    def for_budget(self, budget: str) -> Any:
        value = getattr(self, budget, _UNSET) if budget in ("smoke", "full") else _UNSET
        return self.default if value is _UNSET else value

    def coerce(self, raw: Any, *, name: str = "parameter") -> Any:
        """Convert ``raw`` (often a command-line string) to this parameter's type."""
        kind = self.value_type
        value = raw
        if isinstance(raw, str) and kind is not str:
            try:
                if kind is bool:
                    lowered = raw.strip().lower()
                    if lowered not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(raw)
                    value = lowered in ("true", "1", "yes")
                elif kind in (list, tuple, dict):
                    value = kind(json.loads(raw))
                else:
                    value = kind(raw)
            except (ValueError, TypeError, json.JSONDecodeError):
                raise UserError(
                    f"bad value {raw!r} for {name}: expected {kind.__name__}"
                ) from None
        elif kind is float and isinstance(raw, int) and not isinstance(raw, bool):
            value = float(raw)
        if self.choices is not None and value not in self.choices:
            valid = ", ".join(map(str, self.choices))
            raise UserError(f"bad value {raw!r} for {name}. Valid choices: {valid}")
        return value


def resolve_params(
    owner: str,
    declared: dict[str, Param],
    budget: str,
    given: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge budget defaults with user-given values, rejecting unknown names.

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
            raise UserError(f"{owner} has no parameter {name!r}. Its parameters: {valid}")
        values[name] = declared[name].coerce(raw, name=f"{owner}.{name}")
    return values
