"""Image datasets, convolutional energies, FID/KID through torch-fidelity, sample grids."""

from __future__ import annotations

import math
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from ebmbench_plugins.images import (
    MNIST,
    ConvNetEnergy,
    Digits,
    FashionMNIST,
    FrechetDistance,
    ResNetEnergy,
    SampleGrid,
    WideResNetEnergy,
)
from ebmbench_plugins.images import fid as fid_module
from ebmbench_plugins.images.convnets import weight_layers
from ebmbench_plugins.images.datasets import DIGITS_LEVELS, digits_split
from ebmbench_plugins.images.digits_net import (
    DIGITS_EXTRACTOR,
    from_uint8,
    load_digits_feature_net,
    to_uint8,
)
from torch import nn

import ebmbench
from ebmbench import EvalContext, UserError


def _ctx(dataset, samples, train, test, **kw) -> EvalContext:
    return EvalContext(
        energy=None, method=None, dataset=dataset, sampler=None, samples=samples,
        sample_stats={}, train_data=train, test_data=test, device=torch.device("cpu"),
        seed=0, budget="smoke", **kw,
    )


@pytest.fixture(scope="module")
def digits():
    dataset = Digits(budget="quick")
    train, test = dataset.load()
    return dataset, train, test


# ------------------------------------------------------------------------------ datasets


def test_plugins_are_registered():
    assert {"digits", "mnist", "fashion_mnist", "cifar10"} <= set(ebmbench.list_plugins("dataset"))
    assert {"convnet", "resnet", "wide_resnet"} <= set(ebmbench.list_plugins("architecture"))
    assert {"fid", "sample_grid"} <= set(ebmbench.list_plugins("metric"))


def test_digits_split_is_fixed_stratified_and_complete():
    from sklearn.datasets import load_digits

    x_train, y_train, x_test, y_test = digits_split()
    assert x_train.shape == (1297, 1, 8, 8) and x_test.shape == (500, 1, 8, 8)
    # Train and test together are exactly scikit-learn's 1797 images (as a multiset).
    ref = load_digits()
    ours = np.concatenate([x_train.flatten(1).numpy(), x_test.flatten(1).numpy()])
    key = lambda a: sorted(map(bytes, a.astype(np.uint8)))  # noqa: E731
    assert key(ours) == key(ref.images.reshape(len(ref.images), -1))
    # Stratified: each class's share of the test set is within one image of its share overall.
    counts = np.bincount(ref.target, minlength=10)
    assert np.all(np.abs(np.bincount(y_test.numpy(), minlength=10) - counts * 500 / 1797) <= 1)
    assert len(y_train) == 1297


def test_digits_scaling_and_dequantisation_are_exact_and_fixed():
    x_train, _, x_test, _ = digits_split()
    plain_train, plain_test = Digits(dequantize=False).load()
    torch.testing.assert_close(plain_train, 2 * x_train.float() / 16 - 1, rtol=0, atol=0)
    assert plain_test.min() == -1 and plain_test.max() == 1
    # Dequantised: each pixel stays in its own level's bin, [2k/17 − 1, 2(k+1)/17 − 1).
    dq_train, dq_test = Digits(dequantize=True).load()
    level = torch.floor((dq_train + 1) / 2 * DIGITS_LEVELS)
    assert torch.equal(level, x_train.float())
    assert not torch.equal(dq_train, plain_train)
    # Fixed data: a new instance (as every run builds) gives the same tensors.
    again_train, again_test = Digits(dequantize=True).load()
    assert torch.equal(again_train, dq_train) and torch.equal(again_test, dq_test)
    # Train and test noise are independent draws, not the same one.
    assert not torch.equal(dq_train[:500] - plain_train[:500], dq_test - plain_test)
    smoke_train, _ = Digits(budget="smoke").load()
    assert smoke_train.shape == (512, 1, 8, 8)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write the IDX format MNIST uses: magic (0, 0, 0x08 = ubyte, ndim), big-endian dims."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("cls,folder", [(MNIST, "MNIST"), (FashionMNIST, "FashionMNIST")])
def test_mnist_like_loads_local_files_lazily_and_once(tmp_path, monkeypatch, cls, folder):
    rng = np.random.default_rng(0)
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    images = {"train": rng.integers(0, 256, (30, 28, 28)),
              "t10k": rng.integers(0, 256, (12, 28, 28))}
    for split, arr in images.items():
        _write_idx(raw / f"{split}-images-idx3-ubyte", arr)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, len(arr)))

    dataset = cls(data_dir=str(tmp_path), download=False, n_train=0, n_test=0)
    train, test = dataset.load()
    assert train.shape == (30, 1, 28, 28) and test.shape == (12, 1, 28, 28)
    torch.testing.assert_close(train[:, 0], torch.as_tensor(images["train"] * 2 / 255 - 1,
                                                            dtype=torch.float32))
    # n_train takes a fixed subset of the images; a second instance reads no file again.
    import torchvision

    monkeypatch.setattr(torchvision.datasets, cls.tv_name, None)
    sub = cls(data_dir=str(tmp_path), download=False, n_train=10, n_test=0)
    sub_train, _ = sub.load()
    assert sub_train.shape == (10, 1, 28, 28)
    rows = {bytes(r.numpy()) for r in train.flatten(1)}
    assert all(bytes(r.numpy()) in rows for r in sub_train.flatten(1))
    assert torch.equal(cls(data_dir=str(tmp_path), download=False, n_train=10).load()[0], sub_train)


def test_mnist_runs_at_the_full_budget_when_its_files_are_present(tmp_path, fresh_plugins):
    """All the images (n_train = n_test = 0 at full), 10 000 evaluation chains from noise; the
    training itself cut to two steps."""
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", 30), ("t10k", 12)):
        _write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n))
    frame = ebmbench.run(
        methods=["dsm"], samplers=["ula"], architectures=["mlp"], datasets=["mnist"],
        metrics=["cost"], budget="full", results=tmp_path / "r.sqlite",
        overrides={"dataset.mnist.data_dir": str(tmp_path), "dataset.mnist.download": False,
                   "method.dsm.steps": 2, "method.dsm.batch_size": 8, "sampler.ula.steps": 1},
    )
    row = frame.iloc[0]
    assert row.status == "ok", row.reason
    assert row.hyperparams["dataset"]["n_train"] == 0 and row.hyperparams["eval_samples"] == 10_000


def test_mnist_offline_error_is_clear_and_the_network_is_tried_once(tmp_path, monkeypatch):
    import torchvision

    attempts = []

    def offline(self):  # what torchvision does offline: makes raw/, then fails
        attempts.append(self.raw_folder)
        Path(self.raw_folder).mkdir(parents=True, exist_ok=True)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://x/, "
                           "got:\n<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    folder = tmp_path / "data"
    for download in (True, True, False):
        with pytest.raises(UserError) as err:
            MNIST(data_dir=str(folder), download=download).load()
        message = str(err.value)
        assert str(folder / "MNIST" / "raw") in message  # where it looked
        assert "train-images-idx3-ubyte.gz" in message and "--data-dir" in message  # how to fix
        assert "EBMBENCH_DATA_DIR" in message
        assert ("Name or service not known" in message) == download
    assert not folder.exists()  # the empty raw/ folder torchvision leaves is removed
    # A sweep loads the dataset once per task: offline, only the first load goes to the network.
    assert len(attempts) == 1


def test_data_dir_defaults_to_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EBMBENCH_DATA_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(UserError, match="elsewhere"):
        MNIST(download=False).load()


# -------------------------------------------------------------------------- architectures


@pytest.mark.parametrize("cls", [ConvNetEnergy, ResNetEnergy, WideResNetEnergy])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_conv_energy_maps_images_to_scalars_with_finite_gradients(cls, shape):
    torch.manual_seed(0)
    net = cls(budget="smoke").build(shape).eval()  # eval: no spectral-norm power iteration
    x = torch.randn(5, *shape)
    value, score = ebmbench.energy_and_score(net, x)
    assert value.shape == (5,) and value.dtype == torch.float32
    assert score.shape == x.shape and torch.isfinite(score).all() and score.abs().sum() > 0
    # One example's energy does not depend on the rest of the batch.
    torch.testing.assert_close(net(x[:2]), value[:2], rtol=1e-5, atol=1e-6)
    # The score matches a central finite difference along a random direction.
    v = torch.randn_like(x[:1])
    eps = 1e-3
    with torch.no_grad():
        fd = (net(x[:1] + eps * v) - net(x[:1] - eps * v)) / (2 * eps)
    torch.testing.assert_close(fd, (score[:1] * v).sum().view(1), rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize("cls", [ConvNetEnergy, ResNetEnergy, WideResNetEnergy])
def test_conv_energy_has_nonzero_hessian_and_supports_double_backward(cls):
    assert "nonzero_hessian" in cls.features and cls.data_kinds == {"image"}
    torch.manual_seed(0)
    net = cls(budget="smoke").build((1, 8, 8))
    x = torch.randn(4, 1, 8, 8)
    _, score = ebmbench.energy_and_score(net, x, create_graph=True)
    v = torch.randn_like(x)
    # Hessian-vector product: the derivative of the score along v, with respect to x.
    xr = x.clone().requires_grad_(True)
    (s,) = torch.autograd.grad(net(xr).sum(), xr, create_graph=True)
    (hvp,) = torch.autograd.grad((s * v).sum(), xr)
    assert torch.isfinite(hvp).all() and hvp.abs().max() > 1e-6
    # Score-matching losses differentiate the score w.r.t. the parameters.
    score.pow(2).sum().backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("cls", [ConvNetEnergy, ResNetEnergy, WideResNetEnergy])
def test_spectral_norm_bounds_every_layer(cls):
    torch.manual_seed(0)
    plain = cls(budget="smoke", spectral_norm=False).build((1, 8, 8))
    normed = cls(budget="smoke", spectral_norm=True).build((1, 8, 8))
    x = torch.randn(8, 1, 8, 8)
    normed.train()
    for _ in range(30):  # power iterations run in training-mode forwards
        normed(x)

    def sigma(layer):
        return torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)

    sigmas = torch.stack([sigma(m) for m in weight_layers(normed)])
    torch.testing.assert_close(sigmas, torch.ones_like(sigmas), rtol=0.02, atol=0)
    assert any(abs(float(sigma(m)) - 1) > 0.1 for m in weight_layers(plain))
    # Gradients flow through the parametrisation, twice (score matching) included.
    _, score = ebmbench.energy_and_score(normed, x, create_graph=True)
    score.pow(2).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in normed.parameters() if p.grad is not None)


def test_wide_resnet_is_igebm_at_full_and_leaky_relu_drops_the_hessian_feature():
    # IGEBM's CIFAR-10 network: conv 128; 3 stages of 2 blocks (128, 256, 256), the first of
    # each halving 32 → 16 → 8 → 4; one linear unit on the pooled 256 features.
    net = WideResNetEnergy(budget="full").build((3, 32, 32)).net
    blocks = list(net.blocks)
    assert net.stem.out_channels == 128 and len(blocks) == 6
    assert [b.conv2.out_channels for b in blocks] == [128, 128, 256, 256, 256, 256]
    assert [b.down for b in blocks] == [True, False] * 3 and net.head.in_features == 256
    assert WideResNetEnergy(budget="full").hparams["spectral_norm"] is True
    assert "nonzero_hessian" in WideResNetEnergy().features
    leaky = WideResNetEnergy(budget="smoke", activation="leaky_relu")
    assert "nonzero_hessian" not in leaky.features
    reason = ebmbench.get_method("exact_sm").incompatibility(
        ebmbench.Combination(ebmbench.get_method("exact_sm"), ebmbench.get_sampler("ula"), leaky,
                             Digits()))
    assert reason and "nonzero_hessian" in reason
    # The Hessian in x really vanishes: a ReLU-like network is piecewise linear.
    f = leaky.build((1, 8, 8))
    x = torch.randn(3, 1, 8, 8, requires_grad=True)
    (s,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
    (hvp,) = torch.autograd.grad((s * torch.randn_like(x)).sum(), x, allow_unused=True)
    assert hvp is None or hvp.abs().max() == 0


# ------------------------------------------------------------------------ feature extractor


def test_digits_extractor_is_deterministic_versioned_and_discriminative():
    _, _, x_test, y_test = digits_split()
    x = from_uint8(to_uint8(2 * x_test.float() / 16 - 1))
    with torch.no_grad():
        a = load_digits_feature_net().features(x)
        b = load_digits_feature_net().features(x)
        logits = load_digits_feature_net()(x)
    assert torch.equal(a, b)
    # Golden values of the v1 weights: a change needs a new DIGITS_EXTRACTOR version.
    assert DIGITS_EXTRACTOR == "ebmbench-digits-v1"
    golden = [115.068192, 103.413048, 88.671570, 144.605789]
    torch.testing.assert_close(a[:4].sum(1), torch.tensor(golden), rtol=1e-4, atol=1e-3)
    # The features separate the classes: held-out accuracy of the classifier's head.
    assert (logits.argmax(1) == y_test).float().mean() > 0.95


def test_weights_ship_as_package_data():
    from importlib import resources

    ref = resources.files("ebmbench_plugins.images").joinpath("digits_features_v1.pt")
    assert ref.is_file() and len(ref.read_bytes()) < 1_000_000


# ----------------------------------------------------------------------------------- FID


def _fid(metric, ctx):
    values = metric.compute(ctx)
    assert ctx.artifacts.get("fid_extractor") == DIGITS_EXTRACTOR, ctx.artifacts
    return values


DIGITS_VALUES = {"kid", "kid_se", "kid_floor", "kid_floor_se", "fid", "fid_floor", "fid_samples",
                 "kid_samples"}


def test_floors_are_small_and_far_below_noise_and_shuffled_pixels(digits, tmp_path):
    dataset, train, test = digits
    metric = FrechetDistance(budget="smoke", cache_dir=str(tmp_path))
    n = metric.hparams["max_samples"]
    g = torch.Generator().manual_seed(0)
    noise = torch.rand((n, 1, 8, 8), generator=g) * 2 - 1
    perm = torch.argsort(torch.rand(n, 64, generator=g), dim=1)  # one permutation per image
    shuffled = torch.gather(test[:n].flatten(1), 1, perm).view(n, 1, 8, 8)

    held_out = _fid(metric, _ctx(dataset, test, train, test))
    assert set(held_out) == DIGITS_VALUES
    assert held_out["fid_samples"] == held_out["kid_samples"] == n
    assert held_out["fid"] == held_out["fid_floor"]  # test data *are* the floor's samples
    fid_noise = _fid(metric, _ctx(dataset, noise, train, test))["fid"]
    fid_shuffled = _fid(metric, _ctx(dataset, shuffled, train, test))["fid"]
    assert held_out["fid"] < 0.05 * fid_noise and held_out["fid"] < 0.1 * fid_shuffled
    # KID: held-out data are within their standard error of the floor and of zero (the
    # extractor generalises to unseen digits); noise is many standard errors above.
    noisy = _fid(metric, _ctx(dataset, noise, train, test))
    assert abs(held_out["kid"] - held_out["kid_floor"]) < 3 * math.hypot(
        held_out["kid_se"], held_out["kid_floor_se"])
    assert abs(held_out["kid_floor"]) < 3 * held_out["kid_floor_se"]
    assert noisy["kid"] > 10 * noisy["kid_se"] > 0


def test_kid_uses_every_sample_and_fid_stops_at_the_held_out_count(digits, tmp_path):
    """KID compares all n samples (more than the 500 held-out digits); FID compares as many
    as its floor can (the held-out count), so that the two are at the same n."""
    dataset, train, test = digits
    metric = FrechetDistance(budget="quick", cache_dir=str(tmp_path))
    samples = (train + 0.3 * torch.randn(train.shape, generator=torch.Generator().manual_seed(3)))
    values = _fid(metric, _ctx(dataset, samples.clamp(-1, 1), train, test))
    assert values["kid_samples"] == len(train) == 1297
    assert values["fid_samples"] == len(test) == 500
    assert values["kid"] > 3 * values["kid_se"] > 0  # blurred digits are told apart
    assert FrechetDistance.reference_values >= {"fid", "fid_floor", "kid_floor", "fid_samples"}
    assert set(FrechetDistance.higher_is_better) - FrechetDistance.reference_values == {
        "kid", "kid_inception"}


def test_fid_matches_the_reference_formula(digits, tmp_path):
    dataset, train, test = digits
    g = torch.Generator().manual_seed(1)
    samples = (test[:200] + 0.3 * torch.randn((200, 1, 8, 8), generator=g)).clamp(-1, 1)
    metric = FrechetDistance(budget="smoke", cache_dir=str(tmp_path))
    values = metric.compute(_ctx(dataset, samples, train, test))
    reference = train[: metric.hparams["n_reference"]]
    net = load_digits_feature_net()
    with torch.no_grad():
        f1 = net.features(from_uint8(to_uint8(samples))).double().numpy()
        f2 = net.features(from_uint8(to_uint8(reference))).double().numpy()
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert values["fid"] == pytest.approx(expected, rel=1e-3)


def test_fid_reference_and_floor_are_cached(digits, tmp_path, monkeypatch):
    from ebmbench_plugins.images.fidelity import DigitsFeatureExtractor

    dataset, train, test = digits
    seen: list[int] = []
    forward = DigitsFeatureExtractor.forward

    def counting(self, x):
        seen.append(len(x))
        return forward(self, x)

    monkeypatch.setattr(DigitsFeatureExtractor, "forward", counting)
    monkeypatch.setattr(fid_module, "_FLOORS", {})
    metric = FrechetDistance(budget="smoke", cache_dir=str(tmp_path), max_samples=150,
                             n_reference=0)
    samples = torch.rand((150, 1, 8, 8), generator=torch.Generator().manual_seed(2)) * 2 - 1

    start = time.perf_counter()
    first = metric.compute(_ctx(dataset, samples, train, test))
    first_seconds = time.perf_counter() - start
    # The samples, the whole training set (reference) and the held-out set (floors).
    assert sum(seen) == 150 + len(train) + len(test)
    seen.clear()
    start = time.perf_counter()
    second = metric.compute(_ctx(dataset, samples, train, test))
    second_seconds = time.perf_counter() - start
    assert sum(seen) == 150  # only the samples: reference and floor come from the cache
    assert second == first
    # A new process (empty in-memory floors) reuses the cache files too.
    monkeypatch.setattr(fid_module, "_FLOORS", {})
    seen.clear()
    assert metric.compute(_ctx(dataset, samples, train, test)) == first and sum(seen) == 150
    print(f"first call {first_seconds:.3f} s, cached call {second_seconds:.3f} s")


def test_inception_fid_without_weights_records_why(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    images = torch.zeros(20, 1, 28, 28)
    dataset = MNIST(data_dir=str(tmp_path))
    ctx = _ctx(dataset, images, images, images)
    assert FrechetDistance(budget="smoke").compute(ctx) == {}
    reason = ctx.artifacts["fid_unavailable"]
    assert "--fid-weights" in reason and str(tmp_path / "torch" / "hub" / "checkpoints") in reason
    ctx = _ctx(dataset, images, images, images)
    missing = tmp_path / "nope.pth"
    assert FrechetDistance(inception_weights=str(missing)).compute(ctx) == {}
    assert str(missing) in ctx.artifacts["fid_unavailable"]
    ctx = _ctx(dataset, images, images, images)
    assert FrechetDistance(extractor="digits").compute(ctx) == {}
    assert "1x8x8" in ctx.artifacts["fid_unavailable"]


def test_inception_path_feeds_rgb_uint8_and_names_values_apart(tmp_path, monkeypatch):
    """With a stand-in for Inception-v3: what reaches it, and how the values are named."""
    import torch_fidelity

    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"stand-in")
    calls: list[dict] = []

    class FakeInception(torch_fidelity.FeatureExtractorBase):
        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)
            calls.append(kwargs)
            self.proj = nn.Linear(3 * 28 * 28, 16).requires_grad_(False)
            torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))

        @staticmethod
        def get_provided_features_list():
            return ("2048",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return "2048"

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return None

        def forward(self, x):
            assert x.dtype == torch.uint8 and x.shape[1:] == (3, 28, 28)
            assert torch.equal(x[:, 0], x[:, 2])  # grey images repeated to RGB
            return (self.proj(x.flatten(1).float() / 255),)

    monkeypatch.setitem(torch_fidelity.registry.FEATURE_EXTRACTORS_REGISTRY,
                        "inception-v3-compat", FakeInception)
    g = torch.Generator().manual_seed(0)
    train, test = torch.rand(60, 1, 28, 28, generator=g) * 2 - 1, torch.rand(40, 1, 28, 28) * 2 - 1
    ctx = _ctx(MNIST(), torch.rand(30, 1, 28, 28) * 2 - 1, train, test)
    values = FrechetDistance(budget="smoke", inception_weights=str(weights),
                             cache_dir=str(tmp_path / "cache")).compute(ctx)
    assert set(values) == {"kid_inception", "kid_inception_se", "kid_inception_floor",
                           "kid_inception_floor_se", "fid_inception", "fid_inception_floor",
                           "fid_samples", "kid_samples"}
    assert values["kid_samples"] == 30 and ctx.artifacts["fid_extractor"] == "inception-v3-compat"
    assert all(c["feature_extractor_weights_path"] == str(weights) for c in calls)
    ranked = set(FrechetDistance.higher_is_better) - FrechetDistance.reference_values
    assert ranked == {"kid", "kid_inception"}
    # The cache is keyed by the weights as well: other weights, other reference entry.
    cached = {p.name for p in (tmp_path / "cache").iterdir()}
    assert any("-w" in name and "ebmbench-mnist-train" in name for name in cached)


def test_fid_skips_non_finite_samples(digits, tmp_path):
    dataset, train, test = digits
    samples = test[:50].clone()
    samples[0, 0, 0, 0] = float("nan")
    ctx = _ctx(dataset, samples, train, test)
    assert FrechetDistance(budget="smoke", cache_dir=str(tmp_path)).compute(ctx) == {}
    assert "non-finite" in ctx.artifacts["fid_unavailable"]


def test_image_metrics_apply_to_images_only(digits):
    from ebmbench import Combination

    toy = ebmbench.get_dataset("eight_gaussians", budget="smoke")
    combo = lambda ds: Combination(None, None, None, ds)  # noqa: E731
    for metric in (FrechetDistance(), SampleGrid()):
        assert metric.applies_to(combo(digits[0])) and not metric.applies_to(combo(toy))


# --------------------------------------------------------------------------- sample grid


def test_sample_grid_writes_a_png_of_the_samples(digits, tmp_path):
    from PIL import Image

    dataset, train, test = digits
    samples = -torch.ones(16, 1, 8, 8)
    samples[0] = 1.0  # first tile white, the others black
    ctx = _ctx(dataset, samples, train, test, artifact_dir=tmp_path / "run")
    assert SampleGrid(budget="smoke").compute(ctx) == {}
    path = tmp_path / "run" / ctx.artifacts["sample_grid"]
    image = np.asarray(Image.open(path).convert("L"))
    # 4×4 tiles of 8 px enlarged ×4 to 32 px, 2 px padding around each.
    assert image.shape == (4 * 34 + 2, 4 * 34 + 2)
    assert image[2:34, 2:34].min() == 255 and image[2:34, 36:68].max() == 0
    assert SampleGrid().compute(_ctx(dataset, samples, train, test)) == {}  # no folder: no file


# ------------------------------------------------------------------ KID and its standard error


def _polynomial_mmd2(mean_a, cov_a, mean_b, cov_b) -> float:
    """Exact MMD² of N(a) and N(b) under k(u, v) = (uᵀv/d + 1)³.

    (uᵀv/d + 1)³ = Σₖ C(3, k) d⁻ᵏ ⟨u^⊗k, v^⊗k⟩, so MMD² = Σₖ C(3, k) d⁻ᵏ ‖M_k(a) − M_k(b)‖²
    with the moment tensors M₁ = μ, M₂ = Σ + μμᵀ and
    M₃ = μ⊗μ⊗μ + (μ⊗Σ + its two index permutations) of a Gaussian.
    """
    def moments(mu, cov):
        m3 = torch.einsum("i,j,k->ijk", mu, mu, mu)
        m3 = m3 + torch.einsum("i,jk->ijk", mu, cov) + torch.einsum("j,ik->ijk", mu, cov) \
            + torch.einsum("k,ij->ijk", mu, cov)
        return mu, cov + torch.outer(mu, mu), m3

    d = len(mean_a)
    ma, mb = moments(mean_a, cov_a), moments(mean_b, cov_b)
    return sum(math.comb(3, k) / d**k * float((a - b).pow(2).sum())
               for k, a, b in zip((1, 2, 3), ma, mb, strict=True))


def test_kid_matches_torch_fidelity_and_a_brute_force_jackknife():
    from ebmbench_plugins.images.kid import kid_with_se, polynomial_kernel
    from torch_fidelity.metric_kid import kernel_mmd

    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64) + 0.3
    y = torch.randn(40, 5, generator=g, dtype=torch.float64)
    expected = kernel_mmd(x.numpy(), y.numpy(), kid_kernel="poly", kid_kernel_poly_degree=3,
                          kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1)
    assert kid_with_se(x, y, chunk=7)[0] == pytest.approx(float(expected), rel=1e-10)

    def kid(a, b):
        n, m = len(a), len(b)
        kaa, kbb = polynomial_kernel(a, a), polynomial_kernel(b, b)
        return float((kaa.sum() - kaa.trace()) / (n * (n - 1))
                     + (kbb.sum() - kbb.trace()) / (m * (m - 1))
                     - 2 * polynomial_kernel(a, b).mean())

    y = y[:31]
    drop_x = torch.tensor([kid(torch.cat([x[:i], x[i + 1:]]), y) for i in range(len(x))])
    drop_y = torch.tensor([kid(x, torch.cat([y[:j], y[j + 1:]])) for j in range(len(y))])
    var = (39 / 40 * (drop_x - drop_x.mean()).pow(2).sum()
           + 30 / 31 * (drop_y - drop_y.mean()).pow(2).sum())
    value, se = kid_with_se(x, y, chunk=7)
    assert value == pytest.approx(kid(x, y), rel=1e-10)
    assert se == pytest.approx(float(var.sqrt()), rel=1e-6)


@pytest.mark.parametrize("shift", [0.0, 0.75])
def test_kid_interval_covers_the_exact_mmd2(shift):
    """Over 100 independent draws, KID ± 2 se covers the exact MMD² of two Gaussians at
    least 90 % of the time: with no difference (MMD² = 0) and with one."""
    from ebmbench_plugins.images.kid import kid_with_se

    d = 4
    g = torch.Generator().manual_seed(10 + int(100 * shift))
    mean_b = torch.zeros(d, dtype=torch.float64)
    mean_b[0] = shift
    cov_b = torch.eye(d, dtype=torch.float64) * (1 + shift)
    truth = _polynomial_mmd2(torch.zeros(d, dtype=torch.float64), torch.eye(d, dtype=torch.float64),
                             mean_b, cov_b)
    assert (truth == 0) == (shift == 0)
    covered, trials = 0, 100
    for _ in range(trials):
        x = torch.randn(150, d, generator=g, dtype=torch.float64)
        y = mean_b + torch.randn(200, d, generator=g, dtype=torch.float64) @ cov_b.sqrt()
        value, se = kid_with_se(x, y)
        covered += abs(value - truth) <= 2 * se
    assert covered >= 0.9 * trials, f"coverage {covered}/{trials}"
    if shift:  # the test has teeth: the difference is many standard errors
        assert truth > 3 * se


def test_kid_of_two_halves_of_the_same_digits_is_zero_within_its_error(digits):
    """Disjoint halves of the training digits (the same distribution, both seen by the
    extractor): KID ± 2 se contains 0 for at least 90 % of 40 random splits."""
    from ebmbench_plugins.images.fidelity import features
    from ebmbench_plugins.images.kid import kid_with_se

    _, train, _ = digits
    feats = features(to_uint8(train), extractor=DIGITS_EXTRACTOR)
    g = torch.Generator().manual_seed(4)
    covered = 0
    for _ in range(40):
        perm = torch.randperm(len(feats), generator=g)
        value, se = kid_with_se(feats[perm[:648]], feats[perm[648:]])
        covered += abs(value) <= 2 * se
    assert covered >= 36, f"coverage {covered}/40"
