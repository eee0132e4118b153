"""The small digit classifier whose penultimate layer is the FID feature space for "digits".

Inception-v3 features mean little on 8×8 images, so FID on digits uses a classifier
trained on the digits themselves (as Inception is trained on natural images): features
that separate the classes are what a sample's quality is judged by. It is trained by
``scripts/train_digits_features.py`` (fixed seed, CPU, seconds) on the *training* split
only, so the held-out digits are as new to it as fresh samples from the data distribution
would be; that makes the FID of held-out data (the floor) what a perfect sampler gets.

The weights ship in this package as ``digits_features_v1.pt``. Any change to the network,
its training or its weights must bump the version in both the file name and
:data:`DIGITS_EXTRACTOR`: torch-fidelity's cache keys on the extractor's name only.
"""

from __future__ import annotations

import functools
from importlib import resources

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DigitsFeatureNet",
    "DIGITS_EXTRACTOR",
    "WEIGHTS_FILE",
    "load_digits_feature_net",
    "to_uint8",
    "from_uint8",
]

#: torch-fidelity name of the extractor; versioned together with the weights file.
DIGITS_EXTRACTOR = "ebmbench-digits-v1"
#: The weights, shipped as package data next to this module.
WEIGHTS_FILE = "digits_features_v1.pt"


def to_uint8(x: Tensor) -> Tensor:
    """Images in [−1, 1] to uint8 0..255 (clamped, rounded), as torch-fidelity takes them.

    >>> to_uint8(torch.tensor([-1.0, 0.0, 1.0, 3.0])).tolist()
    [0, 128, 255, 255]
    """
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_uint8(x: Tensor) -> Tensor:
    """uint8 0..255 back to float32 in [−1, 1]."""
    return x.to(torch.float32) / 127.5 - 1


class DigitsFeatureNet(nn.Module):
    """conv3×3(16) → conv3×3(32) → pool → conv3×3(32) → pool → linear(64) → linear(10).

    SiLU after every hidden layer. :meth:`features` is the 64-d penultimate activation
    (the FID/KID feature space); :meth:`forward` returns the 10 class logits.
    Input: (B, 1, 8, 8) float in [−1, 1].
    """

    feature_dim = 64

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 2 * 2, self.feature_dim)
        self.out = nn.Linear(self.feature_dim, 10)

    def features(self, x: Tensor) -> Tensor:
        h = F.silu(self.conv1(x))
        h = F.avg_pool2d(F.silu(self.conv2(h)), 2)
        h = F.avg_pool2d(F.silu(self.conv3(h)), 2)
        return F.silu(self.fc(h.flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x))


@functools.lru_cache(maxsize=1)
def _state_dict() -> dict[str, Tensor]:
    ref = resources.files(__package__).joinpath(WEIGHTS_FILE)
    with ref.open("rb") as fh:
        return torch.load(fh, map_location="cpu", weights_only=True)


def load_digits_feature_net() -> DigitsFeatureNet:
    """A fresh :class:`DigitsFeatureNet` with the shipped weights, in eval mode, frozen.

    >>> net = load_digits_feature_net()
    >>> net.features(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 64])
    """
    net = DigitsFeatureNet()
    net.load_state_dict(_state_dict())
    return net.eval().requires_grad_(False)
