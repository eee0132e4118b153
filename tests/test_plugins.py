"""Registries and plugin loading: entry points, --plugins-dir, env vars, broken plugins."""

from __future__ import annotations

import inspect
import textwrap

import pytest

import ebmbench
from ebmbench import Method, PluginError, UserError, hookimpl
from ebmbench.plugins import ENV_DISABLE_AUTOLOAD, ENV_LOAD_PLUGINS, PluginManager
from ebmbench.registry import Registry
from tests.helpers import TOY_METHOD_SOURCE, make_distribution


class GoodMethod(Method):
    name = "good"
    description = "a good method"

    def loss(self, batch):
        return self.energy(batch).mean(), {}


# ----------------------------------------------------------------- registry validation


def test_registry_accepts_a_complete_plugin():
    reg = Registry("method", Method)
    reg.register(GoodMethod, source="tests", version="1")
    assert reg.names() == ["good"] and reg.get("good").source == "tests"


@pytest.mark.parametrize("attrs, message", [
    ({"name": "Bad Name"}, "use lower-case letters"),
    ({"description": ""}, "one-line description"),
    ({"description": "two\nlines"}, "one-line description"),
    ({"params": {"x": 1}}, "params must map names to ebmbench.Param"),
])
def test_registry_rejects_bad_metadata(attrs, message):
    cls = type("Bad", (GoodMethod,), attrs)
    with pytest.raises(PluginError, match=message):
        Registry("method", Method).register(cls)


def test_registry_rejects_wrong_base_and_abstract_classes():
    reg = Registry("method", Method)
    with pytest.raises(PluginError, match="not a subclass of ebmbench.Method"):
        reg.register(int)  # type: ignore[arg-type]
    incomplete = type("Incomplete", (Method,), {"name": "inc", "description": "d"})
    with pytest.raises(PluginError, match="abstract methods unimplemented: loss"):
        reg.register(incomplete)


def test_duplicate_names_are_rejected_with_both_sources():
    reg = Registry("method", Method)
    reg.register(GoodMethod, source="first")
    other = type("Other", (GoodMethod,), {})
    with pytest.raises(PluginError, match=r"'good' from second \(.*Other\) is already registered "
                                          r"by first \(tests.test_plugins.GoodMethod\)"):
        reg.register(other, source="second")
    # Neither runs silently under the name: selecting it is an error naming both sources.
    with pytest.raises(UserError, match=r"method 'good' is registered twice, by first .* and by "
                                        r"second"):
        reg.get("good")


def test_unknown_name_suggests_the_closest():
    reg = Registry("method", Method)
    reg.register(GoodMethod)
    with pytest.raises(UserError, match="unknown method 'goood'. Did you mean 'good'"):
        reg.get("goood")


# ----------------------------------------------------------------- hooks, every one


@pytest.mark.parametrize("kind, hook", [
    ("method", "ebmbench_register_methods"),
    ("sampler", "ebmbench_register_samplers"),
    ("architecture", "ebmbench_register_architectures"),
    ("dataset", "ebmbench_register_datasets"),
    ("metric", "ebmbench_register_metrics"),
    ("executor", "ebmbench_register_executors"),
])
def test_each_registration_hook_registers_its_kind(fresh_plugins, monkeypatch, kind, hook):
    monkeypatch.setenv(ENV_DISABLE_AUTOLOAD, "1")
    base = ebmbench.base.PLUGIN_KINDS[kind]
    abstract = sorted(getattr(base, "__abstractmethods__", ()))
    body = {m: (lambda self, *a, **k: None) for m in abstract}
    if kind == "dataset":
        body["shape"] = property(lambda self: (2,))
    cls = type(f"Hooked{kind.title()}", (base,), {
        "name": f"hooked-{kind}", "description": f"a {kind} from the {hook} hook", **body,
    })

    class Plugin:
        pass

    setattr(Plugin, hook, staticmethod(hookimpl(lambda register: register(cls))))
    fresh_plugins.register_plugin(Plugin(), name="hooked")
    assert fresh_plugins.registry(kind).names() == [f"hooked-{kind}"]


# ----------------------------------------------------------------- loading sources


def test_builtins_load_through_the_entry_point_group(fresh_plugins):
    info = fresh_plugins.info("method", "dsm")
    assert info.source == "ebmbench" and info.version == ebmbench.__version__
    assert fresh_plugins.broken == []


def test_loading_is_lazy_and_happens_once(fresh_plugins, monkeypatch):
    calls = []
    original = PluginManager._load_entry_points
    monkeypatch.setattr(PluginManager, "_load_entry_points",
                        lambda self: calls.append(1) or original(self))
    assert calls == []  # nothing loaded until a registry is needed
    fresh_plugins.registry("method")
    fresh_plugins.registry("sampler")
    assert calls == [1]


def test_third_party_distribution_is_loaded_and_versioned(fresh_plugins, tmp_path, monkeypatch):
    root = make_distribution(
        tmp_path / "site", "ebmbench-thirdparty", "2.3",
        {"thirdparty_mod": TOY_METHOD_SOURCE.format(cls="ThirdParty", name="third_party")},
        {"thirdparty": "thirdparty_mod"},
    )
    monkeypatch.syspath_prepend(str(root))
    info = fresh_plugins.info("method", "third_party")
    assert (info.source, info.version) == ("ebmbench-thirdparty", "2.3")
    assert "dsm" in fresh_plugins.registry("method")


def test_a_broken_plugin_is_listed_and_never_crashes_the_host(fresh_plugins, tmp_path, monkeypatch):
    root = make_distribution(
        tmp_path / "site", "ebmbench-broken", "0.1",
        {
            "broken_import": "raise ImportError('no such dependency: frobnicate')",
            "broken_hook": textwrap.dedent('''
                from ebmbench import hookimpl
                @hookimpl
                def ebmbench_register_methods(register):
                    raise RuntimeError("hook exploded")
            '''),
            "broken_class": textwrap.dedent('''
                from ebmbench import hookimpl
                @hookimpl
                def ebmbench_register_methods(register):
                    register(int)
            '''),
        },
        {"a": "broken_import", "b": "broken_hook", "c": "broken_class"},
    )
    monkeypatch.syspath_prepend(str(root))
    names = fresh_plugins.registry("method").names()
    assert "dsm" in names
    errors = {b.name: b.error for b in fresh_plugins.broken}
    assert "frobnicate" in errors["ebmbench-broken:a"]
    assert "hook exploded" in errors["ebmbench-broken:b"]
    assert "not a subclass of ebmbench.Method" in errors["ebmbench-broken:c"]


def test_load_plugins_env_restricts_autoloading(fresh_plugins, tmp_path, monkeypatch):
    root = make_distribution(
        tmp_path / "site", "ebmbench-extra", "1.0",
        {"extra_mod": TOY_METHOD_SOURCE.format(cls="Extra", name="extra")}, {"x": "extra_mod"},
    )
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv(ENV_LOAD_PLUGINS, "ebmbench-extra")
    assert fresh_plugins.registry("method").names() == ["extra"]


def test_load_plugins_env_empty_loads_nothing(fresh_plugins, monkeypatch):
    monkeypatch.setenv(ENV_LOAD_PLUGINS, "")
    assert fresh_plugins.registry("method").names() == []


def test_disable_autoload_keeps_plugins_dir(fresh_plugins, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_DISABLE_AUTOLOAD, "1")
    (tmp_path / "mine.py").write_text(TOY_METHOD_SOURCE.format(cls="Mine", name="mine"))
    fresh_plugins.add_plugins_dir(tmp_path)
    assert fresh_plugins.registry("method").names() == ["mine"]
    assert fresh_plugins.info("method", "mine").source == str(tmp_path / "mine.py")


def test_plugins_dir_added_after_loading_is_loaded_at_once(fresh_plugins, tmp_path):
    fresh_plugins.registry("method")
    (tmp_path / "late.py").write_text(TOY_METHOD_SOURCE.format(cls="Late", name="late"))
    fresh_plugins.add_plugins_dir(tmp_path)
    assert "late" in fresh_plugins.registry("method")


def test_plugins_dir_with_a_syntax_error_is_reported(fresh_plugins, tmp_path):
    (tmp_path / "oops.py").write_text("def (:\n")
    fresh_plugins.add_plugins_dir(tmp_path)
    fresh_plugins.registry("method")
    assert [b.name for b in fresh_plugins.broken] == ["oops.py"]
    assert "SyntaxError" in fresh_plugins.broken[0].error


def test_missing_plugins_dir_is_a_user_error(fresh_plugins, tmp_path):
    with pytest.raises(UserError, match="is not a directory"):
        fresh_plugins.add_plugins_dir(tmp_path / "nowhere")


# ----------------------------------------------------------------- python API


def test_get_functions_build_configured_instances():
    method = ebmbench.get_method("dsm", sigma=0.3)
    assert method.hparams["sigma"] == 0.3 and method.budget == "quick"
    assert ebmbench.get_sampler("ula", budget="smoke").hparams["steps"] == 10
    assert ebmbench.get_executor("local").name == "local"
    assert ebmbench.get_metric("fisher").name == "fisher"
    assert ebmbench.get_dataset("eight_gaussians").dim == 2
    assert callable(ebmbench.get_architecture("mlp").build)


def test_list_plugins_unknown_kind():
    with pytest.raises(UserError, match="unknown plugin kind 'methodz'. Valid kinds: method"):
        ebmbench.list_plugins("methodz")


def test_hookimpl_is_exported_and_every_hookspec_has_a_docstring():
    from ebmbench import hookspecs

    assert ebmbench.hookimpl is hookspecs.hookimpl
    for hook in hookspecs.HOOK_KINDS.values():
        fn = getattr(hookspecs, hook)
        assert inspect.getdoc(fn), hook
        assert list(inspect.signature(fn).parameters) == ["register"]
