"""The degenerate status: the Gaussian reference against its closed form, the thresholds,
and the harness recording it (a model flag shared by its sampler rows, a sample flag per row)."""

from __future__ import annotations

import math

import pytest
import torch

import ebmbench
from ebmbench import degenerate
from ebmbench.degenerate import COLLAPSE_FRACTION, degenerate_notes, gaussian_nll, nll_margin
from tests import fault_plugins


def test_gaussian_nll_is_the_closed_form_cross_entropy():
    """E_q[−log N(x; m, S)] = ½ tr(S⁻¹Σ_q) + ½ (μ_q − m)ᵀ S⁻¹ (μ_q − m) + ½ log det(2πS), with
    (m, S) fitted to a large sample of N(m, S)."""
    g = torch.Generator().manual_seed(0)
    m, scale = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([[1.0, 0, 0], [0.6, 0.8, 0], [0.1, 0.2, 0.5]])
    S = (scale @ scale.T).double()
    train = m + torch.randn(200_000, 3, generator=g) @ scale.T
    mu_q, Sigma_q = (
        torch.tensor([1.5, -2.0, 0.0]).double(),
        torch.diag(torch.tensor([0.5, 2.0, 1.0])).double(),
    )
    test = mu_q + torch.randn(200_000, 3, generator=g).double() @ torch.linalg.cholesky(Sigma_q).T
    prec, diff = torch.linalg.inv(S), mu_q - m.double()
    exact = 0.5 * float(torch.trace(prec @ Sigma_q) + diff @ prec @ diff + torch.logdet(2 * math.pi * S))
    assert gaussian_nll(train, test) == pytest.approx(exact, abs=0.02)


def test_the_nll_bar_is_the_gaussian_plus_the_documented_margin():
    assert nll_margin(2.8) == 1.0 and nll_margin(-40.0) == pytest.approx(4.0) and nll_margin(25.0) == 2.5
    assert degenerate_notes(3.8, 2.8, None, None) == {}  # at the bar: not degenerate
    assert "degenerate:nll" in degenerate_notes(3.81, 2.8, None, None)
    assert "degenerate:nll" in degenerate_notes(float("nan"), 2.8, None, None)
    assert degenerate_notes(None, 2.8, None, None) == {}  # no NLL: no verdict


def test_collapse_is_relative_to_the_datas_spread():
    g = torch.Generator().manual_seed(1)
    data = 3.0 * torch.randn(2000, 2, generator=g)  # total variance 18
    point = torch.randn(500, 2, generator=g) * math.sqrt(COLLAPSE_FRACTION * 9 * 0.5)  # ~0.5 % of it
    assert "degenerate:collapse" in degenerate_notes(None, None, point, data)
    assert degenerate_notes(None, None, 3.0 * torch.randn(500, 2, generator=g), data) == {}
    mode = 0.5 * torch.randn(500, 2, generator=g) + 4.0  # one mode, 2.8 % of the spread: not a point
    assert degenerate_notes(None, None, mode, data) == {}


@pytest.fixture
def plugins(fresh_plugins):
    ebmbench.register_plugin(fault_plugins)
    return fresh_plugins


def _run(tmp_path, **kwargs):
    return ebmbench.run(
        methods=["dsm"],
        architectures=["mlp"],
        datasets=["eight_gaussians"],
        metrics=["log_partition"],
        budget="smoke",
        results=tmp_path / "r.sqlite",
        **kwargs,
    )


def test_smoke_runs_are_never_judged(plugins, tmp_path):
    frame = _run(tmp_path, samplers=["collapsing"])
    assert set(frame["status"]) == {"ok"}
    assert "gaussian_nll" in frame["reference_values"].iloc[0]  # the reference is recorded anyway


def test_the_harness_records_a_degenerate_model_on_every_sampler_row(plugins, tmp_path, monkeypatch):
    monkeypatch.setattr(degenerate, "JUDGED_BUDGETS", ("smoke", "quick", "full"))
    monkeypatch.setattr("ebmbench.runner.gaussian_nll", lambda train, test: -100.0)  # any model is worse
    frame = _run(tmp_path, samplers=["ula", "identity"])
    assert set(frame["status"]) == {"degenerate"}
    assert frame["notes"].map(lambda n: "degenerate:nll" in n).all()
    assert frame["reason"].str.contains("a Gaussian fitted to the training data: -100").all()
    assert (frame["metric.gaussian_nll"] == -100.0).all()


def test_collapsed_samples_mark_only_their_row(plugins, tmp_path, monkeypatch):
    monkeypatch.setattr(degenerate, "JUDGED_BUDGETS", ("smoke", "quick", "full"))
    monkeypatch.setattr("ebmbench.runner.gaussian_nll", lambda train, test: 1e6)  # no model is worse
    frame = _run(tmp_path, samplers=["identity", "collapsing"]).set_index("sampler")
    assert frame.loc["collapsing", "status"] == "degenerate"
    assert "degenerate:collapse" in frame.loc["collapsing", "notes"]
    assert frame.loc["identity", "status"] == "ok"
    assert "degenerate" in ebmbench.runner.STATUSES
