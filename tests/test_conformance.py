"""The conformance suite (ebmbench.testing) against every registered built-in plugin.

One shared suite, parametrized over every plugin that the ``ebmbench`` distribution
registers, of every kind (benchopt style): one test per (plugin, check). Datasets that can
download are run with ``download=False``, so the suite never touches the network: an image
set with no local copy is skipped with the reason.

Cost. The contract checks take well under a second per plugin. The two harness checks
(``end_to_end``, ``determinism``) each train and evaluate a smoke run, seconds per plugin:
they are marked slow except for the preferred slice (``dsm``, ``ula``, ``mlp``,
``eight_gaussians``, ``fisher``, ``cost``, ``local``), whose members all share one pair of
runs, so a plain ``pytest -m "not slow"`` still sends one real run through the suite.
Executors other than ``local`` start worker processes: their checks are slow too.
"""

from __future__ import annotations

import pytest

from ebmbench.base import PLUGIN_KINDS
from ebmbench.plugins import get_plugin_manager
from ebmbench.testing import iter_checks

#: Checks that go through the harness (a smoke training, sampling and metrics).
HARNESS_CHECKS = {"end_to_end", "determinism"}

#: The built-ins of the preferred slice: their harness checks share one run.
SLICE = {
    ("method", "dsm"), ("sampler", "ula"), ("architecture", "mlp"),
    ("dataset", "eight_gaussians"), ("metric", "fisher"), ("metric", "cost"),
    ("executor", "local"),
}

#: (kind, plugin, check) → why a built-in fails that check today. Each entry is a strict
#: xfail, so the test turns red the moment the plugin is fixed and the entry must go.
KNOWN_FAILURES: dict[tuple[str, str, str], str] = {}


def _slow(kind: str, name: str, check: str) -> bool:
    if kind == "executor" and name != "local" and check in HARNESS_CHECKS | {"executor_map"}:
        return True
    return check in HARNESS_CHECKS and (kind, name) not in SLICE


def _builtin_checks() -> list:
    pm = get_plugin_manager()
    cases = []
    for kind in PLUGIN_KINDS:
        for info in pm.registry(kind):
            if info.source != "ebmbench":
                continue  # a third-party plugin installed here is not ours to test
            params = {"download": False} if "download" in info.cls.params else None
            for name, plugin_check in iter_checks(info.cls, kind=kind, params=params):
                marks = []
                if _slow(kind, info.name, name):
                    marks.append(pytest.mark.slow)
                reason = KNOWN_FAILURES.get((kind, info.name, name))
                if reason:
                    marks.append(pytest.mark.xfail(reason=reason, strict=True,
                                                   raises=AssertionError))
                cases.append(pytest.param(plugin_check, id=plugin_check.id, marks=marks))
    return cases


CASES = _builtin_checks()


@pytest.mark.parametrize("plugin_check", CASES)
def test_builtin_plugin_conforms(plugin_check):
    plugin_check()


def test_every_kind_has_builtins_under_test():
    kinds = {case.values[0].kind for case in CASES}
    assert kinds == set(PLUGIN_KINDS)
    assert {"dsm", "ula", "mlp", "eight_gaussians", "fisher", "local"} <= {
        case.values[0].plugin.name for case in CASES
    }
