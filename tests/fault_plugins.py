"""Test-only plugins: methods that diverge, raise or hang, and counting plugins.

Registered per test with ``ebmbench.register_plugin(fault_plugins)``.
"""

from __future__ import annotations

import time

import torch

from ebmbench import Dataset, Executor, Method, Param, Sampler, SampleResult, UserError, hookimpl

TRAIN_STEPS = {"count": 0}


class Counting(Method):
    """Minimises E_data[f²]; counts its training steps."""

    name = "counting"
    description = "test: trivially trainable, counts steps"

    def loss(self, batch):
        TRAIN_STEPS["count"] += 1
        return self.energy(batch).pow(2).mean(), {}


class CountingWithSampler(Counting):
    name = "counting_cd"
    description = "test: like counting, but declares that training uses the sampler"
    uses_sampler = True


class Diverging(Method):
    name = "diverging"
    description = "test: the loss becomes NaN"

    def loss(self, batch):
        return self.energy(batch).mean() * float("nan"), {}


class Raising(Method):
    name = "raising"
    description = "test: raises inside training"

    def loss(self, batch):
        raise RuntimeError("deliberate failure in training")


class Sleeping(Method):
    name = "sleeping"
    description = "test: each step sleeps"
    params = Method.params | {"seconds": Param(0.05, "sleep per step")}

    def loss(self, batch):
        time.sleep(self.hparams["seconds"])
        return self.energy(batch).pow(2).mean(), {}


class NeedsMagic(Counting):
    name = "needs_magic"
    description = "test: needs an architecture feature nobody has"
    required_features = frozenset({"magic"})


class Identity(Sampler):
    name = "identity"
    description = "test: returns its starting points"
    params = {"steps": Param(1, "unused")}

    def sample(self, energy, x0, n_steps=None, *, generator=None):
        return SampleResult(x0.clone(), {"energy_evals": 0, "grad_evals": 0})


class NaNSampler(Identity):
    name = "nan_sampler"
    description = "test: returns NaN samples"

    def sample(self, energy, x0, n_steps=None, *, generator=None):
        return SampleResult(torch.full_like(x0, float("nan")), {})


class Collapsing(Identity):
    name = "collapsing"
    description = "test: every sample is the same point"

    def sample(self, energy, x0, n_steps=None, *, generator=None):
        return SampleResult(torch.zeros_like(x0), {"energy_evals": 0, "grad_evals": 0})


class Offline(Dataset):
    name = "offline"
    description = "test: its data cannot be had"

    @property
    def shape(self):
        return (2,)

    def train_data(self, generator):
        raise UserError("offline has no local copy in /nowhere; put the files there")

    test_data = train_data


EXECUTOR_TAGS: list[str] = []


class Tagging(Executor):
    name = "tagging"
    description = "test: in-process, remembers its tag"
    params = {"tag": Param("none", "a label")}

    def map(self, fn, tasks):
        EXECUTOR_TAGS.append(self.hparams["tag"])
        for task in tasks:
            yield from fn(task)


@hookimpl
def ebmbench_register_executors(register):
    register(Tagging)


@hookimpl
def ebmbench_register_methods(register):
    for cls in (Counting, CountingWithSampler, Diverging, Raising, Sleeping, NeedsMagic):
        register(cls)


@hookimpl
def ebmbench_register_samplers(register):
    register(Identity)
    register(NaNSampler)
    register(Collapsing)


@hookimpl
def ebmbench_register_datasets(register):
    register(Offline)
