"""What ``ebmbench list`` shows, and a cache of it so that listing does not import torch.

Listing needs each plugin's class attributes, and every plugin module imports torch
(about 1.3 s here, most of ``list``'s 2.3 s). The catalogue (names, descriptions,
origins, hyper-parameters, plugins that failed to load) is therefore cached as JSON under
``$EBMBENCH_CACHE_DIR`` (default ``$XDG_CACHE_HOME/ebmbench``, i.e. ``~/.cache/ebmbench``),
in a file named after a digest of everything it is made from:

- the Python interpreter and the autoload variables (``EBMBENCH_LOAD_PLUGINS``,
  ``EBMBENCH_DISABLE_PLUGIN_AUTOLOAD``);
- the installed distributions: the names of the ``*.dist-info``/``*.egg-info`` folders
  and ``.pth`` files of every ``sys.path`` folder (an install, upgrade or removal renames
  one) and the entry points of the ``ebmbench`` group;
- size and modification time of every ``.py`` file of ebmbench itself, of each
  entry-point package (editable installs change without a version change) and of each
  ``--plugins-dir`` folder.

Any change gives another digest, so a stale catalogue is never shown. Not covered: an
editable install of a library that a plugin package imports its classes from, edited in
place; ``ebmbench list --refresh`` (or ``EBMBENCH_NO_CACHE=1``) rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from .autoload import autoload_filter

__all__ = ["KINDS", "build_catalogue", "load_catalogue", "catalogue_key", "cache_dir",
           "describe_params"]

KINDS = ("method", "sampler", "architecture", "dataset", "metric", "executor")
_GROUP = "ebmbench"
_FORMAT = 1


def cache_dir() -> Path:
    """``$EBMBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/ebmbench``, else ``~/.cache/ebmbench``."""
    if os.environ.get("EBMBENCH_CACHE_DIR"):
        return Path(os.environ["EBMBENCH_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ebmbench"


def describe_params(params: dict[str, Any]) -> str:
    """One line per hyper-parameter: ``name=quick default [smoke/full]: help``."""
    lines = []
    for name, p in params.items():
        extra = "/".join(str(p.for_budget(b)) for b in ("smoke", "full"))
        line = f"{name}={p.default!r} [{extra}]: {p.help}"
        if p.low is not None or p.high is not None or p.positive:
            line += f" ({p.allowed()})"
        if p.search is not None:
            line += f"; tuned: {p.search.describe()}"
        lines.append(line)
    return "\n".join(lines)


def build_catalogue(pm: Any) -> dict[str, Any]:
    """The catalogue of the plugin manager ``pm`` (loading its plugins)."""
    kinds = {
        kind: [
            {"name": info.name, "description": info.cls.description, "source": info.source,
             "version": info.version, "params": describe_params(info.cls.params)}
            for info in pm.registry(kind)
        ]
        for kind in KINDS
    }
    broken = [{"name": b.name, "source": b.source, "error": b.error} for b in pm.broken]
    return {"format": _FORMAT, "kinds": kinds, "broken": broken}


def _stat_py(folder: Path, digest: Any) -> None:
    for path in sorted(folder.rglob("*.py")):
        try:
            st = path.stat()
        except OSError:
            continue
        digest.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())


def catalogue_key(plugins_dirs: list[str]) -> str:
    """A digest of everything the catalogue is made from (see the module docstring)."""
    import importlib.metadata as md
    import importlib.util

    digest = hashlib.sha256()
    wanted = autoload_filter()
    digest.update(f"{_FORMAT}|{sys.executable}|{sys.version}|"
                  f"{'*' if wanted is None else sorted(wanted)}".encode())
    for entry in sys.path:
        try:
            names = sorted(n for n in os.listdir(entry or ".")
                           if n.endswith((".dist-info", ".egg-info", ".pth", ".egg-link")))
        except OSError:
            continue
        digest.update(f"{entry}:{names}\n".encode())
    tops = set()
    for ep in sorted(md.entry_points(group=_GROUP), key=lambda e: (e.name, e.value)):
        dist = ep.dist
        digest.update(f"{dist.metadata['Name'] if dist else ''}|{ep.name}|{ep.value}\n".encode())
        tops.add(ep.value.split(":")[0].split(".")[0])
    folders = [Path(__file__).parent]
    for top in sorted(tops):
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError) as exc:
            digest.update(f"{top}:{exc!r}".encode())
            continue
        if spec is None:
            continue
        if spec.submodule_search_locations:
            folders += [Path(p) for p in spec.submodule_search_locations]
        elif spec.origin and os.path.isfile(spec.origin):
            st = os.stat(spec.origin)
            digest.update(f"{spec.origin}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    folders += [Path(d).resolve() for d in plugins_dirs]
    for folder in folders:
        digest.update(f"[{folder}]".encode())
        _stat_py(folder, digest)
    return digest.hexdigest()[:24]


def load_catalogue(plugins_dirs: list[str], *, refresh: bool = False) -> tuple[dict[str, Any], bool]:
    """The catalogue, from the cache when it is current, else built (and cached).

    Building it loads every plugin (and so imports torch); ``plugins_dirs`` are added to
    the plugin manager first. A process that already has a plugin manager builds from it
    and skips the cache: it may hold plugins registered with ``register_plugin()``.

    Returns:
        The catalogue, and whether it came from the cache.
    """
    plugins_module = sys.modules.get(f"{__package__}.plugins")
    if plugins_module is not None and plugins_module._manager is not None:
        # This process already has a plugin manager (a notebook, a test, a plugin registered
        # with register_plugin()): it is the truth, and torch is imported already.
        for folder in plugins_dirs:
            plugins_module.add_plugins_dir(folder)
        return build_catalogue(plugins_module.get_plugin_manager()), False
    use_cache = not refresh and not os.environ.get("EBMBENCH_NO_CACHE")
    path = cache_dir() / f"plugins-{catalogue_key(plugins_dirs)}.json"
    if use_cache and path.is_file():
        try:
            catalogue = json.loads(path.read_text(encoding="utf-8"))
            if catalogue.get("format") == _FORMAT:
                return catalogue, True
        except (OSError, ValueError):
            pass
    from .plugins import add_plugins_dir, get_plugin_manager

    for folder in plugins_dirs:
        add_plugins_dir(folder)
    catalogue = build_catalogue(get_plugin_manager())
    if not os.environ.get("EBMBENCH_NO_CACHE"):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(catalogue), encoding="utf-8")
            tmp.replace(path)
            _prune(path.parent, keep=path)
        except OSError:  # a read-only home: list works, uncached
            pass
    return catalogue, False


def _prune(folder: Path, keep: Path, most: int = 16) -> None:
    """Keep the ``most`` newest catalogues (several environments may share the folder)."""
    old = sorted(folder.glob("plugins-*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in old[most:]:
        if path != keep:
            path.unlink(missing_ok=True)
