"""Trained models: ebmbench.train, TrainedModel, load_model and the checkpoints behind them.

Ground truths: a model from ``train`` is the one a sweep trains (equal weights, equal
metric values); a model loaded back (from a file or a results store) is the one saved; the
log Z of the ``quadratic`` energy, a Gaussian, has a closed form that quadrature and AIS
must reproduce.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ebmbench
from ebmbench.checkpoint import MODEL_FORMAT
from ebmbench.cli import main
from ebmbench.runner import checkpoint_path
from tests import fault_plugins

ROOT = Path(__file__).resolve().parent.parent
TOY = dict(architectures=["mlp"], datasets=["eight_gaussians"], budget="smoke")


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


@pytest.fixture(scope="module")
def dsm_model():
    return ebmbench.train("dsm", "mlp", "eight_gaussians", budget="smoke", device="cpu")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A sweep of dsm and nce × ula on eight_gaussians, with two metrics."""
    results = tmp_path_factory.mktemp("swept") / "results.sqlite"
    frame = ebmbench.run(methods=["dsm", "nce"], samplers=["ula"], metrics=["fisher", "mmd"],
                         results=results, device="cpu", **TOY)
    assert set(frame.status) == {"ok"}, frame.reason.tolist()
    return frame, results


def test_train_sample_evaluate(dsm_model):
    model = dsm_model
    assert model.spec.method == "dsm" and model.spec.budget == "smoke" and not model.energy.training
    x = model.sample(300, sampler="ula")
    assert x.shape == (300, 2) and torch.isfinite(x).all() and x.device.type == "cpu"
    assert torch.equal(x, model.sample(300, sampler="ula"))  # seeded
    assert not torch.equal(x, model.sample(300, sampler="ula", seed=1))
    short = model.sample(50, sampler="ula", steps=3, return_stats=True)
    assert short.x.shape == (50, 2) and short.stats["grad_evals"] == 3
    values = model.evaluate(["fisher"], sampler="ula")
    assert set(values) == {"fisher_divergence", "fisher_divergence_se"}
    assert values["fisher_divergence"] > 0


def test_train_equals_the_sweep_and_evaluate_reproduces_its_row(dsm_model, swept):
    frame, results = swept
    row = frame[frame.method == "dsm"].iloc[0]
    assert dsm_model.train_key == row.train_key
    loaded = ebmbench.load_model(row, results=results)
    assert _same_weights(loaded.energy, dsm_model.energy)
    values = dsm_model.evaluate(["fisher", "mmd"], sampler="ula")
    for name, value in values.items():
        assert value == row[f"metric.{name}"], name


def test_dataset_method_defaults_apply_as_in_a_sweep(tmp_path):
    model = ebmbench.train("dsm", "mlp", "digits", budget="smoke", device="cpu")
    defaults = ebmbench.get_dataset("digits").method_defaults["smoke"]
    assert model.method.hparams["steps"] == defaults["steps"]
    frame = ebmbench.run(methods=["dsm"], samplers=["ula"], architectures=["mlp"],
                         datasets=["digits"], metrics=[], budget="smoke", device="cpu",
                         results=tmp_path / "r.sqlite")
    assert frame.train_key.iloc[0] == model.train_key
    assert _same_weights(ebmbench.load_model(frame.run_id.iloc[0], tmp_path / "r.sqlite").energy,
                         model.energy)


def test_method_params_and_overrides_reach_the_plugins():
    model = ebmbench.train("dsm", "mlp", "eight_gaussians", budget="smoke", device="cpu",
                           sigma=0.3, steps=5, overrides={"architecture.mlp.hidden": 8})
    assert model.method.hparams["sigma"] == 0.3 and model.method.hparams["steps"] == 5
    assert model.spec.params["architecture"]["hidden"] == 8
    with pytest.raises(ebmbench.UserError, match="has no parameter 'sigmaa'"):
        ebmbench.train("dsm", "mlp", "eight_gaussians", budget="smoke", sigmaa=1)
    with pytest.raises(ebmbench.UserError, match="cannot run: architecture quadratic is a Gaussian energy"):
        ebmbench.train("dsm", "quadratic", "eight_gaussians", budget="smoke")


def test_load_model_by_run_id_prefix_and_by_row(swept):
    frame, results = swept
    row = frame[frame.method == "nce"].iloc[0]
    by_row = ebmbench.load_model(row, results=results)
    by_id = ebmbench.load_model(row.run_id, results=results)
    by_prefix = ebmbench.load_model(row.run_id[:8], results=results)
    assert by_row.spec.method == "nce" and by_row.spec.sampler == "ula"
    assert _same_weights(by_row.energy, by_id.energy) and _same_weights(by_id.energy, by_prefix.energy)
    # NCE's own state (its learned log Z) comes back with the weights.
    assert by_id.log_partition() == by_row.method.log_partition()
    with pytest.raises(ebmbench.UserError, match="no run 'ffffffffff' in"):
        ebmbench.load_model("ffffffffff", results=results)
    with pytest.raises(ebmbench.UserError, match="matches several runs"):
        ebmbench.load_model("", results=results)


def test_save_and_load_a_model_file(dsm_model, tmp_path):
    path = dsm_model.save(tmp_path / "models" / "dsm.pt")
    state = torch.load(path, weights_only=True)  # plain types and tensors only
    assert state["format"] == MODEL_FORMAT and state["spec"]["method"] == "dsm"
    assert state["spec"]["params"]["method"] == dsm_model.method.hparams
    again = ebmbench.load_model(path)
    assert _same_weights(again.energy, dsm_model.energy)
    assert again.train_key == dsm_model.train_key
    assert torch.equal(again.sample(100, sampler="ula"), dsm_model.sample(100, sampler="ula"))


def test_a_saved_model_loads_in_a_fresh_process(tmp_path):
    nce = ebmbench.train("nce", "mlp", "eight_gaussians", budget="smoke", device="cpu")
    path = nce.save(tmp_path / "nce.pt")
    script = ("import ebmbench, sys; m = ebmbench.load_model(sys.argv[1]); "
              "print(repr(m.log_partition()))")
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    assert float(out.strip().splitlines()[-1]) == nce.log_partition()


class _Arbitrary:
    """Unpickling it would run code of this module: weights_only loading refuses."""


def test_model_files_refuse_what_is_not_one(tmp_path):
    junk = tmp_path / "junk.pt"
    torch.save({"energy": {}, "evil": _Arbitrary()}, junk)
    with pytest.raises(ebmbench.UserError, match="weights_only=True"):
        ebmbench.load_model(junk)
    with pytest.raises(ebmbench.UserError, match="no model file"):
        ebmbench.load_model(tmp_path / "missing.pt")


def test_every_trained_model_is_checkpointed_cd_included(fresh_plugins, tmp_path):
    ebmbench.register_plugin(fault_plugins)
    fault_plugins.TRAIN_STEPS["count"] = 0
    results = tmp_path / "r" / "results.sqlite"
    kwargs = dict(methods=["counting_cd"], samplers=["ula", "identity"], metrics=["fisher"],
                  results=results, **TOY)
    frame = ebmbench.run(**kwargs)
    steps = ebmbench.get_method("counting_cd", budget="smoke").hparams["steps"]
    assert fault_plugins.TRAIN_STEPS["count"] == 2 * steps  # trained once per sampler
    assert frame.train_key.nunique() == 2
    for row in frame.itertuples():
        assert checkpoint_path(results.parent, row.train_key).is_file()
    # Evaluation again (the rows gone, the checkpoints kept): no training at all.
    results.unlink()
    again = ebmbench.run(**kwargs)
    assert fault_plugins.TRAIN_STEPS["count"] == 2 * steps
    assert sorted(again["metric.fisher_divergence"]) == sorted(frame["metric.fisher_divergence"])
    model = ebmbench.load_model(frame.iloc[0], results=results)
    assert model.spec.uses_sampler and model.spec.sampler == frame.iloc[0].sampler


def test_no_checkpoints_opts_out(tmp_path):
    results = tmp_path / "r" / "results.sqlite"
    main(["run", "--method", "dsm", "--sampler", "ula", "--architecture", "mlp", "--dataset",
          "eight_gaussians", "--metric", "fisher", "--budget", "smoke", "--results",
          str(results), "--no-checkpoints", "--no-leaderboard", "--no-progress"])
    assert not (results.parent / "checkpoints").exists()
    run_id = ebmbench.load_results(results).run_id.iloc[0]
    with pytest.raises(ebmbench.UserError, match="has no checkpoint .*--no-checkpoints"):
        ebmbench.load_model(run_id, results=results)


def test_checkpoints_are_kept_by_the_cli_and_load(tmp_path):
    results = tmp_path / "r" / "results.sqlite"
    main(["run", "--method", "nce", "--sampler", "ula", "--architecture", "mlp", "--dataset",
          "eight_gaussians", "--metric", "fisher", "--budget", "smoke", "--results",
          str(results), "--no-leaderboard", "--no-progress"])
    row = ebmbench.load_results(results).iloc[0]
    state = torch.load(checkpoint_path(results.parent, row.train_key), weights_only=True)
    assert state["format"] == MODEL_FORMAT and state["train_key"] == row.train_key
    model = ebmbench.load_model(row.run_id, results=results)
    assert model.spec.method == "nce"
    assert model.evaluate(["fisher"], sampler="ula")["fisher_divergence"] == row[
        "metric.fisher_divergence"]


# --------------------------------------------------------------------------- log Z


@pytest.fixture(scope="module")
def gaussian_models():
    """The quadratic (Gaussian) energy set to each Gaussian dataset's own mean and covariance:
    log Z = ½ log det(2πΣ) in closed form, and the data the estimators are fitted to match."""
    models = {}
    for name in ("correlated_gaussian", "correlated_gaussian_16d"):
        # One step: the energy is set by hand below, training only has to exist.
        model = ebmbench.train("dsm", "quadratic", name, budget="smoke", device="cpu", steps=1)
        cov = torch.as_tensor(model.dataset.covariance, dtype=torch.float64)
        model.energy.set(torch.as_tensor(model.dataset.mean, dtype=torch.float32),
                         torch.linalg.inv(cov).float())
        exact = 0.5 * float(torch.logdet(2 * math.pi * cov))
        assert float(model.energy.log_partition().detach()) == pytest.approx(exact, abs=1e-4)
        models[name] = (model, exact)
    return models


def test_log_partition_by_quadrature_matches_the_closed_form(gaussian_models):
    model, exact = gaussian_models["correlated_gaussian"]
    # The box holds all but ~1e-5 of the mass.
    assert model.log_partition() == pytest.approx(exact, abs=1e-4)
    assert model.log_partition(source="quadrature") == model.log_partition()


def test_log_partition_above_2d_by_closed_form_and_by_ais(gaussian_models):
    model, exact = gaussian_models["correlated_gaussian_16d"]
    # No bounds above 2-D: the quadratic energy's own closed form, as the metric uses it.
    assert model.log_partition() == pytest.approx(exact, abs=1e-6)
    assert model.log_partition(source="closed_form") == model.log_partition()
    estimate = model.log_partition(source="ais")
    # Smoke's AIS (4 replicates of 8 chains) has a standard error of about 0.075 nats here:
    # within 3 SE. The error bars' coverage is tested in tests/test_ais_coverage.py.
    assert estimate == pytest.approx(exact, abs=0.22)
    assert estimate != pytest.approx(exact, abs=1e-6)  # a real estimate, not the closed form
    assert model.log_partition(source="ais") == estimate  # seeded
    with pytest.raises(ebmbench.UserError, match="no 2-D bounds"):
        model.log_partition(source="quadrature")


def test_log_partition_sources(dsm_model, swept):
    with pytest.raises(ebmbench.UserError, match="makes no estimate of log Z"):
        dsm_model.log_partition(source="method")
    with pytest.raises(ebmbench.UserError, match="Valid sources: auto, method, quadrature, closed_form, ais"):
        dsm_model.log_partition(source="magic")
    frame, results = swept
    nce = ebmbench.load_model(frame[frame.method == "nce"].iloc[0], results=results)
    assert nce.log_partition() == nce.method.log_partition()
    assert nce.log_partition(source="quadrature") != nce.log_partition()


# --------------------------------------------------------------------------- the docs


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_six_lines_run_as_a_new_user_would(tmp_path):
    """The README's trained-model snippet, run as written in a fresh process (smoke budget)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Your trained model", 1)[1].split("\n## ", 1)[0]
    (code,) = _python_blocks(section)
    assert len(code.strip().splitlines()) <= 6, code
    code = code.replace('budget="quick"', 'budget="smoke"')
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fisher_divergence" in done.stdout


@pytest.mark.slow
def test_api_walkthrough_runs(tmp_path, monkeypatch):
    """docs/api.md's walk-through, every python block in order, at the smoke budget."""
    import matplotlib

    matplotlib.use("Agg")
    doc = (ROOT / "docs" / "api.md").read_text()
    walk = doc.split("## Walk-through", 1)[1].split("\n## ", 1)[0]
    blocks = _python_blocks(walk)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block.replace('budget="quick"', 'budget="smoke"'), "docs/api.md", "exec"),
             namespace)
    assert (tmp_path / "eight_gaussians.png").is_file()
    assert 0 <= namespace["tv"] <= 1
    assert ebmbench.load_model("nce.pt").train_key == namespace["nce"].train_key
