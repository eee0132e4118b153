"""Fault tests: no computed run is lost to a busy or full disk; reads never write.

Each test injects one fault the way it happens in the field: another process holding the
store's write lock for longer than SQLite's own wait, SQLite reporting the disk full
(``PRAGMA max_page_count`` makes a real ``SQLITE_FULL``), a real small file system that
fills up (when this process may mount one), read-only media, a store from an older
ebmbench, a dead sweep's claims. docs/reliability.md lists what each test shows.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import ebmbench
from ebmbench import EnvironmentFailure, UserError
from ebmbench import store as store_module
from ebmbench.cli import main
from ebmbench.grid import RunSpec
from ebmbench.journal import RESERVE_BYTES, PendingRows
from ebmbench.leases import Claimant, ClaimingTasks, Leases
from ebmbench.store import SCHEMA_VERSION, ResultStore
from tests import fault_plugins
from tests.helpers import TOY_METHOD_SOURCE, make_distribution
from tests.test_bad_inputs import snapshot

SEEDS = (0, 1, 2, 3, 4, 5)


@pytest.fixture
def plugins(fresh_plugins):
    ebmbench.register_plugin(fault_plugins)
    fault_plugins.TRAIN_STEPS["count"] = 0
    return fresh_plugins


def sweep(results: Path, **kwargs):
    """Six runs of the trivially trainable ``counting`` method, one training each."""
    from ebmbench.grid import Selection
    from ebmbench.sweep import run_sweep

    selection = Selection(methods=["counting"], samplers=["identity"], architectures=["mlp"],
                          datasets=["eight_gaussians"], metrics=["fisher"], seeds=SEEDS,
                          budget="smoke", overrides={"method.counting.steps": 3})
    return run_sweep(selection, results=results, executor="local", **kwargs)


def trainings() -> int:
    return fault_plugins.TRAIN_STEPS["count"] // 3


def row(run_id: str, **extra) -> dict:
    return {"run_id": run_id, "train_key": "k", "method": "m", "sampler": "s",
            "architecture": "a", "dataset": "d", "seed": 0, "budget": "smoke",
            "status": "ok", "metrics": {"fisher_divergence": 1.0}} | extra


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


# ------------------------------------------------------------------ a busy store


HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def test_a_write_lock_held_past_sqlites_wait_loses_no_computed_run(plugins, tmp_path, monkeypatch):
    # SQLite waits BUSY_TIMEOUT for a lock (until schema 2, a hard 60 s, after which the
    # sweep crashed and lost its computed runs). Here it is 0.2 s and another process holds
    # the write lock for 3 s in the middle of the sweep: the sweep waits, says so once, and
    # stores every run.
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT", 0.2)
    results = tmp_path / "results.sqlite"
    hold, holder = 3.0, []
    notes: list[str] = []

    def on_row(r):
        if not holder:  # after the first row: lock the store from another process
            proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(results), str(hold)],
                                    stdout=subprocess.PIPE, text=True)
            assert proc.stdout.readline().strip() == "locked"
            holder.append((proc, time.monotonic()))
            # The old behaviour: a writer that gives up after SQLite's wait.
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                sqlite3.connect(results, timeout=0.2).execute("INSERT INTO leases VALUES "
                                                              "('x', 'x', 'x', 0, 0)")

    report = sweep(results, on_row=on_row, notify=notes.append)
    proc, locked_at = holder[0]
    assert proc.wait(timeout=30) == 0
    assert time.monotonic() - locked_at >= hold
    assert sorted(report.frame["seed"]) == list(SEEDS) and set(report.frame["status"]) == {"ok"}
    waits = [n for n in notes if n.startswith("waiting for the store")]
    assert len(waits) == 1, notes  # said once, not per retry
    assert any(n.startswith("the store is free again") for n in notes), notes
    assert trainings() == len(SEEDS)
    assert integrity(results) == "ok"


# ------------------------------------------------------------------ a full disk


def fill_after(monkeypatch, rows_that_fit: int) -> None:
    """Make the store's disk "full" once ``rows_that_fit`` rows are written: SQLite then
    reports SQLITE_FULL for real (``max_page_count`` caps the file at its current size)."""
    original = ResultStore.write
    written = {"n": 0}

    def write(self, r, **kwargs):
        if written["n"] >= rows_that_fit:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            self._db.execute(f"PRAGMA max_page_count = {pages}")
        written["n"] += 1
        return original(self, r | {"traceback": "x" * 5000}, **kwargs)  # a page per row

    monkeypatch.setattr(ResultStore, "write", write)


def test_a_full_store_stops_cleanly_keeps_the_row_and_resumes_to_the_complete_set(
    plugins, tmp_path, monkeypatch
):
    results = tmp_path / "results.sqlite"
    with monkeypatch.context() as patch:
        fill_after(patch, rows_that_fit=2)
        with pytest.raises(EnvironmentFailure) as info:
            sweep(results)
    message = str(info.value)
    assert "the disk is full" in message and "\n" not in message
    assert "results.sqlite.pending.jsonl" in message and "Free some space" in message
    with ResultStore.open_existing(results) as store:
        kept = store.finished_ids()
    assert len(kept) == 2 and integrity(results) == "ok"  # committed rows intact
    journal = PendingRows(results)
    assert [r["seed"] for r, _ in journal.read()] == [2]  # the row the store refused
    assert trainings() == 3

    notes: list[str] = []
    report = sweep(results, notify=notes.append)  # the disk has room again
    assert report.merged == 1 and any("added 1 computed run" in n for n in notes)
    assert report.ran == len(SEEDS) - 3  # the journaled run is not run again
    assert sorted(report.frame["seed"]) == list(SEEDS) and set(report.frame["status"]) == {"ok"}
    assert trainings() == len(SEEDS)  # the journaled run was not computed again
    assert not journal.path.exists() and integrity(results) == "ok"


def test_a_full_disk_is_exit_1_with_one_line_and_the_same_command_resumes(
    plugins, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    args = ["run", "--method", "counting", "--sampler", "identity", "--architecture", "mlp",
            "--dataset", "eight_gaussians", "--metric", "fisher", "--budget", "smoke",
            "--seeds", "0-5", "--set", "method.counting.steps=3", "--results", "r.sqlite",
            "--workers", "1", "--no-progress", "--no-leaderboard"]
    with monkeypatch.context() as patch:
        fill_after(patch, rows_that_fit=3)
        with pytest.raises(SystemExit) as exit_info:
            main(args)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1
    assert err.startswith("Error: cannot write the results store") and "\n" not in err
    assert "Traceback" not in err
    main(args)  # the same command, with room again: no exit code, it succeeds
    out = capsys.readouterr()
    assert "6 runs: 6 ok" in out.out and "(2 run now, 4 already in" in out.out
    assert "added 1 computed run" in out.err


def test_a_row_not_even_the_journal_can_take_is_reported_and_run_again(
    plugins, tmp_path, monkeypatch
):
    results = tmp_path / "results.sqlite"
    with monkeypatch.context() as patch:
        fill_after(patch, rows_that_fit=1)
        patch.setattr(PendingRows, "append",
                      lambda self, r, replace: (_ for _ in ()).throw(OSError(28, "No space left")))
        with pytest.raises(EnvironmentFailure, match="could not be kept in .* either .*runs "
                                                     "again on resume"):
            sweep(results)
    report = sweep(results)
    assert sorted(report.frame["seed"]) == list(SEEDS)
    assert report.ran == len(SEEDS) - 1  # the unsaved run is evaluated again ...
    assert trainings() == len(SEEDS)  # ... from its checkpoint: its training is not lost


def test_a_run_whose_files_hit_a_full_disk_is_not_stored_as_failed(plugins, tmp_path, monkeypatch):
    # A checkpoint or figure that cannot be written is the machine's failure, not the run's:
    # the sweep stops (exit 1) and the run is done again on resume, not kept as `failed`.
    import errno

    results = tmp_path / "results.sqlite"
    calls = {"n": 0}
    original = fault_plugins.Counting.loss

    def loss(self, batch):
        calls["n"] += 1
        if calls["n"] == 7:  # the third run's first step
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, batch)

    with monkeypatch.context() as patch:
        patch.setattr(fault_plugins.Counting, "loss", loss)
        with pytest.raises(EnvironmentFailure, match="could not write its files.*No space left"):
            sweep(results)
    with ResultStore.open_existing(results) as store:
        assert len(store.finished_ids()) == 2
    report = sweep(results)
    assert set(report.frame["status"]) == {"ok"} and len(report.frame) == len(SEEDS)


def _can_mount() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "geteuid") and os.geteuid() == 0 \
        and shutil.which("mount") is not None


@pytest.fixture
def small_fs(tmp_path):
    """A 4 MiB tmpfs, or a skip where this process may not mount one."""
    where = tmp_path / "small"
    where.mkdir()
    if not _can_mount():
        pytest.skip("mounting a small file system needs root on Linux")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.slow
def test_a_real_full_file_system_stops_the_sweep_and_the_resume_completes(small_fs, tmp_path):
    from tests.test_durability import command
    from tests.test_durability import integrity as check
    from tests.test_fault_isolation import write_fault_plugins

    plugins = write_fault_plugins(tmp_path / "plugins")
    results = small_fs / "results.sqlite"
    log = tmp_path / "executions.log"
    env = {**os.environ, "EBMBENCH_TEST_EXECUTIONS": str(log)}
    args = [a.replace("method.nap.seconds=0.05", "method.nap.seconds=0.001")
            for a in command(plugins, results, "0-11", "--executor", "local")]
    first = subprocess.run(args[: args.index("--seeds") + 1] + ["0"] + args[args.index("--seeds") + 2:],
                           env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    free = shutil.disk_usage(small_fs).free
    (small_fs / "filler").write_bytes(b"\0" * (free - 320 * 1024))  # leave 320 KiB

    full = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert full.returncode == 1, full.stdout + full.stderr
    error = full.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: ") and "full" in error and "Traceback" not in full.stderr
    assert check(results) == "ok"
    with sqlite3.connect(results) as db:
        committed = {r for (r,) in db.execute("SELECT run_id FROM runs")}
    assert 1 <= len(committed) < 12

    (small_fs / "filler").unlink()
    resumed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "12 runs: 12 ok" in resumed.stdout
    with sqlite3.connect(results) as db:
        assert committed <= {r for (r,) in db.execute("SELECT run_id FROM runs")}
    assert check(results) == "ok"
    executions = log.read_text().split()
    assert len(set(executions)) == 12  # every run computed; at most the lost ones twice
    assert len(executions) - 12 <= 2, executions


# ------------------------------------------------------------------ reading never writes


def make_store(path: Path, rows: int = 3) -> Path:
    with ResultStore.open(path) as store:
        for i in range(rows):
            store.write(row(f"r{i}", seed=i))
    return path


def test_read_commands_write_nothing_not_even_beside_the_store(plugins, tmp_path, monkeypatch,
                                                              capsys):
    make_store(tmp_path / "store" / "results.sqlite")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path / "store")
    assert len(ebmbench.load_results("store/results.sqlite")) == 3
    main(["export", "--results", "store/results.sqlite", "-o", "out/r.csv"])
    with pytest.raises(SystemExit) as exit_info:
        main(["leaderboard", "--results", "store/results.sqlite", "--out", "boards", "--check"])
    assert exit_info.value.code == 1  # nothing committed to compare with: that is all
    assert snapshot(tmp_path / "store") == before  # no -wal, no -shm, the same bytes


def test_a_store_being_written_is_read_with_its_newest_rows(plugins, tmp_path):
    results = make_store(tmp_path / "results.sqlite")
    with ResultStore.open(results) as writer:  # a live sweep: its WAL holds the new row
        writer.write(row("new"))
        assert (tmp_path / "results.sqlite-wal").exists()
        assert "new" in set(ebmbench.load_results(results)["run_id"])


def test_a_read_in_the_writers_process_keeps_the_writers_locks(plugins, tmp_path):
    # POSIX drops every lock a process holds on a file when it closes any descriptor of it:
    # a read that opened the store itself (not through SQLite) let another process delete
    # the writer's WAL, and every row written after was lost.
    results = make_store(tmp_path / "results.sqlite", rows=1)
    with ResultStore.open(results) as writer:
        writer.write(row("a"))
        with ResultStore.open_existing(results) as reader:
            assert len(reader.finished_ids()) == 2
        ResultStore.open(results).close()  # as the lease heartbeat does
        subprocess.run([sys.executable, "-c", "import sqlite3, sys; "
                        "sqlite3.connect(sys.argv[1]).execute('SELECT 1 FROM runs').fetchall()",
                        str(results)], check=True)
        writer.write(row("b"))
    with ResultStore.open_existing(results) as store:
        assert store.finished_ids() == {"r0", "a", "b"}


@pytest.mark.slow
def test_read_commands_work_on_read_only_media(small_fs, tmp_path, monkeypatch, capsys):
    make_store(small_fs / "results.sqlite")
    proc = subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot remount read-only: {proc.stderr.strip()}")
    assert not os.access(small_fs, os.W_OK) or os.geteuid() == 0
    with pytest.raises(OSError):
        (small_fs / "probe").write_text("x")
    monkeypatch.chdir(tmp_path)
    main(["export", "--results", str(small_fs / "results.sqlite"), "-o", "r.csv"])
    assert len(ebmbench.load_results(tmp_path / "r.csv")) == 3
    main(["leaderboard", "--results", str(small_fs / "results.sqlite"), "--out", "boards"])
    assert (tmp_path / "boards" / "README.md").is_file()
    with pytest.raises(SystemExit) as exit_info:  # writing to it is a clear refusal
        main(["run", "--method", "dsm", "--sampler", "ula", "--architecture", "mlp",
              "--dataset", "eight_gaussians", "--budget", "smoke", "--workers", "1",
              "--results", str(small_fs / "results.sqlite"), "--no-progress"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "read-only" in err and "Traceback" not in err


def test_a_journal_beside_the_store_is_mentioned_by_reads_and_left_alone(plugins, tmp_path, capsys):
    results = make_store(tmp_path / "results.sqlite")
    PendingRows(results).append(row("pending"), replace=False)
    before = snapshot(tmp_path)
    frame = ebmbench.load_results(results)
    assert "pending" not in set(frame["run_id"])
    assert "1 computed run(s) wait in results.sqlite.pending.jsonl" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------ schema migration


V1_RUNS = store_module._RUNS  # schema 1 was the runs table alone


def test_a_version_1_store_is_read_as_it_is_and_migrated_on_its_first_write(plugins, tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(V1_RUNS + "PRAGMA user_version=1;")
    with sqlite3.connect(path) as db:  # a row as ebmbench 0.1 wrote it
        db.execute("INSERT INTO runs (run_id, method, sampler, architecture, dataset, seed, "
                   "status) VALUES ('old', 'dsm', 'ula', 'mlp', 'eight_gaussians', 0, 'ok')")
    before = path.read_bytes()
    assert list(ebmbench.load_results(path)["run_id"]) == ["old"]  # read: not migrated
    assert path.read_bytes() == before
    with ResultStore.open(path) as store:
        store.write(row("new"))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        columns = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
    assert {"runs", "leases"} <= tables
    assert {"role", "trial", "compute", "curve"} <= columns  # schema 3: the protocol's columns
    frame = ebmbench.load_results(path).set_index("run_id")
    assert set(frame.index) == {"old", "new"}
    assert frame.loc["old", "role"] == "run" and frame.loc["old", "curve"] == []


# ------------------------------------------------------------------ the journal


def test_the_journal_keeps_rows_durably_and_merges_once(tmp_path):
    results = make_store(tmp_path / "results.sqlite", rows=1)
    journal = PendingRows(results)
    journal.reserve()
    assert journal.path.stat().st_size >= RESERVE_BYTES and journal.read() == []
    journal.append(row("a"), replace=False)
    journal.append(row("b", status="failed"), replace=True)
    assert journal.path.stat().st_size == RESERVE_BYTES  # written into the reserved space
    with open(journal.path, "r+b") as f:  # a crash mid-append leaves a cut line: skipped
        f.seek(len(journal.path.read_bytes().rstrip(b"\0")))
        f.write(b'{"replace": false, "row": {"run_')
    assert [(r["run_id"], rep) for r, rep in journal.read()] == [("a", False), ("b", True)]
    assert journal.count() == 2
    with ResultStore.open(results) as store:
        assert journal.merge_into(store.write_many) == 2
        assert store.finished_ids() == {"r0", "a", "b"}
    assert not journal.path.exists()


def test_a_failed_merge_keeps_the_journal(tmp_path):
    results = make_store(tmp_path / "results.sqlite", rows=1)
    journal = PendingRows(results)
    journal.append(row("a"), replace=False)

    def fail(rows):
        raise EnvironmentFailure("still full")

    with pytest.raises(EnvironmentFailure):
        journal.merge_into(fail)
    assert journal.count() == 1


# ------------------------------------------------------------------ leases


def spec(seed: int) -> RunSpec:
    return RunSpec("counting", "identity", "mlp", "eight_gaussians", seed, "smoke",
                   {"method": {}, "sampler": {}, "architecture": {}, "dataset": {}}, False)


def test_claims_are_exclusive_expire_and_die_with_their_process(tmp_path):
    results = make_store(tmp_path / "results.sqlite", rows=0)
    with ResultStore.open(results) as a_store, ResultStore.open(results) as b_store:
        a = Leases(a_store, Claimant.here(), lease_seconds=60)
        b = Leases(b_store, Claimant.here(), lease_seconds=60)
        assert a.claim(["x", "y"])[0] == ["x", "y"]
        claimed, done, held = b.claim(["x", "y", "z"])
        assert claimed == ["z"] and set(held) == {"x", "y"}
        a_store.write(row("x"), claimant=a.claimant.id)  # the row releases its claim
        claimed, done, held = b.claim(["x", "y"])
        assert done == {"x"} and set(held) == {"y"} and claimed == []
        # A claim whose sweep stopped renewing expires and is taken over.
        a_store.transact(lambda db: db.execute("UPDATE leases SET expires = 0"))
        assert b.claim(["y"])[0] == ["y"]
        # A claim of a process on this host that no longer exists is taken over at once.
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
        ghost = Leases(a_store, Claimant("ghost", Claimant.here().host, int(dead.stdout)))
        assert ghost.claim(["w"])[0] == ["w"]
        assert b.claim(["w"])[0] == ["w"]
        b.release()
        assert a.claim(["y", "z", "w"])[0] == ["y", "z", "w"]


def test_claiming_tasks_skips_runs_another_sweep_holds_and_waits_for_them(tmp_path):
    results = make_store(tmp_path / "results.sqlite", rows=0)
    specs = [spec(s) for s in range(4)]
    with ResultStore.open(results) as mine_store, ResultStore.open(results) as other_store:
        other = Leases(other_store, Claimant.here())
        other.claim([specs[1].run_id, specs[2].run_id])
        mine = Leases(mine_store, Claimant.here())
        tasks = ClaimingTasks([[s] for s in specs], lambda group: group, mine)
        assert len(tasks) == 4
        assert [g[0].seed for g in tasks] == [0, 3]
        assert [s.seed for s in tasks.deferred] == [1, 2]
        # The other sweep stores run 1 and stops (dropping its claim on run 2).
        other_store.write(row(specs[1].run_id), claimant=other.claimant.id)
        other.release()
        notes: list[str] = []
        free, stored = mine.wait_for_others(tasks.deferred, notes.append, sleep=lambda s: None)
        assert [s.seed for s in free] == [2] and stored == 1 and notes == []


def test_waiting_for_another_sweep_says_so_once(tmp_path):
    results = make_store(tmp_path / "results.sqlite", rows=0)
    with ResultStore.open(results) as mine_store, ResultStore.open(results) as other_store:
        other = Leases(other_store, Claimant.here())
        other.claim([spec(0).run_id])
        mine = Leases(mine_store, Claimant.here())
        notes: list[str] = []
        sleeps: list[float] = []

        def sleep(seconds):  # the other sweep finishes while this one waits
            sleeps.append(seconds)
            if len(sleeps) == 3:
                other_store.write(row(spec(0).run_id), claimant=other.claimant.id)

        free, stored = mine.wait_for_others([spec(0)], notes.append, sleep=sleep)
        assert free == [] and stored == 1 and len(sleeps) == 3
        assert len(notes) == 1 and notes[0].startswith("waiting for 1 run(s) that another sweep")


# ------------------------------------------------------------------ plugin loading


def test_a_plugin_calling_sys_exit_is_a_failed_load_that_run_reports(fresh_plugins, tmp_path,
                                                                     monkeypatch, capsys):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "quits.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["--plugins-dir", str(folder), "run", "--method", "quitter", "--sampler", "ula",
              "--budget", "smoke", "--workers", "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "warning: plugin quits.py" in err and "SystemExit(3)" in err  # one line at the start
    # The unknown name's error says a plugin failed to load, which may be why.
    assert "unknown method 'quitter'" in err and "1 plugin(s) failed to load" in err
    assert "Traceback" not in err


def test_a_plugin_named_like_a_builtin_is_an_error_when_that_name_is_selected(
    fresh_plugins, tmp_path, monkeypatch, capsys
):
    root = make_distribution(
        tmp_path / "site", "ebmbench-impostor", "1.0",
        {"impostor_mod": TOY_METHOD_SOURCE.format(cls="Impostor", name="dsm")},
        {"impostor": "impostor_mod"},
    )
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--method", "dsm", "--sampler", "ula", "--architecture", "mlp",
              "--dataset", "eight_gaussians", "--budget", "smoke", "--workers", "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert "method 'dsm' is registered twice, by ebmbench" in err
    assert "ebmbench-impostor (impostor_mod.Impostor)" in err
    # Other names still run, and `list` shows the clash.
    assert "ssm" in ebmbench.list_plugins("method")
    assert any("already registered" in b.error for b in fresh_plugins.broken)


def test_ctrl_c_says_how_to_resume(fresh_plugins, tmp_path, monkeypatch, capsys):
    from ebmbench import sweep as sweep_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_module, "run_sweep", interrupted)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--method", "dsm", "--budget", "smoke", "--workers", "1", "--results", "r.sqlite"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 130
    assert "Interrupted" in err and "r.sqlite" in err and "run the same command again" in err


def test_an_environment_failure_is_importable_and_documented():
    assert ebmbench.EnvironmentFailure is EnvironmentFailure
    assert issubclass(UserError, ValueError) and not issubclass(EnvironmentFailure, UserError)
    assert textwrap.dedent(EnvironmentFailure.__doc__ or "").strip()
