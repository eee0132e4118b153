"""The documentation site builds in strict mode (every page in the nav, every link valid)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="install the docs extra: pip install '.[docs]'")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    site = tmp_path / "site"
    assert (site / "plugins" / "index.html").is_file()
    # The interactive leaderboards are built into the site from the committed results.
    interactive = site / "published" / "interactive"
    assert (interactive / "index.html").is_file() and (interactive / "banana.html").is_file()
    assert (interactive / "assets" / "plotly.min.js").is_file()
    # Offline: no page loads a script, a style sheet or a font from the network.
    remote = re.compile(r"<(script|link)[^>]+(src|href)=\"(https?:)?//", re.IGNORECASE)
    for page in site.rglob("*.html"):
        found = remote.search(page.read_text(encoding="utf-8"))
        assert not found, f"{page.relative_to(site)} loads {found.group(0)}"
