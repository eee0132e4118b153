"""Device choice and deterministic seeding, shared by the harness and executors.

torch is imported inside the functions that use it: the command line reads
:data:`DEVICES` before it knows whether the command needs torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from typing import TYPE_CHECKING

from .errors import UserError

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICES", "resolve_device", "usable_cpu_cores", "default_workers", "derive_seed",
           "seed_everything"]

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` takes CUDA when present, else the CPU; ``cuda`` without a GPU is an error.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu" or name.startswith("cuda"):
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {name!r} asked for CUDA but no GPU is available here")
        return torch.device(name)
    raise UserError(f"unknown device {name!r}. Valid devices: {', '.join(DEVICES)}")


def usable_cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one).

    >>> usable_cpu_cores() >= 1
    True
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(device: str) -> int:
    """How many worker processes ``ebmbench run`` uses when not told: one per usable core
    when the runs go to the CPU, else 1 (in-process: one process owns the GPU).

    Tiny toy models do not keep two torch threads busy, so on the CPU separate
    single-threaded workers finish a sweep sooner (about 1.5× on 2 cores, measured in
    docs/scale.md) and can be killed at a hard time limit when a run hangs.

    >>> default_workers("cpu") == usable_cpu_cores()
    True
    """
    return usable_cpu_cores() if resolve_device(device).type == "cpu" else 1


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts``, stable across processes, machines and executors.

    Python's ``hash()`` is salted per process, so it cannot be used here.

    >>> derive_seed("eight_gaussians", 0) == derive_seed("eight_gaussians", 0)
    True
    """
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") >> 1


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's global generators (CPU and every CUDA device)."""
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
