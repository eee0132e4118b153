"""Checks for energy architectures: output shape, gradients, batch independence, features."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..base import Architecture
from .suite import Subject, check

__all__ = ["SHAPES", "shapes_for"]

#: Example shapes per data kind: 2-D toys and a 5-D vector; digits-sized and RGB images.
SHAPES: dict[str, tuple[tuple[int, ...], ...]] = {
    "vector": ((2,), (5,)),
    "image": ((1, 8, 8), (3, 16, 16)),
}


def shapes_for(cls: type[Architecture]) -> list[tuple[int, ...]]:
    """The example shapes of every data kind the architecture accepts."""
    return [shape for kind in sorted(cls.data_kinds) for shape in SHAPES.get(kind, ())]


def _built(s: Subject, shape: tuple[int, ...]) -> nn.Module:
    arch: Architecture = s.make()  # type: ignore[assignment]
    module = arch.build(shape)
    assert isinstance(module, nn.Module), f"build{shape} returned {type(module).__name__}"
    return module.to(s.device)


def _inputs(s: Subject, n: int, shape: tuple[int, ...], seed: int = 0) -> Tensor:
    x = torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return x.to(s.device)


@check("architecture_build", ["architecture"])
def check_architecture_build(s: Subject) -> None:
    """``build(shape)`` gives a fresh module mapping (B, *shape) to finite (B,), differentiably.

    For every example shape of its data kinds and B = 1 and 3 (a stray ``squeeze`` turns
    (1,) into ()): a floating output of shape (B,), finite at initialisation; ∇ₓf exists,
    has x's shape and is finite (samplers and score matching need it); a backward pass
    reaches at least one parameter; and two builds share no parameter storage.
    """
    for shape in shapes_for(s.cls):
        module = _built(s, shape)
        for n in (1, 3):
            x = _inputs(s, n, shape).requires_grad_(True)
            f = module(x)
            assert isinstance(f, Tensor) and f.shape == (n,), (
                f"input {(n, *shape)} gave output of shape {tuple(getattr(f, 'shape', ()))}, "
                f"expected ({n},)"
            )
            assert f.is_floating_point(), f"output dtype {f.dtype}"
            assert torch.isfinite(f).all(), f"non-finite f at initialisation for {shape}"
            (grad,) = torch.autograd.grad(f.sum(), x, retain_graph=True)
            assert grad.shape == x.shape and torch.isfinite(grad).all(), (
                f"∇ₓf for {shape} is missing, misshapen or non-finite"
            )
            f.sum().backward()
            assert any(p.grad is not None for p in module.parameters()), (
                f"no parameter receives a gradient for {shape}"
            )
            module.zero_grad(set_to_none=True)
        other = _built(s, shape)
        mine = {p.data_ptr() for p in module.parameters()}
        assert not mine & {p.data_ptr() for p in other.parameters()}, (
            "two builds share parameters: build() must return a fresh module"
        )


@check("architecture_batch_independence", ["architecture"])
def check_architecture_batch_independence(s: Subject) -> None:
    """f(x)ᵢ depends on xᵢ alone, in train and in eval mode.

    f evaluated on six examples and on the first three must agree on those three. Batch
    statistics (``BatchNorm`` in train mode) or dropout make f a function of the batch:
    samplers then target a different density for every batch of chains.
    """
    for shape in shapes_for(s.cls):
        module = _built(s, shape)
        x = _inputs(s, 6, shape, seed=1)
        for mode in ("train", "eval"):
            module.train(mode == "train")
            with torch.no_grad():
                whole, part = module(x)[:3], module(x[:3])
            assert torch.allclose(whole, part, rtol=1e-4, atol=1e-5), (
                f"in {mode} mode, f on a batch of 6 and on its first 3 differ for {shape}: "
                f"{whole.tolist()} vs {part.tolist()}"
            )


@check(
    "architecture_features", ["architecture"],
    applies=lambda cls: "nonzero_hessian" in getattr(cls, "features", ()),
)
def check_architecture_features(s: Subject) -> None:
    """An architecture declaring ``nonzero_hessian`` has a non-zero Hessian in x.

    Exact and sliced score matching need ∇ₓ²f ≠ 0 (ReLU networks have ∇ₓ²f = 0 almost
    everywhere, ERRATA 4). Checked with Hessian-vector products (∇ₓ²f)v for random v at
    random points, for every example shape.
    """
    for shape in shapes_for(s.cls):
        module = _built(s, shape)
        x = _inputs(s, 4, shape, seed=2).requires_grad_(True)
        (grad,) = torch.autograd.grad(module(x).sum(), x, create_graph=True)
        assert grad.requires_grad, f"declares nonzero_hessian, but ∇ₓf is constant for {shape}"
        v = torch.randn(x.shape, generator=torch.Generator().manual_seed(3)).to(s.device)
        (hvp,) = torch.autograd.grad((grad * v).sum(), x, allow_unused=True)
        assert hvp is not None and hvp.abs().max() > 0, (
            f"declares nonzero_hessian, but (∇ₓ²f)v = 0 at random points for {shape}"
        )
