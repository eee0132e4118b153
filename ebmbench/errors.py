"""Exceptions that separate a user's mistake from a bug.

A :class:`UserError` is a bad name, value or path given by the person running ebmbench.
The CLI turns it into a one-paragraph message and exit code 2, never a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["UserError", "PluginError", "RunDiverged", "RunTimedOut", "unknown_choice"]


class UserError(ValueError):
    """A mistake in what the user asked for (unknown plugin, bad value, missing file)."""


class PluginError(TypeError):
    """A plugin broke the contract: wrong base class, duplicate name, bad metadata."""


class RunDiverged(RuntimeError):
    """Raised inside a run when a loss, energy or sample became non-finite."""


class RunTimedOut(RuntimeError):
    """Raised inside a run when it passed its wall-clock limit."""


def unknown_choice(what: str, value: str, choices: Iterable[str]) -> UserError:
    """Build the error for an unknown name, with a "did you mean" and every valid choice.

    >>> str(unknown_choice("method", "dsn", ["dsm", "nce"]))
    "unknown method 'dsn'. Did you mean 'dsm'? Valid methods: dsm, nce"
    """
    choices = sorted(choices)
    close = difflib.get_close_matches(value, choices, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(choices) if choices else "(none registered)"
    return UserError(f"unknown {what} {value!r}.{hint} Valid {what}s: {listed}")
