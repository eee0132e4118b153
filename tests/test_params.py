"""Hyper-parameter declaration, budgets and coercion."""

import pytest

from ebmbench import Param, UserError
from ebmbench.params import check_budget, resolve_params

DECLARED = {
    "steps": Param(100, "training steps", smoke=5, full=1000),
    "lr": Param(1e-3, "learning rate"),
    "kind": Param("a", "a choice", choices=("a", "b")),
    "flag": Param(False, "a switch"),
}


@pytest.mark.parametrize("budget, steps", [("smoke", 5), ("quick", 100), ("full", 1000)])
def test_budget_picks_its_default(budget, steps):
    assert resolve_params("method x", DECLARED, budget)["steps"] == steps


def test_strings_are_coerced_to_the_declared_type():
    values = resolve_params("method x", DECLARED, "quick",
                            {"steps": "7", "lr": "0.5", "kind": "b", "flag": "true"})
    assert values == {"steps": 7, "lr": 0.5, "kind": "b", "flag": True}


def test_int_given_for_float_becomes_float():
    assert resolve_params("m", DECLARED, "quick", {"lr": 1})["lr"] == 1.0


@pytest.mark.parametrize("given, fragment", [
    ({"stepz": 1}, "has no parameter 'stepz'. Its parameters: flag, kind, lr, steps"),
    ({"steps": "many"}, "bad value 'many' for method x.steps: expected int"),
    ({"kind": "c"}, "Valid choices: a, b"),
    ({"flag": "maybe"}, "expected bool"),
])
def test_bad_values_name_the_value_and_the_choices(given, fragment):
    with pytest.raises(UserError, match=fragment.replace(".", r"\.").replace("(", r"\(")):
        resolve_params("method x", DECLARED, "quick", given)


def test_unknown_budget():
    with pytest.raises(UserError, match="unknown budget 'huge'. Valid budgets: smoke, quick, full"):
        check_budget("huge")
