"""Checks for training methods: the step contract, NaN data, checkpoints."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..base import Dataset, Method, TrainContext
from .isolation import isolated_plugins
from .partners import find_partners
from .suite import Subject, check

__all__ = ["TrainingSetup", "training_setup", "STEPS", "MAX_BATCH"]

#: Training steps the direct checks take (the end-to-end run takes the smoke budget's).
STEPS = 3
#: The largest batch the direct checks use.
MAX_BATCH = 128


@dataclass
class TrainingSetup:
    """A method set up on a fresh energy of compatible built-in partners."""

    method: Method
    energy: nn.Module
    data: Tensor
    batch: Tensor
    ctx: TrainContext


def training_setup(s: Subject, *, seed: int = 0) -> TrainingSetup:
    """Set up a fresh instance of the method under test at the smoke budget.

    The architecture, dataset (and sampler, for methods that train with one) are the
    partners :func:`~ebmbench.testing.partners.find_partners` picks.
    """
    with isolated_plugins(s.cls) as pm:
        partners = find_partners(pm, s)
    dataset: Dataset = partners.instances["dataset"]  # type: ignore[assignment]
    torch.manual_seed(seed)
    energy = partners.instances["architecture"].build(dataset.shape).to(s.device)
    data = dataset.train_data(torch.Generator().manual_seed(seed)).to(s.device)
    method: Method = s.make()  # type: ignore[assignment]
    generator = torch.Generator(s.device).manual_seed(seed)
    ctx = TrainContext(energy, partners.instances["sampler"], dataset, data, s.device, generator)
    method.setup(ctx)
    batch = data[: min(method.hparams["batch_size"], MAX_BATCH, len(data))]
    return TrainingSetup(method, energy, data, batch, ctx)


def _snapshot(module: nn.Module) -> list[Tensor]:
    return [p.detach().clone() for p in module.parameters()]


@check("method_train_step", ["method"])
def check_train_step(s: Subject) -> None:
    """``train_step`` returns a finite float ``loss`` and moves the energy's parameters.

    A few steps on a data batch: every step returns a dict whose values convert to
    ``float``, with a finite ``loss`` (the harness detects divergence through it); the
    energy's parameters change and stay finite; ``log_partition()`` is None or finite.
    """
    t = training_setup(s)
    before = _snapshot(t.energy)
    for step in range(STEPS):
        logs = t.method.train_step(t.batch)
        assert isinstance(logs, dict), f"train_step returned {type(logs).__name__}, not a dict"
        assert "loss" in logs, f"train_step logs {sorted(logs)} lack 'loss'"
        for key, value in logs.items():
            try:
                float(value)
            except (TypeError, ValueError):
                raise AssertionError(f"log {key!r} = {value!r} is not a number") from None
        assert math.isfinite(float(logs["loss"])), f"loss {logs['loss']} at step {step}"
    after = _snapshot(t.energy)
    assert all(torch.isfinite(p).all() for p in after), "the energy's parameters became non-finite"
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True)), (
        f"{STEPS} train steps left every parameter of the energy unchanged"
    )
    log_z = t.method.log_partition()
    assert log_z is None or math.isfinite(float(log_z)), f"log_partition() = {log_z}"


@check("method_nan_batch", ["method"])
def check_nan_batch(s: Subject) -> None:
    """A batch of NaNs gives a non-finite loss or raises: divergence is never hidden.

    The harness marks a run ``diverged`` when the loss stops being finite; a method that
    masks NaNs (``nan_to_num``, dropping bad rows) and reports a finite loss would keep
    training on garbage and be ranked.
    """
    t = training_setup(s)
    nan_batch = torch.full_like(t.batch, float("nan"))
    try:
        logs = t.method.train_step(nan_batch)
    except Exception:  # the harness records the run as failed, with the traceback
        return
    loss = float(logs["loss"])
    assert not math.isfinite(loss), f"a batch of NaNs gave the finite loss {loss}"


@check("method_checkpoint", ["method"])
def check_checkpoint(s: Subject) -> None:
    """The method's state survives the harness's checkpoint round trip.

    The harness saves ``energy.state_dict()`` and ``method.state_dict()`` with
    ``torch.save`` and, to evaluate a sampler added later, loads them with
    ``torch.load(weights_only=True)`` into a freshly set-up method (``setup`` first, then
    ``load_state_dict``). The restored pair must give the same f and ``log_partition()``
    and keep training with a finite loss.
    """
    first = training_setup(s, seed=0)
    for _ in range(2):
        first.method.train_step(first.batch)
    buffer = io.BytesIO()
    torch.save({"energy": first.energy.state_dict(), "method": first.method.state_dict()}, buffer)
    buffer.seek(0)
    try:
        state = torch.load(buffer, map_location=s.device, weights_only=True)
    except Exception as exc:
        raise AssertionError(
            "state_dict() does not load with torch.load(weights_only=True): keep it to "
            f"tensors, numbers, strings and containers of them ({type(exc).__name__}: {exc})"
        ) from None
    second = training_setup(s, seed=1)
    second.energy.load_state_dict(state["energy"])
    second.method.load_state_dict(state["method"])
    first.energy.eval()
    second.energy.eval()
    with torch.no_grad():
        fa, fb = first.energy(first.batch), second.energy(first.batch)
    assert torch.allclose(fa, fb, rtol=1e-6, atol=1e-6), "the restored energy differs"
    # Seed both generators alike: a Monte Carlo log Z estimate may draw from ctx.generator.
    first.ctx.generator.manual_seed(7)
    second.ctx.generator.manual_seed(7)
    za, zb = first.method.log_partition(), second.method.log_partition()
    assert (za is None) == (zb is None), f"log_partition() was {za}, after restoring {zb}"
    if za is not None:
        assert math.isclose(float(za), float(zb), rel_tol=1e-6, abs_tol=1e-6), (
            f"log_partition() was {za}, after restoring {zb}: put the method's own "
            "parameters in state_dict()"
        )
    second.energy.train()
    loss = float(second.method.train_step(second.batch)["loss"])
    assert math.isfinite(loss), f"after restoring, a train step gave the loss {loss}"
