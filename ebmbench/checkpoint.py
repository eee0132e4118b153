"""Trained-model files: what the harness checkpoints and what ``TrainedModel.save`` writes.

One format for both, self-describing so that a file alone rebuilds the model: the four
plugin names, their resolved hyper-parameters, the seed and the budget (a
:class:`~ebmbench.RunSpec` as plain data), the versions that trained it, and the state
dicts of the energy and of the method. Everything is a tensor, a number, a string or a
container of them, so the file loads with ``torch.load(weights_only=True)``, which
unpickles no arbitrary object.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch

from .errors import UserError
from .grid import RunSpec
from .protocol_settings import NAMES as SETTING_NAMES
from .protocol_settings import from_record as settings_from_record

__all__ = ["MODEL_FORMAT", "MODEL_FORMAT_VERSION", "model_payload", "write_model_file",
           "read_model_file", "spec_from_payload"]

#: The ``format`` key of every model file.
MODEL_FORMAT = "ebmbench-model"
#: Bumped when a key changes meaning; older files stay readable.
MODEL_FORMAT_VERSION = 1


def _plain(value: Any) -> Any:
    """``value`` as JSON types (tuples become lists, paths strings), as the store keeps it."""
    return json.loads(json.dumps(value, default=str))


def model_payload(
    spec: RunSpec, energy: torch.nn.Module, method_state: dict[str, Any], *,
    train_seconds: float, logs: dict[str, float], versions: dict[str, str] | None = None,
    compute: dict[str, Any] | None = None, curve: list[dict[str, float]] | None = None,
) -> dict[str, Any]:
    """The content of a model file for the model trained as ``spec`` says, with what its
    training spent (``compute``) and its learning curve (``curve``)."""
    return {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "spec": {
            "method": spec.method, "sampler": spec.sampler, "architecture": spec.architecture,
            "dataset": spec.dataset, "seed": int(spec.seed), "budget": spec.budget,
            "params": _plain(spec.params), "uses_sampler": bool(spec.uses_sampler),
            "trial": spec.trial, "replicate": spec.replicate, "train_flops": spec.train_flops,
            **{name: getattr(spec, name) for name in SETTING_NAMES},
        },
        "train_key": spec.train_key,
        # str(): torch.__version__ is a TorchVersion, which weights_only loading refuses.
        "versions": {str(k): str(v) for k, v in (versions or {}).items()},
        "energy": energy.state_dict(),
        "method": method_state,
        "train_seconds": float(train_seconds),
        "logs": {k: float(v) for k, v in logs.items()},
        "compute": _plain(compute or {}),
        "curve": _plain(curve or []),
    }


def write_model_file(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically: a killed writer never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own per writer: two sweeps may train the same model at once.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        # Through a Python file, so that a full disk is an OSError (ENOSPC), which the
        # sweep recognises, not torch's opaque RuntimeError.
        with tmp.open("wb") as f:
            torch.save(payload, f)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_model_file(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load a model file with ``weights_only=True``; a file that is not one is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no model file at {str(path)!r}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        lines = str(exc).splitlines() or [""]
        why = next((ln.strip() for ln in lines if "WeightsUnpickler error" in ln), lines[0])
        raise UserError(f"{str(path)!r} is not an ebmbench model file that loads with "
                        f"weights_only=True: {type(exc).__name__}: {why}") from None
    if not isinstance(state, dict) or "energy" not in state:
        raise UserError(f"{str(path)!r} is not an ebmbench model file (no energy state)")
    version = state.get("format_version", 0)
    if isinstance(version, int) and version > MODEL_FORMAT_VERSION:
        raise UserError(f"{str(path)!r} has model format {version}, newer than this "
                        f"ebmbench's {MODEL_FORMAT_VERSION}: upgrade ebmbench")
    return state


def spec_from_payload(state: dict[str, Any], path: str | os.PathLike[str] = "") -> RunSpec:
    """The :class:`RunSpec` a self-describing model file was trained from."""
    spec = state.get("spec")
    if state.get("format") != MODEL_FORMAT or not isinstance(spec, dict):
        raise UserError(
            f"{str(path)!r} is a checkpoint from an older ebmbench that does not say which "
            "plugins made it: load it by its run with load_model(run_id, results=...)"
        )
    return RunSpec(
        method=spec["method"], sampler=spec["sampler"], architecture=spec["architecture"],
        dataset=spec["dataset"], seed=int(spec["seed"]), budget=spec["budget"],
        params={k: dict(v) for k, v in spec["params"].items()},
        uses_sampler=bool(spec["uses_sampler"]),
        trial=spec.get("trial"), replicate=spec.get("replicate"),
        train_flops=spec.get("train_flops"), **settings_from_record(spec),
    )
