"""torch-fidelity glue: the digits feature extractor, uint8 inputs, cached features, FID.

Imported lazily (by the ``fid`` metric's ``compute``), so that listing plugins does not
import torch-fidelity and torchvision.

Offline rules this module follows (measured with torch-fidelity 0.4): inputs are a torch
``Dataset`` whose items are uint8 tensors; ``cuda`` must be False without a GPU;
``save_cpu_ram=True`` avoids DataLoader worker processes. Features are cached here (not by
torch-fidelity, which loads its cache with ``weights_only=False``) under names that carry
the images' hash, the extractor's name and, for Inception, a hash of the weights.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import torch
import torch_fidelity
from torch import Tensor
from torch.utils.data import Dataset

from .digits_net import DIGITS_EXTRACTOR, DigitsFeatureNet, from_uint8, load_digits_feature_net

__all__ = [
    "DigitsFeatureExtractor",
    "Uint8Images",
    "ensure_registered",
    "content_name",
    "features",
    "fid_statistics",
    "fid_from_features",
]


class Uint8Images(Dataset):
    """A torch ``Dataset`` over a uint8 (N, C, H, W) tensor; items are bare tensors."""

    def __init__(self, images: Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected uint8 (N, C, H, W), not {images.dtype} {images.shape}")
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Tensor:
        return self.images[i]


class DigitsFeatureExtractor(torch_fidelity.FeatureExtractorBase):
    """torch-fidelity extractor over :class:`~.digits_net.DigitsFeatureNet`.

    Features: ``"features"`` (64-d penultimate activation; FID, KID) and ``"logits"`` (10;
    the Inception Score). Input: uint8 (B, 1, 8, 8); (B, 3, 8, 8) is averaged to grey.
    """

    def __init__(self, name: str, features_list: list[str], **kwargs: Any) -> None:
        # **kwargs: torch-fidelity passes every calculate_metrics keyword to extractors.
        super().__init__(name, features_list)
        self.net: DigitsFeatureNet = load_digits_feature_net()

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("features", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "logits" if metric == "isc" else "features"

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:
        return torch.zeros(1, 1, 8, 8, dtype=torch.uint8)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        # torch-fidelity checks nothing for custom extractors.
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3) \
                or tuple(x.shape[2:]) != (8, 8):
            raise ValueError(f"expected uint8 (B, 1|3, 8, 8), got {x.dtype} {tuple(x.shape)}")
        h = from_uint8(x).mean(dim=1, keepdim=True)
        feats = self.net.features(h)
        out = {"features": feats, "logits": self.net.out(feats)}
        return tuple(out[name] for name in self.features_list)


def ensure_registered() -> None:
    """Register the digits extractor with torch-fidelity, once per process.

    torch-fidelity raises on a second registration of a name, and this may be called by
    every FID computation.
    """
    if DIGITS_EXTRACTOR not in torch_fidelity.registry.FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(DIGITS_EXTRACTOR, DigitsFeatureExtractor)


def content_name(prefix: str, images: Tensor) -> str:
    """A cache name unique to ``images``' bytes: ``prefix-n<N>-<16 hex of SHA-256>``.

    >>> content_name("digits-train", torch.zeros(2, 1, 8, 8, dtype=torch.uint8))[:16]
    'digits-train-n2-'
    """
    data = images.contiguous().cpu().numpy().tobytes()
    digest = hashlib.sha256(repr(tuple(images.shape)).encode() + data).hexdigest()[:16]
    return f"{prefix}-n{len(images)}-{digest}"


def features(
    images: Tensor,
    *,
    extractor: str,
    name: str | None = None,
    cache_root: Path | None = None,
    weights: Path | None = None,
    cuda: bool = False,
    batch_size: int = 64,
) -> Tensor:
    """The extractor's FID/KID features of uint8 images, (n, d) float64 on the CPU.

    Extracted by torch-fidelity (its default FID layer of ``extractor``). With a ``name``
    and a ``cache_root`` they are cached there as ``<name>-<extractor>-features.pt`` and
    loaded with ``weights_only=True`` (a tensor); the name must change with the images and
    the weights (see :func:`content_name`).
    """
    if extractor == DIGITS_EXTRACTOR:
        ensure_registered()
    path = None
    if name is not None and cache_root is not None:
        path = Path(cache_root) / f"{name}-{extractor}-features.pt"
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):
            pass
    from torch_fidelity.utils import (
        create_feature_extractor,
        get_featuresdict_from_dataset,
        resolve_feature_layer_for_metric,
    )

    kwargs: dict[str, Any] = dict(
        feature_extractor=extractor,
        feature_extractor_weights_path=None if weights is None else str(weights),
        cuda=cuda, verbose=False,
    )
    layer = resolve_feature_layer_for_metric("fid", **kwargs)
    net = create_feature_extractor(extractor, [layer], **kwargs)
    out = get_featuresdict_from_dataset(Uint8Images(images), net, batch_size, cuda,
                                        True, False)[layer].to("cpu", torch.float64)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # atomic: runs may share the folder
        torch.save(out, tmp)
        os.replace(tmp, path)
    return out


def fid_statistics(feats: Tensor) -> dict[str, Any]:
    """The mean and covariance FID compares (torch-fidelity's, float64)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics

    return fid_features_to_statistics(feats.to(torch.float64))


def fid_from_features(feats: Tensor, reference: dict[str, Any]) -> float:
    """FID = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½) between ``feats`` and ``reference``'s
    :func:`fid_statistics` (Heusel et al. 2017), by torch-fidelity."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    return float(fid_statistics_to_metric(fid_statistics(feats), reference, False)[KEY_METRIC_FID])
