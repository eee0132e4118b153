"""No bad input becomes a result: every one is refused before any run starts.

One table of bad inputs, across the command line and the Python API. For each the test
asserts the exit code (or the :class:`~ebmbench.UserError`), that no traceback is
printed, that the message names the bad value, and that the results store, and every
other file in the folder, is byte-identical before and after.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import ebmbench
from ebmbench import UserError
from ebmbench.cli import main
from ebmbench.store import ResultStore

STORE = "S.sqlite"
SLICE = ["--method", "dsm", "--sampler", "ula", "--architecture", "mlp", "--dataset",
         "eight_gaussians", "--metric", "fisher", "--budget", "smoke", "--results", STORE,
         "--no-progress", "--no-leaderboard", "--workers", "1"]
LONG = "x" * 100_000

#: Sampler bounds are declared when the MCMC building blocks move to ebmbench/mcmc.py.


@dataclass
class Case:
    """One bad input: CLI arguments (``args``) or an API call (``call``)."""

    names: list[str]
    args: list[str] | None = None
    call: Any = None
    env: dict[str, str] = field(default_factory=dict)
    code: int = 2
    #: click's own usage errors print a usage line too.
    one_line: bool = True


def run_set(assignment: str, *extra: str) -> list[str]:
    return ["run", *SLICE, "--set", assignment, *extra]


def api_run(**kwargs: Any) -> Any:
    selection = dict(methods=["dsm"], samplers=["ula"], architectures=["mlp"],
                     datasets=["eight_gaussians"], metrics=["fisher"], budget="smoke",
                     results=STORE)
    return lambda: ebmbench.run(**{**selection, **kwargs})


CASES: dict[str, Any] = {
    # ------------------------------------------------ hyper-parameters from --set
    "steps negative": Case(["'-5'", "method 'dsm'.steps", "≥ 1"], run_set("method.dsm.steps=-5")),
    "steps zero": Case(["'0'", "method 'dsm'.steps"], run_set("method.dsm.steps=0")),
    "steps fraction": Case(["'2.5'", "method 'dsm'.steps", "expected int"],
                           run_set("method.dsm.steps=2.5")),
    "batch size zero": Case(["'0'", "method 'dsm'.batch_size"], run_set("method.dsm.batch_size=0")),
    "lr nan": Case(["'nan'", "method 'dsm'.lr", "finite"], run_set("method.dsm.lr=nan")),
    "lr inf": Case(["'inf'", "method 'dsm'.lr"], run_set("method.dsm.lr=inf")),
    "lr negative": Case(["'-1'", "method 'dsm'.lr"], run_set("method.dsm.lr=-1")),
    "sigma zero": Case(["'0'", "method 'dsm'.sigma", "> 0"], run_set("method.dsm.sigma=0")),
    "sigma text": Case(["'abc'", "method 'dsm'.sigma", "expected float"],
                       run_set("method.dsm.sigma=abc")),
    "step size nan": Case(["'nan'", "sampler 'ula'.step_size"], run_set("sampler.ula.step_size=nan")),
    "step size inf": Case(["'inf'", "sampler 'ula'.step_size"], run_set("sampler.ula.step_size=inf")),
    "step size negative": Case(["'-0.1'", "sampler 'ula'.step_size"], run_set("sampler.ula.step_size=-0.1")),
    "step size zero": Case(["'0'", "sampler 'mala'.step_size"],
             ["run", *SLICE, "--sampler", "mala", "--set", "sampler.mala.step_size=0"]),
    "sampler steps zero": Case(["'0'", "sampler 'ula'.steps"], run_set("sampler.ula.steps=0")),
    "final ratio zero": Case(["'0'", "sampler 'ula'.final_ratio"], run_set("sampler.ula.final_ratio=0")),
    "target accept above one": Case(["'1.5'", "sampler 'mala'.target_accept"],
             ["run", *SLICE, "--sampler", "mala", "--set", "sampler.mala.target_accept=1.5"]),
    "leapfrog steps zero": Case(["leapfrog"], ["run", *SLICE, "--sampler", "hmc", "--set",
                                               "sampler.hmc.leapfrog_steps=0"]),
    "schedule unknown": Case(["'wobbly'", "Valid choices"], run_set("sampler.ula.schedule=wobbly")),
    "hidden zero": Case(["'0'", "architecture 'mlp'.hidden"], run_set("architecture.mlp.hidden=0")),
    "depth zero": Case(["'0'", "architecture 'mlp'.depth"], run_set("architecture.mlp.depth=0")),
    "activation unknown": Case(["'relu6'", "Valid choices"], run_set("architecture.mlp.activation=relu6")),
    "dataset scale negative": Case(["'-1'", "eight_gaussians'.scale"],
                                   run_set("dataset.eight_gaussians.scale=-1")),
    "dataset n_train zero": Case(["'0'", "eight_gaussians'.n_train"],
                                 run_set("dataset.eight_gaussians.n_train=0")),
    "metric samples one": Case(["'1'", "metric 'fisher'.n_samples"], run_set("metric.fisher.n_samples=1")),
    "executor workers negative": Case(
        ["'-1'", "executor 'process'.workers"],
        ["run", *SLICE[:-2], "--executor", "process", "--set", "executor.process.workers=-1"]),
    "executor workers twice": Case(
        ["workers", "given twice"],
        ["run", *SLICE[:-2], "--executor", "process", "--workers", "2", "--set",
         "executor.process.workers=3"]),
    "executor not chosen": Case(["'executor.slurm.poll'", "not selected"],
                                run_set("executor.slurm.poll=1")),
    "gmm odd components": Case(["3", "components", "even"],
                               ["run", *SLICE, "--dataset", "gmm_8d", "--set",
                                "dataset.gmm_8d.components=3"]),
    # ------------------------------------------------ --set that would be ignored or is malformed
    "wildcard typo": Case(["'method.*.typo'", "no selected method", "'typo'"], run_set("method.*.typo=1")),
    "sampler not selected": Case(["'sampler.mh.steps'", "not selected", "ula"],
                                 run_set("sampler.mh.steps=3")),
    "unknown plugin in set": Case(["'nosuch'", "Valid methods"], run_set("method.nosuch.steps=3")),
    "unknown param": Case(["'stepz'", "Its parameters"], run_set("method.dsm.stepz=3")),
    "two-part key": Case(["'dsm.sigma=0.1'", "kind.name.param"], run_set("dsm.sigma=0.1")),
    "no equals": Case(["'method.dsm.sigma'", "kind.name.param=value"], run_set("method.dsm.sigma")),
    "unknown kind": Case(["'gizmo'", "Valid kinds"], run_set("gizmo.dsm.sigma=1")),
    "set twice": Case(["method.dsm.sigma", "already set"],
                      run_set("method.dsm.sigma=1", "--set", "method.dsm.sigma=2")),
    "long value cut short": Case(["method 'dsm'.sigma", "(100000 characters)"],
                                 run_set(f"method.dsm.sigma={LONG}")),
    # ------------------------------------------------ --timeout, --seeds, --workers, environment
    "timeout nan": Case(["--timeout 'nan'", "finite"], ["run", *SLICE, "--timeout", "nan"]),
    "timeout inf": Case(["--timeout 'inf'"], ["run", *SLICE, "--timeout", "inf"]),
    "timeout zero": Case(["--timeout '0'", "> 0"], ["run", *SLICE, "--timeout", "0"]),
    "timeout negative": Case(["--timeout '-5'"], ["run", *SLICE, "--timeout", "-5"]),
    "timeout text": Case(["--timeout 'soon'"], ["run", *SLICE, "--timeout", "soon"]),
    "seeds duplicated": Case(["--seeds '0,0'", "seed 0 is given twice"], ["run", *SLICE, "--seeds", "0,0"]),
    "seeds overlapping ranges": Case(["seed 3 is given twice"], ["run", *SLICE, "--seeds", "0-3,3-5"]),
    "seeds reversed": Case(["--seeds '3-1'", "reversed", "1-3"], ["run", *SLICE, "--seeds", "3-1"]),
    "seeds letters": Case(["--seeds 'a,b'", "'a'"], ["run", *SLICE, "--seeds", "a,b"]),
    "seeds negative": Case(["--seeds '-1'"], ["run", *SLICE, "--seeds", "-1"]),
    "seeds huge": Case(["99999999999", "outside"], ["run", *SLICE, "--seeds", "99999999999"]),
    "seeds empty": Case(["no seeds selected"], ["run", *SLICE, "--seeds", ","]),
    "seeds too many": Case(["0-1000000", "at most 100000"], ["run", *SLICE, "--seeds", "0-1000000"]),
    "workers zero": Case(["--workers '0'", "≥ 1"], ["run", *SLICE[:-2], "--workers", "0"]),
    "workers text": Case(["--workers 'many'"], ["run", *SLICE[:-2], "--workers", "many"]),
    "env workers zero": Case(["environment variable EBMBENCH_WORKERS", "'0'"], ["run", *SLICE[:-2]],
                             env={"EBMBENCH_WORKERS": "0"}),
    "env workers text": Case(["environment variable EBMBENCH_WORKERS", "'abc'"], ["run", *SLICE[:-2]],
                             env={"EBMBENCH_WORKERS": "abc"}),
    "env load plugins typo": Case(["environment variable EBMBENCH_LOAD_PLUGINS", "'nosuchdist'"],
                                  ["run", *SLICE], env={"EBMBENCH_LOAD_PLUGINS": "ebmbench,nosuchdist"}),
    # ------------------------------------------------ names and choices
    "unknown method": Case(["'nope'", "Valid methods", "dsm"], ["run", *SLICE, "--method", "nope"]),
    "close method": Case(["'dsn'", "Did you mean 'dsm'?"], ["run", *SLICE, "--method", "dsn"]),
    "long method name": Case(["unknown method", "(100000 characters)"], ["run", *SLICE, "--method", LONG]),
    "budget unknown": Case(["'huge'", "smoke"], ["run", *SLICE, "--budget", "huge"], one_line=False),
    "device unknown": Case(["'tpu'", "cpu"], ["run", *SLICE, "--device", "tpu"], one_line=False),
    "weight average unknown": Case(["'swa'", "ema"], ["run", *SLICE, "--weight-average", "swa"],
                                   one_line=False),
    "lr schedule unknown": Case(["'steep'", "cosine"], ["run", *SLICE, "--lr-schedule", "steep"],
                                one_line=False),
    "tune draw negative": Case(["-1 is not in the range", "--tune-draw"],
                               ["run", *SLICE, "--tune-draw", "-1"], one_line=False),
    "tune draw without tune": Case(["tune_draw 1", "--tune N"], ["run", *SLICE, "--tune-draw", "1"]),
    "nothing to run": Case(["say what to run"], ["run", "--results", STORE]),
    "fid weights missing": Case(["'missing.pt'", "no such file"], ["run", *SLICE, "--fid-weights",
                                                                    "missing.pt"]),
    "plugins dir missing": Case(["'nowhere'"], ["--plugins-dir", "nowhere", "list"], one_line=False),
    "list kind unknown": Case(["'gizmos'", "method"], ["list", "gizmos"], one_line=False),
    # ------------------------------------------------ files that are not a store
    "run on a foreign sqlite": Case(["other_app.sqlite'", "not an ebmbench results store", "users"],
                                    ["run", *SLICE, "--results", "other_app.sqlite"]),
    "run on user_version 1": Case(["foreign1.sqlite", "not an ebmbench results store",
                                   "user_version 1"], ["run", *SLICE, "--results", "foreign1.sqlite"]),
    "run on a damaged store": Case(["damaged.sqlite", "is damaged", "malformed"],
                                   ["run", *SLICE, "--results", "damaged.sqlite"]),
    "run on junk": Case(["junk.sqlite", "not an SQLite database"],
                        ["run", *SLICE, "--results", "junk.sqlite"]),
    "run on a folder": Case(["'afolder'", "directory"], ["run", *SLICE, "--results", "afolder"],
                            one_line=False),
    "export missing store": Case(["'missing.sqlite'", "no results store"],
                                 ["export", "--results", "missing.sqlite"]),
    "export into a file's folder": Case(["'afile/out.csv'", "'afile' is a file"],
                                        ["export", "--results", STORE, "-o", "afile/out.csv"]),
    "export into /proc": Case(["'/proc/x.csv'"], ["export", "--results", STORE, "-o", "/proc/x.csv"]),
    "export onto a folder": Case(["'afolder'", "directory"],
                                 ["export", "--results", STORE, "-o", "afolder"], one_line=False),
    "export a foreign sqlite": Case(["'other_app.sqlite'", "not an ebmbench results store"],
                                    ["export", "--results", "other_app.sqlite", "-o", "out.csv"]),
    "export an empty file": Case(["'empty.sqlite'", "an empty file"],
                                 ["export", "--results", "empty.sqlite", "-o", "out.csv"]),
    "export a damaged store": Case(["damaged.sqlite", "is damaged"],
                                   ["export", "--results", "damaged.sqlite", "-o", "out.csv"]),
    "export format unknown": Case(["'xls'"], ["export", "--results", STORE, "--format", "xls"],
                                  one_line=False),
    "leaderboard bad json": Case(["'bad.json'", "json"], ["leaderboard", "--results", "bad.json"]),
    "leaderboard csv without columns": Case(["'bad.csv'", "no column run_id"],
                                            ["leaderboard", "--results", "bad.csv"]),
    "leaderboard empty file": Case(["'empty.sqlite'"], ["leaderboard", "--results", "empty.sqlite"]),
    "leaderboard foreign sqlite": Case(["'other_app.sqlite'"], ["leaderboard", "--results",
                                                                "other_app.sqlite"]),
    "leaderboard missing export": Case(["'gone.json'"], ["leaderboard", "--results", "gone.json"]),
    "leaderboard into a file": Case(["'afile'"], ["leaderboard", "--results", STORE, "--out", "afile"],
                                    one_line=False),
    # ------------------------------------------------ the Python API
    "api seeds int": Case(["seeds 5", "[5]", "range(5)"], call=api_run(seeds=5)),
    "api seeds letters": Case(["'a'", "not a seed"], call=api_run(seeds=["a"])),
    "api seeds duplicated": Case(["seed 0 is given twice"], call=api_run(seeds=[0, 0])),
    "api seeds negative": Case(["seed -1"], call=api_run(seeds=[-1])),
    "api seeds float": Case(["1.5", "not a seed"], call=api_run(seeds=[1.5])),
    "api seeds bool": Case(["True", "not a seed"], call=api_run(seeds=[True])),
    "api seeds reversed string": Case(["'3-1'", "reversed"], call=api_run(seeds="3-1")),
    "api overrides two-part key": Case(["'dsm.sigma'", "kind.name.param"],
                                       call=api_run(overrides={"dsm.sigma": 0.1})),
    "api overrides not a dict": Case(["give a dict"], call=api_run(overrides=[("method.dsm.sigma", 1)])),
    "api overrides key not str": Case(["override key 3"], call=api_run(overrides={3: 1})),
    "api override nan": Case(["nan", "method 'dsm'.sigma"],
                             call=api_run(overrides={"method.dsm.sigma": float("nan")})),
    "api override fraction steps": Case(["2.7", "method 'dsm'.steps", "expected int"],
                                        call=api_run(overrides={"method.dsm.steps": 2.7})),
    "api override list": Case(["[1, 2]", "method 'dsm'.sigma"],
                              call=api_run(overrides={"method.dsm.sigma": [1, 2]})),
    "api override step size negative": Case(["-0.1", "sampler 'ula'.step_size"],
             call=api_run(overrides={"sampler.ula.step_size": -0.1})),
    "api methods int": Case(["methods 5"], call=api_run(methods=5)),
    "api methods list with int": Case(["3", "not a method name"], call=api_run(methods=["dsm", 3])),
    "api timeout nan": Case(["timeout nan", "finite"], call=api_run(timeout=float("nan"))),
    "api timeout bool": Case(["timeout True"], call=api_run(timeout=True)),
    "api timeout string": Case(["timeout '10'"], call=api_run(timeout="10")),
    "api budget none": Case(["budget None"], call=api_run(budget=None)),
    "api device int": Case(["device 5"], call=api_run(device=5)),
    "api lr schedule unknown": Case(["lr_schedule 'steep'", "cosine"], call=api_run(lr_schedule="steep")),
    "api lr schedule none": Case(["lr_schedule None", "constant"], call=api_run(lr_schedule=None)),
    "api weight average unknown": Case(["weight_average 'swa'", "none, ema, best"],
                                       call=api_run(weight_average="swa")),
    "api tune draw negative": Case(["tune_draw -1", ">= 0"], call=api_run(tune=2, tune_draw=-1)),
    "api tune draw bool": Case(["tune_draw True"], call=api_run(tune=2, tune_draw=True)),
    "api tune draw without tune": Case(["tune_draw 2", "--tune N"], call=api_run(tune_draw=2)),
    "api executor none": Case(["executor None"], call=api_run(executor=None)),
    "api results int": Case(["results 5"], call=api_run(results=5)),
    "api all string": Case(["all 'yes'"], call=api_run(all="yes")),
    "api executor params negative": Case(["-1", "executor 'process'.workers"],
                                         call=api_run(executor="process",
                                                      executor_params={"workers": -1})),
    "get_sampler none": Case(["sampler name None", "string"], call=lambda: ebmbench.get_sampler(None)),
    "get_sampler int": Case(["sampler name 5"], call=lambda: ebmbench.get_sampler(5)),
    "get_method fraction": Case(["2.7", "steps"], call=lambda: ebmbench.get_method("dsm", steps=2.7)),
    "get_method list": Case(["[1, 2]", "sigma"], call=lambda: ebmbench.get_method("dsm", sigma=[1, 2])),
    "get_method negative": Case(["-5", "steps"], call=lambda: ebmbench.get_method("dsm", steps=-5)),
    "get_method budget": Case(["'huge'"], call=lambda: ebmbench.get_method("dsm", budget="huge")),
    "get_method unknown": Case(["'nope'"], call=lambda: ebmbench.get_method("nope")),
    "get_architecture zero": Case(["0", "hidden"], call=lambda: ebmbench.get_architecture("mlp", hidden=0)),
    "get_dataset inf": Case(["inf", "scale"],
                            call=lambda: ebmbench.get_dataset("eight_gaussians", scale=float("inf"))),
    "get_metric text": Case(["'many'", "n_samples"],
                            call=lambda: ebmbench.get_metric("fisher", n_samples="many")),
    "get_executor negative": Case(["-1", "workers"],
                                  call=lambda: ebmbench.get_executor("process", workers=-1)),
    "list_plugins none": Case(["kind None"], call=lambda: ebmbench.list_plugins(None)),
    "list_plugins unknown": Case(["'gizmo'"], call=lambda: ebmbench.list_plugins("gizmo")),
    "load_results int": Case(["path 5"], call=lambda: ebmbench.load_results(5)),
    "load_results bad json": Case(["bad.json"], call=lambda: ebmbench.load_results("bad.json")),
    "load_results foreign": Case(["other_app.sqlite", "not an ebmbench results store"],
                                 call=lambda: ebmbench.load_results("other_app.sqlite")),
    "load_results empty": Case(["empty.sqlite"], call=lambda: ebmbench.load_results("empty.sqlite")),
}


def _row(run_id: str) -> dict[str, Any]:
    return {"run_id": run_id, "train_key": "k", "method": "dsm", "sampler": "ula",
            "architecture": "mlp", "dataset": "eight_gaussians", "seed": 0, "budget": "smoke",
            "status": "ok", "metrics": {"fisher_divergence": 1.0},
            "directions": {"fisher_divergence": False}}


def make_files(folder: Path) -> None:
    """The store and every bad file the table names, in ``folder``."""
    with ResultStore.open(folder / STORE) as store:
        store.write(_row("a"))
    with ResultStore.open(folder / "damaged.sqlite") as store:
        for i in range(40):  # enough rows for the runs table to span several pages
            store.write(_row(f"r{i}") | {"traceback": "x" * 400})
    with sqlite3.connect(folder / "damaged.sqlite") as db:
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
        page = db.execute("PRAGMA page_size").fetchone()[0]
    with (folder / "damaged.sqlite").open("r+b") as f:  # no SQLite connection is open now
        f.seek((root - 1) * page)
        f.write(b"\xff" * 8)  # an invalid b-tree page header
    with sqlite3.connect(folder / "other_app.sqlite") as db:
        db.execute("CREATE TABLE users (name TEXT)")
    with sqlite3.connect(folder / "foreign1.sqlite") as db:
        db.execute("CREATE TABLE t (x)")
        db.execute("PRAGMA user_version = 1")
    (folder / "empty.sqlite").write_bytes(b"")
    (folder / "junk.sqlite").write_bytes(b"not a database, just bytes\n" * 50)
    (folder / "bad.json").write_text("{not json")
    (folder / "bad.csv").write_text("a,b\n1,2\n")
    (folder / "afile").write_text("a file, not a folder\n")
    (folder / "afolder").mkdir()


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` → a hash of its bytes (folders as empty entries)."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/")
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-inputs")
    make_files(folder)
    return folder


@pytest.fixture
def folder(pristine, tmp_path, monkeypatch):
    import shutil

    work = tmp_path / "work"
    shutil.copytree(pristine, work)
    monkeypatch.chdir(work)
    return work


def _case(entry: Any) -> Case:
    return entry.values[0] if not isinstance(entry, Case) else entry


def test_the_table_holds_at_least_sixty_bad_inputs_across_the_cli_and_the_api():
    cases = [_case(c) for c in CASES.values()]
    assert len(cases) >= 60
    assert sum(c.args is not None for c in cases) >= 40
    assert sum(c.call is not None for c in cases) >= 20


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_a_bad_input_is_refused_by_name_and_changes_nothing(case, folder, monkeypatch, capsys,
                                                            fresh_plugins):
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    before = snapshot(folder)
    if case.call is not None:
        with pytest.raises(UserError) as info:
            case.call()
        message = str(info.value)
        out = capsys.readouterr()
        assert "Traceback" not in out.out + out.err
    else:
        with pytest.raises(SystemExit) as exit_info:
            main(case.args)
        out = capsys.readouterr()
        assert exit_info.value.code == case.code, out.err
        assert "Traceback" not in out.out + out.err
        message = out.err.strip()
        if case.one_line:
            assert message.startswith("Error: ") and "\n" not in message, message
    assert "\n" not in message.strip() or not case.one_line
    assert len(message) < 1200, "a long value must be cut short"
    for name in case.names:
        assert name in message, message
    assert snapshot(folder) == before


def test_a_string_names_one_plugin_in_the_api(fresh_plugins, tmp_path):
    # "dsm" is one method, not the methods 'd', 's' and 'm'; "dsm,ssm" is two, as on the CLI.
    from ebmbench.inputs import name_list

    assert name_list("method", "dsm") == ["dsm"]
    assert name_list("method", "dsm,ssm") == ["dsm", "ssm"]
    frame = ebmbench.run(methods="dsm", samplers="ula", architectures="mlp",
                         datasets="eight_gaussians", metrics="fisher", budget="smoke",
                         seeds="0", overrides={"method.dsm.steps": 2}, results=tmp_path / "r.sqlite")
    assert list(frame["method"]) == ["dsm"] and list(frame["status"]) == ["ok"]


def test_all_with_a_named_kind_runs_every_plugin_of_the_other_kinds_only(fresh_plugins, monkeypatch):
    # `--all --dataset two_moons --architecture mlp` keeps the named kinds: it is not
    # silently every dataset.
    from ebmbench import sweep

    seen = {}

    def fake_sweep(selection, **kwargs):
        seen["selection"] = selection
        raise UserError("stop here")

    monkeypatch.setattr(sweep, "run_sweep", fake_sweep)
    with pytest.raises(SystemExit):
        main(["run", "--all", "--dataset", "two_moons", "--architecture", "mlp", "--workers", "1"])
    selection = seen["selection"]
    assert selection.datasets == ["two_moons"] and selection.architectures == ["mlp"]
    assert selection.methods is None and selection.samplers is None
