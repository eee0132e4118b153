"""The model a run reports (``--checkpoint``, :mod:`ebmbench.early_stopping`): under
``best`` the best learning-curve point on the validation split, model and method state
together; under ``last`` the final model, with the run ids of the rows made before the
rule existed."""

from __future__ import annotations

import math

import pytest
import torch

import ebmbench
from ebmbench.early_stopping import BestCheckpoint, point_rank, select_point
from ebmbench.grid import Selection, expand
from ebmbench.leaderboard import write_leaderboards
from ebmbench.leaderboard.aggregate import model_label
from ebmbench.model import _spec_from_row
from ebmbench.plugins import get_plugin_manager
from ebmbench.tuning import Study, objective_of, plan_studies, validation_nll
from tests.helpers import ROOT, registered_plugins

ExactSM = ebmbench.get_method("exact_sm").__class__

STEPS = 64
#: The update after which the model is wrecked: past the curve point at 1/2 (step 32).
WRECK_AT = 40


class LateBlowup(ExactSM):
    """Exact score matching that wrecks its energy after update ``WRECK_AT`` (every
    parameter × −4: a quadratic energy's precision flips and grows) and counts its updates
    in its state, as a method with state of its own (NCE's log Z, PCD's buffer) would."""

    name = "late_blowup"
    description = "exact score matching whose energy is wrecked late in its run"
    restored: list[int] = []

    def setup(self, ctx):
        super().setup(ctx)
        self.updates = 0

    def train_step(self, batch):
        logs = super().train_step(batch)
        self.updates += 1
        if self.updates == WRECK_AT:
            with torch.no_grad():
                for p in self.energy.parameters():
                    p.mul_(-4.0)
        return logs

    def state_dict(self):
        return {"updates": torch.tensor(self.updates)}

    def load_state_dict(self, state):
        self.updates = int(state["updates"])
        LateBlowup.restored.append(self.updates)


@pytest.fixture
def blowup(fresh_plugins):
    LateBlowup.restored = []
    with registered_plugins("early_stopping_test_plugins", methods=[LateBlowup]):
        yield fresh_plugins


# The step cap binds first (a budget far above what 64 updates spend), so the curve points
# sit at exact fractions of the 64 updates: steps 1, 1, 1, 2, 4, 8, 16, 32 and 64.
RUN = dict(methods=["late_blowup"], samplers=["ula"], architectures=["quadratic"],
           datasets=["correlated_gaussian"], metrics=["fisher"], budget="smoke", device="cpu",
           # the iterates, so that this file checks the checkpoint rule alone (averaging:
           # test_weight_average.py)
           weight_average="none",
           train_flops=1e15,
           overrides={"method.late_blowup.steps": STEPS, "method.late_blowup.lr": 0.05})


def test_the_rule_prefers_a_sound_point_then_the_lower_objective_then_the_later():
    fd = "fisher_divergence"
    assert point_rank({fd: 1.0}, fd, None) == (0, 1.0)
    assert point_rank({fd: 1.0, "nll": 4.1}, fd, reference_nll=3.0) == (1, 1.0)  # > 3 + 1 nat
    assert point_rank({fd: 1.0, "nll": 3.9}, fd, reference_nll=3.0) == (0, 1.0)
    assert point_rank({fd: math.nan}, fd, None) is None and point_rank({}, fd, None) is None
    curve = [{fd: 2.0, "nll": 3.0}, {fd: 1.0, "nll": 3.0}, {fd: 1.0, "nll": 3.0},
             {fd: 0.1, "nll": 8.0}]
    assert select_point(curve, fd, reference_nll=3.0) == 2   # a tie goes to the later point
    assert select_point(curve, fd) == 3                      # no reference: no NLL test
    unsound = [{fd: 2.0, "nll": 9.0}, {fd: 1.0, "nll": 9.5}]
    assert select_point(unsound, fd, reference_nll=3.0) == 1  # none sound: the lowest
    assert select_point([{"kid": 1.0}], fd) is None           # the objective is not on it


def test_the_keeper_copies_only_improvements_and_restores_model_and_method():
    energy = torch.nn.Linear(1, 1)
    method = LateBlowup.__new__(LateBlowup)
    method.updates = 0
    keeper = BestCheckpoint("fisher_divergence", None)
    for index, (value, weight) in enumerate([(3.0, 1.0), (1.0, 2.0), (2.0, 3.0)]):
        with torch.no_grad():
            energy.weight.fill_(weight)
        method.updates = index
        keeper.offer(index, {"fisher_divergence": value}, energy, method)
    assert keeper.index == 1
    assert keeper.restore(energy, method)
    assert energy.weight.item() == 2.0 and method.updates == 1
    assert not BestCheckpoint(None, None).restore(energy, method)  # nothing kept


def test_a_run_reports_its_best_validated_model_not_its_wrecked_last(blowup, tmp_path):
    best = ebmbench.run(results=tmp_path / "best.sqlite", **RUN).iloc[0]
    last = ebmbench.run(results=tmp_path / "last.sqlite", checkpoint="last", **RUN).iloc[0]
    for row in (best, last):
        assert row["status"] == "ok" and row["compute"]["stopped_by"] == "max_steps"
        assert row["compute"]["steps"] == STEPS  # both spent the whole run
    curve = best["curve"]
    assert [p["step"] for p in curve][-2:] == [32, 64]
    # Wrecked after update 40: the last point is far worse than the one at step 32.
    assert curve[-1]["fisher_divergence"] > 100 * curve[-2]["fisher_divergence"]
    chosen = best["compute"]["reported_point"]
    assert chosen == select_point(curve, "fisher_divergence") == len(curve) - 2
    assert best["compute"]["reported_step"] == 32
    assert last["compute"]["reported_point"] == len(last["curve"]) - 1
    # The evaluated model is the chosen one: its test Fisher divergence is that of the
    # point at step 32 on the validation split (another sample of the same density), and
    # the method's own state came back with it (32 updates, not 64).
    assert best["metric.fisher_divergence"] == pytest.approx(
        curve[chosen]["fisher_divergence"], rel=0.3)
    assert last["metric.fisher_divergence"] > 100 * best["metric.fisher_divergence"]
    assert LateBlowup.restored[0] == 32
    # The rule is recorded; the last-model run is labelled, so it is ranked apart (both say
    # they report iterates, which the default does not).
    assert best["hyperparams"]["checkpoint"] == "best"
    assert model_label(best["method"], best["hyperparams"]) == "late_blowup (weight_average=none)"
    assert model_label(last["method"], last["hyperparams"]) == (
        "late_blowup (checkpoint=last, weight_average=none)")
    # The leaderboard says which checkpoint each seed reports (not the last: 50 % of the run).
    write_leaderboards(tmp_path / "best.sqlite", tmp_path / "board")
    text = (tmp_path / "board" / "correlated_gaussian.md").read_text()
    assert "| reported model" in text and "best: 50 %" in text
    write_leaderboards(tmp_path / "last.sqlite", tmp_path / "board-last")
    assert "reported model" not in (tmp_path / "board-last" / "correlated_gaussian.md").read_text()
    # The checkpoint file holds the reported model: loading it gives the same values.
    model = ebmbench.load_model(best["run_id"], results=tmp_path / "best.sqlite")
    assert model.evaluate(["fisher"])["fisher_divergence"] == pytest.approx(
        best["metric.fisher_divergence"], rel=1e-6)


def test_a_trial_is_scored_and_judged_at_the_point_it_reports():
    study = Study("k", None, {}, "fisher_divergence", True, "ula", 0)  # type: ignore[arg-type]
    curve = [{"fisher_divergence": 2.0, "nll": 3.0}, {"fisher_divergence": 9.0, "nll": 30.0}]
    row = {"status": "ok", "curve": curve, "compute": {"reported_point": 0}}
    assert objective_of(row, study) == 2.0 and validation_nll(row) == 3.0
    older = {"status": "ok", "curve": curve, "compute": {}}  # a row from before the rule
    assert objective_of(older, study) == 9.0 and validation_nll(older) == 30.0


def test_last_keeps_the_ids_of_published_rows_and_best_makes_new_ones(fresh_plugins):
    pm = get_plugin_manager()
    frame = ebmbench.load_results(ROOT / "leaderboards" / "results.csv")
    # A published row from before the rule (digits' rows record none).
    recorded = frame["hyperparams"].map(lambda h: "checkpoint" in h)
    row = frame[(frame["role"] == "run") & (frame["status"] == "ok")
                & (frame["method"] == "dsm") & ~recorded].iloc[0].to_dict()
    spec = _spec_from_row(pm, row)  # no rule recorded: the rows before it, ``last``
    assert spec.checkpoint == "last" and spec.run_id == row["run_id"]
    assert spec.train_key == row["train_key"]
    selection = dict(methods=["dsm"], samplers=["ula"], architectures=["mlp"],
                     datasets=["two_moons"], metrics=[], seeds=(0,), budget="quick")
    (as_best,), _ = expand(Selection(**selection), pm)
    (as_last,), _ = expand(Selection(**selection, checkpoint="last"), pm)
    assert as_best.checkpoint == "best" and as_last.checkpoint == "last"
    assert as_best.run_id != as_last.run_id and as_best.train_key != as_last.train_key
    assert set(plan_studies([as_best], pm, set())) != set(plan_studies([as_last], pm, set()))


def test_a_bad_rule_is_refused_with_the_choices(tmp_path):
    with pytest.raises(ebmbench.UserError, match="unknown checkpoint 'first'. Valid rules: best, last"):
        ebmbench.run(methods=["dsm"], datasets=["two_moons"], checkpoint="first",
                     results=tmp_path / "r.sqlite")


def test_the_what_if_script_finds_the_earlier_point_a_last_run_passed_over(blowup, tmp_path):
    """scripts/checkpoint_what_if.py (the counts protocol.md gives for the publication before
    the rule) applies the rule to curves stored under ``last``."""
    from tests.helpers import load_script

    store = tmp_path / "last.sqlite"
    ebmbench.run(results=store, checkpoint="last", **(RUN | {"metrics": ["fisher", "log_partition"]}))
    counts = load_script("checkpoint_what_if").what_if(str(store))
    assert counts == {"trainings": 1, "earlier": 1, "degenerate": 0, "rescued": 0,
                      "reported_earlier": 0, "reported_at_half": 0}
    # Under ``best`` the same run reports the point at half its run, and says so.
    best = tmp_path / "best.sqlite"
    ebmbench.run(results=best, **(RUN | {"metrics": ["fisher", "log_partition"]}))
    counts = load_script("checkpoint_what_if").what_if(str(best))
    assert counts["reported_earlier"] == counts["reported_at_half"] == 1
