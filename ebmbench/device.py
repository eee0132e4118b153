"""Device choice and deterministic seeding, shared by the harness and executors."""

from __future__ import annotations

import hashlib
import json
import random

import torch

from .errors import UserError

__all__ = ["DEVICES", "resolve_device", "derive_seed", "seed_everything"]

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` takes CUDA when present, else the CPU; ``cuda`` without a GPU is an error.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu" or name.startswith("cuda"):
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {name!r} asked for CUDA but no GPU is available here")
        return torch.device(name)
    raise UserError(f"unknown device {name!r}. Valid devices: {', '.join(DEVICES)}")


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
    random.seed(seed)
    torch.manual_seed(seed)
