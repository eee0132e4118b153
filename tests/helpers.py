"""Helpers for tests: throwaway plugin distributions and test plugins."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import torch

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def registered_plugins(name: str, **classes: Sequence[type]) -> Iterator[ModuleType]:
    """Register plugin classes by kind, e.g. ``methods=[A], datasets=[B]``, as a module
    ``name`` with one ``ebmbench_register_<kind>`` hook each (kept in ``sys.modules`` while
    it is registered, so that workers can import it)."""
    import ebmbench

    module = ModuleType(name)
    for kind, group in classes.items():
        def register_all(register, group=tuple(group)):
            for cls in group:
                register(cls)
        setattr(module, f"ebmbench_register_{kind}", ebmbench.hookimpl(register_all))
    sys.modules[name] = module
    ebmbench.register_plugin(module)
    try:
        yield module
    finally:
        del sys.modules[name]


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` (scripts/ is not a package) as a fresh module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_distribution(root: Path, name: str, version: str, modules: dict[str, str],
                      entry_points: dict[str, str]) -> Path:
    """Write an installed-looking distribution (a ``.dist-info`` and its modules) in ``root``.

    Putting ``root`` on ``sys.path`` makes ``importlib.metadata`` see it exactly as it
    sees a pip-installed package, entry points included.
    """
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    # The folder name follows the wheel spec (dashes in the name become underscores):
    # importlib.metadata reads the distribution name back from it.
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = ["[ebmbench]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


TOY_METHOD_SOURCE = '''
from ebmbench import Method, Param, hookimpl

class {cls}(Method):
    """Minimises E_data[f²]: a trivially trainable method for plumbing tests."""
    name = "{name}"
    description = "test method {name}"
    params = Method.params | {{"scale": Param(1.0, "loss scale")}}

    def loss(self, batch):
        return self.hparams["scale"] * self.energy(batch).pow(2).mean(), {{}}

@hookimpl
def ebmbench_register_methods(register):
    register({cls})
'''


def study_key(spec) -> str:
    """The key of the one tuning study ``spec`` belongs to (:func:`ebmbench.tuning.plan_studies`
    with the current plugin manager)."""
    from ebmbench.plugins import get_plugin_manager
    from ebmbench.tuning import plan_studies

    (key,) = plan_studies([spec], get_plugin_manager(), set()).keys()
    return key


def ula_stationary_precision(cov: torch.Tensor, eps: float) -> torch.Tensor:
    """The precision P_θ whose ULA chains (step ε) have covariance ``cov``.

    On N(μ, P⁻¹), ULA x' = x − εP(x − μ) + √(2ε) z has stationary covariance C with
    C = (I − εP) C (I − εP) + 2εI, i.e. C⁻¹ = P − εP²/2. Contrastive divergence whose chains
    reach that law (long chains, or any K from the data) drives C to the data covariance, so
    P solves εp²/2 − p + 1/c = 0 per eigenvalue c of it: p = (1 − √(1 − 2ε/c)) / ε.
    """
    c, q = torch.linalg.eigh(cov)
    return q @ torch.diag((1 - torch.sqrt(1 - 2 * eps / c)) / eps) @ q.T


def ula_stationary_cov(cov: torch.Tensor, eps: float) -> torch.Tensor:
    """Σ_θ = P_θ⁻¹ of :func:`ula_stationary_precision`, from the same eigenvectors."""
    c, q = torch.linalg.eigh(cov)
    return q @ torch.diag(eps / (1 - torch.sqrt(1 - 2 * eps / c))) @ q.T
