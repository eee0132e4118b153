"""Weight averaging (``--weight-average``): a run evaluates and reports the power-function
EMA of its iterates (Karras et al. 2024; ``ema``), or at each curve point whichever of it
and the iterate validates better (``best``, the default); training is untouched, and
``none`` leaves every run, key and study as it was before the option existed."""

from __future__ import annotations

import math

import pytest
import torch

import ebmbench
from ebmbench.averaging import (
    WEIGHT_AVERAGES,
    IterateAverage,
    power_ema_beta,
    power_ema_gamma,
    take_curve_point,
)
from ebmbench.early_stopping import point_rank
from ebmbench.grid import Selection, expand
from ebmbench.leaderboard.aggregate import model_label
from ebmbench.learning_curve import LearningCurveProbe
from ebmbench.plugins import get_plugin_manager
from ebmbench.runner import _load_data, validation_split
from ebmbench.store import ResultStore
from tests.helpers import registered_plugins, study_key

ExactSM = ebmbench.get_method("exact_sm").__class__


def weights(t: int, gamma: float) -> torch.Tensor:
    """The weight of iterate τ = 1..t in the average after update t, from the recursion:
    w_τ = (1 − β_τ) Π_{s>τ} β_s."""
    betas = torch.tensor([power_ema_beta(s, gamma) for s in range(1, t + 1)], dtype=torch.float64)
    later = torch.cat([torch.flip(torch.cumprod(torch.flip(betas[1:], [0]), 0), [0]),
                       torch.ones(1, dtype=torch.float64)])
    return (1 - betas) * later


def test_the_weights_are_the_power_function_of_their_width():
    gamma = power_ema_gamma(0.10)
    # The cubic's root: σ_rel of the continuous profile τ^γ on [0, t] is 0.10.
    assert math.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3))) == pytest.approx(0.10, rel=1e-9)
    t = 2000
    w = weights(t, gamma)
    tau = torch.arange(1, t + 1, dtype=torch.float64)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    # Proportional to τ^γ (Karras et al. 2024, eq. 3), up to the discretisation's O(1/τ).
    profile = tau ** gamma / (tau ** gamma).sum()
    assert torch.allclose(w[t // 2:], profile[t // 2:], rtol=0.01)
    mean = float((w * tau).sum())
    width = math.sqrt(float((w * (tau - mean) ** 2).sum())) / t
    assert width == pytest.approx(0.10, rel=0.01)
    # γ = 0 is the plain running mean.
    assert torch.allclose(weights(50, 0.0), torch.full((50,), 1 / 50, dtype=torch.float64))
    with pytest.raises(ValueError, match="sigma_rel must be in"):
        power_ema_gamma(0.5)


def test_the_average_of_noisy_iterates_has_the_variance_of_its_weights():
    # Iterates θ_t = θ* + ε_t with ε_t iid N(0, I): the last iterate is off by a unit
    # variance per coordinate, the average by Σ_τ w_τ² (about 1/190 here).
    gen = torch.Generator().manual_seed(0)
    theta = torch.nn.Parameter(torch.zeros(4000))
    average = IterateAverage([theta, theta])  # a parameter shared by two groups counts once
    assert len(average.params) == 1
    t = 2000
    for _ in range(t):
        theta.data = 3.0 + torch.randn(4000, generator=gen)
        average.update()
    expected = float((weights(t, average.gamma) ** 2).sum())
    with average.swapped():
        error = float(((theta.detach() - 3.0) ** 2).mean())
    assert error == pytest.approx(expected, rel=0.05)
    assert expected < 1 / 150
    assert float(((theta.detach() - 3.0) ** 2).mean()) == pytest.approx(1.0, rel=0.05)  # back


class IterateRecorder(ExactSM):
    """Exact score matching that records its energy's parameters before and after each
    update: the training's iterates."""

    name = "iterate_recorder"
    description = "exact score matching that records its iterates"
    before: list[list[torch.Tensor]] = []
    after: list[list[torch.Tensor]] = []

    def train_step(self, batch):
        IterateRecorder.before.append([p.detach().clone() for p in self.energy.parameters()])
        logs = super().train_step(batch)
        IterateRecorder.after.append([p.detach().clone() for p in self.energy.parameters()])
        return logs


@pytest.fixture
def recorder(fresh_plugins):
    IterateRecorder.before, IterateRecorder.after = [], []
    with registered_plugins("weight_average_test_plugins", methods=[IterateRecorder]):
        yield fresh_plugins


def validation_probe(model) -> LearningCurveProbe:
    """The learning curve of ``model``'s run: its dataset and validation split, as the
    harness builds them."""
    dataset = get_plugin_manager().info("dataset", model.spec.dataset).cls(
        budget="smoke", **model.spec.params["dataset"])
    train, _ = _load_data(dataset, model.spec, read_test=False)
    _, validation = validation_split(train, model.spec)
    return LearningCurveProbe(dataset, validation, torch.device("cpu"), "smoke", model.method)


STEPS = 60
RUN = dict(methods=["iterate_recorder"], samplers=["ula"], architectures=["quadratic"],
           datasets=["correlated_gaussian"], metrics=["fisher"], budget="smoke", device="cpu",
           train_flops=1e15,
           overrides={"method.iterate_recorder.steps": STEPS, "method.iterate_recorder.lr": 0.05})


def test_a_run_reports_the_average_of_its_iterates_and_trains_on_the_iterates(recorder, tmp_path):
    results = tmp_path / "r.sqlite"
    frame = ebmbench.run(results=results, weight_average="ema", checkpoint="last", **RUN)
    row = frame.iloc[0]
    assert row["status"] == "ok" and row["compute"]["steps"] == STEPS
    # Training is untouched: each update starts from the iterate the last one left, the
    # learning-curve points (which swap the average in) notwithstanding.
    assert len(IterateRecorder.after) == STEPS and len(row["curve"]) >= 5
    for t in range(1, STEPS):
        for b, a in zip(IterateRecorder.before[t], IterateRecorder.after[t - 1], strict=True):
            assert torch.equal(b, a), t
    # The reported model is Σ_τ w_τ θ_τ, computed here from the weights' closed form.
    w = weights(STEPS, power_ema_gamma(0.10))
    expected = [sum(float(w[t]) * IterateRecorder.after[t][i].double() for t in range(STEPS))
                for i in range(len(IterateRecorder.after[0]))]
    model = ebmbench.load_model(row["run_id"], results=results, device="cpu")
    assert model.spec.weight_average == "ema"
    for got, want, last in zip(model.energy.parameters(), expected, IterateRecorder.after[-1],
                               strict=True):
        assert torch.allclose(got.detach().double(), want, atol=1e-5)
        assert not torch.allclose(got.detach(), last, atol=1e-4)  # not the last iterate
    assert row["hyperparams"]["weight_average"] == "ema"
    assert model_label(row["method"], row["hyperparams"]) == (
        "iterate_recorder (checkpoint=last, weight_average=ema)")


def test_the_curve_scores_the_average(recorder, tmp_path):
    # The last curve point is the validation split's Fisher divergence of the averaged
    # model, not of the last iterate (lr 0.05 leaves the iterates noisy: they differ).
    results = tmp_path / "r.sqlite"
    row = ebmbench.run(results=results, weight_average="ema", checkpoint="last", **RUN).iloc[0]
    model = ebmbench.load_model(row["run_id"], results=results, device="cpu")
    probe = validation_probe(model)
    averaged = probe._fisher(model.energy)
    with torch.no_grad():
        for p, last in zip(model.energy.parameters(), IterateRecorder.after[-1], strict=True):
            p.copy_(last)
    iterate = probe._fisher(model.energy)
    assert row["curve"][-1]["fisher_divergence"] == pytest.approx(averaged, rel=1e-5)
    assert abs(iterate - averaged) > 1e-3 * averaged


def test_best_is_the_default_and_none_keeps_the_keys_rows_had_before_averaging(fresh_plugins):
    pm = get_plugin_manager()
    base = dict(methods=["dsm"], samplers=["ula"], architectures=["mlp"], datasets=["banana"],
                metrics=[], budget="smoke")
    (default,), _ = expand(Selection(**base), pm)
    specs = {w: expand(Selection(**base, weight_average=w), pm)[0][0] for w in WEIGHT_AVERAGES}
    assert default.weight_average == "best"
    assert (default.run_id, default.train_key) == (specs["best"].run_id, specs["best"].train_key)
    # none: no averaging entry in the digest, so the rows made before the option keep their ids.
    assert all("weight_average" not in extra for extra in specs["none"]._extra())
    assert all(extra.get("weight_average") == w for w in ("ema", "best") for extra in specs[w]._extra())
    # Each setting is its own run, training and tuning study.
    for key in ("run_id", "train_key"):
        assert len({getattr(s, key) for s in specs.values()}) == len(WEIGHT_AVERAGES)
    assert len({study_key(s) for s in specs.values()}) == len(WEIGHT_AVERAGES)


def test_trials_are_averaged_too(recorder, tmp_path):
    results = tmp_path / "r.sqlite"
    ebmbench.run(results=results, weight_average="ema", tune=2, **RUN)
    with ResultStore.open(results) as store:
        trials = store.trial_rows()
    assert trials and all(t["hyperparams"]["weight_average"] == "ema" for t in trials)


def test_train_takes_the_average_and_refuses_an_unknown_one(recorder):
    model = ebmbench.train("iterate_recorder", "quadratic", "correlated_gaussian", sampler="ula",
                           budget="smoke", device="cpu", weight_average="ema", steps=20, lr=0.05)
    assert model.spec.weight_average == "ema"
    with pytest.raises(ebmbench.UserError, match="unknown weight_average 'swa'. Valid averages: "
                                                 "none, ema, best"):
        ebmbench.train("dsm", "mlp", "banana", budget="smoke", weight_average="swa")


def test_a_low_precision_parameter_is_averaged_in_float32():
    # bf16 keeps 8 bits of mantissa: increments of (1 − β) ≈ 1 % of a change would round
    # away in a bf16 average. The average is float32; only the swap rounds it to bf16.
    theta = torch.nn.Parameter(torch.zeros(1000, dtype=torch.bfloat16))
    gen = torch.Generator().manual_seed(1)
    average = IterateAverage([theta])
    t = 1000
    for _ in range(t):
        theta.data = (1.0 + 0.1 * torch.randn(1000, generator=gen)).to(torch.bfloat16)
        average.update()
    assert average.average[0].dtype == torch.float32
    spread = float(average.average[0].std())
    assert spread == pytest.approx(0.1 * math.sqrt(float((weights(t, average.gamma) ** 2).sum())),
                                   rel=0.1)
    with average.swapped():
        assert theta.dtype == torch.bfloat16
        assert torch.allclose(theta.detach().float(), average.average[0], rtol=1 / 128)


class DistanceProbe:
    """A learning curve whose objective is the squared distance of a parameter to 2."""

    def __init__(self, theta):
        self.theta, self.points = theta, []

    def measure(self, energy, compute, logs, progress=None):
        return {"fisher_divergence": (float(self.theta.detach()) - 2.0) ** 2}

    def __call__(self, energy, compute, logs, progress=None):
        self.points.append(self.measure(energy, compute, logs, progress))
        return self.points[-1]


@pytest.mark.parametrize(("iterate", "rule", "rank", "kept"), [
    (1.0, "best", True, "average"),    # the average (1.5) is nearer 2: it is the point
    (2.2, "best", True, "iterate"),    # the iterate is nearer
    (1.0, "best", False, "iterate"),   # nothing to validate by: the iterate
    (2.2, "ema", True, "average"),     # always the average
    (1.0, "none", True, "iterate"),    # never
])
def test_a_curve_point_is_the_candidate_the_rule_keeps(iterate, rule, rank, kept):
    theta = torch.nn.Parameter(torch.tensor(2.0))
    average = IterateAverage([theta], gamma=0.0)
    for value in (2.0, 1.0):                  # the running mean of 2 and 1 is 1.5
        theta.data.fill_(value)
        average.update()
    theta.data.fill_(iterate)
    probe = DistanceProbe(theta)
    ranker = (lambda p: point_rank(p, "fisher_divergence", None)) if rank else None
    point = take_curve_point(probe, None, None, {}, 1.0, average, rule, ranker)
    expected = 1.5 if kept == "average" else float(torch.tensor(iterate))
    assert point["fisher_divergence"] == pytest.approx((expected - 2.0) ** 2)
    assert probe.points == [point]
    assert point.get("averaged", 0.0) == (1.0 if kept == "average" else 0.0)
    assert float(theta.detach()) == pytest.approx(iterate)   # the iterate is back in place


def test_best_reports_the_candidate_that_validates_better(recorder, tmp_path):
    results = tmp_path / "r.sqlite"
    row = ebmbench.run(results=results, weight_average="best", checkpoint="last", **RUN).iloc[0]
    model = ebmbench.load_model(row["run_id"], results=results, device="cpu")
    assert all("averaged" in p for p in row["curve"])
    probe = validation_probe(model)
    w = weights(STEPS, power_ema_gamma(0.10))
    candidates = {
        1.0: [sum(float(w[t]) * IterateRecorder.after[t][i] for t in range(STEPS))
              for i in range(len(IterateRecorder.after[0]))],
        0.0: IterateRecorder.after[-1],
    }
    scores = {}
    for flag, params in candidates.items():
        with torch.no_grad():
            for p, value in zip(model.energy.parameters(), params, strict=True):
                p.copy_(value)
        scores[flag] = probe._fisher(model.energy)
    last = row["curve"][-1]
    assert last["averaged"] == min(scores, key=scores.get)
    assert last["fisher_divergence"] == pytest.approx(min(scores.values()), rel=1e-4)
    reloaded = ebmbench.load_model(row["run_id"], results=results, device="cpu")
    for got, want in zip(reloaded.energy.parameters(), candidates[last["averaged"]], strict=True):
        assert torch.allclose(got.detach(), want.float(), atol=1e-5)
