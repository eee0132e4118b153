"""Training compute, counted by the harness in units that do not depend on the hardware.

A fair comparison gives every method the same *compute*, not the same number of updates:
a contrastive-divergence update runs K sampler steps (K energy gradients per example), a
denoising-score-matching update one. The harness therefore counts, for every run:

- **FLOPs**: the floating-point operations of every matrix product and convolution of a
  training step (forward and backward, of every order, in every network the method runs:
  the energy, its sampler's chains, a flow), as :mod:`torch.utils.flop_counter` defines
  them (2·m·n·k per m×k by k×n product; elementwise work is not counted, as is usual
  for compute budgets, e.g. Kaplan et al. 2020, "Scaling laws", §2.1);
- **energy rows**: examples passed forward through the energy f_θ;
- **gradient rows**: examples whose f_θ was differentiated (a first-order backward pass
  from f, with respect to x or θ); higher-order passes (the Hessian trace of exact score
  matching) show in the FLOPs, not here;
- wall-clock and CPU seconds.

Counting FLOPs dispatches every tensor operation through Python, which doubles the cost of
a small step, so they are counted exactly on *probe* steps (the first two, and every step at
which :class:`ComputeMeter` is asked to re-probe, e.g. at each learning-curve point) and the
last probe's count stands for the steps in between. Energy rows are counted on every step:
a step whose rows differ from the probe's is counted as the probe scaled by the rows, and
triggers a new probe, so a method whose cost per step changes is followed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

__all__ = ["FlopCounter", "ComputeMeter", "TrainingCompute"]


class FlopCounter(TorchDispatchMode):
    """Counts the FLOPs of matrix products and convolutions run inside the ``with`` block.

    Unlike :class:`torch.utils.flop_counter.FlopCounterMode` it tracks no modules, so it
    works inside ``torch.autograd.grad`` (which score-based losses and samplers call).

    >>> import torch
    >>> with FlopCounter() as c:
    ...     _ = torch.ones(4, 3) @ torch.ones(3, 5)
    >>> c.flops   # 2 · 4 · 3 · 5
    120
    """

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.flops += int(count(*args, **kwargs, out_val=out))
        return out


@dataclass
class TrainingCompute:
    """What a training run spent.

    Attributes:
        flops: FLOPs of every matrix product and convolution (see the module docstring).
        energy_rows: Examples evaluated through the energy.
        grad_rows: Examples whose energy was differentiated (first-order passes).
        steps: Training updates taken.
        wall_seconds: Wall-clock seconds of the training loop.
        cpu_seconds: CPU seconds of this process during the loop (all its threads), as of
            the last curve point or the end (:meth:`ComputeMeter.detach`).
        probes: Steps whose FLOPs were counted exactly.
    """

    flops: float = 0.0
    energy_rows: int = 0
    grad_rows: int = 0
    steps: int = 0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    probes: int = 0

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


class ComputeMeter:
    """Counts a training run's compute while the harness takes its steps.

    Attach it to the energy module (forward hooks, removed by :meth:`detach`), then wrap
    every training step in :meth:`step`::

        meter = ComputeMeter(energy)
        for _ in range(n):
            with meter.step():
                method.train_step(batch)
        meter.detach()
        meter.compute.flops

    >>> import torch
    >>> net = nn.Linear(3, 1)
    >>> meter = ComputeMeter(net)
    >>> with meter.step():
    ...     net(torch.ones(8, 3)).sum().backward()
    >>> c = meter.compute   # forward 2·8·3·1 FLOPs, and as many for the weight's gradient
    >>> c.energy_rows, c.grad_rows, c.flops
    (8, 8, 96.0)
    >>> meter.detach()
    """

    def __init__(self, energy: nn.Module) -> None:
        self.energy_rows = 0
        self.grad_rows = 0
        self.compute = TrainingCompute()
        self._flops_per_step: float | None = None
        self._rows_per_step: int | None = None
        self._probe_next = True
        self._paused = False
        self._start = time.perf_counter()
        self._cpu_start = time.process_time()
        self._hook = energy.register_forward_hook(self._on_forward)

    # ------------------------------------------------------------------ counting rows

    def _on_forward(self, module: nn.Module, args: tuple[Any, ...], out: Tensor) -> None:
        if self._paused:
            return
        self.energy_rows += out.shape[0] if out.dim() else 1
        if out.requires_grad:
            # A tensor hook, not an identity autograd.Function: 11 µs a call less, which a
            # sampler's chains pay at every gradient (measured on a 2-D energy, one thread).
            out.register_hook(self._on_backward)

    def _on_backward(self, grad: Tensor) -> None:
        self.grad_rows += grad.shape[0] if grad.dim() else 1

    # ------------------------------------------------------------------ steps

    def probe_next(self) -> None:
        """Count the next step's FLOPs exactly (e.g. at a learning-curve point)."""
        self._probe_next = True

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Work that is measurement, not training (a learning-curve point): its energy
        evaluations and its seconds are not counted."""
        self._paused = True
        wall, cpu = time.perf_counter(), time.process_time()
        self.compute.cpu_seconds = cpu - self._cpu_start  # as of this point (a curve point)
        try:
            yield
        finally:
            self._paused = False
            self._start += time.perf_counter() - wall
            self._cpu_start += time.process_time() - cpu

    def step(self) -> _Step:
        """A context manager around one training step."""
        return _Step(self)

    def _finish_step(self, rows: int, flops: int | None) -> None:
        c = self.compute
        c.steps += 1
        if flops is not None:
            self._flops_per_step, self._rows_per_step = float(flops), rows
            c.probes += 1
            # The first two steps are probed: the first may carry one-off work (a warm
            # start, a buffer filled from noise) that later steps do not repeat.
            self._probe_next = c.steps < 2
            c.flops += float(flops)
        elif rows != self._rows_per_step and self._rows_per_step:
            # The step's size changed: scale the last probe by the rows (a network's
            # FLOPs grow linearly with its batch) and count the next step exactly.
            self._probe_next = True
            c.flops += (self._flops_per_step or 0.0) * rows / self._rows_per_step
        else:
            c.flops += self._flops_per_step or 0.0
        c.energy_rows = self.energy_rows
        c.grad_rows = self.grad_rows
        c.wall_seconds = time.perf_counter() - self._start
        # cpu_seconds is brought up to date at curve points (paused) and at detach only:
        # process_time sums every thread's clock, a few microseconds a call on an idle
        # machine but up to 0.4 ms measured on a loaded one, and a step may take 2 ms.

    @property
    def flops_per_step(self) -> float | None:
        """The last probe's FLOPs per step (None before the first step)."""
        return self._flops_per_step

    def detach(self) -> None:
        """Remove the hooks from the energy and bring ``compute.cpu_seconds`` up to date."""
        self.compute.cpu_seconds = time.process_time() - self._cpu_start
        self._hook.remove()


class _Step:
    def __init__(self, meter: ComputeMeter) -> None:
        self.meter = meter
        self.counter: FlopCounter | None = None

    def __enter__(self) -> _Step:
        self.rows_before = self.meter.energy_rows
        if self.meter._probe_next:
            self.counter = FlopCounter()
            self.counter.__enter__()
        return self

    def __exit__(self, kind, exc, tb) -> None:  # noqa: ANN001
        if self.counter is not None:
            self.counter.__exit__(kind, exc, tb)
        if kind is None:
            rows = self.meter.energy_rows - self.rows_before
            self.meter._finish_step(rows, None if self.counter is None else self.counter.flops)
