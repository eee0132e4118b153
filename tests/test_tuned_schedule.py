"""``--lr-schedule tuned``: each tuning study searches the learning-rate schedule
(``constant`` or ``cosine``) with its method's hyper-parameters, and its runs train under
the one it chose (docs/protocol.md, section 1)."""

from __future__ import annotations

import pytest

import ebmbench
from ebmbench.grid import Selection, expand
from ebmbench.leaderboard.aggregate import model_label
from ebmbench.plugins import get_plugin_manager
from ebmbench.store import ResultStore
from ebmbench.tuning import STARTUP_TRIALS, is_replicate, next_trial_params, plan_studies
from tests.helpers import load_script
from tests.test_cli import ebmbench as ebmbench_cli

# Exact score matching at a fixed, large learning rate on small batches: the constant
# schedule's last iterate is one noisy draw around the optimum, a decay to zero averages
# the noise out. The iterates and the last point, so that nothing else averages it.
NOISY = dict(methods=["exact_sm"], samplers=["ula"], architectures=["quadratic"],
             datasets=["correlated_gaussian"], metrics=["fisher"], budget="smoke", device="cpu",
             weight_average="none", checkpoint="last", train_flops=1e12,
             overrides={"method.exact_sm.steps": 300, "method.exact_sm.batch_size": 16,
                        "method.exact_sm.lr": 0.05})


def _trials(results):
    with ResultStore.open(results) as store:
        rows = store.trial_rows()
    return ([r for r in rows if not is_replicate(r)], [r for r in rows if is_replicate(r)])


def _schedule(row) -> str:
    return row["hyperparams"].get("lr_schedule", "constant")


def test_the_study_chooses_the_decay_where_iterate_noise_is_what_is_left(tmp_path):
    results = tmp_path / "r.sqlite"
    run = ebmbench.run(results=results, tune=2, lr_schedule="tuned", **NOISY).iloc[0]
    search, replicates = _trials(results)
    # Only the schedule is searched (the lr is fixed): trial 0 the defaults under
    # constant, trial 1 the same under cosine; both confirmed on another seed.
    assert [(_schedule(r), r["trial"]) for r in sorted(search, key=lambda r: r["trial"])] == [
        ("constant", 0), ("cosine", 1)]
    assert sorted(_schedule(r) for r in replicates) == ["constant", "cosine"]
    record = run["hyperparams"]["tuning"]
    assert record["searched"] == {"lr_schedule": "one of constant, cosine"}
    assert record["chosen"] == {"lr_schedule": "cosine"} and record["chosen_trial"] == 1
    # The run trained under its study's choice, and says so in its row and its label.
    assert run["hyperparams"]["lr_schedule"] == "cosine"
    assert model_label(run["method"], run["hyperparams"]) == (
        "exact_sm (checkpoint=last, lr_schedule=cosine, weight_average=none)")
    # ... and the choice made on the validation split holds on the test split: the same
    # configuration under a constant lr is several times worse there.
    constant = ebmbench.run(results=tmp_path / "constant.sqlite", **NOISY).iloc[0]
    assert run["metric.fisher_divergence"] < 0.5 * constant["metric.fisher_divergence"]
    # scripts/tuned_defaults.py proposes method defaults: the schedule is not one.
    chosen = load_script("tuned_defaults").chosen_values(ebmbench.load_results(results))
    assert chosen == {}


def test_the_random_start_alternates_the_schedule_and_tpe_searches_it_after(fresh_plugins):
    pm = get_plugin_manager()
    specs, _ = expand(Selection(methods=["dsm"], samplers=["ula"], architectures=["quadratic"],
                                datasets=["correlated_gaussian"], budget="smoke",
                                lr_schedule="tuned"), pm)
    (study,) = plan_studies(specs, pm, fixed=set()).values()
    assert set(study.space) == {"lr", "sigma", "lr_schedule"}
    drawn = [next_trial_params(study, [], n) for n in range(STARTUP_TRIALS)]
    assert [d["lr_schedule"] for d in drawn] == ["constant", "cosine", "constant", "cosine"]
    assert drawn[0]["lr"] == study.base.params["method"]["lr"]  # trial 0: the defaults
    assert len({d["lr"] for d in drawn}) == STARTUP_TRIALS  # the rest drawn at random
    # Past the random start TPE draws the schedule too (no rows yet: from its prior).
    later = {next_trial_params(study, [], n)["lr_schedule"] for n in range(STARTUP_TRIALS, 24)}
    assert later == {"constant", "cosine"}


def test_a_tuned_schedule_makes_its_own_studies_and_trials(tmp_path):
    """A constant-schedule sweep and a tuned one in one store: trial 0 of both trains the
    same configuration under the same schedule, yet each study keeps its own trials."""
    results = tmp_path / "r.sqlite"
    ebmbench.run(results=results, tune=2, **NOISY)
    ebmbench.run(results=results, tune=2, lr_schedule="tuned", **NOISY)
    search, _ = _trials(results)
    studies = {}
    for row in search:
        studies.setdefault(row["hyperparams"]["tuning"]["study"], []).append(row["trial"])
    assert sorted(map(sorted, studies.values())) == [[0, 1], [0, 1]]


def test_only_a_tuning_sweep_takes_a_tuned_schedule(tmp_path):
    with pytest.raises(ebmbench.UserError, match=r"lr_schedule 'tuned' is chosen by each tuning "
                                                 r"study: give the number of trials too"):
        ebmbench.run(results=tmp_path / "r.sqlite", lr_schedule="tuned", **NOISY)
    with pytest.raises(ebmbench.UserError, match="unknown lr_schedule 'tuned'. Valid schedules: "
                                                 "constant, linear, cosine"):
        ebmbench.train("exact_sm", "quadratic", "correlated_gaussian", budget="smoke",
                       lr_schedule="tuned")
    proc = ebmbench_cli("run", "--method", "exact_sm", "--dataset", "banana", "--lr-schedule",
                        "tuned", "--results", "c.sqlite", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "Error: lr_schedule 'tuned' is chosen by each tuning study: give the number of trials "
        "too (--tune N), or a schedule: constant, linear, cosine")
    assert not (tmp_path / "c.sqlite").exists()


def test_the_sampler_board_s_reference_energy_trains_under_the_default_schedule(fresh_plugins):
    """The board's reference energy is trained untuned, so a sweep's tuned schedule, which
    only a study can choose, falls back to the default for it."""
    from ebmbench.sampler_board import plan_board

    selection = Selection(methods=["dsm"], samplers=["ula"], architectures=["mlp"],
                          datasets=["two_moons"], budget="smoke", lr_schedule="tuned")
    references = [s.reference for s in plan_board(selection) if s.reference is not None]
    assert references and {r.lr_schedule for r in references} == {"constant"}
