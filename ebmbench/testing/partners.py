"""Built-in partners for a plugin under test: a compatible (method, sampler, energy, data)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from ..base import Combination, Plugin, ToyDensity
from ..plugins import PluginManager
from .suite import CheckSkipped, Subject

__all__ = ["PREFERRED", "SLICE_METRICS", "Partners", "find_partners", "build"]

GRID_KINDS = ("method", "sampler", "architecture", "dataset")

#: The built-in slice tried first for each kind: cheap, sampler-free training on a 2-D toy
#: density with exact ground truth; digits is the image set that is always offline.
PREFERRED: dict[str, tuple[str, ...]] = {
    "method": ("dsm",),
    "sampler": ("ula",),
    "architecture": ("mlp",),
    "dataset": ("eight_gaussians", "digits"),
}

#: Metrics computed in end-to-end runs of plugins that are not metrics.
SLICE_METRICS = ("fisher", "cost")


@dataclass
class Partners:
    """A compatible combination around the plugin under test, by name, with instances."""

    names: dict[str, str]
    metrics: list[str]
    executor: str
    instances: dict[str, Plugin] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        return ", ".join(f"{k} {self.names[k]}" for k in GRID_KINDS)


def build(pm: PluginManager, kind: str, name: str, budget: str = "smoke") -> Plugin:
    """An instance of a registered plugin at ``budget``."""
    return pm.info(kind, name).cls(budget=budget)


def _candidates(pm: PluginManager, kind: str) -> list[str]:
    names = pm.registry(kind).names()
    first = [n for n in PREFERRED[kind] if n in names]
    rest = [n for n in names if n not in first]
    if kind == "dataset":
        # Toy densities first: they need no files and train in a fraction of a second.
        toy = [n for n in rest if issubclass(pm.info(kind, n).cls, ToyDensity)]
        rest = toy + [n for n in rest if n not in toy]
    return first + rest


def find_partners(pm: PluginManager, s: Subject) -> Partners:
    """The first compatible combination holding the plugin under test, in preference order.

    For a method, sampler, architecture or dataset the other three kinds are searched; a
    metric needs a combination it ``applies_to``; an executor runs the preferred slice.
    Raises :class:`CheckSkipped` when nothing registered is compatible.
    """
    fixed: dict[str, list[str]] = {}
    subject = s.make()
    if s.kind in GRID_KINDS:
        fixed[s.kind] = [s.cls.name]
    options = {k: fixed.get(k) or _candidates(pm, k) for k in GRID_KINDS}
    for k, names in options.items():
        if not names:
            raise CheckSkipped(f"no {k} is registered to run {s.label} with")
    cache: dict[tuple[str, str], Any] = {}

    def instance(kind: str, name: str) -> Any:
        if kind == s.kind and name == s.cls.name:
            return subject
        key = (kind, name)
        if key not in cache:
            try:
                cache[key] = build(pm, kind, name)
            except Exception:  # a broken third-party partner is no partner
                cache[key] = None
        return cache[key]

    for names in itertools.product(*(options[k] for k in ("dataset", "architecture",
                                                          "method", "sampler"))):
        chosen = dict(zip(("dataset", "architecture", "method", "sampler"), names, strict=True))
        inst = {k: instance(k, n) for k, n in chosen.items()}
        if any(v is None for v in inst.values()):
            continue
        combo = Combination(inst["method"], inst["sampler"], inst["architecture"],
                            inst["dataset"])
        if any(p.incompatibility(combo) for p in (inst["dataset"], inst["architecture"],
                                                  inst["method"], inst["sampler"])):
            continue
        if s.kind == "metric" and not subject.applies_to(combo):
            continue
        if s.kind == "metric":
            metrics = [s.cls.name]
        else:
            metrics = [m for m in SLICE_METRICS if m in pm.registry("metric")]
        if s.kind == "executor":
            executor = s.cls.name
        elif "local" in pm.registry("executor"):
            executor = "local"
        else:
            raise CheckSkipped("the built-in executor 'local' is not registered")
        return Partners(chosen, metrics, executor, inst | {s.kind: subject})
    raise CheckSkipped(f"no registered combination is compatible with {s.label}")
