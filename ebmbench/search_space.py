"""Tuning search spaces: where ``ebmbench run --tune`` looks for a hyper-parameter.

A :class:`~ebmbench.Param` may carry a ``search`` space. The tuner (Optuna's TPE sampler,
see :mod:`ebmbench.tuning`) draws every trial's value from it, so every method is tuned
over the spaces its author declared, with the same number of trials and the same compute.

Four shapes, each a :class:`Search`:

- :func:`log_uniform` (a, b): log x ~ U(log a, log b), for scales such as a learning rate
  or a noise level, where a factor matters more than a difference;
- :func:`uniform` (a, b): x ~ U(a, b);
- :func:`int_range` (a, b): an integer in [a, b], optionally log-spaced;
- :func:`choice` (v₁, …, v_k): one of the listed values.

>>> s = log_uniform(1e-4, 1e-1)
>>> s.contains(1e-3), s.contains(1.0)
(True, False)
>>> s.describe()
'log-uniform on [0.0001, 0.1]'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Search", "SEARCH_KINDS", "log_uniform", "uniform", "int_range", "choice"]

#: The shapes a search space may have.
SEARCH_KINDS: tuple[str, ...] = ("log_uniform", "uniform", "int", "choice")


@dataclass(frozen=True)
class Search:
    """A search space for one hyper-parameter; build it with the functions below.

    Attributes:
        kind: One of :data:`SEARCH_KINDS`.
        low: The smallest value (numeric kinds).
        high: The largest value (numeric kinds).
        log: Integers spaced in log (``int`` only).
        choices: The values (``choice`` only).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in SEARCH_KINDS:
            raise ValueError(f"unknown search kind {self.kind!r}; valid: {', '.join(SEARCH_KINDS)}")
        if self.kind == "choice":
            if not self.choices:
                raise ValueError("a choice search space needs at least one value")
            return
        if self.low is None or self.high is None or not (
            math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high
        ):
            raise ValueError(f"a {self.kind} search space needs finite low < high, "
                             f"got [{self.low}, {self.high}]")
        if (self.kind == "log_uniform" or self.log) and self.low <= 0:
            raise ValueError(f"a log-spaced search space needs low > 0, got {self.low}")
        if self.kind == "int" and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError(f"an int search space needs integer ends, got [{self.low}, {self.high}]")

    @property
    def values(self) -> tuple[Any, ...]:
        """The values a trial may take, where they are finitely many (else empty)."""
        if self.kind == "choice":
            return self.choices
        return ()

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in the space."""
        if self.kind == "choice":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and not float(value).is_integer():
            return False
        return self.low <= value <= self.high  # type: ignore[operator]

    def suggest(self, trial: Any, name: str) -> Any:
        """Draw the value of ``name`` for an Optuna ``trial``."""
        if self.kind == "log_uniform":
            return trial.suggest_float(name, self.low, self.high, log=True)
        if self.kind == "uniform":
            return trial.suggest_float(name, self.low, self.high)
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(name, list(self.choices))

    def describe(self) -> str:
        """One line for ``ebmbench list -v`` and the docs."""
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        shape = {"log_uniform": "log-uniform", "uniform": "uniform",
                 "int": "log-spaced integers" if self.log else "integers"}[self.kind]
        low, high = (int(self.low), int(self.high)) if self.kind == "int" else (self.low, self.high)
        return f"{shape} on [{low:g}, {high:g}]"


def log_uniform(low: float, high: float) -> Search:
    """log x uniform on [log ``low``, log ``high``] (a learning rate, a noise scale)."""
    return Search("log_uniform", float(low), float(high))


def uniform(low: float, high: float) -> Search:
    """x uniform on [``low``, ``high``]."""
    return Search("uniform", float(low), float(high))


def int_range(low: int, high: int, *, log: bool = False) -> Search:
    """An integer in [``low``, ``high``], log-spaced when ``log``."""
    return Search("int", low, high, log=log)


def choice(*values: Any) -> Search:
    """One of ``values``.

    >>> choice(16, 32, 64).describe()
    'one of 16, 32, 64'
    """
    return Search("choice", choices=tuple(values))
