"""Synthetic result rows for leaderboard tests: what the harness writes, without training."""

from __future__ import annotations

from typing import Any

import pandas as pd

DIRECTIONS = {
    "fisher_divergence": False,
    "test_nll": False,
    "log_z_abs_error": False,
    "mmd": False,
    "c2st_accuracy": False,
    "kid": False,
    "fid": False,
    "gaussian_nll": False,
    "mmd_floor": False,
    "sample_seconds": False,
    "ess_per_grad": True,
    "rhat": False,
    "grad_evals": False,
}
SAMPLE_VALUES = [
    "mmd",
    "c2st_accuracy",
    "kid",
    "fid",
    "mmd_floor",
    "sample_seconds",
    "ess_per_grad",
    "rhat",
    "grad_evals",
]


def row(
    method: str,
    sampler: str,
    *,
    seed: int = 0,
    dataset: str = "toy",
    architecture: str = "mlp",
    status: str = "ok",
    uses_sampler: bool = False,
    notes: dict[str, str] | None = None,
    role: str = "run",
    hyperparams: dict[str, Any] | None = None,
    reason: str = "",
    curve: list[dict[str, float]] | None = None,
    flops: float = 1e9,
    **metrics: float,
) -> dict[str, Any]:
    """One result row; ``metrics`` are its metric values (``None`` to leave one out)."""
    train_key = f"{dataset}/{method}/{architecture}/{seed}" + (f"/{sampler}" if uses_sampler else "")
    if hyperparams and hyperparams.get("variant"):
        train_key += f"/{sorted(hyperparams['variant'].items())}"
    values = {k: v for k, v in metrics.items() if v is not None}
    return {
        "run_id": f"{train_key}/{sampler}",
        "train_key": train_key,
        "method": method,
        "sampler": sampler,
        "architecture": architecture,
        "dataset": dataset,
        "seed": seed,
        "budget": "quick",
        "status": status,
        "reason": reason,
        "role": role,
        "trial": None,
        "uses_sampler": uses_sampler,
        "directions": {k: DIRECTIONS.get(k, False) for k in values},
        "cost_values": [k for k in values if k in ("sample_seconds", "grad_evals")],
        "reference_values": [k for k in values if k in ("gaussian_nll", "mmd_floor", "rhat")],
        "sample_values": [k for k in values if k in SAMPLE_VALUES],
        "hyperparams": hyperparams or {},
        "notes": notes or {},
        "artifacts": {},
        "compute": {"flops": flops, "wall_seconds": 1.0},
        "curve": curve or [],
        "device": "cpu",
        **{f"metric.{k}": v for k, v in values.items()},
    }


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def toy_rows(
    seeds: tuple[int, ...] = (0, 1, 2), samplers: tuple[str, ...] = ("hmc", "mala", "ula")
) -> list[dict]:
    """Three sampler-free methods and a sampler-trained one, on one toy, with sample
    values that differ by sampler (as burn-in makes them)."""
    fisher = {"a": 1.0, "b": 2.0, "c": 4.0, "cd": 3.0}
    rows = []
    for seed in seeds:
        for method, f in fisher.items():
            uses = method == "cd"
            for i, sampler in enumerate(samplers):
                rows.append(
                    row(
                        method,
                        sampler,
                        seed=seed,
                        uses_sampler=uses,
                        fisher_divergence=f * (1 + 0.01 * seed),
                        test_nll=2.0 + f / 10,
                        mmd=0.01 * (i + 1) * f,
                        c2st_accuracy=0.5 + 0.05 * i,
                    )
                )
    return rows
