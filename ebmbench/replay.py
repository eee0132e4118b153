"""A replay buffer of persistent MCMC chains (Du & Mordatch 2019).

Persistent contrastive divergence (Tieleman 2008) keeps the negative chains alive across
training steps, so a few sampler steps per update suffice. Du & Mordatch (2019, "Implicit
Generation and Modeling with Energy-Based Models", arXiv:1903.08689, §3.1) store past
samples in a buffer and start each step's chains from it, except for a fraction
(5 % there) restarted from noise so that the chains keep exploring.

Any method (or sampler owner) can use :class:`ReplayBuffer`; it is plain tensor storage,
vectorised over the batch, on whatever device the pushed samples live.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["ReplayBuffer"]


class ReplayBuffer:
    """Fixed-capacity storage of samples, drawn with reinitialisation from noise.

    :meth:`sample` returns ``n`` points: each is, with probability ``reinit_prob`` (or
    always while the buffer is empty), a fresh draw of ``noise_fn``, otherwise a stored
    point chosen uniformly at random. :meth:`push` stores points first-in-first-out, or
    writes them back into the slots :meth:`sample` drew them from (``indices``), which
    keeps each slot a persistent chain.

    Args:
        capacity: The most points kept.
        noise_fn: ``noise_fn(n)`` returns ``n`` fresh starting points (on the device where
            the chains run), e.g. ``lambda n: dataset.init_noise(n, g).to(device)``.
        reinit_prob: Probability that a drawn point restarts from noise.

    >>> buf = ReplayBuffer(4, lambda n: torch.zeros(n, 2), reinit_prob=0.0)
    >>> x, idx = buf.sample(3)              # empty: all noise, no slot yet
    >>> idx.tolist()
    [-1, -1, -1]
    >>> buf.push(torch.ones(3, 2)); len(buf)
    3
    >>> buf.push(2 * torch.ones(3, 2)); len(buf)   # capacity 4: the oldest go first
    4
    >>> sorted(buf.data[:, 0].tolist())
    [1.0, 2.0, 2.0, 2.0]
    """

    def __init__(
        self,
        capacity: int,
        noise_fn: Callable[[int], Tensor],
        reinit_prob: float = 0.05,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        if not 0.0 <= reinit_prob <= 1.0:
            raise ValueError(f"reinit_prob must be in [0, 1], got {reinit_prob}")
        self.capacity = int(capacity)
        self.noise_fn = noise_fn
        self.reinit_prob = float(reinit_prob)
        self._storage: Tensor | None = None
        self._size = 0
        self._next = 0  # FIFO write position

    def __len__(self) -> int:
        return self._size

    @property
    def data(self) -> Tensor:
        """The stored points, shape (len(self), *shape); empty before the first push."""
        if self._storage is None:
            return torch.empty(0)
        return self._storage[: self._size]

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw ``n`` starting points.

        Args:
            n: How many.
            generator: For the choice of slots and restarts; on the buffer's device
                (``noise_fn`` uses its own randomness).

        Returns:
            ``(x, indices)``: the points, detached, and for each the slot it came from, or
            ``-1`` where it is fresh noise.
        """
        noise = self.noise_fn(n).detach()
        device = noise.device
        if self._storage is None or self._size == 0:
            return noise, torch.full((n,), -1, dtype=torch.long, device=device)
        # Randomness is drawn on the generator's device, then moved, so that a CPU generator
        # also drives a CUDA buffer.
        gen_device = generator.device if generator is not None else device
        slots = torch.randint(self._size, (n,), generator=generator, device=gen_device)
        restart = torch.rand((n,), generator=generator, device=gen_device) < self.reinit_prob
        slots, restart = slots.to(device), restart.to(device)
        stored = self._storage[slots].to(noise.dtype)
        mask = restart.view(n, *([1] * (noise.dim() - 1)))
        x = torch.where(mask, noise, stored)
        return x, torch.where(restart, torch.full_like(slots, -1), slots)

    def push(self, x: Tensor, indices: Tensor | None = None) -> None:
        """Store ``x`` (detached).

        Args:
            x: Points, shape (n, *shape).
            indices: The slots returned by :meth:`sample`. Points with a slot overwrite it;
                points without one (``-1``, or all of them when ``indices`` is None) are
                appended first-in-first-out, replacing the oldest once the buffer is full.
        """
        x = x.detach()
        if self._storage is None:
            self._storage = torch.empty(
                (self.capacity, *x.shape[1:]), dtype=x.dtype, device=x.device
            )
        if indices is not None:
            indices = indices.to(x.device)
            kept = indices >= 0
            self._storage[indices[kept]] = x[kept].to(self._storage.dtype)
            x = x[~kept]
        n = x.shape[0]
        if n == 0:
            return
        if n >= self.capacity:  # only the newest fit
            x, n = x[-self.capacity :], self.capacity
        slots = (self._next + torch.arange(n, device=x.device)) % self.capacity
        self._storage[slots] = x.to(self._storage.dtype)
        self._next = (self._next + n) % self.capacity
        self._size = min(self._size + n, self.capacity)

    def state_dict(self) -> dict[str, Tensor | int]:
        """The stored points and write position, for checkpoints."""
        return {"data": self.data.clone(), "next": self._next}

    def load_state_dict(self, state: dict[str, Tensor | int]) -> None:
        """Restore what :meth:`state_dict` returned."""
        data = state["data"]
        assert isinstance(data, Tensor)
        self._storage, self._size, self._next = None, 0, 0
        if data.shape[0]:
            self.push(data)
            self._next = int(state["next"]) % self.capacity
