"""Checks for datasets: the data contract; for toy densities, the exact truth itself."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..base import Dataset, ImageDataset, ToyDensity
from ..errors import UserError
from .suite import CheckSkipped, Subject, check

__all__ = [
    "QUADRATURE_POINTS",
    "NORMALISATION_TOLERANCE",
    "MOMENT_SAMPLES",
    "quadrature",
]

#: Grid points per axis for 2-D quadrature over ``bounds`` (midpoint rule).
QUADRATURE_POINTS = 256
#: |∫p − 1| allowed over ``bounds``: the mass outside them must be negligible.
NORMALISATION_TOLERANCE = 1e-2
#: Exact samples drawn to compare moments and Stein identities with their exact values.
MOMENT_SAMPLES = 20_000


def _data(s: Subject, dataset: Dataset, which: str, seed: int) -> Tensor:
    try:
        return getattr(dataset, which)(torch.Generator().manual_seed(seed))
    except UserError as exc:  # e.g. an image set with no local copy, offline
        raise CheckSkipped(f"{which} is unavailable here: {exc}") from None


@check("dataset_data", ["dataset"])
def check_dataset_data(s: Subject) -> None:
    """Train and test sets are float32 CPU tensors of the declared shape, reproducible.

    ``train_data`` and ``test_data`` return finite float32 tensors on the CPU of shape
    (N, *shape); the same seed gives the same tensor; the test set differs from the
    training set; ``init_noise(n, g)`` gives finite (n, *shape), reproducibly. Image sets
    are (C, H, W) in [−1, 1]. A ``UserError`` (data missing offline) skips the check.
    """
    dataset: Dataset = s.make()  # type: ignore[assignment]
    shape = tuple(dataset.shape)
    assert all(isinstance(d, int) and d > 0 for d in shape), f"shape {shape}"
    train = _data(s, dataset, "train_data", 0)
    test = _data(s, dataset, "test_data", 1)
    for label, x in (("train", train), ("test", test)):
        assert isinstance(x, Tensor), f"{label}_data returned {type(x).__name__}"
        assert x.dtype == torch.float32, f"{label} data are {x.dtype}, not float32"
        assert x.device.type == "cpu", f"{label} data are on {x.device}, not the CPU"
        assert x.dim() == 1 + len(shape) and tuple(x.shape[1:]) == shape and len(x) > 0, (
            f"{label} data have shape {tuple(x.shape)}, expected (N, *{shape})"
        )
        assert torch.isfinite(x).all(), f"{label} data are not finite"
        if isinstance(dataset, ImageDataset):
            assert len(shape) == 3, f"an image dataset's shape is (C, H, W), not {shape}"
            assert x.min() >= -1 and x.max() <= 1, (
                f"{label} images span [{x.min():.3f}, {x.max():.3f}], not within [-1, 1]"
            )
    assert torch.equal(train, _data(s, dataset, "train_data", 0)), (
        "train_data with the same seed gave different data"
    )
    assert not (train.shape == test.shape and torch.equal(train, test)), (
        "the test set equals the training set"
    )
    noise = dataset.init_noise(16, torch.Generator().manual_seed(2))
    again = dataset.init_noise(16, torch.Generator().manual_seed(2))
    assert tuple(noise.shape) == (16, *shape), f"init_noise gave {tuple(noise.shape)}"
    assert torch.isfinite(noise).all() and torch.equal(noise, again), (
        "init_noise is non-finite or not reproducible from its generator"
    )


def _is_toy(cls: type) -> bool:
    return issubclass(cls, ToyDensity)


def _toy(s: Subject) -> ToyDensity:
    return s.make()  # type: ignore[no-any-return]


def quadrature(density: ToyDensity, points: int = QUADRATURE_POINTS) -> dict[str, float]:
    """∫p, E[x₁], E[x₂], E‖x‖² and E[log p] over ``density.bounds`` (2-D midpoint rule).

    Computed in float64 where ``log_prob`` accepts it.

    >>> class Std(ToyDensity):
    ...     name, description = "std", "d"
    ...     bounds = ((-8.0, 8.0), (-8.0, 8.0))
    ...     def sample(self, n, generator): return torch.randn(n, 2, generator=generator)
    ...     def log_prob(self, x): return -0.5 * (x ** 2).sum(1) - math.log(2 * math.pi)
    >>> q = quadrature(Std(), points=200)
    >>> round(q["mass"], 6), round(q["sq_norm"], 4)
    (1.0, 2.0)
    """
    (x_lo, x_hi), (y_lo, y_hi) = density.bounds  # type: ignore[misc]
    hx, hy = (x_hi - x_lo) / points, (y_hi - y_lo) / points
    xs = x_lo + hx * (torch.arange(points, dtype=torch.float64) + 0.5)
    ys = y_lo + hy * (torch.arange(points, dtype=torch.float64) + 0.5)
    grid = torch.cartesian_prod(xs, ys)
    try:
        logp = density.log_prob(grid).double()
    except (RuntimeError, TypeError):
        logp = density.log_prob(grid.float()).double()
    p = logp.exp() * (hx * hy)
    plogp = torch.where(p > 0, p * logp, torch.zeros_like(p))
    mass = p.sum()
    return {
        "mass": float(mass),
        "mean_0": float((p * grid[:, 0]).sum() / mass),
        "mean_1": float((p * grid[:, 1]).sum() / mass),
        "sq_norm": float((p * grid.pow(2).sum(1)).sum() / mass),
        "log_prob": float(plogp.sum() / mass),
    }


_QUADRATURES: dict[tuple[type, str], dict[str, float]] = {}


def _cached_quadrature(density: ToyDensity) -> dict[str, float]:
    """:func:`quadrature`, once per class and hyper-parameters (some log-densities are
    integrals themselves, and two checks need it)."""
    key = (type(density), repr(sorted(density.hparams.items())))
    if key not in _QUADRATURES:
        _QUADRATURES[key] = quadrature(density)
    return _QUADRATURES[key]


def _needs_2d(density: ToyDensity) -> None:
    if density.dim != 2 or density.bounds is None:
        raise CheckSkipped(f"quadrature needs a 2-D density with bounds (dim {density.dim})")


@check("toy_density_normalised", ["dataset"], applies=_is_toy)
def check_toy_density_normalised(s: Subject) -> None:
    """In 2-D, ``log_prob`` integrates to 1 over ``bounds`` (quadrature).

    The midpoint rule on a :data:`QUADRATURE_POINTS`² grid over ``bounds`` must give
    ∫exp(log_prob) within :data:`NORMALISATION_TOLERANCE` of 1: the density is normalised
    and ``bounds`` hold all but a negligible mass (test NLL and log Z use that quadrature).
    """
    density = _toy(s)
    _needs_2d(density)
    for lo, hi in density.bounds:  # type: ignore[union-attr]
        assert lo < hi, f"bounds {density.bounds} are not (lo, hi) pairs with lo < hi"
    mass = _cached_quadrature(density)["mass"]
    assert abs(mass - 1) <= NORMALISATION_TOLERANCE, (
        f"∫exp(log_prob) over the bounds {density.bounds} is {mass:.5f}, not 1"
    )


@check("toy_density_score", ["dataset"], applies=_is_toy)
def check_toy_density_score(s: Subject) -> None:
    """``score(x)`` equals the autograd gradient of ``log_prob`` (shape (n, dim), finite).

    At exact samples and at ``init_noise`` points, to a relative 1e-4 of the score's
    scale. A hand-written score with a sign or factor slip shows here; the Fisher
    divergence metric trusts ``score``.
    """
    density = _toy(s)
    g = torch.Generator().manual_seed(3)
    x = torch.cat([density.sample(256, g), density.init_noise(256, g)]).to(s.device)
    score = density.score(x)
    assert score.shape == x.shape, f"score of shape {tuple(score.shape)} for x {tuple(x.shape)}"
    assert torch.isfinite(score).all(), "the score is not finite at samples or init_noise points"
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        (auto,) = torch.autograd.grad(density.log_prob(xg).sum(), xg)
    scale = auto.abs().max().item() + 1e-6
    err = (score - auto).abs().max().item()
    assert err <= 1e-4 * scale, f"score differs from ∇ log_prob by up to {err:.3g}"


def _close(label: str, sample: Tensor, exact: float, extra: float = 0.0) -> None:
    """Assert the mean of ``sample`` is within 5 standard errors (+ ``extra``) of exact."""
    se = sample.std().item() / math.sqrt(len(sample))
    mean = sample.mean().item()
    assert abs(mean - exact) <= 5 * se + extra, (
        f"{label}: sample mean {mean:.4f} vs exact {exact:.4f} "
        f"(5 standard errors: {5 * se:.4f})"
    )


@check("toy_density_samples", ["dataset"], applies=_is_toy)
def check_toy_density_samples(s: Subject) -> None:
    """``sample`` draws from ``log_prob``: Stein identities and, in 2-D, moments.

    With :data:`MOMENT_SAMPLES` samples, each within 5 standard errors: Stein's identity
    E_p[∇log p(x)] = 0 and E_p[∇log p(x)·x] = −d (integration by parts; any dimension);
    in 2-D also E[x₁], E[x₂], E‖x‖² and E[log p(x)] against quadrature. Samples must be
    (n, dim), finite and reproducible from the generator.
    """
    density = _toy(s)
    g = torch.Generator().manual_seed(4)
    x = density.sample(MOMENT_SAMPLES, g)
    assert tuple(x.shape) == (MOMENT_SAMPLES, density.dim), f"sample gave {tuple(x.shape)}"
    assert torch.isfinite(x).all(), "non-finite samples"
    assert torch.equal(density.sample(8, torch.Generator().manual_seed(5)),
                       density.sample(8, torch.Generator().manual_seed(5))), (
        "sample is not reproducible from its generator"
    )
    x64 = x.double()
    score = density.score(x).double()
    for i in range(density.dim):
        _close(f"Stein E[score_{i}] = 0", score[:, i], 0.0, extra=1e-6)
    _close("Stein E[score·x] = −d", (score * x64).sum(1), -float(density.dim), extra=1e-6)
    if density.dim == 2 and density.bounds is not None:
        q = _cached_quadrature(density)
        logp = density.log_prob(x).double()
        _close("E[x₁]", x64[:, 0], q["mean_0"], extra=1e-3)
        _close("E[x₂]", x64[:, 1], q["mean_1"], extra=1e-3)
        _close("E‖x‖²", x64.pow(2).sum(1), q["sq_norm"], extra=1e-3 * (1 + abs(q["sq_norm"])))
        _close("E[log p]", logp, q["log_prob"], extra=1e-3 * (1 + abs(q["log_prob"])))
