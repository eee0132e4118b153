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
