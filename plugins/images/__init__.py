"""Built-in image datasets, convolutional energies, FID/KID and sample grids.

Nothing here imports torchvision or torch-fidelity at import time: datasets load lazily and
the metrics import torch-fidelity when they compute, so ``ebmbench list`` stays fast.
"""

from ebmbench import hookimpl

from .convnets import ConvNetEnergy, ResNetEnergy, WideResNetEnergy
from .datasets import CIFAR10, MNIST, Digits, FashionMNIST
from .fid import FrechetDistance
from .figures import SampleGrid

__all__ = [
    "Digits",
    "MNIST",
    "FashionMNIST",
    "CIFAR10",
    "ConvNetEnergy",
    "ResNetEnergy",
    "WideResNetEnergy",
    "FrechetDistance",
    "SampleGrid",
]


@hookimpl
def ebmbench_register_datasets(register):
    for cls in (Digits, MNIST, FashionMNIST, CIFAR10):
        register(cls)


@hookimpl
def ebmbench_register_architectures(register):
    register(ConvNetEnergy)
    register(ResNetEnergy)
    register(WideResNetEnergy)


@hookimpl
def ebmbench_register_metrics(register):
    register(FrechetDistance)
    register(SampleGrid)
