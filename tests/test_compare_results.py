"""scripts/compare_results.py: two stores compared model by model, on real smoke sweeps."""

from __future__ import annotations

import pytest

import ebmbench
from tests.helpers import load_script

RUN = dict(methods=["dsm", "cd"], samplers=["ula"], architectures=["mlp"],
           datasets=["eight_gaussians"], metrics=["fisher"], budget="smoke", seeds=[0, 1],
           device="cpu")


def test_two_stores_compare_model_by_model(tmp_path):
    script = load_script("compare_results")
    before = ebmbench.run(results=tmp_path / "a.sqlite", **RUN)
    after = ebmbench.run(results=tmp_path / "b.sqlite", **RUN,
                         overrides={"method.dsm.lr": 0.03, "method.cd.mcmc_steps": 7})
    table = script.compare(
        script.models(ebmbench.load_results(tmp_path / "a.sqlite"), None, ["mcmc_steps"]),
        script.models(ebmbench.load_results(tmp_path / "b.sqlite"), None, ["mcmc_steps"]),
    )
    assert len(table) == 2  # dsm (no training sampler) and cd with ula
    for method, frame_before, frame_after in (("dsm", before, after), ("cd", before, after)):
        row = table.xs(method, level="method").iloc[0]
        assert row["fisher before"] == pytest.approx(
            frame_before[frame_before.method == method]["metric.fisher_divergence"].mean())
        assert row["fisher after"] == pytest.approx(
            frame_after[frame_after.method == method]["metric.fisher_divergence"].mean())
        assert row["seeds before"] == row["seeds after"] == 2
        ratio = row["fisher after"] / row["fisher before"]
        expected = "better" if ratio < 0.8 else "worse" if ratio > 1.25 else ""
        assert row["change"] == expected
    assert table.xs("cd", level="method")["mcmc_steps after"].iloc[0] == 7
    assert table.index.get_level_values("training sampler").tolist().count("–") == 1
    (line,) = script.summary(table)
    assert line.startswith("2-D toys: 2 models, ")
    (board,) = script.by_dataset(table).to_dict("records")
    ratios = table["fisher after"] / table["fisher before"]
    assert board["models"] == 2 and board["better"] == (table["change"] == "better").sum()
    assert board["geometric mean after/before"] == pytest.approx(float((ratios.prod()) ** 0.5))
    best = table["fisher after"].idxmin()
    assert board["best after"].startswith("/".join(v for v in best[1:] if v != "–"))
    # Each store's protocol is stated: here the same, the change being two parameters.
    stored = [ebmbench.load_results(tmp_path / n) for n in ("a.sqlite", "b.sqlite")]
    assert script.protocols(*stored, table) == [
        f"{name}: lr_schedule=constant, checkpoint=best, weight_average=best"
        for name in ("before", "after")]
    # Only cd: the filter keeps one model.
    only_cd = script.models(ebmbench.load_results(tmp_path / "a.sqlite"), ["cd"], [])
    assert only_cd.index.get_level_values("method").tolist() == ["cd"]


def test_an_evaluation_samplers_change_is_compared_on_the_sampler_free_models(tmp_path):
    """``--samples``: the same dsm models sampled by ula at two step sizes; the ratios are
    those of the rows' MMD, and a store against itself gives exactly 1."""
    script = load_script("compare_results")
    run = dict(RUN, methods=["dsm"], metrics=["fisher", "mmd"])
    before = ebmbench.run(results=tmp_path / "a.sqlite", **run)
    after = ebmbench.run(results=tmp_path / "b.sqlite", **run,
                         overrides={"sampler.ula.step_size": 0.05})
    assert set(before["train_key"]) == set(after["train_key"])  # the same models
    a, b = ebmbench.load_results(tmp_path / "a.sqlite"), ebmbench.load_results(tmp_path / "b.sqlite")
    (line,) = script.sample_ratios(a, b, "ula").to_dict("records")
    ratios = (after.sort_values("seed")["metric.mmd"].to_numpy()
              / before.sort_values("seed")["metric.mmd"].to_numpy())
    assert line["metric"] == "mmd" and line["rows"] == 2
    assert line["median"] == pytest.approx(float(sum(ratios) / 2))
    assert line["q10"] <= line["median"] <= line["q90"]
    (same,) = script.sample_ratios(a, a, "ula").to_dict("records")
    assert same["median"] == same["q10"] == same["q90"] == 1.0
    assert script.sample_ratios(a, b, "mala").empty  # nothing sampled by mala
