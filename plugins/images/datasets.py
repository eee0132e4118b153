"""Image datasets scaled to [-1, 1]: scikit-learn's digits (offline) and torchvision's sets.

Every set is a fixed function of its parameters: the train/test split, the training subset
and the dequantisation noise are drawn from generators seeded by constants, not by the run
seed, so every method, seed and process sees the same images and the FID reference
statistics (keyed by the images' content) are computed once.

Scaling. Pixels are integer levels k ∈ {0, …, L−1} (L = 17 for digits, 256 for the others).
Without dequantisation x = 2k/(L−1) − 1, exactly in [−1, 1]. With uniform dequantisation
(Theis et al. 2016, "A note on the evaluation of generative models", sec. 3.1)
x = 2(k + u)/L − 1 with u ~ U[0, 1), which spreads each level over its own bin so that a
continuous density is meaningful on discrete data.
"""

from __future__ import annotations

import functools
import os
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from ebmbench import ImageDataset, Param, UserError

from .paths import data_dir

__all__ = [
    "Digits",
    "MNIST",
    "FashionMNIST",
    "CIFAR10",
    "TorchvisionImages",
    "LevelImages",
    "digits_split",
    "levels_to_unit_range",
    "DIGITS_LEVELS",
]

#: Grey levels of scikit-learn's digits (values 0..16).
DIGITS_LEVELS = 17
#: Held-out digits; stratified, so every class keeps its share.
DIGITS_N_TEST = 500
#: Training digits: the other 1297 of scikit-learn's 1797.
DIGITS_N_TRAIN = 1797 - DIGITS_N_TEST
# Constants, not the run seed: the data must not change between runs (module docstring).
_SPLIT_SEED = 0
_SUBSET_SEED = 1
_DEQUANT_SEED = 2


def levels_to_unit_range(
    levels: Tensor, n_levels: int, *, dequantize: bool, seed: int = _DEQUANT_SEED
) -> Tensor:
    """Map integer levels 0..L−1 to float32 in [−1, 1] (see the module docstring).

    >>> levels_to_unit_range(torch.tensor([0, 8, 16]), 17, dequantize=False).tolist()
    [-1.0, 0.0, 1.0]
    >>> x = levels_to_unit_range(torch.tensor([0, 16]), 17, dequantize=True)
    >>> bool((x >= -1).all() and (x < 1).all())
    True
    """
    k = levels.to(torch.float32)
    if not dequantize:
        return 2 * k / (n_levels - 1) - 1
    u = torch.rand(k.shape, generator=torch.Generator().manual_seed(seed))
    return 2 * (k + u) / n_levels - 1


def _subset(x: Tensor, n: int, seed: int) -> Tensor:
    """The first ``n`` of a fixed permutation (all of ``x`` when ``n`` is 0 or too large)."""
    if n <= 0 or n >= len(x):
        return x
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return x[order[:n]]


class LevelImages(ImageDataset):
    """Images stored as integer levels 0..``n_levels``−1, scaled once per instance.

    Subclasses implement :meth:`levels`; :meth:`load` scales (and, with the ``dequantize``
    parameter, dequantises) them and keeps the result, since the harness asks for the
    training and the test set separately.
    """

    n_levels: ClassVar[int] = 256
    # A conv energy step costs far more than a 2-D MLP step on a CPU: at smoke and quick,
    # image runs train for fewer, smaller batches and draw fewer evaluation samples, so
    # that `ebmbench run --all` stays within a laptop's budget. `full` keeps the defaults.
    # Images take smaller batches; how many updates a method takes is what the image
    # compute budget buys (ebmbench.budgets), with a low cap at smoke to keep tests quick.
    method_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"steps": 10, "batch_size": 32},
        "quick": {"batch_size": 64},
    }
    eval_samples: ClassVar[dict[str, int]] = {"smoke": 128, "quick": 500}

    @abstractmethod
    def levels(self) -> tuple[Tensor, Tensor]:
        """(train, test) as uint8 levels, shape (N, C, H, W)."""

    def load(self) -> tuple[Tensor, Tensor]:
        if getattr(self, "_loaded", None) is None:
            train, test = self.levels()
            dq = self.hparams["dequantize"]
            # Different noise seeds for train and test: one shared draw would correlate them.
            self._loaded = (
                levels_to_unit_range(train, self.n_levels, dequantize=dq, seed=_DEQUANT_SEED),
                levels_to_unit_range(test, self.n_levels, dequantize=dq, seed=_DEQUANT_SEED + 1),
            )
        return self._loaded


@functools.lru_cache(maxsize=1)
def digits_split() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's 1797 digits split once: (x_train, y_train, x_test, y_test).

    Images are uint8 levels 0..16 of shape (N, 1, 8, 8); the split is stratified with a
    fixed seed (1297 train / 500 test), shared by the dataset plugin and the script that
    trains the FID feature extractor, so the held-out digits are unseen by both.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.uint8).unsqueeze(1)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    train_idx, test_idx = train_test_split(
        torch.arange(len(labels)).numpy(),
        test_size=DIGITS_N_TEST,
        stratify=labels.numpy(),
        random_state=_SPLIT_SEED,
    )
    train_idx, test_idx = torch.as_tensor(train_idx), torch.as_tensor(test_idx)
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]


class Digits(LevelImages):
    """scikit-learn's handwritten digits (Alpaydin & Kaynak 1998): 1×8×8, 17 grey levels.

    Offline and small: the default image dataset. A fixed stratified split gives 1297
    training and 500 held-out images.

    >>> train, test = Digits(budget="smoke").load()
    >>> tuple(train.shape), tuple(test.shape)
    ((512, 1, 8, 8), (500, 1, 8, 8))
    >>> bool(train.min() >= -1 and train.max() <= 1)
    True
    """

    name = "digits"
    description = "scikit-learn digits, 1x8x8, fixed 1297/500 split, offline (default images)"
    image_shape = (1, 8, 8)
    params = {
        "n_train": Param(0, "training images (0 = all 1297)", smoke=512, low=0),
        "dequantize": Param(True, "add uniform noise within each of the 17 grey levels"),
    }

    n_levels = DIGITS_LEVELS
    # Evaluation draws 500 samples at quick, as for every image set: as many as the held-out
    # digits, so a model's KID and FID are measured at the n of their floors. (Until
    # 2026-11-30 it drew 1297, one per training digit: three quarters of the default sweep's
    # sampling time, for a KID standard error about √(1297/500) ≈ 1.6 times smaller.)

    def levels(self) -> tuple[Tensor, Tensor]:
        x_train, _, x_test, _ = digits_split()
        return _subset(x_train, self.hparams["n_train"], _SUBSET_SEED), x_test


# --------------------------------------------------------------------------- torchvision

# (class name, data folder, train) → uint8 (N, C, H, W); a process loads each file once.
_RAW_CACHE: dict[tuple[str, str, bool], Tensor] = {}
# The same key → why it could not be loaded. A sweep loads a dataset once per task; offline,
# each attempt would try the network again (and wait for it, on a slow-to-fail network).
_UNAVAILABLE: dict[tuple[str, str, bool], str] = {}


class TorchvisionImages(LevelImages):
    """A torchvision dataset, loaded lazily once per process, scaled to [−1, 1].

    Subclasses set ``tv_name`` (the torchvision class), ``layout`` (where the files go
    under the data folder) and ``files`` (how to provide them; ``{folder}`` and ``{root}``
    are filled in). Offline without a local copy, :meth:`load` raises
    :class:`~ebmbench.UserError` saying where it looked and how to provide the files; the
    harness records that run as skipped.
    """

    tv_name: ClassVar[str] = ""
    layout: ClassVar[str] = ""
    files: ClassVar[str] = ""
    params = {
        "data_dir": Param(
            "", "dataset folder (default: $EBMBENCH_DATA_DIR, else ~/.cache/ebmbench/data)"
        ),
        "download": Param(True, "download when there is no local copy (needs the network)"),
        "n_train": Param(10_000, "training images (0 = all)", smoke=512, full=0, low=0),
        "n_test": Param(2_000, "held-out images (0 = all)", smoke=500, full=0, low=0),
        "dequantize": Param(False, "add uniform noise within each of the 256 grey levels"),
    }

    n_levels = 256

    def levels(self) -> tuple[Tensor, Tensor]:
        root = data_dir(self.hparams["data_dir"])
        train = _subset(self._raw(root, True), self.hparams["n_train"], _SUBSET_SEED)
        test = _subset(self._raw(root, False), self.hparams["n_test"], _SUBSET_SEED + 1)
        return train, test

    def fetch(self, download: bool = True) -> str:
        """Download the training and test files where there is a network (``ebmbench
        data``), or raise a :class:`~ebmbench.UserError` saying which files to put where."""
        root = data_dir(self.hparams["data_dir"])
        train, test = (self._raw(root, split, download=download) for split in (True, False))
        return (f"{self.name}: {len(train)} training and {len(test)} test images "
                f"{tuple(train.shape[1:])} in {root / self.layout}")

    def _raw(self, root: Path, train: bool, download: bool | None = None) -> Tensor:
        key = (self.tv_name, str(root), train)
        download = self.hparams["download"] if download is None else download
        if download and key in _UNAVAILABLE:
            raise UserError(_UNAVAILABLE[key])
        if key not in _RAW_CACHE:
            try:
                _RAW_CACHE[key] = self._read(root, train, download)
            except UserError as exc:
                if download:
                    _UNAVAILABLE[key] = str(exc)
                raise
        return _RAW_CACHE[key]

    def _read(self, root: Path, train: bool, download: bool) -> Tensor:
        import torchvision

        folder = root / self.layout
        existed = {p: p.exists() for p in (root, folder, *folder.parents)}
        try:
            ds = getattr(torchvision.datasets, self.tv_name)(
                str(root), train=train, download=download
            )
        except (RuntimeError, OSError) as exc:  # URLError is an OSError
            _remove_empty_dirs_we_made(existed)
            if download:  # the last line names the network error (MNIST lists mirrors)
                lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
                tried = f"the download failed ({lines[-1] if lines else type(exc).__name__})"
            else:
                tried = "download is off (download=false)"
            how = self.files.format(folder=folder, root=root)
            raise UserError(
                f"dataset {self.name}: no usable local copy of {self.tv_name} in {folder} and "
                f"{tried}. To use it offline, {how}; or point --data-dir (the "
                f"dataset's data_dir parameter, or $EBMBENCH_DATA_DIR) at a folder holding "
                f"{self.layout}/; or run once with network access."
            ) from exc
        data = torch.as_tensor(ds.data)
        # MNIST-like sets are (N, H, W); CIFAR is (N, H, W, C) as a numpy array.
        data = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)
        return data.to(torch.uint8).contiguous()


def _remove_empty_dirs_we_made(existed: dict[Path, bool]) -> None:
    """Undo torchvision's empty ``raw/`` folder after a failed offline download."""
    for path in sorted(existed, key=lambda p: len(p.parts), reverse=True):
        if not existed[path] and path.is_dir() and not any(path.iterdir()):
            path.rmdir()


_MNIST_FILES = (
    "put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
    "and t10k-labels-idx1-ubyte.gz into {folder}/ (with download=true they are unpacked "
    "there without the network)"
)


class MNIST(TorchvisionImages):
    """MNIST handwritten digits (LeCun et al. 1998), 1×28×28, through torchvision."""

    name = "mnist"
    description = "MNIST digits 1x28x28 via torchvision (needs a local copy offline)"
    image_shape = (1, 28, 28)
    tv_name = "MNIST"
    layout = os.path.join("MNIST", "raw")
    files = _MNIST_FILES


class FashionMNIST(TorchvisionImages):
    """Fashion-MNIST (Xiao et al. 2017), 1×28×28, through torchvision."""

    name = "fashion_mnist"
    description = "Fashion-MNIST 1x28x28 via torchvision (needs a local copy offline)"
    image_shape = (1, 28, 28)
    tv_name = "FashionMNIST"
    layout = os.path.join("FashionMNIST", "raw")
    files = _MNIST_FILES


class CIFAR10(TorchvisionImages):
    """CIFAR-10 (Krizhevsky 2009), 3×32×32, through torchvision."""

    name = "cifar10"
    description = "CIFAR-10 3x32x32 via torchvision (needs a local copy offline)"
    image_shape = (3, 32, 32)
    tv_name = "CIFAR10"
    layout = "cifar-10-batches-py"
    files = (
        "put the unpacked python batches (data_batch_1..5, test_batch, batches.meta) into "
        "{folder}/, or cifar-10-python.tar.gz into {root}/ with download=true"
    )
