"""The fair protocol: equal compute counted by the harness, learning curves on a validation
split, training chains owned by the method, and equal tuning (see docs/protocol.md)."""

from __future__ import annotations

import math
import time

import pytest
import torch

import ebmbench
from ebmbench import Param, log_uniform
from ebmbench.budgets import TRAIN_FLOPS, dataset_train_flops
from ebmbench.compute import ComputeMeter, FlopCounter
from ebmbench.learning_curve import CURVE_FRACTIONS
from ebmbench.store import ResultStore
from ebmbench.tuning import is_replicate
from tests.helpers import registered_plugins

# ------------------------------------------------------------------------ compute counting


def test_flop_counter_counts_products_exactly_forward_and_backward():
    a = torch.randn(5, 7, requires_grad=True)
    w = torch.randn(7, 3, requires_grad=True)
    with FlopCounter() as counter:
        (a @ w).sum().backward()
    # forward 2·5·7·3; backward: ∂a = g wᵀ (2·5·3·7) and ∂w = aᵀ g (2·7·5·3)
    assert counter.flops == 3 * 2 * 5 * 7 * 3


def test_flop_counter_sees_second_order_passes():
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    x = torch.randn(32, 2, requires_grad=True)

    def flops(second_order: bool) -> int:
        with FlopCounter() as counter:
            f = net(x).sum()
            (g,) = torch.autograd.grad(f, x, create_graph=second_order)
            if second_order:
                g.pow(2).sum().backward()
        return counter.flops

    assert flops(True) > 2 * flops(False)


def test_meter_counts_rows_and_reprobes_when_the_step_changes():
    net = torch.nn.Linear(4, 1)
    meter = ComputeMeter(net)
    for n in (8, 8, 8, 16, 16):
        with meter.step():
            net(torch.ones(n, 4)).sum().backward()
    meter.detach()
    c = meter.compute
    assert (c.energy_rows, c.grad_rows, c.steps) == (56, 56, 5)
    # Exact: every step costs 2·n·4·1 forward and as much for ∂W. Step 4 (more rows) is
    # scaled from the probe by its rows, and makes step 5 a probe.
    assert c.flops == sum(2 * 2 * n * 4 for n in (8, 8, 8, 16, 16))
    assert c.probes == 3  # steps 1, 2 (the start) and 5 (after the rows changed)


def test_paused_work_is_not_training_compute():
    net = torch.nn.Linear(4, 1)
    meter = ComputeMeter(net)
    with meter.paused():
        net(torch.ones(100, 4))
    with meter.step():
        net(torch.ones(3, 4)).sum().backward()
    meter.detach()
    assert meter.compute.energy_rows == 3


def _busy_cpu(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_seconds_count_the_steps_not_the_paused_work():
    # The CPU clock is read at curve points (paused) and at detach only, not every step:
    # the value must still be every step's CPU time, without the paused work.
    net = torch.nn.Linear(4, 1)
    meter = ComputeMeter(net)
    with meter.step():
        _busy_cpu(0.05)
    with meter.paused():
        assert 0.04 < meter.compute.cpu_seconds < 0.5  # as of the point
        _busy_cpu(0.2)
    with meter.step():
        _busy_cpu(0.05)
    meter.detach()
    assert 0.09 < meter.compute.cpu_seconds < 0.2


# ------------------------------------------------------------------------ equal compute


@pytest.fixture(scope="module")
def quick_banana(tmp_path_factory):
    """Every built-in method at quick on banana with the MLP, one sampler: real budgets."""
    results = tmp_path_factory.mktemp("quick") / "r.sqlite"
    return ebmbench.run(samplers=["ula"], architectures=["mlp"], datasets=["banana"],
                        metrics=["cost"], budget="quick", results=results, device="cpu")


@pytest.mark.slow
def test_every_method_spends_the_budget_within_ten_percent(quick_banana):
    frame = quick_banana
    assert set(frame.status) == {"ok"}, frame.reason.tolist()
    budget = TRAIN_FLOPS["quick"]["vector"]
    steps = {}
    for _, row in frame.iterrows():
        spent = row["compute"]["flops"]
        assert 0.9 * budget <= spent <= 1.1 * budget, (row.method, spent / budget)
        assert row["compute"]["stopped_by"] == "budget"
        assert row["metric.train_flops"] == pytest.approx(spent)
        steps[row.method] = row["compute"]["steps"]
    # Costlier updates buy fewer of them: CD's K sampler steps per update against DSM's one.
    assert steps["cd"] * 4 < steps["dsm"]


def test_two_methods_with_different_update_costs_get_equal_compute(tmp_path):
    flops = 2e8
    frame = ebmbench.run(methods=["dsm", "cd"], samplers=["ula"], architectures=["mlp"],
                         datasets=["eight_gaussians"], metrics=[], budget="smoke",
                         overrides={"method.*.steps": 10_000, "method.cd.mcmc_steps": 20},
                         train_flops=flops, results=tmp_path / "r.sqlite", device="cpu")
    rows = {r.method: r for _, r in frame.iterrows()}
    for name in ("dsm", "cd"):
        assert rows[name].compute["flops"] == pytest.approx(flops, rel=0.1), name
    per_step = {n: rows[n].compute["flops"] / rows[n].compute["steps"] for n in rows}
    # K = 20 sampler steps (a forward and a gradient each) against one DSM gradient
    assert per_step["cd"] > 5 * per_step["dsm"]
    assert rows["cd"].compute["steps"] * 5 < rows["dsm"].compute["steps"]


def test_an_update_that_would_overshoot_the_tolerance_is_not_taken(tmp_path):
    """When one update is a large share of the budget, the run stops where its compute is
    nearest the budget: with updates of 0.32 budgets it stops at 0.96 (3 updates), not at
    1.28; an update that ends within the 10 % tolerance is taken (11 of 0.095 = 1.05)."""
    def run(flops: float, steps: int, folder: str) -> dict:
        frame = ebmbench.run(methods=["cd"], samplers=["ula"], architectures=["mlp"],
                             datasets=["eight_gaussians"], metrics=[], budget="smoke",
                             overrides={"method.cd.steps": steps, "method.cd.mcmc_steps": 20},
                             train_flops=flops, results=tmp_path / folder / "r.sqlite",
                             device="cpu")
        return frame.iloc[0].compute

    probe = run(1e15, 3, "probe")  # capped at 3 updates: the cost of one
    per_update = probe["flops"] / probe["steps"]
    big = run(per_update / 0.32, 1000, "big")
    assert big["steps"] == 3 and big["stopped_by"] == "budget"
    assert big["budget_fraction"] == pytest.approx(0.96, abs=1e-6)
    small = run(per_update / 0.095, 1000, "small")
    assert small["steps"] == 11 and small["budget_fraction"] == pytest.approx(1.045, abs=1e-6)


def test_a_trial_whose_update_is_too_coarse_for_equal_compute_is_stopped(tmp_path):
    """A configuration whose one update costs more than 20 % of the budget cannot end within
    ±10 % of it, so as a tuning trial it is infeasible: stopped after its second update and
    never chosen. A run the user asked for trains anyway; finer updates are not touched."""
    def sweep(per_update_share: float, folder: str, tune: int):
        return ebmbench.run(methods=["cd"], samplers=["ula"], architectures=["mlp"],
                            datasets=["eight_gaussians"], metrics=["fisher"], budget="smoke",
                            overrides={"method.cd.mcmc_steps": 20, "method.cd.steps": 1000},
                            train_flops=per_update / per_update_share, tune=tune,
                            results=tmp_path / folder / "r.sqlite", device="cpu")

    probe = ebmbench.run(methods=["cd"], samplers=["ula"], architectures=["mlp"],
                         datasets=["eight_gaussians"], metrics=[], budget="smoke",
                         overrides={"method.cd.mcmc_steps": 20, "method.cd.steps": 3},
                         train_flops=1e15, results=tmp_path / "probe" / "r.sqlite", device="cpu")
    per_update = probe.iloc[0].compute["flops"] / probe.iloc[0].compute["steps"]

    coarse = sweep(0.3, "coarse", tune=2)
    with ResultStore.open(tmp_path / "coarse" / "r.sqlite") as store:
        trials = store.trial_rows()
    assert [t["status"] for t in trials] == ["pruned", "pruned"]
    for t in trials:
        assert t["reason"].startswith("infeasible at equal compute: one update costs 30%")
        assert t["compute"]["stopped_by"] == "infeasible" and t["compute"]["steps"] == 2
    run = coarse.iloc[0]  # no trial finished: the defaults run, and train as asked
    assert run.status == "ok" and run.compute["steps"] == 3
    assert run.hyperparams["tuning"]["chosen_trial"] is None

    fine = sweep(0.1, "fine", tune=2)
    with ResultStore.open(tmp_path / "fine" / "r.sqlite") as store:
        # Both trials and their replicates (the confirmation, ebmbench.tuning) finish.
        assert [t["status"] for t in store.trial_rows()] == ["ok"] * 4
    assert fine.iloc[0].hyperparams["tuning"]["chosen_trial"] in (0, 1)


def test_a_dataset_may_declare_its_own_budget():
    digits = ebmbench.get_dataset("digits")
    banana = ebmbench.get_dataset("banana")
    assert dataset_train_flops(digits, "quick") == TRAIN_FLOPS["quick"]["image"]
    assert dataset_train_flops(banana, "quick") == TRAIN_FLOPS["quick"]["vector"]
    special = type("Special", (type(banana),), {"train_flops": {"quick": 123.0}})
    assert dataset_train_flops(special(), "quick") == 123.0


# ------------------------------------------------------------------------ learning curves


def test_learning_curve_points_sit_at_log_spaced_compute(tmp_path):
    frame = ebmbench.run(methods=["dsm"], samplers=["ula"], architectures=["mlp"],
                         datasets=["two_moons"], metrics=["fisher"], budget="smoke",
                         overrides={"method.dsm.steps": 10_000}, train_flops=4e8,
                         results=tmp_path / "r.sqlite", device="cpu")
    row = frame.iloc[0]
    curve = row["curve"]
    budget = row["compute"]["budget_flops"]
    fractions = [p["flops"] / budget for p in curve]
    assert len(curve) == len(CURVE_FRACTIONS)
    for got, want in zip(fractions, CURVE_FRACTIONS, strict=True):
        assert want <= got < want + 0.05
    assert [p["step"] for p in curve] == sorted(p["step"] for p in curve)
    # Fisher divergence on the validation split, log Z by quadrature and the NLL, each finite.
    for point in curve:
        for key in ("fisher_divergence", "log_z", "nll"):
            assert math.isfinite(point[key]), (key, point)
    # Training moves the model: the last point's Fisher divergence is below the first's.
    assert curve[-1]["fisher_divergence"] < curve[0]["fisher_divergence"]
    assert [p["progress"] for p in curve] == pytest.approx(fractions)


def test_a_run_that_hits_its_step_cap_first_still_gets_the_whole_curve(tmp_path):
    """The quadratic energy is so cheap that the step cap, not the compute budget, ends its
    runs: its curve points sit at fractions of the cap (a budget-only schedule gave one
    point, the last, and so no pruning), and its trials are pruned at the same rungs."""
    steps = 256
    frame = ebmbench.run(methods=["dsm"], samplers=["ula"], architectures=["quadratic"],
                         datasets=["correlated_gaussian"], metrics=["fisher"], budget="smoke",
                         overrides={"method.dsm.steps": steps}, train_flops=1e12,
                         results=tmp_path / "r.sqlite", device="cpu")
    row = frame.iloc[0]
    assert row["compute"]["stopped_by"] == "max_steps"
    assert row["compute"]["flops"] < 1e-3 * row["compute"]["budget_flops"]
    curve = row["curve"]
    assert [p["step"] for p in curve] == [round(f * steps) for f in CURVE_FRACTIONS]
    assert [p["progress"] for p in curve] == pytest.approx(list(CURVE_FRACTIONS))
    from ebmbench.tuning import CurvePruner, _curve_values

    # The pruner's rungs (1/8 and 1/2 of the run, of 128 resource units) are reached.
    assert {16, 64} <= set(_curve_values(row.to_dict(), "fisher_divergence"))
    pruner = CurvePruner("fisher_divergence", [
        {"curve": {"16": 0.1, "64": 0.05, "128": 0.01}, "pruned": False, "trial": 0},
        {"curve": {"16": 0.2, "64": 0.1, "128": 0.02}, "pruned": False, "trial": 1},
    ])
    assert not pruner.should_stop({"fisher_divergence": 5.0, "progress": 1 / 128})
    assert pruner.should_stop({"fisher_divergence": 5.0, "progress": 1 / 8})


def test_the_last_curve_point_is_the_trained_models_validation_fisher(tmp_path):
    frame = ebmbench.run(methods=["exact_sm"], samplers=["ula"], architectures=["quadratic"],
                         datasets=["correlated_gaussian"], metrics=[], budget="smoke",
                         results=tmp_path / "r.sqlite", device="cpu")
    row = frame.iloc[0]
    run_id = row.run_id
    with ResultStore.open(tmp_path / "r.sqlite") as store:
        stored = next(r for r in store.rows() if r["run_id"] == run_id)
    # Recompute on the validation split of the same seed from the checkpointed model.
    from ebmbench.grid import Selection, expand
    from ebmbench.runner import checkpoint_path, validation_split

    spec = next(s for s in expand(Selection(methods=["exact_sm"], samplers=["ula"],
                                            architectures=["quadratic"],
                                            datasets=["correlated_gaussian"], budget="smoke"))[0]
                if s.run_id == run_id)
    dataset = ebmbench.get_dataset("correlated_gaussian", budget="smoke")
    from ebmbench.device import derive_seed

    seed = derive_seed("data", spec.dataset, spec.params["dataset"], spec.seed)
    train = dataset.train_data(torch.Generator().manual_seed(seed))
    fit, validation = validation_split(train, spec)
    assert len(fit) + len(validation) == len(train)
    assert not (fit[:, None, :] == validation[None, :, :]).all(-1).any()
    energy = ebmbench.get_architecture("quadratic", budget="smoke").build((2,))
    state = torch.load(checkpoint_path(tmp_path, spec.train_key), weights_only=True)
    energy.load_state_dict(state["energy"])
    _, score = ebmbench.energy_and_score(energy, validation)
    fisher = 0.5 * (dataset.score(validation) - score).pow(2).sum(1).mean()
    assert stored["curve"][-1]["fisher_divergence"] == pytest.approx(float(fisher), rel=1e-4)


# ------------------------------------------------------------------------ training chains


def test_cd_training_chains_have_their_own_step_size():
    sampler = ebmbench.get_sampler("mala", budget="smoke")
    method = ebmbench.get_method("cd", budget="smoke", chain_step_scale=4.0)
    dataset = ebmbench.get_dataset("banana", budget="smoke")
    energy = ebmbench.get_architecture("mlp", budget="smoke").build((2,))
    g = torch.Generator().manual_seed(0)
    method.setup(ebmbench.TrainContext(energy, sampler, dataset, dataset.train_data(g),
                                       torch.device("cpu"), g))
    chains = method.sampler
    assert chains is not sampler and type(chains) is type(sampler)
    assert chains.hparams["step_size"] == pytest.approx(4 * sampler.hparams["step_size"])
    assert chains.hparams["adapt"] == "global" and chains.hparams["persistent"]
    assert sampler.hparams["persistent"] is False  # evaluation keeps the sampler's own
    steps = []
    for _ in range(8):
        logs = method.train_step(dataset.train_data(g)[:64])
        steps.append(logs["sampler_step_size"])
    assert steps[0] != pytest.approx(4 * sampler.hparams["step_size"])  # adapted
    # ... and still adapting after 5 updates (the smoke default until 2026-11-30, 50 at
    # quick): the energy keeps changing, so the chains' step keeps following it.
    assert len(set(steps[5:])) == 3


# ------------------------------------------------------------------------ tuning


class SlowStartSM(ebmbench.get_method("exact_sm").__class__):
    """Exact score matching whose declared default learning rate is far too small."""

    name = "slow_sm"
    description = "exact score matching with a deliberately bad default learning rate"
    params = ebmbench.get_method("exact_sm").__class__.params | {
        "lr": Param(1e-6, "Adam learning rate", low=0, search=log_uniform(1e-6, 1e-1)),
    }


class SplitSpy(ebmbench.get_dataset("correlated_gaussian").__class__):
    """correlated_gaussian that counts how often its test split is read."""

    name = "spy_gaussian"
    description = "correlated_gaussian that counts test-split reads"
    reads = {"test": 0}

    def test_data(self, generator):
        SplitSpy.reads["test"] += 1
        return super().test_data(generator)


@pytest.fixture
def tuning_plugins(fresh_plugins):
    SplitSpy.reads["test"] = 0
    with registered_plugins("tuning_test_plugins", methods=[SlowStartSM], datasets=[SplitSpy]):
        yield fresh_plugins


TUNE = dict(methods=["slow_sm"], samplers=["ula"], architectures=["quadratic"],
            datasets=["spy_gaussian"], metrics=["fisher"], budget="smoke", device="cpu",
            overrides={"method.slow_sm.steps": 400, "method.slow_sm.batch_size": 256},
            train_flops=1e12)


def test_tuning_finds_a_good_learning_rate_and_never_reads_the_test_split(tuning_plugins, tmp_path):
    results = tmp_path / "r.sqlite"
    frame = ebmbench.run(tune=8, results=results, **TUNE)
    with ResultStore.open(results) as store:
        trials = store.trial_rows()
    search = [r for r in trials if not is_replicate(r)]
    assert len(search) == 8 and sorted(r["trial"] for r in search) == list(range(8))
    # The two best sound trials are trained again on another seed: another draw of the data
    # (its test split never read: the count below), the same for both.
    replicates = [r for r in trials if is_replicate(r)]
    assert len(replicates) == 2 and replicates[0]["seed"] == replicates[1]["seed"]
    assert replicates[0]["seed"] not in {r["seed"] for r in search} | {frame.iloc[0]["seed"]}
    for replica in replicates:
        (original,) = [r for r in search if r["trial"] == replica["trial"]]
        assert replica["hyperparams"]["method"] == original["hyperparams"]["method"]
        assert replica["train_key"] != original["train_key"]
    # Trials read only the training split (less validation); the final run reads the test
    # split once (its metrics), so the count is what the final run alone does.
    assert SplitSpy.reads["test"] == 1
    assert trials[0]["hyperparams"]["method"]["lr"] == 1e-6  # trial 0: the defaults
    tuned = frame.iloc[0]
    record = tuned["hyperparams"]["tuning"]
    assert record["trials"] == 8 and record["objective"] == "fisher_divergence"
    assert set(record["confirmation"]) == {str(r["trial"]) for r in replicates}
    assert str(record["chosen_trial"]) in record["confirmation"]
    # Trial 0's model barely left N(0, I): its validation NLL (≈ 3.26) is more than a nat
    # worse than the Gaussian fit's (the entropy, 2.04), so the sweep's choice saw it as
    # degenerate on the validation split.
    assert "0" in record["degenerate_trials"] and record["chosen_trial"] != 0
    assert tuned["hyperparams"]["method"]["lr"] > 1e-3
    untuned = ebmbench.run(results=tmp_path / "plain.sqlite", **TUNE).iloc[0]
    # At lr = 1e-6 the Gaussian energy barely moves from its start; tuned, it fits.
    assert tuned["metric.fisher_divergence"] < 0.1 * untuned["metric.fisher_divergence"]


def test_a_killed_tuning_sweep_resumes_without_repeating_trials(tuning_plugins, tmp_path):
    results = tmp_path / "r.sqlite"
    seen: list[str] = []

    def die_after_three(row):
        seen.append(row["run_id"])
        if len(seen) == 3:
            raise KeyboardInterrupt

    from ebmbench.grid import Selection
    from ebmbench.sweep import run_sweep

    selection = Selection(methods=TUNE["methods"], samplers=TUNE["samplers"],
                          architectures=TUNE["architectures"], datasets=TUNE["datasets"],
                          metrics=TUNE["metrics"], budget="smoke", overrides=TUNE["overrides"],
                          train_flops=TUNE["train_flops"])
    with pytest.raises(KeyboardInterrupt):
        run_sweep(selection, results=results, device="cpu", tune=5, on_row=die_after_three)
    first = list(seen)
    seen.clear()
    report = run_sweep(selection, results=results, device="cpu", tune=5,
                       on_row=lambda row: seen.append(row["run_id"]))
    assert not set(first) & set(seen), "a finished trial ran again"
    # Two trials left, the two replicates (the confirmation), and the run.
    assert report.trials == 5 + 2 and len(seen) == 5 - 3 + 2 + 1
    # Deterministic: a fresh store makes the same trials.
    fresh: list[str] = []
    run_sweep(selection, results=tmp_path / "again.sqlite", device="cpu", tune=5,
              on_row=lambda row: fresh.append(row["run_id"]))
    assert fresh == first + seen


def test_a_tuning_draw_repeats_the_search_apart_and_never_reads_the_test_split(
        tuning_plugins, tmp_path):
    """``tune_draw=d`` is another, independent search of the same study (AlgoPerf repeats
    its tuning studies): its own key, TPE draws and trial seed, none of the runs' seeds, so
    two draws' choices differ by chance alone. Draw 0 is the published one: its keys are
    the ones made before draws existed."""
    from ebmbench.plugins import get_plugin_manager
    from ebmbench.tuning import plan_studies

    study = _slow_sm_study()
    specs = study.specs
    pm = get_plugin_manager()
    assert set(plan_studies(specs, pm, set(), 0)) == {study.key}  # draw 0: the old key
    draws = [next(iter(plan_studies(specs, pm, set(), d).values())) for d in (1, 2)]
    assert len({study.key, *(s.key for s in draws)}) == 3
    assert len({study.seed, *(s.seed for s in draws)}) == 3
    assert not {s.seed for s in draws} & {0, 1, 2}  # nor any small run seed

    def tuned(draw):
        results = tmp_path / f"draw{draw}.sqlite"
        frame = ebmbench.run(tune=4, tune_draw=draw, results=results, **TUNE)
        with ResultStore.open(results) as store:
            search = sorted((r for r in store.trial_rows() if not is_replicate(r)),
                            key=lambda r: r["trial"])
        return frame.iloc[0], search

    SplitSpy.reads["test"] = 0
    run0, trials0 = tuned(0)
    run1, trials1 = tuned(1)
    assert SplitSpy.reads["test"] == 2  # each draw's run, once; no trial
    lrs0 = [r["hyperparams"]["method"]["lr"] for r in trials0]
    lrs1 = [r["hyperparams"]["method"]["lr"] for r in trials1]
    assert lrs0[0] == lrs1[0] == 1e-6  # trial 0 is the defaults in every draw
    assert all(a != b for a, b in zip(lrs0[1:], lrs1[1:], strict=True))  # the random start
    assert {r["seed"] for r in trials0} == {0}  # draw 0: the first run's seed
    (seed1,) = {r["seed"] for r in trials1}
    assert seed1 not in {0, 1, 2}
    assert trials0[0]["hyperparams"]["tuning"]["study"] != trials1[0]["hyperparams"]["tuning"]["study"]
    assert run1["hyperparams"]["tuning"]["draw"] == 1
    assert "draw" not in run0["hyperparams"]["tuning"]
    assert {r["hyperparams"]["tuning"].get("draw") for r in trials1} == {1}
    # One store, one draw: another draw would overwrite the tuning records of the runs it
    # finds again, so it is refused before anything is written.
    store0 = tmp_path / "draw0.sqlite"
    before = store0.read_bytes()
    with pytest.raises(ebmbench.UserError, match="holds tuning draw 0, and this is draw 2"):
        ebmbench.run(tune=4, tune_draw=2, results=store0, **TUNE)
    assert store0.read_bytes() == before
    with pytest.raises(ebmbench.UserError, match="holds tuning draw 1, and this is draw 0"):
        ebmbench.run(tune=4, results=tmp_path / "draw1.sqlite", **TUNE)
    assert run0["seed"] == run1["seed"] == 0  # the runs are the same seeds in every draw
    # Both draws tune: the defaults (lr 1e-6) barely move the Gaussian energy, and each
    # draw's random start holds a learning rate hundreds of times larger that fits it.
    for run in (run0, run1):
        assert run["hyperparams"]["method"]["lr"] > 1e-4


def test_a_run_found_again_gets_the_current_tuning_record_and_keeps_its_results(
        tuning_plugins, tmp_path):
    """A tuned run whose study chooses the same values again is not trained again (its id
    is a digest of them); only its record of how they were chosen is brought up to date,
    e.g. a run tuned before the choice gained its confirmation."""
    results = tmp_path / "r.sqlite"
    # Any study with a confirmation will do: the draws of ``last``'s keys with the iterates
    # give one (two of the three trials sound on the validation split), others may not.
    tune = dict(TUNE, checkpoint="last", weight_average="none")
    first = ebmbench.run(tune=3, results=results, **tune).iloc[0]
    record = first["hyperparams"]["tuning"]
    assert "confirmation" in record
    older = {k: v for k, v in record.items() if k != "confirmation"}
    with ResultStore.open(results) as store:
        assert store.update_tuning_records({first["run_id"]: older}) == 1
        assert store.update_tuning_records({first["run_id"]: older}) == 0  # already so
        assert store.update_tuning_records({"no-such-run": older}) == 0
    with ResultStore.open(results) as store:
        stored = {r["run_id"]: r["finished_at"] for r in store.rows()}
    again = ebmbench.run(tune=3, results=results, **tune).iloc[0]
    with ResultStore.open(results) as store:  # nothing trained or evaluated again
        assert {r["run_id"]: r["finished_at"] for r in store.rows()} == stored
    assert again["hyperparams"]["tuning"] == record
    assert again["metric.fisher_divergence"] == first["metric.fisher_divergence"]
    assert again["finished_at"] == first["finished_at"]


def _slow_sm_selection(**extra):
    from ebmbench.grid import Selection

    return Selection(methods=TUNE["methods"], samplers=TUNE["samplers"],
                     architectures=TUNE["architectures"], datasets=TUNE["datasets"],
                     metrics=TUNE["metrics"], budget="smoke", overrides=TUNE["overrides"], **extra)


def _slow_sm_study():
    from ebmbench.grid import expand
    from ebmbench.plugins import get_plugin_manager
    from ebmbench.tuning import plan_studies

    (study,) = plan_studies(expand(_slow_sm_selection())[0], get_plugin_manager(), set()).values()
    return study


def _finished_trial(number, params, value):
    return {"trial": number, "status": "ok", "hyperparams": {"method": dict(params)},
            "curve": [{"fisher_divergence": value, "progress": 1.0}]}


def test_trials_one_to_three_are_random_and_later_ones_learn_from_the_scores(tuning_plugins):
    """TPE's random start is trials 0 … 3 (0: the defaults): what they scored cannot move
    trials 1 … 3; from trial 4 on the scores steer the search."""
    from ebmbench.tuning import STARTUP_TRIALS, next_trial_params

    study = _slow_sm_study()
    drawn = [next_trial_params(study, [], 0)]
    assert drawn == [{"lr": 1e-6}]
    scores = {"good_first": [0.01, 1.0, 2.0, 3.0], "good_last": [3.0, 2.0, 1.0, 0.01]}
    for number in range(1, STARTUP_TRIALS + 1):
        first, last = (
            next_trial_params(study, [_finished_trial(n, drawn[n], s[n]) for n in range(number)],
                              number)
            for s in scores.values())
        if number < STARTUP_TRIALS:
            assert first == last, number
            drawn.append(first)
        else:
            assert first != last


def test_the_random_start_is_never_pruned_and_later_trials_are():
    """Trials 0 … 3 finish and set the rungs' references; trial 4 on are pruned against
    them. (Until 2026-11-30 trial 0 alone was the reference at 1/8 of the run, and 80 of
    284 toy studies kept their defaults because every later trial was stopped there.)"""
    from ebmbench.tuning import STARTUP_TRIALS, CurvePruner

    good = {"16": 0.1, "64": 0.05, "128": 0.01}
    history = [{"curve": good, "pruned": False, "trial": 0}]
    worse = {"fisher_divergence": 5.0, "progress": 1 / 8}
    for number in range(1, STARTUP_TRIALS):
        assert not CurvePruner("fisher_divergence", history, number).should_stop(worse)
    assert CurvePruner("fisher_divergence", history, STARTUP_TRIALS).should_stop(worse)
    assert CurvePruner("fisher_divergence", history).should_stop(worse)  # no number: pruned
    # A startup trial whose objective is no longer finite stops: it cannot recover.
    diverged = {"fisher_divergence": float("nan"), "progress": 1 / 8}
    assert CurvePruner("fisher_divergence", history, 1).should_stop(diverged)

    # Replayed, a startup trial worse than trial 0 still finishes (its later rungs count):
    # with four finished references at 1/8, a trial must be the best of five to go on.
    import optuna

    history += [{"curve": {"16": v, "64": v, "128": v}, "pruned": False, "trial": n}
                for n, v in ((1, 5.0), (2, 6.0), (3, 7.0))]
    pruner = CurvePruner("fisher_divergence", history, STARTUP_TRIALS)
    states = [t.state for t in pruner.study.trials[:STARTUP_TRIALS]]
    assert states == [optuna.trial.TrialState.COMPLETE] * STARTUP_TRIALS
    assert pruner.should_stop({"fisher_divergence": 0.5, "progress": 1 / 8})
    better = CurvePruner("fisher_divergence", history, STARTUP_TRIALS)
    assert not better.should_stop({"fisher_divergence": 0.05, "progress": 1 / 8})


def test_the_choice_passes_over_a_trial_degenerate_on_the_validation_split(tuning_plugins):
    """The lowest Fisher divergence can belong to a model whose validation NLL is worse than
    a Gaussian's by more than the runs' margin (the Fisher divergence cannot see how mass is
    split between modes): such a trial is not chosen while another is not degenerate, and
    when every trial is, the best is, with a note."""
    from ebmbench.tuning import choose

    study = _slow_sm_study()

    def trial(number, lr, fisher, nll):
        row = _finished_trial(number, {"lr": lr}, fisher)
        row["curve"][-1]["nll"] = nll
        return row

    rows = [trial(0, 1e-3, 0.5, 2.5), trial(1, 1e-2, 0.1, 9.0), trial(2, 3e-3, 0.3, 3.9)]
    chosen, record = choose(study, rows, reference_nll=2.8)  # the bar: 2.8 + 1 nat = 3.8
    assert chosen == {"lr": 1e-3} and record["chosen_trial"] == 0
    assert set(record["degenerate_trials"]) == {"1", "2"}
    assert "validation NLL 9 > 3.8" in record["degenerate_trials"]["1"]
    assert "note" not in record
    # Without a reference (images, more than 2-D) the objective alone decides, as before.
    assert choose(study, rows)[0] == {"lr": 1e-2}
    # Every trial degenerate: the best objective, said so.
    chosen, record = choose(study, rows[1:], reference_nll=2.8)
    assert chosen == {"lr": 1e-2} and "every finished trial" in record["note"]


def test_the_choice_confirms_the_two_best_sound_trials_with_another_seed(tuning_plugins):
    """The two best trials sound on the validation split are trained again (replicates);
    one whose replicate degenerates, diverges or fails is passed over, and the others are
    ranked by their mean objective over both seeds, so a lucky seed alone cannot win."""
    from ebmbench.tuning import choose, confirmation_candidates

    study = _slow_sm_study()

    def trial(number, lr, fisher, nll, replicate=False):
        row = _finished_trial(number, {"lr": lr}, fisher)
        row["curve"][-1]["nll"] = nll
        row["hyperparams"]["tuning"] = {"replicate": 1} if replicate else {}
        return row

    search = [trial(0, 1e-3, 0.50, 2.5), trial(1, 1e-2, 0.10, 2.6), trial(2, 3e-3, 0.30, 2.7),
              trial(3, 3e-2, 0.05, 9.0)]  # trial 3: degenerate, never a candidate
    assert [r["trial"] for r in confirmation_candidates(study, search, 2.8)] == [1, 2]
    # Both pass: the lowest mean over two seeds wins, even though trial 1 scored best once.
    rows = search + [trial(1, 1e-2, 0.90, 2.6, True), trial(2, 3e-3, 0.32, 2.7, True)]
    chosen, record = choose(study, rows, reference_nll=2.8)
    assert chosen == {"lr": 3e-3} and record["score"] == pytest.approx(0.31)
    assert record["confirmation"]["1"] == {"objectives": [0.10, 0.90], "failed": None}
    assert record["trials"] == 4  # replicates are not trials of the search
    # Trial 2's replicate degenerates: trial 1, confirmed, is chosen.
    rows = search + [trial(1, 1e-2, 0.90, 2.6, True), trial(2, 3e-3, 0.32, 7.0, True)]
    chosen, record = choose(study, rows, reference_nll=2.8)
    assert chosen == {"lr": 1e-2} and "degenerate" in record["confirmation"]["2"]["failed"]
    # A replicate is judged against its own validation split's Gaussian (its data differ).
    rows = search + [trial(1, 1e-2, 0.90, 2.6, True), trial(2, 3e-3, 0.32, 3.5, True)]
    assert choose(study, rows, reference_nll=2.8)[0] == {"lr": 3e-3}  # 3.5 < 2.8 + 1
    chosen, record = choose(study, rows, reference_nll=2.8, replicate_reference_nll=2.0)
    assert chosen == {"lr": 1e-2} and "3.5 > 3" in record["confirmation"]["2"]["failed"]
    # Both fail (one diverged, one did not finish): the best unconfirmed sound trial, 0.
    diverged = trial(1, 1e-2, math.inf, 2.6, True) | {"status": "diverged"}
    failed = trial(2, 3e-3, 0.3, 2.7, True) | {"status": "failed"}
    chosen, record = choose(study, search + [diverged, failed], reference_nll=2.8)
    assert chosen == {"lr": 1e-3} and "note" not in record
    assert record["confirmation"]["1"]["failed"] == "its replicate diverged"
    assert "did not finish" in record["confirmation"]["2"]["failed"]
    # Nothing else sound: the best objective among all finished, said so.
    chosen, record = choose(study, search[1:] + [diverged, failed], reference_nll=2.8)
    assert chosen == {"lr": 3e-2} and "failed its confirmation" in record["note"]
    # Fewer than two sound trials: nothing to confirm.
    assert confirmation_candidates(study, search[2:], 2.8) == []


def test_confirmation_halves_the_chance_of_choosing_a_configuration_that_fails_a_new_seed(
        tuning_plugins):
    """The winner's curse, simulated: 8 configurations, each scored once with noise; the
    best (true objective 0.8) degenerates in half the seeds, which the Fisher divergence
    cannot see. Chosen on one seed, the choice fails a run's fresh seed 16 % of the time;
    confirmed on a second seed, 9 %. Among the robust configurations, the mean over two
    seeds picks a better one on average (less noise in the score)."""
    import random

    from ebmbench.tuning import choose, confirmation_candidates

    study = _slow_sm_study()
    means = [0.8, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0]
    rng = random.Random(0)

    def draw(config, number, replicate=False):
        degenerate = config == 0 and rng.random() < 0.5
        row = _finished_trial(number, {"lr": 10.0 ** -(config + 1)}, means[config] + rng.gauss(0, 0.3))
        row["curve"][-1]["nll"] = 9.0 if degenerate else 2.5
        row["hyperparams"]["tuning"] = {"replicate": 1} if replicate else {}
        return row

    failed = {"one seed": 0, "confirmed": 0}
    chosen_means = {"one seed": [], "confirmed": []}
    studies = 2000
    for _ in range(studies):
        search = [draw(config, config) for config in range(8)]
        replicates = [draw(r["trial"], r["trial"], True)
                      for r in confirmation_candidates(study, search, 2.8)]
        for name, rows in (("one seed", search), ("confirmed", search + replicates)):
            config = choose(study, rows, reference_nll=2.8)[1]["chosen_trial"]
            failed[name] += config == 0 and rng.random() < 0.5  # a run's fresh seed
            if config != 0:
                chosen_means[name].append(means[config])
    one, confirmed = failed["one seed"] / studies, failed["confirmed"] / studies
    assert 0.13 < one < 0.2 and 0.06 < confirmed < 0.12 and confirmed < 0.65 * one

    def average(values):
        return sum(values) / len(values)

    assert average(chosen_means["confirmed"]) < average(chosen_means["one seed"])


def test_the_validation_reference_is_the_gaussian_fit_of_the_training_split(monkeypatch):
    """On correlated_gaussian the Gaussian fit is the true model, so the reference NLL of
    the validation split is the density's entropy, ½ log det(2πe Σ), up to sampling error
    (≈ 1/√n of the NLL's spread for n validation points); it is the same for every trial
    of a study, and no test example is read."""
    from ebmbench.grid import Selection, expand
    from ebmbench.runner import validation_reference_nll

    selection = Selection(methods=["exact_sm"], samplers=["ula"], architectures=["quadratic"],
                          datasets=["correlated_gaussian"], metrics=["fisher"], budget="quick")
    spec = expand(selection)[0][0]
    dataset = ebmbench.get_dataset("correlated_gaussian")
    entropy = 0.5 * torch.logdet(2 * math.pi * math.e * dataset.covariance).item()

    def no_test_split(self, generator):
        raise AssertionError("the validation reference read the test split")

    monkeypatch.setattr(type(dataset), "test_data", no_test_split)
    value = validation_reference_nll(spec)
    assert value == pytest.approx(entropy, abs=0.05)
    assert validation_reference_nll(spec) == value
