"""The harness's learning-rate schedule (``--lr-schedule``): every optimiser a method owns
follows lr₀ × lr_factor(kind, progress) over the run, trials included; ``constant`` leaves
runs, keys and studies exactly as they were."""

from __future__ import annotations

import math

import pytest
import torch

import ebmbench
from ebmbench import lr_factor
from ebmbench.grid import Selection, expand
from ebmbench.leaderboard.aggregate import model_label
from ebmbench.plugins import get_plugin_manager
from ebmbench.store import ResultStore
from tests.helpers import registered_plugins, study_key

ExactSM = ebmbench.get_method("exact_sm").__class__


class LrRecorder(ExactSM):
    """Exact score matching that records, before each update, the lr of its optimiser and
    of a second one it owns (as a flow's would be), to check that both are scheduled."""

    name = "lr_recorder"
    description = "exact score matching that records its learning rates"
    seen: list[tuple[float, float]] = []

    def setup(self, ctx):
        super().setup(ctx)
        self.flow_optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)

    def train_step(self, batch):
        LrRecorder.seen.append((self.optimizer.param_groups[0]["lr"],
                                self.flow_optimizer.param_groups[0]["lr"]))
        return super().train_step(batch)


@pytest.fixture
def recorder(fresh_plugins):
    LrRecorder.seen = []
    with registered_plugins("lr_schedule_test_plugins", methods=[LrRecorder]):
        yield fresh_plugins


STEPS = 40
RUN = dict(methods=["lr_recorder"], samplers=["ula"], architectures=["quadratic"],
           datasets=["correlated_gaussian"], metrics=["fisher"], budget="smoke", device="cpu",
           # the iterates, so that this file checks the learning-rate schedule alone (averaging:
           # test_weight_average.py)
           weight_average="none",
           overrides={"method.lr_recorder.steps": STEPS, "method.lr_recorder.lr": 0.01})


def test_the_factors_have_their_closed_forms():
    for u in (0.0, 0.1, 0.37, 0.5, 0.9, 1.0):
        assert lr_factor("constant", u) == 1.0
        assert lr_factor("linear", u) == pytest.approx(1 - u)
        assert lr_factor("cosine", u) == pytest.approx(0.5 * (1 + math.cos(math.pi * u)))
    assert lr_factor("cosine", 1.0) == pytest.approx(0.0, abs=1e-15)
    assert lr_factor("linear", -0.5) == 1.0 and lr_factor("linear", 1.5) == 0.0  # clipped
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'steep'"):
        lr_factor("steep", 0.5)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_every_optimiser_follows_the_schedule_in_the_runs_progress(recorder, tmp_path, kind):
    # A compute budget far above what 40 updates spend: the step cap ends the run, so the
    # progress before update t is exactly t / 40.
    frame = ebmbench.run(results=tmp_path / "r.sqlite", lr_schedule=kind, train_flops=1e15, **RUN)
    assert frame.iloc[0]["compute"]["stopped_by"] == "max_steps"
    assert len(LrRecorder.seen) == STEPS
    for t, (adam_lr, flow_lr) in enumerate(LrRecorder.seen):
        factor = lr_factor(kind, t / STEPS)
        assert adam_lr == pytest.approx(0.01 * factor, rel=1e-9), t
        assert flow_lr == pytest.approx(0.5 * factor, rel=1e-9), t  # its own lr₀ is kept
    row = frame.iloc[0]
    assert row["hyperparams"]["lr_schedule"] == kind
    assert model_label(row["method"], row["hyperparams"]) == (
        f"lr_recorder (lr_schedule={kind}, weight_average=none)")


def test_a_compute_bound_run_decays_to_near_zero_by_its_budget(recorder, tmp_path):
    frame = ebmbench.run(results=tmp_path / "r.sqlite", lr_schedule="linear", **RUN
                         | {"overrides": RUN["overrides"] | {"method.lr_recorder.steps": 100_000}})
    assert frame.iloc[0]["compute"]["stopped_by"] == "budget"
    lrs = [a for a, _ in LrRecorder.seen]
    assert lrs[0] == 0.01 and all(b <= a for a, b in zip(lrs, lrs[1:], strict=False))
    # The last update starts within one update of the budget's end.
    assert lrs[-1] <= 0.01 * 2 / len(lrs)


def test_constant_keeps_every_key_and_a_decay_changes_them(fresh_plugins):
    pm = get_plugin_manager()
    base = dict(methods=["dsm"], samplers=["ula"], architectures=["mlp"], datasets=["banana"],
                metrics=[], budget="smoke")
    (plain,), _ = expand(Selection(**base), pm)
    (constant,), _ = expand(Selection(**base, lr_schedule="constant"), pm)
    (cosine,), _ = expand(Selection(**base, lr_schedule="cosine"), pm)
    (linear,), _ = expand(Selection(**base, lr_schedule="linear"), pm)
    assert constant.lr_schedule == "constant"
    assert (constant.run_id, constant.train_key) == (plain.run_id, plain.train_key)
    keys = {plain.train_key, cosine.train_key, linear.train_key}
    assert len(keys) == 3

    assert study_key(constant) == study_key(plain) != study_key(cosine)


def test_trials_train_with_the_schedule_and_the_model_reloads(recorder, tmp_path):
    results = tmp_path / "r.sqlite"
    frame = ebmbench.run(results=results, lr_schedule="cosine", tune=2, train_flops=1e15, **RUN)
    with ResultStore.open(results) as store:
        trials = store.trial_rows()
    assert len(trials) == 2 + 2  # two trials and their replicates (the confirmation)
    assert all(t["hyperparams"]["lr_schedule"] == "cosine" for t in trials)
    # Five trainings (two trials, two replicates, one run), each decaying from its own lr₀
    # to near zero.
    assert len(LrRecorder.seen) == 5 * STEPS
    for k in range(5):
        lrs = [a for a, _ in LrRecorder.seen[k * STEPS:(k + 1) * STEPS]]
        assert lrs[-1] == pytest.approx(lrs[0] * lr_factor("cosine", (STEPS - 1) / STEPS))
    model = ebmbench.load_model(frame.iloc[0]["run_id"], results=results, device="cpu")
    assert model.spec.lr_schedule == "cosine"


def test_train_takes_the_schedule_too(recorder):
    model = ebmbench.train("lr_recorder", "quadratic", "correlated_gaussian", sampler="ula",
                           budget="smoke", device="cpu", lr_schedule="linear", steps=STEPS, lr=0.01)
    lrs = [a for a, _ in LrRecorder.seen]
    assert model.spec.lr_schedule == "linear" and len(lrs) >= 2
    assert lrs[0] == 0.01 and lrs[-1] < lrs[0] and all(b <= a for a, b in zip(lrs, lrs[1:], strict=False))
    with pytest.raises(ebmbench.UserError, match="unknown lr_schedule 'steep'. Valid schedules: "
                                                 "constant, linear, cosine"):
        ebmbench.train("dsm", "mlp", "banana", budget="smoke", lr_schedule="steep")
