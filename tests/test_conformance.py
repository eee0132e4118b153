"""The conformance suite (ebmbench.testing) against every registered built-in plugin.

One shared suite, parametrized over every plugin that the ``ebmbench`` distribution
registers, of every kind (benchopt style): one test per (plugin, check). Datasets that can
download are run with ``download=False``, so the suite never touches the network: an image
set with no local copy is skipped with the reason. The end-to-end and determinism checks
of the image architectures and datasets are marked slow.
"""

from __future__ import annotations

import pytest

from ebmbench.base import PLUGIN_KINDS
from ebmbench.plugins import get_plugin_manager
from ebmbench.testing import iter_checks

#: Checks that go through the harness (a smoke training, sampling and metrics).
HARNESS_CHECKS = {"end_to_end", "determinism"}

#: (kind, plugin, check) → why a built-in fails that check today. Each entry is a strict
#: xfail, so the test turns red the moment the plugin is fixed and the entry must go.
KNOWN_FAILURES: dict[tuple[str, str, str], str] = {}


def _slow(cls: type) -> bool:
    # Image plugins train convolutional energies or images through the harness: seconds.
    return getattr(cls, "data_kind", None) == "image" or "image" in getattr(
        cls, "data_kinds", ()
    ) and "vector" not in getattr(cls, "data_kinds", ())


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
                if name in HARNESS_CHECKS and _slow(info.cls):
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
