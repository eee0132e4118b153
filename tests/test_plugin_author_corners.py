"""The corners a plugin author met (issue 14, section 2), each fixed, documented and tested.

- which executor is the default, said the same way everywhere;
- the method object's lifecycle and attributes (``ctx``, ``energy``, ``optimizer``);
- where samplers start (``ToyDensity.init_box``, ``uniform_in_box``);
- leaderboards named after their store, so two stores in one folder keep theirs;
- autoload off: why ``list`` is empty, and a way to keep the built-ins;
- several kinds in one generated package;
- every CLI option in docs/cli.md (``leaderboard --check`` was missing);
- ``ebmbench list`` from a cache that any install or edit invalidates.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest
import torch

import ebmbench
from ebmbench import ToyDensity, TrainContext, uniform_in_box
from ebmbench.cli import cli, main
from ebmbench.plugins import ENV_DISABLE_AUTOLOAD, ENV_LOAD_PLUGINS
from ebmbench.template import create_plugin_package, package_names
from ebmbench.testing import check_plugin
from tests.helpers import TOY_METHOD_SOURCE, make_distribution

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


# --------------------------------------------------------------- the default executor


def test_the_default_executor_is_described_alike_everywhere():
    local = ebmbench.get_executor("local")
    assert "the default)" not in local.description  # it is not the CLI's default
    assert "one worker" in local.description and "API" in local.description
    run = cli.commands["run"]
    run_help = " ".join(run.get_help(click.Context(run)).split())
    assert "process with several workers" in run_help
    assert "`process` with several workers, else `local`" in (DOCS / "cli.md").read_text()
    scale = " ".join((DOCS / "scale.md").read_text().split())
    assert "one `process` worker per usable core" in scale and "`local`" in scale


# --------------------------------------------------------------- the method's attributes


def test_method_attributes_are_documented_and_set_by_setup():
    plugins_md = (DOCS / "plugins.md").read_text()
    for attribute in ("self.ctx", "self.energy", "self.optimizer", "self.hparams"):
        assert attribute in plugins_md, attribute
    assert "Lifecycle" in ebmbench.Method.__doc__ and "optimizer" in ebmbench.Method.__doc__
    method = ebmbench.get_method("dsm", budget="smoke")
    dataset = ebmbench.get_dataset("eight_gaussians", budget="smoke")
    energy = ebmbench.get_architecture("mlp", budget="smoke").build(dataset.shape)
    data = dataset.train_data(torch.Generator().manual_seed(0))
    ctx = TrainContext(energy, None, dataset, data, torch.device("cpu"), torch.Generator())
    method.setup(ctx)
    assert method.ctx is ctx and method.energy is energy
    assert isinstance(method.optimizer, torch.optim.Adam)
    optimised = {id(p) for group in method.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in energy.parameters()}


# --------------------------------------------------------------- where samplers start


class _Boxed(ToyDensity):
    """N(0, I) in 2-D with wide bounds and a narrow start box."""

    name = "boxed"
    description = "test density with an init_box"
    dim = 2
    bounds = ((-50.0, 50.0), (-50.0, 50.0))
    init_box = ((-1.0, 1.0), (2.0, 3.0))

    def sample(self, n, generator):
        return torch.randn((n, 2), generator=generator)

    def log_prob(self, x):
        return -0.5 * x.pow(2).sum(1) - torch.log(torch.tensor(2 * torch.pi, dtype=x.dtype))


def test_init_box_is_where_samplers_start():
    x = _Boxed(budget="smoke").init_noise(4000, torch.Generator().manual_seed(0))
    assert x.shape == (4000, 2)
    for d, (lo, hi) in enumerate(_Boxed.init_box):
        assert lo <= float(x[:, d].min()) < lo + 0.01 and hi - 0.01 < float(x[:, d].max()) <= hi
        assert float(x[:, d].mean()) == pytest.approx((lo + hi) / 2, abs=0.03)  # uniform: mean
    # Without init_box: the bounds; above 2-D: a standard Gaussian.
    wide = type("Wide", (_Boxed,), {"init_box": None})(budget="smoke")
    assert float(wide.init_noise(4000, torch.Generator().manual_seed(0)).abs().max()) > 40
    # The same generator state gives the same points: the helper draws from it alone.
    g = torch.Generator().manual_seed(3)
    assert torch.equal(uniform_in_box(_Boxed.init_box, 10, g),
                       uniform_in_box(_Boxed.init_box, 10, torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("name", ["banana", "funnel", "student_t"])
def test_builtin_central_boxes_are_declared_and_unchanged(name):
    density = ebmbench.get_dataset(name)
    assert density.init_box is not None
    # The numbers drawn before init_box existed (uniform on the box, one torch.rand call).
    lo = torch.tensor([b[0] for b in density.init_box])
    hi = torch.tensor([b[1] for b in density.init_box])
    before = lo + (hi - lo) * torch.rand((64, 2), generator=torch.Generator().manual_seed(5))
    assert torch.equal(density.init_noise(64, torch.Generator().manual_seed(5)), before)


# --------------------------------------------------------------- leaderboards per store


def test_two_stores_in_one_folder_keep_their_own_leaderboards(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for store, dataset in (("a.sqlite", "eight_gaussians"), ("b.sqlite", "banana")):
        main(["run", "--method", "dsm", "--sampler", "ula", "--architecture", "mlp",
              "--dataset", dataset, "--metric", "fisher", "--budget", "smoke",
              "--results", f"out/{store}", "--no-progress"])
    assert (tmp_path / "out" / "a-leaderboards" / "eight_gaussians.md").is_file()
    assert (tmp_path / "out" / "b-leaderboards" / "banana.md").is_file()
    assert not (tmp_path / "out" / "a-leaderboards" / "banana.md").exists()
    assert "out/b-leaderboards/README.md (1 dataset tables)" in capsys.readouterr().out


def test_a_leaderboard_is_rendered_again_only_when_runs_change(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["run", "--method", "dsm", "--sampler", "ula", "--architecture", "mlp", "--dataset",
            "eight_gaussians", "--metric", "fisher", "--budget", "smoke", "--no-progress"]
    main(args)
    page = tmp_path / "ebmbench-results" / "results-leaderboards" / "eight_gaussians.md"
    written = page.stat().st_mtime_ns
    main(args)
    assert "up to date: no run changed" in capsys.readouterr().out
    assert page.stat().st_mtime_ns == written
    page.unlink()  # a missing page is rendered again
    main(args)
    assert page.is_file()
    main([*args[:4], "ula,mh", *args[5:]])  # a new run changes the store
    assert re.search(r"\|\s*mh\s*\|", page.read_text())


# --------------------------------------------------------------- autoload off


def test_disabled_autoload_explains_the_empty_list(tmp_path, monkeypatch):
    env = {**os.environ, ENV_DISABLE_AUTOLOAD: "1", "EBMBENCH_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "ebmbench.cli", "list", "method"], env=env,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    assert "methods: none registered" in out
    assert f"{ENV_DISABLE_AUTOLOAD}=1 is set" in out and "not even the built-ins" in out
    assert f"{ENV_DISABLE_AUTOLOAD}=third-party keeps the built-ins" in out


def test_a_sweep_with_nothing_registered_says_why(fresh_plugins, monkeypatch):
    monkeypatch.setenv(ENV_DISABLE_AUTOLOAD, "1")
    with pytest.raises(ebmbench.UserError, match="no method is selected or registered.*"
                                                 "not even the built-ins"):
        ebmbench.run(all=True, budget="smoke")


@pytest.mark.parametrize("env", [{ENV_DISABLE_AUTOLOAD: "third-party"},
                                 {ENV_LOAD_PLUGINS: "ebmbench"}])
def test_builtins_can_be_kept_while_third_parties_are_dropped(fresh_plugins, tmp_path,
                                                             monkeypatch, env):
    root = make_distribution(
        tmp_path / "site", "ebmbench-stranger", "1.0",
        {"stranger_mod": TOY_METHOD_SOURCE.format(cls="Stranger", name="stranger")},
        {"s": "stranger_mod"},
    )
    monkeypatch.syspath_prepend(str(root))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    names = fresh_plugins.registry("method").names()
    assert "dsm" in names and "stranger" not in names
    assert "only the built-in plugins load" in fresh_plugins.autoload_note()


# --------------------------------------------------------------- several kinds per package


def test_one_package_with_several_kinds_passes_the_suite(tmp_path, monkeypatch):
    root = create_plugin_package("kit_trio", tmp_path, "method,sampler,dataset")
    module = package_names("kit_trio")["module"]
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "README.md", f"{module}/__init__.py", f"{module}/dataset.py", f"{module}/method.py",
        f"{module}/sampler.py", "pyproject.toml", "tests/test_conformance.py",
    ]
    pyproject = (root / "pyproject.toml").read_text()
    assert f'packages = ["{module}"]' in pyproject and f'kit_trio = "{module}"' in pyproject
    monkeypatch.syspath_prepend(str(root))
    package = importlib.import_module(module)
    classes = {"method": package.KitTrioMethod, "sampler": package.KitTrioSampler,
               "dataset": package.KitTrioDataset}
    for kind, cls in classes.items():
        assert cls.name == "kit_trio" and cls.kind == kind
        outcome = check_plugin(cls, kind=kind)
        assert outcome["end_to_end"] == "passed", (kind, outcome)
    # The package's hooks register all three through one entry point.
    registered = {}
    for hook in ("ebmbench_register_methods", "ebmbench_register_samplers",
                 "ebmbench_register_datasets"):
        getattr(package, hook)(register=lambda cls: registered.setdefault(cls.kind, cls))
    assert registered == classes
    test_file = (root / "tests" / "test_conformance.py").read_text()
    assert "parametrize_with_checks(KitTrioMethod, KitTrioSampler, KitTrioDataset)" in test_file
    assert "--method kit_trio --sampler kit_trio --architecture mlp --dataset kit_trio" in (
        root / "README.md").read_text()
    assert "--kind method,sampler,dataset" in (DOCS / "plugins.md").read_text()


def test_new_plugin_cli_takes_several_kinds_and_rejects_bad_ones(tmp_path, capsys):
    main(["new-plugin", "duo", "--kind", "sampler,metric", "--dest", str(tmp_path)])
    root = tmp_path / "ebmbench-duo"
    assert (root / "ebmbench_duo" / "sampler.py").is_file()
    assert (root / "ebmbench_duo" / "metric.py").is_file()
    with pytest.raises(SystemExit) as done:
        main(["new-plugin", "trio", "--kind", "method,solver", "--dest", str(tmp_path)])
    assert done.value.code == 2
    assert "unknown kind 'solver'. Valid kinds: method, sampler" in capsys.readouterr().err


# --------------------------------------------------------------- docs/cli.md


def test_every_command_and_option_is_in_cli_md():
    doc = (DOCS / "cli.md").read_text()
    for name, command in cli.commands.items():
        assert f"## `ebmbench {name}" in doc, name
        synopsis = re.search(rf"^ebmbench {name}\b.*$", doc, flags=re.M)
        assert synopsis, f"{name} is not in the synopsis"
        for param in command.params:
            if isinstance(param, click.Option):
                names = param.opts + param.secondary_opts
                assert any(n in doc for n in names), f"ebmbench {name} {names}"
    assert "[--check]" in re.search(r"^ebmbench leaderboard\b.*$", doc, flags=re.M).group(0)


# --------------------------------------------------------------- the list cache


def _list(env: dict[str, str], *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "ebmbench.cli", *args, "list", "method"],
                          env=env, capture_output=True, text=True, timeout=300,
                          check=True).stdout


def test_list_cache_is_invalidated_by_installs_and_edits(tmp_path):
    env = {**os.environ, "EBMBENCH_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"}
    first = _list(env)
    assert "dsm" in first and len(list((tmp_path / "cache").glob("plugins-*.json"))) == 1
    assert _list(env) == first  # from the cache
    # A plugins-dir file, then an edit of it.
    folder = tmp_path / "mine"
    folder.mkdir()
    source = TOY_METHOD_SOURCE.format(cls="Mine", name="mine")
    (folder / "mine.py").write_text(source)
    assert "test method mine" in _list(env, "--plugins-dir", str(folder))
    (folder / "mine.py").write_text(source.replace("test method", "edited method"))
    assert "edited method mine" in _list(env, "--plugins-dir", str(folder))
    # A newly installed distribution.
    site = make_distribution(tmp_path / "site", "ebmbench-newcomer", "0.3",
                             {"newcomer_mod": TOY_METHOD_SOURCE.format(cls="N", name="newcomer")},
                             {"n": "newcomer_mod"})
    with_site = {**env, "PYTHONPATH": os.pathsep.join([str(site), env.get("PYTHONPATH", "")])}
    assert "ebmbench-newcomer 0.3" in _list(with_site)
    # The autoload variables are part of the key.
    assert "dsm" not in _list({**env, ENV_DISABLE_AUTOLOAD: "1"})
    assert _list(env) == first


def test_list_in_a_process_with_plugins_registered_directly(fresh_plugins, tmp_path, capsys):
    module = tmp_path / "direct_mod.py"
    module.write_text(textwrap.dedent(TOY_METHOD_SOURCE.format(cls="Direct", name="direct")))
    sys.path.insert(0, str(tmp_path))
    try:
        ebmbench.register_plugin(importlib.import_module("direct_mod"))
        main(["list", "method"])
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("direct_mod", None)
    assert "direct" in capsys.readouterr().out
