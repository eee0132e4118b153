"""Hyper-parameter declaration, budgets and coercion."""

import pytest

from ebmbench import Param, UserError, choice, int_range, log_uniform, uniform
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


# ---------------------------------------------------------------- bounds and search spaces

BOUNDED = {
    "steps": Param(100, "training steps", low=1),
    "lr": Param(1e-3, "learning rate", low=0),
    "sigma": Param(0.1, "noise scale", positive=True),
    "prob": Param(0.05, "probability", low=0, high=1),
}


@pytest.mark.parametrize("given, fragment", [
    ({"steps": "-5"}, "bad value '-5' for m.steps: must be an integer ≥ 1"),
    ({"steps": 0}, "must be an integer ≥ 1"),
    ({"steps": 2.7}, "bad value 2.7 for m.steps: expected int"),
    ({"steps": True}, "expected int"),
    ({"lr": "nan"}, "bad value 'nan' for m.lr: must be a finite number ≥ 0"),
    ({"lr": float("inf")}, "must be a finite number ≥ 0"),
    ({"sigma": [1, 2]}, "bad value [1, 2] for m.sigma: expected float"),
    ({"sigma": "-0.1"}, "must be a finite number > 0"),
    ({"sigma": 0}, "must be a finite number > 0"),
    ({"prob": 1.5}, "must be a finite number in [0, 1]"),
])
def test_out_of_bounds_and_mistyped_values_are_refused(given, fragment):
    with pytest.raises(UserError) as info:
        resolve_params("m", BOUNDED, "quick", given)
    assert fragment in str(info.value)


def test_values_within_bounds_pass_and_integral_floats_become_ints():
    values = resolve_params("m", BOUNDED, "quick", {"steps": 3.0, "lr": 0, "sigma": "1e-3", "prob": 1})
    assert values == {"steps": 3, "lr": 0.0, "sigma": 1e-3, "prob": 1.0}
    assert isinstance(values["steps"], int) and isinstance(values["lr"], float)


def test_a_long_value_is_not_echoed_in_full():
    with pytest.raises(UserError) as info:
        resolve_params("m", BOUNDED, "quick", {"steps": "9" * 100_000 + "x"})
    assert len(str(info.value)) < 200


def test_a_default_outside_its_own_bounds_is_the_authors_error():
    with pytest.raises(ValueError, match="smoke default 0 is not allowed"):
        Param(10, "steps", smoke=0, low=1)
    with pytest.raises(ValueError, match="search space reaches 0.0"):
        Param(0.1, "sigma", positive=True, search=uniform(0.0, 1.0))


def test_search_spaces_contain_what_they_describe():
    assert log_uniform(1e-3, 1).contains(0.01) and not log_uniform(1e-3, 1).contains(2)
    assert int_range(1, 8).contains(3) and not int_range(1, 8).contains(2.5)
    assert choice("a", "b").contains("a") and not choice("a", "b").contains("c")
    assert uniform(0, 1).describe() == "uniform on [0, 1]"
    with pytest.raises(ValueError):
        log_uniform(0, 1)
    with pytest.raises(ValueError):
        int_range(1.5, 3)


@pytest.mark.parametrize("name", ["dsm", "nce", "fce", "adversarial", "cd", "pcd"])
def test_builtin_methods_declare_where_to_tune(name):
    from ebmbench import get_method

    params = type(get_method(name)).params
    assert params["lr"].search is not None
    tuned = {k for k, p in params.items() if p.search is not None}
    assert len(tuned) >= 2, f"{name} tunes only {tuned}"
