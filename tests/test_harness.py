"""The harness end to end: statuses, isolation, train-once, resume, checkpoints, seeding."""

from __future__ import annotations

import pytest

import ebmbench
from ebmbench.grid import Selection, expand
from ebmbench.store import ResultStore
from tests import fault_plugins


@pytest.fixture
def plugins(fresh_plugins):
    ebmbench.register_plugin(fault_plugins)
    fault_plugins.TRAIN_STEPS["count"] = 0
    return fresh_plugins


def _run(tmp_path, **kwargs):
    kwargs.setdefault("budget", "smoke")
    kwargs.setdefault("datasets", ["eight_gaussians"])
    kwargs.setdefault("architectures", ["mlp"])
    kwargs.setdefault("metrics", ["fisher", "cost"])
    return ebmbench.run(results=tmp_path / "r" / "results.sqlite", **kwargs)


def _status(frame, method, sampler="ula"):
    row = frame[(frame.method == method) & (frame.sampler == sampler)]
    assert len(row) == 1
    return row.iloc[0]


def test_every_failure_mode_is_recorded_and_the_sweep_goes_on(plugins, tmp_path):
    frame = _run(
        tmp_path,
        methods=["dsm", "diverging", "raising", "needs_magic"],
        samplers=["ula", "nan_sampler"],
    )
    assert _status(frame, "dsm").status == "ok", _status(frame, "dsm").reason
    assert _status(frame, "dsm", "nan_sampler").status == "diverged"
    diverged = _status(frame, "diverging")
    assert diverged.status == "diverged" and "loss became nan" in diverged.reason
    failed = _status(frame, "raising")
    assert failed.status == "failed" and "deliberate failure in training" in failed.traceback
    # An incompatible combination is not a run: counted by reason, with no row.
    assert "needs_magic" not in set(frame.method)
    (reasons,) = frame.attrs["not_applicable"].values()
    assert [(r, n) for r, n in reasons.items() if "needs an architecture with magic" in r] == [
        (next(r for r in reasons if "magic" in r), 2)]  # two samplers, one seed


def test_a_run_past_its_time_limit_is_cut_off(plugins, tmp_path):
    frame = _run(tmp_path, methods=["sleeping"], samplers=["ula"], timeout=0.3,
                 overrides={"method.sleeping.steps": 200})
    row = frame.iloc[0]
    assert row.status == "timeout" and "0.3 s limit" in row.reason


def test_unavailable_data_is_a_skip_with_the_reason(plugins, tmp_path):
    frame = _run(tmp_path, methods=["dsm"], samplers=["ula"], datasets=["offline"], metrics=[])
    row = frame.iloc[0]
    assert row.status == "skipped" and "put the files there" in row.reason


def test_sampler_free_method_trains_once_for_all_samplers(plugins, tmp_path):
    frame = _run(tmp_path, methods=["counting"], samplers=["ula", "identity"])
    steps = ebmbench.get_method("counting", budget="smoke").hparams["steps"]
    assert fault_plugins.TRAIN_STEPS["count"] == steps
    assert set(frame.status) == {"ok"}
    # Model-only metrics are computed once and shared; sample metrics differ.
    assert frame["metric.fisher_divergence"].nunique() == 1
    assert frame["train_seconds"].nunique() == 1
    assert frame["train_key"].nunique() == 1


def test_method_using_a_sampler_trains_per_sampler(plugins, tmp_path):
    _run(tmp_path, methods=["counting_cd"], samplers=["ula", "identity"])
    steps = ebmbench.get_method("counting_cd", budget="smoke").hparams["steps"]
    assert fault_plugins.TRAIN_STEPS["count"] == 2 * steps


def test_rerun_resumes_and_does_nothing_again(plugins, tmp_path):
    first = _run(tmp_path, methods=["counting", "raising"], samplers=["ula"])
    count = fault_plugins.TRAIN_STEPS["count"]
    second = _run(tmp_path, methods=["counting", "raising"], samplers=["ula"])
    assert fault_plugins.TRAIN_STEPS["count"] == count
    assert sorted(first.run_id) == sorted(second.run_id)
    with ResultStore.open(tmp_path / "r" / "results.sqlite") as store:
        assert len(list(store.rows())) == 2


def test_retry_failed_reruns_only_failures(plugins, tmp_path):
    _run(tmp_path, methods=["counting", "raising"], samplers=["ula"])
    count = fault_plugins.TRAIN_STEPS["count"]
    frame = _run(tmp_path, methods=["counting", "raising"], samplers=["ula"], retry_failed=True)
    assert fault_plugins.TRAIN_STEPS["count"] == count  # the ok run was not retrained
    assert len(frame) == 2 and _status(frame, "raising").status == "failed"


def test_new_sampler_reuses_the_checkpoint_without_retraining(plugins, tmp_path):
    _run(tmp_path, methods=["counting"], samplers=["ula"])
    count = fault_plugins.TRAIN_STEPS["count"]
    frame = _run(tmp_path, methods=["counting"], samplers=["ula", "identity"])
    assert fault_plugins.TRAIN_STEPS["count"] == count
    assert set(frame.status) == {"ok"} and frame["metric.fisher_divergence"].nunique() == 1


def test_same_seed_same_numbers_different_seed_different(plugins, tmp_path):
    a = _run(tmp_path / "a", methods=["dsm"], samplers=["ula"], seeds=[0, 1])
    b = _run(tmp_path / "b", methods=["dsm"], samplers=["ula"], seeds=[0, 1])
    fa = a.sort_values("seed")["metric.fisher_divergence"].tolist()
    fb = b.sort_values("seed")["metric.fisher_divergence"].tolist()
    assert fa == fb and fa[0] != fa[1]


def test_rows_carry_what_is_needed_to_rerun(plugins, tmp_path):
    row = _run(tmp_path, methods=["dsm"], samplers=["ula"], overrides={"method.dsm.sigma": "0.3"}).iloc[0]
    assert row.hyperparams["method"]["sigma"] == 0.3
    assert row.hyperparams["sampler"]["steps"] == 10
    assert row.versions["torch"] and row.versions["method:dsm"] == f"ebmbench=={ebmbench.__version__}"
    assert row.device == "cpu" and row.budget == "smoke" and row.seed == 0
    assert row.train_seconds > 0 and row.peak_memory_mb > 0


def test_grid_overrides_reject_unknown_names(plugins):
    with pytest.raises(ebmbench.UserError, match="unknown method 'dsn'. Did you mean 'dsm'"):
        expand(Selection(overrides={"method.dsn.sigma": 1}))
    with pytest.raises(ebmbench.UserError, match="has no parameter 'sigmaa'"):
        expand(Selection(methods=["dsm"], overrides={"method.dsm.sigmaa": 1}))


def test_wildcard_override_applies_where_declared(plugins):
    specs, _ = expand(Selection(methods=["dsm", "counting"], samplers=["ula"],
                                datasets=["eight_gaussians"], architectures=["mlp"],
                                overrides={"method.*.sigma": "0.7"}))
    by_method = {s.method: s.params["method"] for s in specs}
    assert by_method["dsm"]["sigma"] == 0.7 and "sigma" not in by_method["counting"]


def test_executor_overrides_from_set_reach_the_executor(plugins, tmp_path):
    fault_plugins.EXECUTOR_TAGS.clear()
    _run(tmp_path, methods=["counting"], samplers=["identity"], metrics=[],
         executor="tagging", overrides={"executor.tagging.tag": "from-set"})
    assert fault_plugins.EXECUTOR_TAGS == ["from-set"]


class _Doubtful(ebmbench.Metric):
    """Returns two values and flags one of them, as a metric does whose estimate fails its
    own diagnostics."""

    name = "doubtful"
    description = "test: one value it vouches for, one it does not"
    higher_is_better = {"sure": False, "unsure": False}

    def compute(self, ctx):
        ctx.unreliable["unsure"] = "ESS 2 of 64 chains < 10%"
        return {"sure": 1.0, "unsure": 2.0}


class _DoubtfulPlugin:
    @ebmbench.hookimpl
    def ebmbench_register_metrics(self, register):
        register(_Doubtful)


def test_values_a_metric_flags_as_unreliable_are_noted_in_the_row(plugins, tmp_path):
    ebmbench.register_plugin(_DoubtfulPlugin(), name="doubtful")
    frame = _run(tmp_path, methods=["counting"], samplers=["identity", "ula"],
                 metrics=["doubtful"])
    assert len(frame) == 2  # model-only metric: computed once, copied to every sampler's row
    for _, row in frame.iterrows():
        assert row["metric.sure"] == 1.0 and row["metric.unsure"] == 2.0
        assert row["notes"]["unreliable:unsure"] == "ESS 2 of 64 chains < 10%"
        assert ebmbench.unreliable_values(row["notes"]) == {"unsure": "ESS 2 of 64 chains < 10%"}
