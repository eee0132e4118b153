"""The SQLite results store: durability, idempotence, concurrency, schema, export."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3

import pandas as pd
import pytest

from ebmbench import UserError
from ebmbench.store import SCHEMA_VERSION, ResultStore


def _row(run_id: str, status: str = "ok", value: float = 1.0) -> dict:
    return {
        "run_id": run_id, "train_key": "k", "method": "m", "sampler": "s",
        "architecture": "a", "dataset": "d", "seed": 0, "budget": "smoke", "status": status,
        "reason": "", "traceback": "", "metrics": {"fisher_divergence": value},
        "directions": {"fisher_divergence": False}, "hyperparams": {"method": {"lr": 0.1}},
        "train_seconds": 0.5, "sample_seconds": float("nan"),
    }


def test_rows_round_trip_with_nested_values(tmp_path):
    with ResultStore.open(tmp_path / "r.sqlite") as store:
        assert store.write(_row("a", value=2.5))
        (row,) = store.rows()
    assert row["metrics"] == {"fisher_divergence": 2.5}
    assert row["hyperparams"] == {"method": {"lr": 0.1}}
    assert row["sample_seconds"] is None  # NaN is stored as NULL


def test_a_run_id_is_written_once_unless_replaced(tmp_path):
    with ResultStore.open(tmp_path / "r.sqlite") as store:
        assert store.write(_row("a", "failed"))
        assert not store.write(_row("a", "ok"))
        assert [r["status"] for r in store.rows()] == ["failed"]
        assert store.write(_row("a", "ok"), replace=True)
        assert [r["status"] for r in store.rows()] == ["ok"]
        assert store.finished_ids(["failed"]) == set()


def _writer(path: str, prefix: str, n: int) -> None:
    with ResultStore.open(path) as store:
        for i in range(n):
            store.write(_row(f"{prefix}{i % 30}"))


def test_concurrent_writers_neither_corrupt_nor_duplicate(tmp_path):
    path = str(tmp_path / "r.sqlite")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, "run", 60)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with ResultStore.open(path) as store:
        assert len(list(store.rows())) == 30
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_schema_version_is_recorded_and_newer_stores_refused(tmp_path):
    path = tmp_path / "r.sqlite"
    ResultStore.open(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(UserError, match="newer than this ebmbench"):
        ResultStore.open(path)


def test_missing_and_foreign_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no results store at"):
        ResultStore.open_existing(tmp_path / "none.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database, just bytes" * 100)
    with pytest.raises(UserError, match="junk.sqlite.*not an SQLite database"):
        ResultStore.open(junk)


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_export_formats_hold_every_run_and_metric(tmp_path, fmt):
    with ResultStore.open(tmp_path / "r.sqlite") as store:
        store.write(_row("a", value=1.5))
        store.write(_row("b", value=3.0))
        out = store.export(fmt, tmp_path / f"out.{fmt}")
    frame = {"csv": pd.read_csv, "json": pd.read_json, "parquet": pd.read_parquet}[fmt](out)
    assert sorted(frame["run_id"]) == ["a", "b"]
    assert sorted(frame["metric.fisher_divergence"]) == [1.5, 3.0]
    hyper = frame["hyperparams"].iloc[0]
    assert (hyper if isinstance(hyper, dict) else json.loads(hyper)) == {"method": {"lr": 0.1}}


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_load_results_reads_a_store_and_its_exports_alike(tmp_path, fmt):
    import ebmbench

    with ResultStore.open(tmp_path / "r.sqlite") as store:
        store.write(_row("a", value=1.5))
        store.write(_row("b", value=3.0))
        out = store.export(fmt, tmp_path / f"out.{fmt}")
    stored, exported = ebmbench.load_results(tmp_path / "r.sqlite"), ebmbench.load_results(out)
    assert sorted(exported["run_id"]) == ["a", "b"]
    for column in ("run_id", "metric.fisher_divergence", "hyperparams", "status"):
        assert list(exported[column]) == list(stored[column]), column


def test_unknown_export_format(tmp_path):
    with ResultStore.open(tmp_path / "r.sqlite") as store, pytest.raises(
        UserError, match="unknown export format 'xls'. Valid formats: csv, json, parquet"
    ):
        store.export("xls", tmp_path / "x")


# ------------------------------------------------------------- schema 3: not applicable


def test_not_applicable_combinations_are_kept_once_each_and_counted_by_reason(tmp_path):
    with ResultStore.open(tmp_path / "r.sqlite") as store:
        combos = [("toy", "m", s, "convnet", "convnet takes images") for s in ("ula", "mala")]
        store.record_not_applicable(combos + [("toy", "m", "ula", "big", "d > 8")])
        store.record_not_applicable(combos)  # a resumed sweep records them again
        counts = store.not_applicable()
        assert list(store.rows()) == []  # not runs
    assert counts.to_dict("records") == [
        {"dataset": "toy", "reason": "convnet takes images", "combinations": 2},
        {"dataset": "toy", "reason": "d > 8", "combinations": 1}]


def test_a_schema_3_store_is_upgraded_in_place(tmp_path):
    """An older store keeps its rows and gains the not-applicable table and the new
    columns (recorded as unknown for its rows)."""
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, train_key TEXT, method TEXT, sampler TEXT, "
        "architecture TEXT, dataset TEXT, seed INTEGER, budget TEXT, status TEXT, reason TEXT, "
        "traceback TEXT, train_seconds REAL, sample_seconds REAL, peak_memory_mb REAL, device TEXT, "
        "host TEXT, finished_at TEXT, trial INTEGER, role TEXT NOT NULL DEFAULT 'run', "
        + ", ".join(f"{c} TEXT NOT NULL DEFAULT '{{}}'" for c in (
            "metrics", "directions", "cost_values", "reference_values", "hyperparams", "versions",
            "artifacts", "notes", "metric_errors", "sample_stats", "train_logs", "compute", "curve"))
        + "); CREATE TABLE leases (run_id TEXT PRIMARY KEY, claimant TEXT NOT NULL, "
        "host TEXT NOT NULL, pid INTEGER NOT NULL, expires REAL NOT NULL); "
        "INSERT INTO runs (run_id, method, status, metrics) VALUES ('old', 'dsm', 'ok', "
        "'{\"fisher_divergence\": 1.0}'); PRAGMA user_version=3;")
    db.close()
    with ResultStore.open(path) as store:
        (row,) = store.rows()
        assert row["run_id"] == "old" and row["metrics"] == {"fisher_divergence": 1.0}
        assert row["uses_sampler"] is None and row["sample_values"] == []
        assert store.not_applicable().empty
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4


def test_the_sweep_counts_incompatible_combinations_and_stores_no_row_for_them(tmp_path):
    import ebmbench

    path = tmp_path / "r.sqlite"
    kwargs = dict(methods=["dsm"], samplers=["ula"], architectures=["mlp", "quadratic"],
                  datasets=["eight_gaussians"], metrics=["fisher"], budget="smoke", results=path)
    frame = ebmbench.run(seeds=[0, 1], **kwargs)
    assert set(frame["architecture"]) == {"mlp"} and len(frame) == 2
    (reasons,) = frame.attrs["not_applicable"].values()
    assert list(reasons.values()) == [1]  # one combination, whatever the seeds
    ebmbench.run(seeds=[0, 1, 2], **kwargs)  # extended: the combination is counted once
    with ResultStore.open(path) as store:
        assert store.not_applicable()["combinations"].tolist() == [1]
        assert {r["architecture"] for r in store.rows()} == {"mlp"}
        assert all(r["uses_sampler"] == 0 for r in store.rows())
