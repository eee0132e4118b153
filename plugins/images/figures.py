"""A PNG grid of a run's samples, for every image run."""

from __future__ import annotations

import math

import torch.nn.functional as F

from ebmbench import EvalContext, Metric, Param

__all__ = ["SampleGrid"]


class SampleGrid(Metric):
    """Writes the first samples as a square grid to ``ctx.artifact_dir``; returns no value.

    Pixels are mapped from [−1, 1] to [0, 1] (clamped), and small images are enlarged
    with nearest-neighbour up-sampling so that an 8×8 digit stays legible. The file's path,
    relative to ``ctx.artifact_dir``, is recorded as ``ctx.artifacts["sample_grid"]``.
    """

    name = "sample_grid"
    description = "PNG grid of the samples of each image run (a figure, no value)"
    higher_is_better: dict[str, bool] = {}
    needs_samples = True
    params = {
        "n_images": Param(64, "samples in the grid", smoke=16, low=1),
        "min_height": Param(32, "enlarge each image to at least this many pixels high", low=1),
    }

    def applies_to(self, combo) -> bool:
        return combo.dataset.data_kind == "image"

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        if ctx.artifact_dir is None or ctx.samples is None or len(ctx.samples) == 0:
            return {}
        from torchvision.utils import save_image

        x = ctx.samples[: self.hparams["n_images"]].detach().float().cpu()
        x = ((x.nan_to_num(0.0).clamp(-1, 1) + 1) / 2)
        scale = max(1, math.ceil(self.hparams["min_height"] / x.shape[-2]))
        if scale > 1:
            x = F.interpolate(x, scale_factor=scale, mode="nearest")
        filename = "sample_grid.png"  # the harness gives every run its own artifact_dir
        ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
        save_image(x, ctx.artifact_dir / filename, nrow=math.ceil(math.sqrt(len(x))),
                   padding=max(1, scale // 2), pad_value=1.0)
        ctx.artifacts["sample_grid"] = filename
        return {}
