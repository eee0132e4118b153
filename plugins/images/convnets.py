"""Convolutional energies f_θ: (B, C, H, W) → (B,).

All down-sample by 2 until the feature map is at most 4×4, average the map (so any input
size works), and end in one linear unit: f_θ(x) is the log of the unnormalised density.
``convnet`` and ``resnet`` are small networks with SiLU (Swish, Ramachandran et al. 2017),
which keeps f twice differentiable with a non-zero Hessian, as exact score matching needs
(ERRATA 4) and gradient-based samplers prefer. ``wide_resnet`` is the IGEBM/JEM-style
energy (Du & Mordatch 2019; Grathwohl et al. 2020) sized by budget, the reference image
energy.

Options shared by all:

- ``spectral_norm``: divide every weight by its largest singular value, estimated by one
  power iteration per training forward (Miyato et al. 2018); for a convolution this is the
  norm of the kernel reshaped to (out, in·k·k). It limits how fast f can change, which
  Du & Mordatch (2019) use to keep Langevin-trained energies stable.
- ``precision``: ``fp32``, or ``bf16``: the convolutions under bf16 autocast (on CUDA or
  the CPU), the final linear unit, which gives f, in float32 (see
  :mod:`ebmbench.precision`). The output is float32 either way.
"""

from __future__ import annotations

import functools

import torch  # noqa: F401  (the doctests use it)
import torch.nn.functional as F
from torch import Tensor, nn

from ebmbench import Architecture, Param, autocast_for, precision_param

__all__ = [
    "ConvNetEnergy",
    "ResNetEnergy",
    "WideResNetEnergy",
    "ImageEnergy",
    "ConvNet",
    "ResNet",
    "WideResNet",
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
    """Wraps a network with ``embed`` ((B, C, H, W) → (B, width)) and ``head`` (width → 1):
    checks the input, runs ``embed`` at ``precision`` and ``head`` in x's dtype; (B,)."""

    def __init__(self, net: nn.Module, *, spectral_norm: bool, precision: str = "fp32") -> None:
        super().__init__()
        if spectral_norm:
            for layer in weight_layers(net):
                nn.utils.parametrizations.spectral_norm(layer)
        self.net = net
        self.numeric_precision = precision

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected images (B, C, H, W), got shape {tuple(x.shape)}")
        with autocast_for(self.numeric_precision, x):
            h = self.net.embed(x)
        return self.net.head(h.to(x.dtype)).squeeze(-1)


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

    def embed(self, x: Tensor) -> Tensor:
        """The pooled features, (B, width)."""
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))


_ACTIVATIONS = {"swish": F.silu, "leaky_relu": functools.partial(F.leaky_relu, negative_slope=0.2)}


class ResidualBlock(nn.Module):
    """h = x' + conv(σ(conv(σ(x)))), then 2×2 average pooling when down-sampling.

    x' is x, or a 1×1 convolution of x when the width changes (He et al. 2016, pre-activation
    form; the IGEBM blocks of Du & Mordatch 2019 have the same layout). σ is SiLU (Swish),
    or LeakyReLU with slope 0.2 as in JEM (``activation="leaky_relu"``).
    """

    def __init__(self, c_in: int, c_out: int, *, down: bool, activation: str = "swish") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.down = down
        self.act = _ACTIVATIONS[activation]

    def forward(self, x: Tensor) -> Tensor:
        act = self.act
        h = self.conv2(act(self.conv1(act(x)))) + self.skip(x)
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

    def embed(self, x: Tensor) -> Tensor:
        """The pooled features, (B, width)."""
        return F.silu(self.blocks(self.stem(x))).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))


class WideResNet(nn.Module):
    """conv3×3 → stages of wide residual blocks → σ → mean → linear.

    Stage s has width ``width`` × (1, 2, 2, 2, …)[s] and ``blocks`` residual blocks, the
    first of which changes the width and halves H and W (2×2 average pooling), one stage
    per halving down to at most 4×4. With width 128 and 2 blocks on 32×32 this is the
    CIFAR-10 energy of IGEBM (Du & Mordatch 2019, appendix: conv 128; ResBlock down 128,
    ResBlock 128; ResBlock down 256, ResBlock 256; ResBlock down 256, ResBlock 256; pool;
    dense), with mean instead of sum pooling so that step sizes do not scale with the image
    area. JEM (Grathwohl et al. 2020) uses a wider and deeper WRN-28-10 with LeakyReLU and
    no normalisation: ``activation="leaky_relu"``, ``spectral_norm=False``, a larger width.
    """

    def __init__(self, shape: tuple[int, int, int], width: int, blocks: int,
                 activation: str) -> None:
        super().__init__()
        c_in, h, w = shape
        self.stem = nn.Conv2d(c_in, width, 3, padding=1)
        layers: list[nn.Module] = []
        c = width
        for stage in range(_halvings(max(h, w))):
            out = width if stage == 0 else 2 * width
            for b in range(blocks):
                layers.append(ResidualBlock(c, out, down=b == 0, activation=activation))
                c = out
        self.blocks = nn.Sequential(*layers)
        self.act = _ACTIVATIONS[activation]
        self.head = nn.Linear(c, 1)

    def embed(self, x: Tensor) -> Tensor:
        """The pooled features, (B, width)."""
        return self.act(self.blocks(self.stem(x))).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))


_COMMON = {
    "spectral_norm": Param(False, "spectral normalisation of every layer (Miyato et al. 2018)"),
    "precision": precision_param(),
}


class _ConvArchitecture(Architecture):
    data_kinds = frozenset({"image"})
    features = frozenset({"nonzero_hessian"})

    def _wrap(self, net: nn.Module) -> ImageEnergy:
        return ImageEnergy(net, spectral_norm=self.hparams["spectral_norm"],
                           precision=self.hparams["precision"])

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


class WideResNetEnergy(_ConvArchitecture):
    """The IGEBM/JEM-style wide ResNet energy, the reference energy for images.

    :class:`WideResNet` with Swish (or LeakyReLU 0.2) and spectral normalisation on by
    default, as in IGEBM. Sized by budget: width 8 / 16 / 128 and 1 / 1 / 2 blocks per stage
    (smoke / quick / full); at ``full`` on CIFAR-10 it is IGEBM's CIFAR-10 network (about
    5 M parameters). With LeakyReLU the Hessian in x vanishes almost everywhere, so the
    ``nonzero_hessian`` feature (exact score matching) is dropped.

    >>> net = WideResNetEnergy(budget="smoke").build((3, 32, 32))
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2])
    """

    name = "wide_resnet"
    description = "IGEBM/JEM-style wide ResNet energy (reference for images; spectral norm)"
    params = {
        "width": Param(16, "channels of the first stage (later stages twice as many)", smoke=8,
                       full=128),
        "blocks": Param(1, "residual blocks per stage", full=2),
        "activation": Param("swish", "swish (IGEBM) or leaky_relu (slope 0.2, JEM)",
                            choices=tuple(_ACTIVATIONS)),
    } | _COMMON | {
        "spectral_norm": Param(True, "spectral normalisation of every layer (IGEBM)"),
    }

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        if self.hparams["activation"] != "swish":
            self.features = frozenset()  # piecewise linear: ∇ₓ²f = 0 almost everywhere

    def build(self, shape: tuple[int, ...]) -> nn.Module:
        net = WideResNet(self._check(shape), self.hparams["width"], self.hparams["blocks"],
                         self.hparams["activation"])
        return self._wrap(net)
