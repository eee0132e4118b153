"""mkdocs hook: build the interactive leaderboard pages into the site, from the committed
results, offline (``mkdocs.yml`` names this file under ``hooks``).

The pages (``published/interactive/*.html``) and the JavaScript they load (DataTables from
itables, plotly) are generated at every build and never committed; they are added to the
site's files so that links to them are checked like any other.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.leaderboards")
#: Where the interactive pages go in the site, and where the results are read from.
SITE_FOLDER = "published/interactive"
RESULTS = "published/results.csv"
_BUILT: list[Path] = []


def on_files(files: Files, config) -> Files:
    from ebmbench.leaderboard import load_boards
    from ebmbench.leaderboard.interactive import write_interactive

    docs = Path(config["docs_dir"])
    results = docs / RESULTS
    if not results.is_file():
        log.info("no %s: no interactive leaderboard pages", RESULTS)
        return files
    build = Path(tempfile.mkdtemp(prefix="ebmbench-docs-"))
    _BUILT.append(build)
    boards, summaries, frame = load_boards(results)
    pages = build / SITE_FOLDER
    write_interactive(boards, summaries, frame, pages, figures_from=results.parent)
    for path in sorted(pages.rglob("*")):
        if path.is_file():
            uri = path.relative_to(build).as_posix()
            existing = files.get_file_from_path(uri)
            if existing is not None:
                files.remove(existing)
            files.append(File(uri, str(build), config["site_dir"], config["use_directory_urls"]))
    return files


def on_post_build(config) -> None:
    while _BUILT:
        shutil.rmtree(_BUILT.pop(), ignore_errors=True)
