#!/usr/bin/env python
"""Train the digits classifier whose penultimate layer is the FID feature space for "digits".

Deterministic (fixed seed, one CPU thread, deterministic algorithms) and quick (seconds on
a CPU). Trains on the digits *training* split only (the one the ``digits`` dataset uses), so
held-out digits are unseen by the extractor, and prints the held-out accuracy. Writes the
state dict to ``plugins/images/digits_features_v1.pt`` by default.

If you change anything here that changes the weights, bump the version in the weights file
name and in ``DIGITS_EXTRACTOR`` (plugins/images/digits_net.py): torch-fidelity caches
reference statistics under the extractor's name, and FIDs from different weights must never
be compared.

Usage::

    python scripts/train_digits_features.py [--out PATH] [--epochs 60]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from ebmbench_plugins.images.datasets import DIGITS_LEVELS, digits_split
from ebmbench_plugins.images.digits_net import WEIGHTS_FILE, DigitsFeatureNet, from_uint8, to_uint8
from torch import Tensor

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "plugins" / "images" / WEIGHTS_FILE
SEED = 0


def augment(levels: Tensor, g: torch.Generator) -> Tensor:
    """Random ±1-pixel shifts, then the dataset's scaling with or without dequantisation.

    Half of each batch is dequantised (x = 2(k+u)/17 − 1), half not (x = 2k/16 − 1), so the
    features are stable under either ``dequantize`` setting; both pass through the uint8
    round trip that torch-fidelity imposes at evaluation.
    """
    n = len(levels)
    k = levels.to(torch.float32)
    padded = F.pad(k, (1, 1, 1, 1))
    dy, dx = torch.randint(0, 3, (2,), generator=g).tolist()  # one shift per batch: cheap
    k = padded[:, :, dy:dy + 8, dx:dx + 8]
    u = torch.rand(k.shape, generator=g)
    dequantised = 2 * (k + u) / DIGITS_LEVELS - 1
    plain = 2 * k / (DIGITS_LEVELS - 1) - 1
    use_dq = (torch.rand(n, 1, 1, 1, generator=g) < 0.5)
    x = torch.where(use_dq, dequantised, plain)
    return from_uint8(to_uint8(x))


def train(
    epochs: int = 60, batch_size: int = 64, lr: float = 3e-3
) -> tuple[DigitsFeatureNet, float]:
    """Train from a fixed seed; return the network and its held-out accuracy."""
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    g = torch.Generator().manual_seed(SEED)
    x_train, y_train, x_test, y_test = digits_split()
    net = DigitsFeatureNet()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-3)
    steps = epochs * ((len(x_train) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for _ in range(epochs):
        order = torch.randperm(len(x_train), generator=g)
        for idx in order.split(batch_size):
            loss = F.cross_entropy(net(augment(x_train[idx], g)), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        x = from_uint8(to_uint8(2 * x_test.float() / (DIGITS_LEVELS - 1) - 1))
        accuracy = float((net(x).argmax(1) == y_test).float().mean())
    return net, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the weights")
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    net, accuracy = train(args.epochs)
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    torch.save(state, args.out)
    print(
        f"trained in {time.perf_counter() - start:.1f} s; held-out accuracy {accuracy:.4f}; "
        f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)"
    )


if __name__ == "__main__":
    main()
