"""Which installed plugin distributions load: the two environment variables.

Kept apart from :mod:`ebmbench.plugins` (which imports torch through the contracts) so
that ``ebmbench list`` can key its cache on them without importing torch.

- ``EBMBENCH_LOAD_PLUGINS=dist-a,dist-b``: only those distributions' entry points load
  (``ebmbench`` is the distribution of the built-ins; empty: none).
- ``EBMBENCH_DISABLE_PLUGIN_AUTOLOAD=1`` (any non-empty value but ``third-party``): no
  entry point loads, the built-ins' neither; ``--plugins-dir`` files and
  ``register_plugin()`` still do.
- ``EBMBENCH_DISABLE_PLUGIN_AUTOLOAD=third-party``: the built-ins load, no other package.
"""

from __future__ import annotations

import os

__all__ = ["ENV_LOAD_PLUGINS", "ENV_DISABLE_AUTOLOAD", "BUILTIN_DISTRIBUTION", "KEEP_BUILTINS",
           "autoload_filter", "autoload_note"]

ENV_LOAD_PLUGINS = "EBMBENCH_LOAD_PLUGINS"
ENV_DISABLE_AUTOLOAD = "EBMBENCH_DISABLE_PLUGIN_AUTOLOAD"
#: The distribution that registers the built-in plugins.
BUILTIN_DISTRIBUTION = "ebmbench"
#: The value of ``EBMBENCH_DISABLE_PLUGIN_AUTOLOAD`` that keeps the built-ins.
KEEP_BUILTINS = "third-party"


def autoload_filter() -> set[str] | None:
    """The distributions whose entry points load (lower case), or None for all of them.

    >>> import os
    >>> os.environ[ENV_DISABLE_AUTOLOAD] = "third-party"
    >>> autoload_filter()
    {'ebmbench'}
    >>> del os.environ[ENV_DISABLE_AUTOLOAD]
    """
    disabled = os.environ.get(ENV_DISABLE_AUTOLOAD, "").strip()
    if disabled:
        if disabled.lower().replace("_", "-") == KEEP_BUILTINS:
            return {BUILTIN_DISTRIBUTION}
        return set()
    if ENV_LOAD_PLUGINS in os.environ:
        raw = os.environ[ENV_LOAD_PLUGINS]
        return {d.strip().lower() for d in raw.split(",") if d.strip()}
    return None


def autoload_note() -> str | None:
    """Why installed plugins may be missing: the variable that left them out and how to
    keep the built-ins; None when every installed plugin loads."""
    wanted = autoload_filter()
    if wanted is None:
        return None
    disabled = os.environ.get(ENV_DISABLE_AUTOLOAD, "").strip()
    if not wanted:
        source = (f"{ENV_DISABLE_AUTOLOAD}={disabled} is set" if disabled
                  else f"{ENV_LOAD_PLUGINS} is set but empty")
        return (f"{source}: no installed plugin is loaded, not even the built-ins (only "
                f"--plugins-dir files and register_plugin()); {ENV_DISABLE_AUTOLOAD}={KEEP_BUILTINS} "
                "keeps the built-ins and drops the other packages")
    if wanted == {BUILTIN_DISTRIBUTION}:
        source = (f"{ENV_DISABLE_AUTOLOAD}={disabled}" if disabled
                  else f"{ENV_LOAD_PLUGINS}={os.environ.get(ENV_LOAD_PLUGINS)}")
        return f"{source} is set: only the built-in plugins load, no other installed package"
    builtins = "" if BUILTIN_DISTRIBUTION in wanted else (
        f" (not the built-ins: add {BUILTIN_DISTRIBUTION} to keep them)")
    return (f"{ENV_LOAD_PLUGINS}={os.environ.get(ENV_LOAD_PLUGINS)} is set: only plugins of "
            f"{', '.join(sorted(wanted))} load{builtins}")
