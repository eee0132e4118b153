"""The conformance suite: the checks every plugin must pass, for plugin authors and CI.

Like scikit-learn's ``check_estimator``, one shared suite runs against any plugin class,
built-in or third-party. Three ways in::

    from ebmbench.testing import check_plugin, iter_checks, parametrize_with_checks

    check_plugin(MyMethod)                      # run all; one AssertionError names failures

    @parametrize_with_checks(MyMethod)          # one pytest test per check
    def test_conformance(plugin_check):
        plugin_check()

    for name, run_check in iter_checks(MyMethod):   # (name, callable) pairs
        run_check()

Checks run in a private plugin manager (the caller's registry is left as it was), with
torch's random state forked, at the ``smoke`` budget, on the CPU unless ``device="cuda"``.
A check that cannot apply here (an image set with no local copy) raises
:class:`CheckSkipped`, a :class:`unittest.SkipTest` that pytest reports as skipped.
:func:`list_checks` lists them; docs/contributing.md explains each.
"""

from __future__ import annotations

# Importing the kind modules registers their checks (the order is set by check stages).
from . import (  # noqa: F401
    architectures,
    common,
    datasets,
    executors,
    harness,
    methods,
    samplers,
)
from .harness import clear_run_cache
from .isolation import isolated_plugins
from .partners import Partners, find_partners
from .suite import (
    CheckSkipped,
    PluginCheck,
    Subject,
    check_plugin,
    iter_checks,
    list_checks,
    parametrize_with_checks,
)

__all__ = [
    "check_plugin",
    "iter_checks",
    "parametrize_with_checks",
    "list_checks",
    "PluginCheck",
    "CheckSkipped",
    "Subject",
    "isolated_plugins",
    "find_partners",
    "Partners",
    "clear_run_cache",
]
