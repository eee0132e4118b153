"""Shared fixtures: isolated plugin managers, throwaway plugin distributions."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

from ebmbench.plugins import reset_plugin_manager

# Tests use tiny tensors, for which one thread is fastest and, on a shared machine, far
# steadier than several.
torch.set_num_threads(1)
# `ebmbench run` without --workers starts a worker per core; the tests run sweeps in-process
# (plugins registered by a test live only in this process) unless a test says otherwise.
os.environ.setdefault("EBMBENCH_WORKERS", "1")
# `ebmbench list` caches the plugin catalogue; the tests keep theirs out of the user's cache.
os.environ.setdefault("EBMBENCH_CACHE_DIR", tempfile.mkdtemp(prefix="ebmbench-test-cache-"))


@pytest.fixture
def fresh_plugins():
    """A new global plugin manager for the test, and a new one again afterwards."""
    pm = reset_plugin_manager()
    yield pm
    reset_plugin_manager()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip cleanly where there is no GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
