"""scripts/tuning_draws.py: tuning draws of one sweep compared model by model, on real
smoke sweeps (``tune_draw``)."""

from __future__ import annotations

import pytest

import ebmbench
from tests.helpers import load_script

RUN = dict(methods=["dsm", "cd"], samplers=["ula"], architectures=["mlp"],
           datasets=["eight_gaussians"], metrics=["fisher"], budget="smoke", seeds=[0, 1],
           device="cpu", tune=2)


def test_two_draws_compare_model_by_model(tmp_path):
    script = load_script("tuning_draws")
    frames = [ebmbench.run(results=tmp_path / f"d{d}.sqlite", tune_draw=d, **RUN) for d in (0, 1)]
    stored = [ebmbench.load_results(tmp_path / f"d{d}.sqlite") for d in (0, 1)]
    table = script.per_draw(stored)
    assert len(table) == 2  # dsm (no training sampler) and cd with ula
    for method in ("dsm", "cd"):
        row = table.xs(method, level="method").iloc[0]
        means = [f[f.method == method]["metric.fisher_divergence"].mean() for f in frames]
        assert [row["fisher 0"], row["fisher 1"]] == pytest.approx(means)
        assert row["spread"] == pytest.approx(max(means) / min(means))
        assert row["median"] == pytest.approx(sum(means) / 2)  # two draws: their mean
    (line,) = script.agreement(table).to_dict("records")
    assert line["draws"] == "0 vs 1" and line["models"] == 2
    order = [table[f"fisher {k}"].idxmin() for k in (0, 1)]
    assert line["same best"] == (order[0] == order[1])
    assert line["kendall tau"] == (1.0 if order[0] == order[1] else -1.0)  # two models
    # A draw against itself: the same order, no spread.
    same = script.per_draw([stored[0], stored[0]])
    assert (same["spread"] == 1).all()
    (line,) = script.agreement(same).to_dict("records")
    assert line["kendall tau"] == 1.0 and line["same best"]
    target = float(table["fisher 0"].min())
    assert script.reaching(table, target).loc[table["fisher 0"].idxmin()] >= 1
    # The dataset filter keeps nothing that is not asked for.
    assert script.per_draw(stored, ["two_moons"]).empty
    assert script.per_draw(stored, None, ["quadratic"]).empty
    assert len(script.per_draw(stored, ["eight_gaussians"], ["mlp"])) == 2


def test_a_changed_protocol_is_judged_by_the_draws_spread(tmp_path):
    script = load_script("tuning_draws")
    for d in (0, 1):
        ebmbench.run(results=tmp_path / f"d{d}.sqlite", tune_draw=d, **RUN)
    stored = [ebmbench.load_results(tmp_path / f"d{d}.sqlite") for d in (0, 1)]
    table = script.per_draw(stored)
    # A draw judged against the draws is within their range: nothing is credited to it.
    itself = script.judged(table, table["fisher 0"])
    assert (itself["verdict"] == "within").all()
    # Halving every model's mean puts each below both draws (by more than 10 %), and the
    # geometric mean of the ratio to the draws' median is 0.5 / (median / draw 0).
    halved = script.judged(table, table[["fisher 0", "fisher 1"]].min(axis=1) / 2)
    assert (halved["verdict"] == "better").all()
    (line,) = script.judged_summary(halved).to_dict("records")
    assert (line["better"], line["worse"], line["within"], line["models"]) == (2, 0, 0, 2)
    expected = (table[["fisher 0", "fisher 1"]].min(axis=1) / 2 / table["median"]).prod() ** 0.5
    assert line["geometric mean ratio"] == pytest.approx(expected)
    doubled = script.judged(table, table[["fisher 0", "fisher 1"]].max(axis=1) * 2)
    assert (doubled["verdict"] == "worse").all()


def test_draws_made_under_different_protocol_settings_are_flagged(tmp_path, monkeypatch, capsys):
    """The draws' spread is credited to chance only if they differ by their draws alone: a
    draw under another setting (here ranking iterates) is named, and the output says so."""
    script = load_script("tuning_draws")
    ebmbench.run(results=tmp_path / "d0.sqlite", tune_draw=0, **RUN)
    ebmbench.run(results=tmp_path / "d1.sqlite", tune_draw=1, weight_average="none", **RUN)
    ebmbench.run(results=tmp_path / "d2.sqlite", tune_draw=2, **RUN)
    stored = {d: ebmbench.load_results(tmp_path / f"d{d}.sqlite") for d in (0, 1, 2)}
    assert script.protocol_line(stored[0]) == (
        "lr_schedule=constant, checkpoint=best, weight_average=best")
    assert script.protocol_line(stored[1]) == (
        "lr_schedule=constant, checkpoint=best, weight_average=none")

    def output(*names: str) -> str:
        monkeypatch.setattr("sys.argv", ["tuning_draws.py", *(str(tmp_path / n) for n in names)])
        script.main()
        return capsys.readouterr().out

    mixed = output("d0.sqlite", "d1.sqlite")
    assert "draw 1 (d1.sqlite): lr_schedule=constant, checkpoint=best, weight_average=none" in mixed
    assert "WARNING: the draws ran under different protocol settings" in mixed
    assert "WARNING" not in output("d0.sqlite", "d2.sqlite")
