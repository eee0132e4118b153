"""Checking what a user gives outside a :class:`~ebmbench.Param`: seeds, time limits,
worker counts, ``--set`` keys, plugin-name lists and environment variables.

Every function here either returns a valid value or raises :class:`~ebmbench.UserError`
naming the option (or the environment variable), the bad value and what is allowed, so
that the command line and the Python API refuse the same inputs with the same words
before any run starts.
"""

from __future__ import annotations

import math
import operator
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import UserError, shown

__all__ = [
    "MAX_SEED", "OVERRIDE_KINDS", "parse_seeds", "check_seeds", "parse_timeout",
    "check_timeout", "parse_workers", "parse_overrides", "check_override_key", "name_list",
]

#: Seeds are stored as SQLite integers and hashed into derived seeds; 2³² − 1 is plenty.
MAX_SEED = 2**32 - 1

#: The plugin kinds a ``--set kind.name.param=value`` may address.
OVERRIDE_KINDS = ("method", "sampler", "architecture", "dataset", "metric", "executor")

_INT = r"\s*(\d+)\s*"
_RANGE = re.compile(rf"^{_INT}-{_INT}$")
_SINGLE = re.compile(rf"^{_INT}$")


def parse_seeds(raw: str, *, option: str = "--seeds") -> tuple[int, ...]:
    """Seeds from ``0,1,2``, an inclusive range ``0-4``, or both (``0-2,7``).

    A seed given twice, a reversed range and a negative or huge seed are refused.

    >>> parse_seeds("0-2,7")
    (0, 1, 2, 7)
    >>> parse_seeds("3-1")
    Traceback (most recent call last):
    ...
    ebmbench.errors.UserError: bad --seeds '3-1': the range 3-1 is reversed; write 1-3
    """
    if not isinstance(raw, str):
        raise UserError(f"bad {option} {shown(raw)}: give integers like 0,1,2 or a range 0-4")
    seeds: list[int] = []
    for part in raw.split(","):
        if not part.strip():
            continue
        if match := _RANGE.match(part):
            low, high = int(match[1]), int(match[2])
            if low > high:
                raise UserError(f"bad {option} {shown(raw)}: the range {low}-{high} is reversed; "
                                f"write {high}-{low}")
            if high - low >= 100_000:
                raise UserError(f"bad {option} {shown(raw)}: the range {low}-{high} holds "
                                f"{high - low + 1} seeds; at most 100000 at once")
            seeds.extend(range(low, high + 1))
        elif match := _SINGLE.match(part):
            seeds.append(int(match[1]))
        else:
            raise UserError(f"bad {option} {shown(raw)}: {shown(part.strip())} is not a seed; give "
                            "integers ≥ 0 like 0,1,2 or a range 0-4")
    return check_seeds(seeds, what=f"{option} {shown(raw)}")


def check_seeds(seeds: Any, *, what: str = "seeds") -> tuple[int, ...]:
    """``seeds`` as a tuple of distinct integers in [0, :data:`MAX_SEED`], or a
    :class:`UserError` (a string is parsed as :func:`parse_seeds` does).

    >>> check_seeds([2, 0])
    (2, 0)
    >>> check_seeds(5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ebmbench.errors.UserError: bad seeds 5: give a list of seeds, e.g. [5] for seed 5 or ...
    """
    if isinstance(seeds, str):
        return parse_seeds(seeds, option="seeds")
    if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds > 0:
        raise UserError(f"bad {what} {seeds}: give a list of seeds, e.g. [{seeds}] for seed "
                        f"{seeds} or range({seeds}) for seeds 0-{seeds - 1}")
    if not isinstance(seeds, Iterable) or isinstance(seeds, Mapping):
        raise UserError(f"bad {what} {shown(seeds)}: give a list of integer seeds, e.g. [0, 1, 2]")
    out: list[int] = []
    seen: set[int] = set()
    for seed in seeds:
        if isinstance(seed, bool):
            raise UserError(f"bad {what}: {seed!r} is not a seed; seeds are integers ≥ 0")
        try:
            value = operator.index(seed)  # ints and numpy integers, never floats or strings
        except TypeError:
            raise UserError(f"bad {what}: {shown(seed)} is not a seed; seeds are integers ≥ 0") from None
        if not 0 <= value <= MAX_SEED:
            raise UserError(f"bad {what}: seed {value} is outside [0, {MAX_SEED}]")
        if value in seen:
            raise UserError(f"bad {what}: seed {value} is given twice (each seed runs once)")
        seen.add(value)
        out.append(value)
    if not out:
        raise UserError(f"bad {what}: no seeds selected; give at least one, e.g. --seeds 0")
    return tuple(out)


def parse_timeout(raw: str | None, *, option: str = "--timeout") -> float | None:
    """Seconds per run from the command line; ``None`` (not given) means no limit.

    >>> parse_timeout("90")
    90.0
    >>> parse_timeout("nan")
    Traceback (most recent call last):
    ...
    ebmbench.errors.UserError: bad --timeout 'nan': must be a finite number of seconds > 0
    """
    if raw is None:
        return None
    try:
        value = float(raw.strip()) if isinstance(raw, str) else raw
    except ValueError:
        raise UserError(f"bad {option} {shown(raw)}: must be a finite number of seconds > 0") from None
    return check_timeout(value, what=f"{option} {shown(raw)}")


def check_timeout(value: Any, *, what: str | None = None) -> float | None:
    """A time limit from Python: ``None`` (no limit) or a finite number of seconds > 0."""
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not (math.isfinite(value) and value > 0)):
        raise UserError(f"bad {what or f'timeout {shown(value)}'}: "
                        "must be a finite number of seconds > 0")
    return float(value)


def parse_workers(raw: str | int | None, *, source: str = "--workers") -> int | None:
    """A worker count (an integer ≥ 1) from an option or an environment variable.

    ``source`` names where the value came from, e.g. ``"environment variable
    EBMBENCH_WORKERS"``, so that the message says what to fix.

    >>> parse_workers("4")
    4
    >>> parse_workers("0", source="environment variable EBMBENCH_WORKERS")
    Traceback (most recent call last):
    ...
    ebmbench.errors.UserError: bad environment variable EBMBENCH_WORKERS '0': must be an integer ≥ 1
    """
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise UserError(f"bad {source} {raw!r}: must be an integer ≥ 1")
    try:
        value = int(raw.strip()) if isinstance(raw, str) else operator.index(raw)
    except (ValueError, TypeError):
        raise UserError(f"bad {source} {shown(raw)}: must be an integer ≥ 1") from None
    if value < 1:
        raise UserError(f"bad {source} {shown(raw)}: must be an integer ≥ 1")
    return value


def env_workers() -> int | None:
    """``EBMBENCH_WORKERS`` checked, or ``None`` when unset or empty."""
    raw = os.environ.get("EBMBENCH_WORKERS", "").strip()
    return parse_workers(raw, source="environment variable EBMBENCH_WORKERS") if raw else None


def check_override_key(key: Any, *, given: str | None = None) -> str:
    """``key`` if it reads ``kind.name.param`` with a known kind, else a :class:`UserError`.

    >>> check_override_key("method.dsm.sigma")
    'method.dsm.sigma'
    """
    label = given if given is not None else f"override key {shown(key)}"
    if not isinstance(key, str):
        raise UserError(f"bad {label}: keys are strings kind.name.param, e.g. method.dsm.sigma")
    parts = key.split(".")
    if len(parts) != 3 or not all(p.strip() for p in parts):
        raise UserError(f"bad {label}: expected kind.name.param=value, e.g. method.dsm.sigma=0.1")
    if parts[0] not in OVERRIDE_KINDS:
        raise UserError(f"bad {label}: unknown kind {shown(parts[0])}. "
                        f"Valid kinds: {', '.join(OVERRIDE_KINDS)}")
    return key


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """Parse ``--set kind.name.param=value`` strings; a key given twice is refused.

    >>> parse_overrides(["method.dsm.sigma=0.5"])
    {'method.dsm.sigma': '0.5'}
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        label = f"--set {shown(item)}"
        if not sep:
            raise UserError(f"bad {label}: expected kind.name.param=value, e.g. method.dsm.sigma=0.1")
        key = check_override_key(key.strip(), given=label)
        if key in out and out[key] != value:
            raise UserError(f"bad {label}: {key} is already set to {shown(out[key])}")
        out[key] = value
    return out


def check_overrides(overrides: Any) -> dict[str, Any]:
    """An ``overrides`` mapping from Python, every key checked as ``kind.name.param``."""
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise UserError(f"bad overrides {shown(overrides)}: give a dict of "
                        "'kind.name.param' → value, e.g. {'method.dsm.sigma': 0.1}")
    return {check_override_key(k): v for k, v in overrides.items()}


def name_list(kind: str, names: Any) -> list[str] | None:
    """Plugin names from Python: ``None`` (all), one name (``"dsm"``), a comma list
    (``"dsm,nce"``, as on the command line) or a list of names (empty: none, which only
    metrics may be).

    >>> name_list("method", "dsm"), name_list("method", "dsm, nce"), name_list("method", ["ula"])
    (['dsm'], ['dsm', 'nce'], ['ula'])
    """
    if names is None:
        return None
    if isinstance(names, str):
        items = [n.strip() for n in names.split(",") if n.strip()]
    elif isinstance(names, Iterable) and not isinstance(names, Mapping):
        items = list(names)
    else:
        raise UserError(f"bad {kind}s {shown(names)}: give a name or a list of names")
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise UserError(f"bad {kind}s {shown(names)}: {shown(item)} is not a {kind} name")
    return items
