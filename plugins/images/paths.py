"""Where image data and torch-fidelity caches live unless a parameter says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_home", "data_dir", "fidelity_cache_dir"]


def cache_home() -> Path:
    """``$XDG_CACHE_HOME/ebmbench``, or ``~/.cache/ebmbench``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(base).expanduser() / "ebmbench"


def data_dir(given: str = "") -> Path:
    """The dataset folder: ``given``, else ``$EBMBENCH_DATA_DIR``, else ``<cache>/data``.

    Read when data are loaded (not at import), so the environment of the run counts.

    >>> str(data_dir("/srv/data"))
    '/srv/data'
    """
    chosen = given or os.environ.get("EBMBENCH_DATA_DIR", "")
    return Path(chosen).expanduser() if chosen else cache_home() / "data"


def fidelity_cache_dir(given: str = "") -> Path:
    """torch-fidelity's feature and statistics cache: ``given``, else ``<cache>/fidelity``."""
    return Path(given).expanduser() if given else cache_home() / "fidelity"
