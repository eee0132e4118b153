"""Convolutional energies f_θ: (B, C, H, W) → (B,), with smooth (SiLU) activations.

Both down-sample by 2 until the feature map is at most 4×4, average the map (so any input
size works), and end in one linear unit: f_θ(x) is the log of the unnormalised density.
SiLU (Swish, Ramachandran et al. 2017) keeps f twice differentiable with a non-zero Hessian,
which exact score matching needs (ERRATA 4) and gradient-based samplers prefer.

Options shared by both:

- ``spectral_norm``: divide every weight by its largest singular value, estimated by one
  power iteration per training forward (Miyato et al. 2018); for a convolution this is the
  norm of the kernel reshaped to (out, in·k·k). It limits how fast f can change, which
  Du & Mordatch (2019) use to keep Langevin-trained energies stable.
- ``mixed_precision``: run the network under bf16 autocast on CUDA; ignored on the CPU. The
  output is always float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ebmbench import Architecture, Param

__all__ = [
    "ConvNetEnergy",
    "ResNetEnergy",
    "ImageEnergy",
    "ConvNet",
    "ResNet",
    "ResidualBlock",
    "weight_layers",
]


def _halvings(size: int) -> int:
    """How many stride-2 stages bring ``size`` down to at most 4 (at least one)."""
    n = 1
    while (size := (size + 1) // 2) > 4:
        n += 1
    return n


def weight_layers(module: nn.Module) -> list[nn.Module]:
    """The convolutions and linear layers of ``module`` (those spectral norm applies to)."""
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


class ImageEnergy(nn.Module):
    """Wraps a network (B, C, H, W) → (B, 1): checks the input, autocasts, returns (B,) float32."""

    def __init__(self, net: nn.Module, *, spectral_norm: bool, mixed_precision: bool) -> None:
        super().__init__()
        if spectral_norm:
            for layer in weight_layers(net):
                nn.utils.parametrizations.spectral_norm(layer)
        self.net = net
        self.mixed_precision = mixed_precision

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected images (B, C, H, W), got shape {tuple(x.shape)}")
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.mixed_precision
                            and x.is_cuda):
            out = self.net(x)
        return out.squeeze(-1).float()


class ConvNet(nn.Module):
    """conv3×3 → [SiLU, conv4×4 stride 2 (×2 channels)]* → SiLU, conv3×3 → mean → linear.

    The shape of the short-run EBM ConvNet of Nijkamp et al. (2019), with SiLU and global
    average pooling in place of LeakyReLU and a last valid convolution.
    """

    def __init__(self, shape: tuple[int, int, int], channels: int) -> None:
        super().__init__()
        c_in, h, w = shape
        layers: list[nn.Module] = [nn.Conv2d(c_in, channels, 3, padding=1)]
        width = channels
        for _ in range(_halvings(max(h, w))):
            layers += [nn.SiLU(), nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)]
            width *= 2
        layers += [nn.SiLU(), nn.Conv2d(width, width, 3, padding=1), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


class ResidualBlock(nn.Module):
    """h = x' + conv(SiLU(conv(SiLU(x)))), then 2×2 average pooling when down-sampling.

    x' is x, or a 1×1 convolution of x when the width changes (He et al. 2016, pre-activation
    form; the IGEBM blocks of Du & Mordatch 2019 have the same layout).
    """

    def __init__(self, c_in: int, c_out: int, *, down: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.down = down

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(F.silu(self.conv1(F.silu(x)))) + self.skip(x)
        return F.avg_pool2d(h, 2, ceil_mode=True) if self.down else h


class ResNet(nn.Module):
    """conv3×3 → stages of residual blocks → SiLU → mean → linear.

    The last block of each stage halves H and W and doubles the channels.
    """

    def __init__(self, shape: tuple[int, int, int], channels: int, blocks: int) -> None:
        super().__init__()
        c_in, h, w = shape
        self.stem = nn.Conv2d(c_in, channels, 3, padding=1)
        layers: list[nn.Module] = []
        width = channels
        for _ in range(_halvings(max(h, w))):
            for b in range(blocks):
                last = b == blocks - 1
                out = 2 * width if last else width
                layers.append(ResidualBlock(width, out, down=last))
                width = out
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = F.silu(self.blocks(self.stem(x)))
        return self.head(h.mean(dim=(2, 3)))


_COMMON = {
    "spectral_norm": Param(False, "spectral normalisation of every layer (Miyato et al. 2018)"),
    "mixed_precision": Param(False, "bf16 autocast on CUDA (ignored on the CPU)"),
}


class _ConvArchitecture(Architecture):
    data_kinds = frozenset({"image"})
    features = frozenset({"nonzero_hessian"})

    def _wrap(self, net: nn.Module) -> ImageEnergy:
        return ImageEnergy(net, spectral_norm=self.hparams["spectral_norm"],
                           mixed_precision=self.hparams["mixed_precision"])

    @staticmethod
    def _check(shape: tuple[int, ...]) -> tuple[int, int, int]:
        if len(shape) != 3:
            raise ValueError(f"convolutional energies take images (C, H, W), not {shape}")
        return shape  # type: ignore[return-value]


class ConvNetEnergy(_ConvArchitecture):
    """A small IGEBM/JEM-style ConvNet energy with SiLU, for images (C, H, W).

    >>> net = ConvNetEnergy(budget="smoke").build((1, 8, 8))
    >>> net(torch.zeros(5, 1, 8, 8)).shape
    torch.Size([5])
    """

    name = "convnet"
    description = "Small ConvNet energy (SiLU, stride-2 convs, mean pool) for images"
    params = {"channels": Param(8, "width of the first layer (doubles per stage)", smoke=4,
                                full=64, low=1)} | _COMMON

    def build(self, shape: tuple[int, ...]) -> nn.Module:
        return self._wrap(ConvNet(self._check(shape), self.hparams["channels"]))


class ResNetEnergy(_ConvArchitecture):
    """A small pre-activation ResNet energy with SiLU (IGEBM-style blocks), for images.

    >>> net = ResNetEnergy(budget="smoke").build((3, 32, 32))
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2])
    """

    name = "resnet"
    description = "Small ResNet energy (SiLU pre-activation blocks, avg-pool) for images"
    params = {
        "channels": Param(8, "width of the first stage (doubles per stage)", smoke=4, full=64,
                          low=1),
        "blocks": Param(1, "residual blocks per stage", full=2, low=1),
    } | _COMMON

    def build(self, shape: tuple[int, ...]) -> nn.Module:
        shape = self._check(shape)
        return self._wrap(ResNet(shape, self.hparams["channels"], self.hparams["blocks"]))
