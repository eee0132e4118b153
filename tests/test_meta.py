"""Meta-tests: every hook documented and tested, the API documented, dependency direction."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
import tomllib

import ebmbench
from ebmbench import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(hookspecs.HOOK_KINDS.values())


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook):
    doc = (ROOT / "docs" / "plugins.md").read_text()
    assert f"### `{hook}(register)`" in doc
    annotation = inspect.get_annotations(getattr(hookspecs, hook))["register"]
    signature = f"def {hook}(register: {annotation}) -> None"
    assert signature in doc, signature


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    tests = [p for p in (ROOT / "tests").rglob("test_*.py") if p.name != "test_meta.py"]
    assert any(hook in p.read_text() for p in tests)


def test_every_hookspec_is_in_the_kind_table():
    specs = {n for n in dir(hookspecs) if n.startswith("ebmbench_register_")}
    assert specs == set(HOOKS)


@pytest.mark.parametrize("name", ["list_plugins", "get_method", "get_sampler", "get_architecture",
                                  "get_dataset", "get_metric", "get_executor", "run",
                                  "load_results", "register_plugin", "add_plugins_dir",
                                  "hookimpl", "train", "load_model", "TrainedModel",
                                  "uniform_in_box"])
def test_python_api_is_exported_and_documented(name):
    assert name in ebmbench.__all__
    assert f"`{name}" in (ROOT / "docs" / "api.md").read_text()


def test_every_public_name_resolves_lazily():
    """``ebmbench/__init__.py`` imports on first use (PEP 562): every name of ``__all__``
    maps to the submodule defining it, resolves, and is what that submodule holds."""
    import importlib

    exports = ebmbench._EXPORTS
    assert set(ebmbench.__all__) == set(exports) | {"__version__"}
    for name in ebmbench.__all__:
        value = getattr(ebmbench, name)
        if name != "__version__":
            module = importlib.import_module(f"ebmbench.{exports[name]}")
            assert value is getattr(module, name), name
    assert set(ebmbench.__all__) <= set(dir(ebmbench))
    namespace: dict = {}
    exec("from ebmbench import *", namespace)
    assert set(ebmbench.__all__) <= set(namespace)
    with pytest.raises(AttributeError, match="has no attribute 'nonexistent'"):
        ebmbench.nonexistent  # noqa: B018


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_core_never_imports_plugins():
    for path in (ROOT / "ebmbench").rglob("*.py"):
        bad = [m for m in _imports(path) if m.split(".")[0] in ("plugins", "ebmbench_plugins")]
        assert not bad, f"{path} imports {bad}"


def test_builtin_plugins_use_only_the_public_api():
    for path in (ROOT / "plugins").rglob("*.py"):
        bad = [m for m in _imports(path)
               if m.startswith("ebmbench.") or m.split(".")[0] in ("plugins", "ebmbench_plugins")]
        assert not bad, f"{path} imports {bad}: use `from ebmbench import ...`"


def test_every_plugin_subpackage_is_packaged():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packaged = set(config["tool"]["setuptools"]["packages"])
    folders = {
        "ebmbench_plugins" + ("." + ".".join(p.parent.relative_to(ROOT / "plugins").parts)
                              if p.parent != ROOT / "plugins" else "")
        for p in (ROOT / "plugins").rglob("__init__.py")
        if "examples" not in p.parts
    }
    folders |= {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ebmbench").rglob("__init__.py")
    }
    assert folders <= packaged, folders - packaged


def test_docs_mention_every_builtin_plugin():
    docs = " ".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    for kind in ("method", "sampler", "architecture", "dataset", "metric", "executor"):
        for name in ebmbench.list_plugins(kind):
            info = ebmbench.plugins.get_plugin_manager().info(kind, name)
            if info.source == "ebmbench":
                assert re.search(rf"`{re.escape(name)}`", docs), f"{kind} {name} is not in docs/"
