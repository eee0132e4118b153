"""The plugin kit: the conformance suite itself, the package template, the example package.

- The suite catches what it claims to: each check fails on a plugin broken in that way
  (a method hiding NaNs, a sampler editing x0 in place, BatchNorm in an energy, a
  mis-normalised density, ...), and leaves the caller's registry and random state alone.
- Every kind's template, as generated, passes the whole suite.
- A generated package and examples/ebmbench-example, pip-installed into a throwaway
  virtual environment, are found through their entry points: their own tests pass with
  that environment's Python, ``ebmbench list`` names their distributions, and a CLI run
  ranks them in the leaderboard.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import site
import subprocess
import sys
import unittest
from pathlib import Path

import pytest
import torch
from torch import nn

import ebmbench
from ebmbench import (
    Architecture,
    Executor,
    Method,
    Metric,
    Param,
    Sampler,
    SampleResult,
    ToyDensity,
    UserError,
    energy_and_score,
)
from ebmbench.plugins import get_plugin_manager
from ebmbench.template import TEMPLATE_KINDS, create_plugin_package, package_names
from ebmbench.testing import (
    CheckSkipped,
    check_plugin,
    iter_checks,
    list_checks,
    parametrize_with_checks,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "ebmbench-example"


def _run_check(cls, name, **kwargs):
    checks = dict(iter_checks(cls, **kwargs))
    assert name in checks, f"{name} not among {sorted(checks)}"
    checks[name]()


def _fails(cls, name, match):
    with pytest.raises(AssertionError, match=match):
        _run_check(cls, name)


# ------------------------------------------------------------------ plugins broken on purpose


class HidesNaN(Method):
    name = "kit_hides_nan"
    description = "test: replaces NaNs in the batch before the loss"

    def loss(self, batch):
        return self.energy(batch.nan_to_num(0.0)).pow(2).mean(), {}


class ForgetsLogZ(Method):
    name = "kit_forgets_log_z"
    description = "test: learns log Z but leaves it out of state_dict"

    def setup(self, ctx):
        self.log_z = nn.Parameter(torch.zeros((), device=ctx.device))
        super().setup(ctx)

    def extra_parameters(self):
        return [self.log_z]

    def loss(self, batch):
        f = self.energy(batch)
        return (f - self.log_z).pow(2).mean() + self.log_z.pow(2), {}

    def log_partition(self):
        return float(self.log_z.detach())


class DoesNotLearn(Method):
    name = "kit_does_not_learn"
    description = "test: a loss with zero gradient"

    def loss(self, batch):
        return self.energy(batch).sum() * 0.0, {}


class SwallowsKwargs(Method):
    name = "kit_swallows_kwargs"
    description = "test: ignores every hyper-parameter it is given"

    def __init__(self, *, budget="quick", **params):
        super().__init__(budget=budget)

    def loss(self, batch):
        return self.energy(batch).pow(2).mean(), {}


_CALLS = itertools.count()


class NotDeterministic(Method):
    name = "kit_not_deterministic"
    description = "test: its loss drifts with a process-wide counter"

    def loss(self, batch):
        return (1 + next(_CALLS) * 1e-3) * self.energy(batch).pow(2).mean(), {}


class ClashesWithDSM(Method):
    name = "dsm"
    description = "test: takes the name of a built-in"

    def loss(self, batch):
        return self.energy(batch).pow(2).mean(), {}


class _Langevin(Sampler):
    """x + sign·ε∇f + √(2ε)z, with hooks for breaking it."""

    name = "kit_langevin"
    description = "test: a plain unadjusted Langevin sampler"
    params = {"steps": Param(20, "steps"), "step_size": Param(0.01, "ε")}
    sign = 1.0

    def drift(self, score):
        return score

    def sample(self, energy, x0, n_steps=None, *, generator=None):
        steps = self.hparams["steps"] if n_steps is None else n_steps
        eps = self.hparams["step_size"]
        x = self.start(x0)
        for _ in range(steps):
            _, score = energy_and_score(energy, x)
            noise = torch.randn(x.shape, generator=generator, device=x.device)
            x = self.move(x, self.sign * eps * self.drift(score) + (2 * eps) ** 0.5 * noise)
        return SampleResult(x, {"energy_evals": steps, "grad_evals": steps})

    def start(self, x0):
        return x0.clone()

    def move(self, x, delta):
        return x + delta


class EditsX0(_Langevin):
    name = "kit_edits_x0"

    def start(self, x0):
        return x0  # no copy: the caller's tensor becomes the chain

    def move(self, x, delta):
        return x.add_(delta)


class WrongSign(_Langevin):
    name = "kit_wrong_sign"
    sign = -1.0


class MaskesNaNScore(_Langevin):
    name = "kit_masks_nan_score"

    def drift(self, score):
        return score.nan_to_num(0.0)


class NormalisesOverChains(_Langevin):
    name = "kit_normalises_over_chains"

    def drift(self, score):
        return score / score.norm(dim=1).mean().clamp_min(1e-3)


class _MLP(nn.Module):
    def __init__(self, d, hidden=16, norm=False, act=nn.Softplus):
        super().__init__()
        layers = [nn.Flatten(), nn.Linear(d, hidden)]
        if norm:
            layers.append(nn.BatchNorm1d(hidden))
        layers += [act(), nn.Linear(hidden, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x).squeeze(-1)


class WithBatchNorm(Architecture):
    name = "kit_batchnorm"
    description = "test: an MLP with BatchNorm"

    def build(self, shape):
        return _MLP(shape[0], norm=True)


class ReLUClaimsHessian(Architecture):
    name = "kit_relu_hessian"
    description = "test: a ReLU MLP that declares nonzero_hessian"
    features = frozenset({"nonzero_hessian"})

    def build(self, shape):
        return _MLP(shape[0], act=nn.ReLU)


class KeepsTheColumn(Architecture):
    name = "kit_keeps_column"
    description = "test: returns (B, 1) instead of (B,)"

    def build(self, shape):
        return nn.Sequential(nn.Linear(shape[0], 1))


class StdNormal(ToyDensity):
    name = "kit_std_normal"
    description = "test: N(0, I) in 2-D"
    bounds = ((-8.0, 8.0), (-8.0, 8.0))

    def sample(self, n, generator):
        return torch.randn(n, 2, generator=generator)

    def log_prob(self, x):
        return -0.5 * x.pow(2).sum(1) - torch.log(torch.tensor(2 * torch.pi, dtype=x.dtype))


class Unnormalised(StdNormal):
    name = "kit_unnormalised"

    def log_prob(self, x):
        return -0.5 * x.pow(2).sum(1)


class WrongScale(StdNormal):
    name = "kit_wrong_scale"

    def sample(self, n, generator):
        return 1.2 * torch.randn(n, 2, generator=generator)


class WrongScore(StdNormal):
    name = "kit_wrong_score"

    def score(self, x):
        return x  # the sign is wrong: ∇ log p = −x


class LoadsEagerly(StdNormal):
    name = "kit_loads_eagerly"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.cache = self.train_data(torch.Generator().manual_seed(0))


class UndeclaredValue(Metric):
    name = "kit_undeclared"
    description = "test: returns a value it does not declare"
    higher_is_better = {"score": False}

    def compute(self, ctx):
        return {"score": 1.0, "extra": 2.0}


class DropsResults(Executor):
    name = "kit_drops_results"
    description = "test: yields only each task's first result"

    def map(self, fn, tasks):
        for task in tasks:
            yield next(iter(fn(task)))


BROKEN = [
    (HidesNaN, "method_nan_batch", "a batch of NaNs gave the finite loss"),
    (ForgetsLogZ, "method_checkpoint", "put the method's own parameters in state_dict"),
    (DoesNotLearn, "method_train_step", "left every parameter of the energy unchanged"),
    (SwallowsKwargs, "hyperparameter_errors", "unknown hyper-parameter was accepted"),
    (ClashesWithDSM, "registration", "already registered by ebmbench"),
    (EditsX0, "sampler_contract", "modified x0 in place"),
    (WrongSign, "sampler_invariance", "more than 5 standard errors"),
    (MaskesNaNScore, "sampler_nan_energy", "moved to finite points on an energy that is all NaN"),
    (NormalisesOverChains, "sampler_nan_isolation", "healthy chains became non-finite"),
    (WithBatchNorm, "architecture_batch_independence", "in train mode"),
    (ReLUClaimsHessian, "architecture_features", "declares nonzero_hessian"),
    (KeepsTheColumn, "architecture_build", r"expected \(1,\)"),
    (Unnormalised, "toy_density_normalised", "is 6.28"),
    (WrongScale, "toy_density_samples", r"Stein E\[score·x\] = −d"),
    (WrongScore, "toy_density_score", "differs from ∇ log_prob"),
    (LoadsEagerly, "construction", r"called \['train_data', 'sample'\]"),
    (DropsResults, "executor_map", "yielded"),
]


@pytest.mark.parametrize("cls, check, message", BROKEN, ids=[c.name for c, _, _ in BROKEN])
def test_each_check_fails_on_a_plugin_broken_that_way(cls, check, message):
    _fails(cls, check, message)


def test_the_reference_plugins_of_those_tests_pass_the_same_checks():
    # The broken plugins above are one defect away from these, which pass: the failures
    # come from the defects, not from the test plugins.
    for name in ("sampler_contract", "sampler_invariance", "sampler_nan_energy",
                 "sampler_nan_isolation"):
        _run_check(_Langevin, name)
    for name in ("toy_density_normalised", "toy_density_samples", "toy_density_score",
                 "construction"):
        _run_check(StdNormal, name)


def test_harness_checks_catch_undeclared_values_and_nondeterminism():
    _fails(UndeclaredValue, "end_to_end", r"returned \['extra'\], which higher_is_better")
    _fails(NotDeterministic, "determinism", "same seed, different results")


def test_a_skipped_check_is_a_skip_test_with_the_reason():
    class FiveD(StdNormal):
        name = "kit_five_d"
        dim = 5
        bounds = None

        def sample(self, n, generator):
            return torch.randn(n, 5, generator=generator)

        def log_prob(self, x):
            return -0.5 * x.pow(2).sum(1)

    with pytest.raises(CheckSkipped, match="quadrature needs a 2-D density"):
        _run_check(FiveD, "toy_density_normalised")
    assert issubclass(CheckSkipped, unittest.SkipTest)
    _run_check(FiveD, "toy_density_score")  # Stein and score checks work in any dimension


# ------------------------------------------------------------------ the suite's API


def test_check_plugin_names_every_failed_check():
    with pytest.raises(AssertionError) as info:
        check_plugin(WrongScale, skip=["end_to_end", "determinism"])
    text = str(info.value)
    assert "dataset 'kit_wrong_scale' failed 1 conformance check(s)" in text
    assert "- toy_density_samples:" in text


def test_check_plugin_reports_passes_and_skips():
    outcome = check_plugin(StdNormal, skip=["end_to_end", "determinism"])
    assert outcome["toy_density_normalised"] == "passed"
    assert set(outcome) == {n for n, _ in iter_checks(StdNormal)} - {"end_to_end", "determinism"}


def test_the_suite_leaves_the_callers_registry_and_random_state_alone():
    manager = get_plugin_manager()
    before = {k: manager.registry(k).names() for k in ("method", "sampler")}
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _run_check(HidesNaN, "registration")
    _run_check(_Langevin, "sampler_contract")
    assert torch.equal(torch.rand(3), expected)
    assert get_plugin_manager() is manager
    assert {k: manager.registry(k).names() for k in ("method", "sampler")} == before
    assert "kit_hides_nan" not in manager.registry("method")


def test_iter_checks_selects_by_kind_and_rejects_unknown_names():
    names = [n for n, _ in iter_checks(_Langevin)]
    assert names[:4] == ["registration", "metadata", "construction", "hyperparameter_errors"]
    assert names[-2:] == ["end_to_end", "determinism"]
    assert all(not n.startswith(("method_", "architecture_", "toy_")) for n in names)
    assert "architecture_features" not in dict(iter_checks(WithBatchNorm))
    with pytest.raises(UserError, match="unknown checks to skip"):
        list(iter_checks(_Langevin, skip=["no_such_check"]))
    with pytest.raises(UserError, match="is a sampler, not a method"):
        list(iter_checks(_Langevin, kind="method"))
    with pytest.raises(UserError, match="not an ebmbench plugin class"):
        list(iter_checks(int))


def test_parametrize_with_checks_gives_one_readable_case_per_check():
    mark = parametrize_with_checks(StdNormal, _Langevin)
    assert mark.args[0] == "plugin_check"
    ids = mark.kwargs["ids"]
    assert "dataset:kit_std_normal:toy_density_normalised" in ids
    assert "sampler:kit_langevin:sampler_invariance" in ids
    assert len(ids) == len(set(ids)) == len(mark.args[1])


def test_every_check_is_documented_in_contributing():
    doc = (ROOT / "docs" / "contributing.md").read_text()
    for name, _, summary in list_checks():
        assert f"| `{name}` |" in doc, name
        assert summary, f"check {name} has no docstring"


# ------------------------------------------------------------------ the template


def test_package_names_and_bad_requests():
    assert package_names("kit-walk", "sampler") == {
        "name": "kit-walk", "dist": "ebmbench-kit-walk", "module": "ebmbench_kit_walk",
        "cls": "KitWalkSampler",
    }
    with pytest.raises(UserError, match="bad plugin name"):
        package_names("Bad Name")
    with pytest.raises(UserError, match="unknown kind 'solver'"):
        package_names("x", "solver")


def test_template_refuses_to_overwrite(tmp_path):
    create_plugin_package("kit_once", tmp_path)
    with pytest.raises(UserError, match="already exists and is not empty"):
        create_plugin_package("kit_once", tmp_path)


def _import_generated(root: Path, module: str, monkeypatch):
    monkeypatch.syspath_prepend(str(root))  # spawned executor workers import it by name
    spec = importlib.util.spec_from_file_location(module, root / f"{module}.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, module, mod)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("kind", [
    pytest.param(k, marks=[pytest.mark.slow] if k == "executor" else []) for k in TEMPLATE_KINDS
])
def test_every_template_passes_the_conformance_suite(kind, tmp_path, monkeypatch):
    names = package_names(f"kit_{kind}", kind)
    root = create_plugin_package(names["name"], tmp_path, kind)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "README.md", f"{names['module']}.py", "pyproject.toml", "tests/test_conformance.py",
    ]
    module = _import_generated(root, names["module"], monkeypatch)
    cls = getattr(module, names["cls"])
    outcome = check_plugin(cls, kind=kind)
    assert outcome["end_to_end"] == outcome["determinism"] == "passed", outcome


# ------------------------------------------------------------------ installed packages


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EBMBENCH_")}
    env.update(COLUMNS="200", PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")
    return env


def _call(args, cwd, timeout=600):
    done = subprocess.run(args, cwd=cwd, env=_clean_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def kit_env(tmp_path_factory):
    """A throwaway venv seeing this environment's packages, with two plugin packages installed.

    ``venv --system-site-packages`` run from a venv's Python exposes the *base* interpreter's
    site-packages, not this venv's, so a ``.pth`` file also adds this environment's site
    directories (with ``site.addsitedir``, so that their own ``.pth`` files, such as an
    editable ebmbench, are processed). Torch, ebmbench, pytest, pip and setuptools then
    come from here, and only the plugin packages are installed into the new venv.
    """
    root = tmp_path_factory.mktemp("plugin-kit")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True, timeout=300)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = _call([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    root).strip()
    parents = [p for p in site.getsitepackages() if Path(p).is_dir()]
    line = "import site; " + "; ".join(f"site.addsitedir({p!r})" for p in parents)
    (Path(purelib) / "_ebmbench_parent_env.pth").write_text(line + "\n")
    template = create_plugin_package("kit_method", root / "src", "method")
    # A copy: building in place would leave build/ and *.egg-info in the source tree.
    example = shutil.copytree(EXAMPLE, root / "src" / EXAMPLE.name,
                              ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                            "__pycache__"))
    # Build with this environment's setuptools, offline; an environment that cannot
    # (no setuptools, or one too old to build wheels without `wheel`) lets pip fetch it.
    build = ["--no-build-isolation", "--no-index"] if _can_build_here() else []
    _call([python, "-m", "pip", "install", "-q", "--no-deps", *build, str(template),
           str(example)], root)
    return {"python": python, "root": root, "template": template}


def _can_build_here() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    release = tuple(int(p) for p in setuptools.__version__.split(".")[:2] if p.isdigit())
    return release >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.mark.slow
def test_installed_template_package_passes_its_own_tests(kit_env):
    out = _call([kit_env["python"], "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                kit_env["template"])
    assert " passed" in out and "failed" not in out


@pytest.mark.slow
def test_installed_example_passes_its_own_tests(kit_env, tmp_path):
    # Run from a copy of the tests only, so ebmbench_example is imported from the install.
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_ksd.py").write_text((EXAMPLE / "tests" / "test_ksd.py").read_text())
    out = _call([kit_env["python"], "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 str(tests)], tmp_path)
    assert " passed" in out and "failed" not in out


@pytest.mark.slow
def test_installed_plugins_are_listed_run_and_ranked(kit_env, tmp_path):
    python = kit_env["python"]
    listing = _call([python, "-m", "ebmbench.cli", "list", "method"], tmp_path)
    assert "kit_method" in listing and "ebmbench-kit-method 0.1.0" in listing
    assert "ksd" in listing and "ebmbench-example 0.1.0" in listing
    _call([python, "-m", "ebmbench.cli", "run", "--method", "kit_method,ksd,dsm",
           "--sampler", "ula", "--dataset", "eight_gaussians", "--architecture", "mlp",
           "--budget", "smoke", "--no-progress", "--no-sampler-board"], tmp_path)
    frame = ebmbench.load_results(tmp_path / "ebmbench-results" / "results.sqlite")
    assert set(frame.status) == {"ok"}, frame[["method", "status", "reason"]]
    versions = {row.method: row.versions[f"method:{row.method}"] for row in frame.itertuples()}
    assert versions["kit_method"] == "ebmbench-kit-method==0.1.0"
    assert versions["ksd"] == "ebmbench-example==0.1.0"
    board = tmp_path / "ebmbench-results" / "results-leaderboards" / "eight_gaussians.md"
    ranks = {}
    for line in board.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        # | rank | range | method | architecture | training sampler | ...
        if len(cells) > 4 and cells[0].isdigit() and cells[3:5] == ["mlp", "–"]:
            ranks[cells[2]] = int(cells[0])
    assert set(ranks) == {"kit_method", "ksd", "dsm"}, board.read_text()


@pytest.mark.slow
def test_a_new_user_trains_samples_evaluates_and_loads_a_run(kit_env, tmp_path):
    """In the fresh venv: the README's trained-model lines, then load_model on a run of
    `ebmbench run`, each in a process of its own, as a new user would type them."""
    python = kit_env["python"]
    readme = (ROOT / "README.md").read_text().split("## Your trained model", 1)[1]
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 6
    out = _call([python, "-c", code.replace('budget="quick"', 'budget="smoke"')], tmp_path)
    assert "fisher_divergence" in out and (tmp_path / "dsm.pt").is_file()
    _call([python, "-m", "ebmbench.cli", "run", "--method", "kit_method", "--sampler", "ula",
           "--dataset", "eight_gaussians", "--architecture", "mlp", "--metric", "fisher",
           "--budget", "smoke", "--no-progress"], tmp_path)
    run_id = ebmbench.load_results(tmp_path / "ebmbench-results" / "results.sqlite").run_id.iloc[0]
    out = _call([python, "-c", "import ebmbench, sys; m = ebmbench.load_model(sys.argv[1]); "
                 "print(m.spec.method, tuple(m.sample(10).shape))", run_id], tmp_path)
    assert out.strip().splitlines()[-1] == "kit_method (10, 2)"
