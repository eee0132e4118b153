"""The harness's protocol settings: one table of what each run is trained and reported under.

A protocol setting is a rule the harness applies to every method alike (docs/protocol.md):
the learning rate's decay (``lr_schedule``, :mod:`ebmbench.schedules`), which learning-curve
point a run reports (``checkpoint``, :mod:`ebmbench.early_stopping`) and what it evaluates
(``weight_average``, :mod:`ebmbench.averaging`). Each has two values that matter:

- ``default``: what ``ebmbench run`` (and ``ebmbench.run``/``ebmbench.train``) uses today. A
  run under any other value is labelled with it on the boards (``dsm (weight_average=none)``);
- ``legacy``: the rule before the setting existed. A run under it records nothing and adds
  nothing to its id, training key or tuning study, so every row stored before the setting
  keeps its keys; reading a row or model file that records nothing gives back this value.

Every place that turns settings into keys, records or labels reads this table (``RunSpec``,
the runner's row and variant, model files, the tuning study key, the leaderboards), so a
new setting is one entry here plus its option; ``tests/test_published_leaderboard.py``
checks that the published runs keep their ids.

>>> [(s.name, s.default, s.legacy) for s in SETTINGS]
[('lr_schedule', 'constant', 'constant'), ('checkpoint', 'best', 'last'), ('weight_average', 'best', 'none')]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ProtocolSetting", "SETTINGS", "NAMES", "DEFAULTS", "LEGACY", "settings_of",
           "recorded", "from_record", "labelled", "study_tokens"]


@dataclass(frozen=True)
class ProtocolSetting:
    """One setting: its name (the RunSpec field and the row's ``hyperparams`` key), today's
    default and the rule before it existed (see the module docstring)."""

    name: str
    default: str
    legacy: str
    #: How it enters a tuning study's key when not ``legacy``: bare (``lr_schedule``, the
    #: first setting, entered so before the others existed) or ``name=value``.
    bare_in_study_key: bool = False


#: In the order they enter a tuning study's key (which must not change).
SETTINGS: tuple[ProtocolSetting, ...] = (
    ProtocolSetting("lr_schedule", default="constant", legacy="constant", bare_in_study_key=True),
    ProtocolSetting("checkpoint", default="best", legacy="last"),
    ProtocolSetting("weight_average", default="best", legacy="none"),
)
NAMES: tuple[str, ...] = tuple(s.name for s in SETTINGS)
DEFAULTS: dict[str, str] = {s.name: s.default for s in SETTINGS}
LEGACY: dict[str, str] = {s.name: s.legacy for s in SETTINGS}


def settings_of(spec: Any) -> dict[str, str]:
    """Every setting ``spec`` (a RunSpec, or anything with the attributes) runs under; an
    attribute that is missing or None (``RunSpec.lr_schedule`` for constant) is the legacy
    rule. A sampler-board spec has none: every value is legacy."""
    return {s.name: getattr(spec, s.name, None) or s.legacy for s in SETTINGS}


def recorded(spec: Any) -> dict[str, str]:
    """The settings that differ from the legacy rule: what enters a run's keys and its row.

    >>> from types import SimpleNamespace
    >>> recorded(SimpleNamespace(lr_schedule=None, checkpoint="best", weight_average="none"))
    {'checkpoint': 'best'}
    """
    return {n: v for n, v in settings_of(spec).items() if v != LEGACY[n]}


def from_record(record: Mapping[str, Any] | None) -> dict[str, str]:
    """The settings a row's ``hyperparams`` or a model file's spec records, the legacy rule
    for each it does not.

    >>> from_record({"checkpoint": "best"})
    {'lr_schedule': 'constant', 'checkpoint': 'best', 'weight_average': 'none'}
    """
    record = record or {}
    return {s.name: record.get(s.name) or s.legacy for s in SETTINGS}


def labelled(spec: Any) -> dict[str, str]:
    """The settings that differ from today's default: what a run's board label says.

    >>> from types import SimpleNamespace
    >>> labelled(SimpleNamespace(lr_schedule="cosine", checkpoint="best", weight_average="none"))
    {'lr_schedule': 'cosine', 'weight_average': 'none'}
    """
    return {n: v for n, v in settings_of(spec).items() if v != DEFAULTS[n]}


def study_tokens(spec: Any) -> list[str]:
    """How ``spec``'s settings enter its tuning study's key (:func:`ebmbench.tuning.plan_studies`):
    one token per setting that is not legacy, in table order.

    >>> from types import SimpleNamespace
    >>> study_tokens(SimpleNamespace(lr_schedule="cosine", checkpoint="best", weight_average="best"))
    ['cosine', 'checkpoint=best', 'weight_average=best']
    """
    values = recorded(spec)
    return [values[s.name] if s.bare_in_study_key else f"{s.name}={values[s.name]}"
            for s in SETTINGS if s.name in values]
