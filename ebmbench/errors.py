"""Exceptions that separate a user's mistake, a failing machine and a bug.

A :class:`UserError` is a bad name, value or path given by the person running ebmbench.
The CLI turns it into a one-line message and exit code 2, never a traceback. An
:class:`EnvironmentFailure` is the machine failing a correct request (a full disk, an I/O
error, a damaged results store): one line naming the file and what to do, exit code 1.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

__all__ = [
    "UserError", "EnvironmentFailure", "PluginError", "RunDiverged", "RunTimedOut",
    "unknown_choice", "shown",
]


class UserError(ValueError):
    """A mistake in what the user asked for (unknown plugin, bad value, missing file)."""


class EnvironmentFailure(RuntimeError):
    """The environment failed a correct request: a full disk, an I/O error, a damaged store.

    Whatever was committed before it stays intact; the message says what to do (free
    space, restore the file) and running the same command again resumes.
    """


class PluginError(TypeError):
    """A plugin broke the contract: wrong base class, duplicate name, bad metadata."""


class RunDiverged(RuntimeError):
    """Raised inside a run when a loss, energy or sample became non-finite."""


class RunTimedOut(RuntimeError):
    """Raised inside a run when it passed its wall-clock limit."""


def shown(raw: Any, limit: int = 60) -> str:
    """``repr(raw)``, cut short: a message never echoes a 100 000-character value in full.

    >>> shown("dsm")
    "'dsm'"
    >>> shown("ab" * 50_000)
    "'ababababababababababababababababababababababababababab…bab' (100000 characters)"
    """
    text = repr(raw)
    if len(text) <= limit:
        return text
    size = f" ({len(raw)} characters)" if isinstance(raw, str) else ""
    return text[: limit - 5] + "…" + text[-4:] + size


def unknown_choice(what: str, value: Any, choices: Iterable[str]) -> UserError:
    """Build the error for an unknown name, with a "did you mean" and every valid choice.

    >>> str(unknown_choice("method", "dsn", ["dsm", "nce"]))
    "unknown method 'dsn'. Did you mean 'dsm'? Valid methods: dsm, nce"
    """
    choices = sorted(choices)
    close = difflib.get_close_matches(value, choices, n=1) if isinstance(value, str) else []
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(choices) if choices else "(none registered)"
    return UserError(f"unknown {what} {shown(value)}.{hint} Valid {what}s: {listed}")
