"""Property tests of the input parsers: every input parses to a valid value or is refused
with a one-line :class:`~ebmbench.UserError` naming it, never anything else.

Hypothesis draws arbitrary text (and text shaped like the valid syntax, to reach deep)
for ``--set``, ``--seeds`` and ``--timeout``, and for values given to a declared
:class:`~ebmbench.Param`.
"""

from __future__ import annotations

import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ebmbench import Param, UserError
from ebmbench.inputs import (
    MAX_SEED,
    OVERRIDE_KINDS,
    check_seeds,
    parse_overrides,
    parse_seeds,
    parse_timeout,
)

FUZZ = settings(max_examples=400, deadline=None)

_numbers = st.integers(min_value=-5, max_value=2**40).map(str)
_seed_part = st.one_of(_numbers, st.tuples(_numbers, _numbers).map("-".join), st.text(max_size=6))
seed_text = st.one_of(st.text(max_size=40), st.lists(_seed_part, max_size=6).map(",".join))


def _refusal_is_one_line(exc: UserError) -> None:
    message = str(exc)
    assert message and "\n" not in message and "Traceback" not in message
    assert len(message) < 600


@FUZZ
@given(seed_text)
@example("0-2,7")
@example("3-1")
@example("0,0")
@example("٣")  # a non-ASCII digit
def test_seeds_parse_to_distinct_valid_seeds_or_are_refused(raw):
    try:
        seeds = parse_seeds(raw)
    except UserError as exc:
        _refusal_is_one_line(exc)
        assert "--seeds" in str(exc)
        return
    assert seeds and len(set(seeds)) == len(seeds)
    assert all(isinstance(s, int) and 0 <= s <= MAX_SEED for s in seeds)
    assert check_seeds(seeds) == seeds  # what the parser returns, the API accepts


_timeout_text = st.one_of(
    st.text(max_size=20),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers().map(str),
)


@FUZZ
@given(_timeout_text)
@example("nan")
@example("-inf")
@example("1e309")
@example("0")
@example(" 90 ")
def test_timeouts_parse_to_a_finite_positive_number_or_are_refused(raw):
    try:
        value = parse_timeout(raw)
    except UserError as exc:
        _refusal_is_one_line(exc)
        assert "--timeout" in str(exc)
        return
    assert isinstance(value, float) and math.isfinite(value) and value > 0


_kinds = st.sampled_from([*OVERRIDE_KINDS, "gizmo", ""])
_word = st.text(alphabet=st.characters(codec="utf-8"), max_size=8)
_key = st.one_of(
    st.text(max_size=30),
    st.tuples(_kinds, _word, _word).map(".".join),
    st.lists(_word, max_size=5).map(".".join),
)
_item = st.one_of(st.text(max_size=40), st.tuples(_key, st.text(max_size=10)).map("=".join))


@FUZZ
@given(st.lists(_item, max_size=4))
@example(["method.dsm.sigma=0.5"])
@example(["dsm.sigma=0.1"])
@example(["method.*.typo=1"])
@example(["method.dsm.sigma=1", "method.dsm.sigma=2"])
def test_set_parses_to_kind_name_param_keys_or_is_refused(items):
    try:
        parsed = parse_overrides(items)
    except UserError as exc:
        _refusal_is_one_line(exc)
        assert "--set" in str(exc)
        return
    for key, value in parsed.items():
        kind, name, param = key.split(".")
        assert kind in OVERRIDE_KINDS and name.strip() and param.strip()
        assert isinstance(value, str)
        assert any(item.partition("=")[2] == value for item in items)


DECLARED = {
    "steps": Param(100, "steps", low=1),
    "sigma": Param(0.1, "scale", positive=True),
    "prob": Param(0.5, "a probability", low=0, high=1),
    "kind": Param("a", "a choice", choices=("a", "b")),
    "flag": Param(False, "a switch"),
}

_python_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.integers(), max_size=3),
)


@FUZZ
@given(st.sampled_from(sorted(DECLARED)), st.one_of(st.text(max_size=20), _python_values))
@example("steps", "-5")
@example("sigma", "nan")
@example("steps", 2.7)
@example("prob", 1.0000001)
def test_param_values_become_allowed_values_of_the_declared_type_or_are_refused(name, raw):
    param = DECLARED[name]
    try:
        value = param.coerce(raw, name=f"method.x.{name}")
    except UserError as exc:
        _refusal_is_one_line(exc)
        assert f"method.x.{name}" in str(exc)
        return
    assert type(value) is param.value_type
    if param.choices is not None:
        assert value in param.choices
    if isinstance(value, float):
        assert math.isfinite(value)
    if param.low is not None:
        assert value >= param.low
    if param.high is not None:
        assert value <= param.high
    if param.positive:
        assert value > 0
