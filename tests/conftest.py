"""Shared fixtures: isolated plugin managers, throwaway plugin distributions."""

from __future__ import annotations

import pytest
import torch

from ebmbench.plugins import reset_plugin_manager

# Tests use tiny tensors, for which one thread is fastest and, on a shared machine, far
# steadier than several.
torch.set_num_threads(1)


@pytest.fixture
def fresh_plugins():
    """A new global plugin manager for the test, and a new one again afterwards."""
    pm = reset_plugin_manager()
    yield pm
    reset_plugin_manager()
