"""KID (ranked) and FID of a run's samples against its training images, with data-vs-data floors.

Which feature extractor, and so which value names (values from different extractors are
never comparable, so they never share a name and never meet in one leaderboard column):

============  =========================  =================================================
dataset       extractor                  values
============  =========================  =================================================
digits        ``ebmbench-digits-v1``     ``kid`` (ranked, lower is better), ``kid_se``;
              (a digits classifier)      ``kid_floor``, ``kid_floor_se``, ``fid``,
                                         ``fid_floor``, ``fid_samples``, ``kid_samples``
                                         (reference)
others        ``inception-v3-compat``    ``kid_inception`` (ranked), ``kid_inception_se``;
              (torch-fidelity)           ``kid_inception_floor`` (+ ``_se``),
                                         ``fid_inception``, ``fid_inception_floor``,
                                         ``fid_samples``, ``kid_samples``
                                         (reference)
============  =========================  =================================================

KID is the unbiased MMD² on all n samples against all training images, with a jackknife
standard error (:mod:`.kid`); being unbiased, it is ≈ 0 for a perfect sampler at any n and
comparable across runs with different n, so it is what leaderboards rank. ``kid*_floor``
is the KID of the held-out test images against the same training images, with its own
standard error: what a perfect sampler scores (above 0 by the extractor's generalisation
gap). ``kid_samples`` is n. FID is biased upwards by about c/n, has no simple standard
error and is reported but not ranked: ``fid*`` on the first n_F = ``fid_samples`` samples,
n_F = min(n, held-out images), and ``fid*_floor``, the FID of n_F held-out images, so that
the two are at the same n_F.
Reference values are declared in ``higher_is_better`` (the metric contract wants every
returned name declared) and listed in ``reference_values``, which keeps them out of the
ranking.

When the Inception weights are not available offline the metric returns nothing and sets
``ctx.artifacts["fid_unavailable"]`` to the reason; ``ctx.artifacts["fid_extractor"]``
names the extractor whenever values are returned.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import Tensor

from ebmbench import EvalContext, Metric, Param, UserError

from .digits_net import DIGITS_EXTRACTOR, to_uint8
from .paths import fidelity_cache_dir

__all__ = ["FrechetDistance", "inception_weights"]

_INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
_INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + _INCEPTION_FILE
)

# Floors already computed in this process: cache key → {kid, kid_se, fid}.
_FLOORS: dict[str, dict[str, float]] = {}


def inception_weights(given: str = "") -> tuple[Path | None, str | None]:
    """(path, None) to the Inception-v3 weights to use, or (None, why there are none).

    ``given`` (the ``inception_weights`` parameter, ``--fid-weights``) wins; otherwise
    torch-fidelity's own download location, ``$TORCH_HOME/hub/checkpoints/``.
    """
    if given:
        path = Path(given).expanduser()
        if path.is_file():
            return path, None
        return None, f"the Inception weights file {path} (inception_weights) does not exist"
    default = Path(torch.hub.get_dir()) / "checkpoints" / _INCEPTION_FILE
    if default.is_file():
        return default, None
    return None, (
        f"no Inception-v3 weights offline: put {_INCEPTION_FILE} (from {_INCEPTION_URL}) "
        f"into {default.parent}/ or pass --fid-weights PATH"
    )


@functools.lru_cache(maxsize=4)
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:8]


class FrechetDistance(Metric):
    """KID (Bińkowski et al. 2018; ranked) and FID (Heusel et al. 2017; reported) on features.

    KID = unbiased MMD² with the cubic kernel (aᵀb/d + 1)³ between extractor features of
    the n samples and of the training images, with a jackknife standard error.
    FID = ‖μ_s − μ_r‖² + Tr(Σ_s + Σ_r − 2(Σ_s Σ_r)^½) between Gaussians fitted to the same
    features. Both come with the floor that held-out data score. See the module docstring
    for the extractor per dataset and the value names.
    """

    name = "fid"
    description = "KID (ranked, with SE) and FID via torch-fidelity features, with data floors"
    needs_samples = True
    higher_is_better = {
        "kid": False, "kid_inception": False,
        # Reference values, shown beside the scores but never ranked.
        "fid": False, "fid_inception": False,
        "kid_floor": False, "kid_inception_floor": False,
        "fid_floor": False, "fid_inception_floor": False,
        "fid_samples": True, "kid_samples": True,
    }
    # KID is unbiased with a real standard error: it is what is ranked. FID is biased by
    # about c/n and has no simple standard error; the floors are properties of the data.
    reference_values = frozenset({
        "fid", "fid_inception", "kid_floor", "kid_inception_floor",
        "fid_floor", "fid_inception_floor", "fid_samples", "kid_samples",
    })
    params = {
        "extractor": Param("auto", "feature extractor: auto = digits classifier on digits, "
                                   "Inception-v3 elsewhere", choices=("auto", "digits",
                                                                      "inception")),
        "inception_weights": Param("", "Inception-v3 weights file (default: torch-fidelity's "
                                       "in $TORCH_HOME/hub/checkpoints)"),
        "max_samples": Param(2_000, "most samples compared (also at most the test-set size)",
                             smoke=200, full=10_000, low=2),
        "n_reference": Param(5_000, "training images in the reference (0 = all)",
                             smoke=1_000, full=0, low=0),
        "batch_size": Param(64, "images per Inception-v3 batch (the digits net takes 1000)",
                            full=128, low=1),
        "cache_dir": Param("", "feature cache (default: ~/.cache/ebmbench/fidelity)"),
    }

    def applies_to(self, combo) -> bool:
        return combo.dataset.data_kind == "image"

    def fetch(self, download: bool = True) -> str:
        """The Inception-v3 weights for FID on MNIST, Fashion-MNIST and CIFAR-10
        (``ebmbench data``): found, downloaded to torch-fidelity's own location where
        there is a network, or a :class:`~ebmbench.UserError` saying where to put them."""
        given = self.hparams["inception_weights"]
        path, why = inception_weights(given)
        if path is None and download and not given:
            target = Path(torch.hub.get_dir()) / "checkpoints" / _INCEPTION_FILE
            made = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                torch.hub.download_url_to_file(_INCEPTION_URL, str(target), progress=False)
            except OSError as exc:  # URLError is an OSError
                why = f"{why} (the download failed: {exc})"
                for folder in made:  # leave no empty folders behind
                    if folder.is_dir() and not any(folder.iterdir()):
                        folder.rmdir()
            else:
                path = target
        if path is None:
            raise UserError(f"metric fid: {why}")
        return f"fid: Inception-v3 weights at {path} (digits use the bundled extractor)"

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        chosen = self.hparams["extractor"]
        if chosen == "auto":
            chosen = "digits" if ctx.dataset.name == "digits" else "inception"
        shape = tuple(ctx.train_data.shape[1:])
        weights = None
        if chosen == "digits":
            if shape != (1, 8, 8):
                return self._unavailable(ctx, f"the digits extractor takes 1x8x8, not {shape}")
            extractor, suffix = DIGITS_EXTRACTOR, ""
        else:
            if shape[0] not in (1, 3):
                return self._unavailable(ctx, f"Inception-v3 takes 1 or 3 channels, not {shape[0]}")
            weights, reason = inception_weights(self.hparams["inception_weights"])
            if weights is None:
                return self._unavailable(ctx, reason)
            extractor, suffix = "inception-v3-compat", "_inception"

        samples = ctx.samples
        if samples is None or len(samples) < 3:
            return self._unavailable(ctx, "fewer than 3 samples")
        if not bool(torch.isfinite(samples).all()):
            return self._unavailable(ctx, "the samples have non-finite values")
        n = min(len(samples), self.hparams["max_samples"])
        n_ref = self.hparams["n_reference"] or len(ctx.train_data)
        rgb = extractor != DIGITS_EXTRACTOR
        fake = self._uint8(samples[:n], rgb)
        test = self._uint8(ctx.test_data, rgb)
        ref = self._uint8(ctx.train_data[:n_ref], rgb)

        from .fidelity import content_name, features, fid_from_features, fid_statistics
        from .kid import kid_with_se

        tag = ""
        if weights is not None:  # the cache keys on the extractor's name, not its weights
            stat = weights.stat()
            tag = "-w" + _file_digest(weights.resolve(), stat.st_size, stat.st_mtime_ns)
        options = dict(
            extractor=extractor, cache_root=fidelity_cache_dir(self.hparams["cache_dir"]),
            weights=weights, cuda=ctx.device.type == "cuda",
            batch_size=1000 if extractor == DIGITS_EXTRACTOR else self.hparams["batch_size"],
        )
        ref_name = content_name(f"ebmbench-{ctx.dataset.name}-train", ref) + tag
        test_name = content_name(f"ebmbench-{ctx.dataset.name}-test", test) + tag
        on_device = torch.cuda.device(ctx.device) if ctx.device.type == "cuda" else nullcontext()
        with on_device:
            ref_feats = features(ref, name=ref_name, **options)
            fake_feats = features(fake, **options)
            ref_stats = fid_statistics(ref_feats)
            n_fid = min(n, len(test))
            floor = self._floor(test, test_name, ref_feats, ref_stats, ref_name, n_fid, options)
        kid, kid_se = kid_with_se(fake_feats, ref_feats)
        ctx.artifacts["fid_extractor"] = extractor
        return {
            f"kid{suffix}": kid,
            f"kid{suffix}_se": kid_se,
            f"kid{suffix}_floor": floor["kid"],
            f"kid{suffix}_floor_se": floor["kid_se"],
            f"fid{suffix}": fid_from_features(fake_feats[:n_fid], ref_stats),
            f"fid{suffix}_floor": floor["fid"],
            "fid_samples": float(n_fid),
            "kid_samples": float(n),
        }

    @staticmethod
    def _uint8(x: Tensor, rgb: bool) -> Tensor:
        x = to_uint8(x.detach().to("cpu", torch.float32))
        return x.expand(-1, 3, -1, -1).contiguous() if rgb and x.shape[1] == 1 else x

    @staticmethod
    def _floor(test: Tensor, test_name: str, ref_feats: Tensor, ref_stats: dict, ref_name: str,
               n_fid: int, options: dict) -> dict[str, float]:
        """KID(test, reference) ± se, and the FID of the first ``n_fid`` test images: computed
        once per process, and once per cache folder on disk."""
        from .fidelity import features, fid_from_features
        from .kid import kid_with_se

        key = f"{test_name}-vs-{ref_name}-{options['extractor']}-n{n_fid}"
        if key in _FLOORS:
            return _FLOORS[key]
        path = Path(options["cache_root"]) / f"{key}-floor.json"
        try:
            value = {k: float(v) for k, v in json.loads(path.read_text()).items()}
            assert set(value) == {"kid", "kid_se", "fid"}
        except (OSError, ValueError, AssertionError, AttributeError):
            test_feats = features(test, name=test_name, **options)
            kid, kid_se = kid_with_se(test_feats, ref_feats)
            fid = fid_from_features(test_feats[:n_fid], ref_stats)
            value = {"kid": kid, "kid_se": kid_se, "fid": fid}
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")  # atomic: runs may share the folder
            tmp.write_text(json.dumps(value))
            os.replace(tmp, path)
        _FLOORS[key] = value
        return value

    @staticmethod
    def _unavailable(ctx: EvalContext, reason: str | None) -> dict[str, float]:
        ctx.artifacts["fid_unavailable"] = reason or "unknown reason"
        return {}
