"""torch-fidelity glue: the digits feature extractor, uint8 inputs, cached FID and KID.

Imported lazily (by the ``fid`` metric's ``compute``), so that listing plugins does not
import torch-fidelity and torchvision.

Offline rules this module follows (measured with torch-fidelity 0.4): inputs are a torch
``Dataset`` whose items are uint8 tensors; ``cuda`` must be False without a GPU;
``save_cpu_ram=True`` avoids DataLoader worker processes; ``kid_subset_size`` must not
exceed the sample count; the cache (``cache_root`` + ``input*_cache_name``) keys on the
extractor's *name* only, so weights are versioned in names.
"""

from __future__ import annotations

import hashlib
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
    "fid_kid",
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


def fid_kid(
    images: Tensor,
    reference: Tensor,
    *,
    reference_name: str,
    extractor: str,
    cache_root: Path,
    images_name: str | None = None,
    weights: Path | None = None,
    cuda: bool = False,
    kid: bool = True,
    kid_subsets: int = 100,
    batch_size: int = 64,
) -> dict[str, float]:
    """FID and KID between two uint8 image sets; ``reference`` statistics are cached.

    FID = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½) on the extractor's features (Heusel et
    al. 2017). KID is the unbiased MMD² with the cubic kernel k(a, b) = (aᵀb/d + 1)³,
    averaged over ``kid_subsets`` random subsets of min(1000, n) (Bińkowski et al. 2018).

    Returns:
        ``fid``, and unless ``kid`` is False, ``kid`` and ``kid_std`` (the spread of the
        subset estimates).
    """
    if extractor == DIGITS_EXTRACTOR:
        ensure_registered()
    n = min(len(images), len(reference))
    out = torch_fidelity.calculate_metrics(
        input1=Uint8Images(images),
        input2=Uint8Images(reference),
        input1_cache_name=images_name,
        input2_cache_name=reference_name,
        cache_root=str(cache_root),
        feature_extractor=extractor,
        feature_extractor_weights_path=None if weights is None else str(weights),
        fid=True,
        kid=kid,
        kid_subsets=kid_subsets,
        kid_subset_size=min(1000, n),
        batch_size=batch_size,
        cuda=cuda,
        save_cpu_ram=True,
        verbose=False,
    )
    values = {"fid": float(out["frechet_inception_distance"])}
    if kid:
        values["kid"] = float(out["kernel_inception_distance_mean"])
        values["kid_std"] = float(out["kernel_inception_distance_std"])
    return values
