"""scripts/start_at_truth.py: the start-at-the-truth control of docs/protocol.md §7."""

from __future__ import annotations

import pytest

import ebmbench
from tests.helpers import load_script


def _script():
    return load_script("start_at_truth")


def test_the_control_reruns_each_published_configuration_from_the_truth(tmp_path, capsys):
    """A published exact_sm and dsm (a non-default σ, as a tuned choice would be) are
    run again from the truth with the configuration their runs recorded: both start
    near zero, and dsm ends near its closed-form drift (½ tr(DΣD) = 0.53 at σ = 0.2)."""
    sets = {"method.dsm.sigma": 0.2, "method.dsm.steps": 600, "method.exact_sm.steps": 600,
            "method.dsm.lr": 0.003, "method.exact_sm.lr": 0.003}
    ebmbench.run(methods=["dsm", "exact_sm"], samplers=["ula"], architectures=["quadratic", "mlp"],
                 datasets=["correlated_gaussian"], metrics=["fisher"], budget="smoke",
                 overrides=sets, train_flops=1e15, results=tmp_path / "published.sqlite",
                 checkpoints=False)
    script = _script()
    models = script.published_models(ebmbench.load_results(tmp_path / "published.sqlite"),
                                     "correlated_gaussian").set_index("method")
    assert set(models.index) == {"dsm", "exact_sm"}  # the mlp rows are not quadratic
    dsm_settings = models.loc["dsm", "overrides"]
    assert dsm_settings["method.dsm.sigma"] == 0.2 and models.loc["dsm", "sampler"] == "–"
    assert dsm_settings["dataset.correlated_gaussian.std_minor"] == 0.3
    assert not any(k.startswith("sampler.") for k in dsm_settings)  # dsm trains without one
    assert models.loc["dsm", "budget"] == "smoke"
    script.main([str(tmp_path / "published.sqlite"), "--results", str(tmp_path / "truth.sqlite")])
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
             for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    header = lines.pop("method")
    dsm = dict(zip(header, lines["dsm"], strict=True))
    exact = dict(zip(header, lines["exact_sm"], strict=True))
    assert dsm["configuration"] == "defaults"  # not tuned: the runs' own parameters
    assert float(exact["from the truth: first point"]) < 0.05
    assert float(dsm["from the truth: first point"]) < 0.1
    assert float(dsm["end"]) == pytest.approx(0.53, rel=0.3)
    assert float(exact["end"]) < 0.1
    # The control's runs are labelled as such in their store.
    control = ebmbench.load_results(tmp_path / "truth.sqlite")
    assert (control["hyperparams"].map(lambda h: h["variant"]["start"]) == "truth").all()
    assert set(control["method"]) == {"dsm", "exact_sm"} and set(control["budget"]) == {"smoke"}


def test_a_published_method_not_installed_here_is_reported_not_run(tmp_path):
    """An export can hold a third-party method this machine lacks: its line says so and
    the other models still run."""
    model = {"method": "not_installed_method", "sampler": "–",
             "overrides": {"method.not_installed_method.lr": 0.001}}
    measured = _script().from_truth(model, "correlated_gaussian", "0", "smoke", tmp_path / "t.sqlite")
    assert measured["status"].startswith("not run:") and "not_installed_method" in measured["status"]


def test_the_control_can_be_limited_to_training_samplers(tmp_path, monkeypatch, capsys):
    """``--sampler`` reruns only the models trained with those samplers (after a change to
    one kernel, its models alone), and ``--method`` composes with it."""
    ebmbench.run(methods=["cd", "exact_sm"], samplers=["ula", "mala"], architectures=["quadratic"],
                 datasets=["correlated_gaussian"], metrics=["fisher"], budget="smoke",
                 overrides={"method.*.steps": 3}, results=tmp_path / "published.sqlite",
                 checkpoints=False)
    script = _script()
    called = []

    def fake_from_truth(model, *args):
        called.append((model["method"], model["sampler"]))
        return {"start": 0.0, "end": 0.0, "status": "ok"}

    monkeypatch.setattr(script, "from_truth", fake_from_truth)
    script.main([str(tmp_path / "published.sqlite"), "--sampler", "mala"])
    assert called == [("cd", "mala")]
    called.clear()
    script.main([str(tmp_path / "published.sqlite"), "--sampler", "ula", "--sampler", "mala",
                 "--method", "cd"])
    assert sorted(called) == [("cd", "mala"), ("cd", "ula")]
    capsys.readouterr()
