"""The sampler board against ground truth: exact samples, i.i.d. draws, known moments."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from ebmbench_plugins.metrics.mmd import _kernel, median_distance, mmd2_unbiased
from torch import nn

import ebmbench
from ebmbench import Param, Sampler, SampleResult, ToyDensity
from ebmbench.chain_diagnostics import bulk_ess, rank_rhat
from ebmbench.cli import main
from ebmbench.exact_sampling import ExactLogDensity, GridDensity2D
from ebmbench.grid import Selection
from ebmbench.plugins import get_plugin_manager
from ebmbench.quadrature import box_rule_2d
from ebmbench.sampler_board import (
    GRAD_BUDGET,
    SamplerTask,
    _BoxRestricted,
    board_metrics,
    execute_sampler_task,
    plan_board,
)
from ebmbench.store import ResultStore
from ebmbench.sweep import run_sweep
from tests.helpers import registered_plugins

# --------------------------------------------------------------------- test plugins


class StdNormal2D(ToyDensity):
    """N(0, I) in 2-D: i.i.d. draws of it are exact."""

    name = "std_normal_2d"
    description = "test: the standard normal in 2-D"
    dim = 2
    bounds = ((-6.0, 6.0), (-6.0, 6.0))

    def sample(self, n, generator):
        return torch.randn((n, 2), generator=generator)

    def log_prob(self, x):
        return -0.5 * x.pow(2).sum(1) - math.log(2 * math.pi)


class IIDDraws(Sampler):
    """Every call returns fresh exact draws of N(0, I), as if each step cost ``cost``
    gradient evaluations: the ideal sampler, whose ESS per gradient is 1/cost."""

    name = "iid_draws"
    description = "test: independent exact draws of N(0, I)"
    params = {"steps": Param(10, "steps"), "cost": Param(1, "gradient evaluations per step")}

    def sample(self, energy, x0, n_steps=None, *, generator=None):
        n = self.hparams["steps"] if n_steps is None else n_steps
        evals = float(self.hparams["cost"] * n)
        x = torch.randn(x0.shape, generator=generator)
        return SampleResult(x, {"grad_evals": evals, "energy_evals": evals})


class Raising(IIDDraws):
    name = "raising_sampler"
    description = "test: raises while sampling"

    def sample(self, energy, x0, n_steps=None, *, generator=None):
        if n_steps is not None and n_steps > 2:  # the budget probe passes; the run does not
            raise RuntimeError("deliberate sampler failure")
        return super().sample(energy, x0, n_steps, generator=generator)


@pytest.fixture
def board_plugins(fresh_plugins):
    with registered_plugins("sampler_board_test_plugins", samplers=[IIDDraws, Raising],
                            datasets=[StdNormal2D]):
        yield fresh_plugins


def board_rows(tmp_path, samplers, dataset, *, target="true_density", init="data",
               overrides=None, budget="smoke", **sizes):
    """Run the board's rows of (samplers, dataset, target, init) in-process, resized."""
    selection = Selection(methods=["dsm"], samplers=samplers, architectures=["mlp"],
                          datasets=[dataset], budget=budget, overrides=overrides or {})
    pm = get_plugin_manager()
    specs = [replace(s, **sizes) for s in plan_board(selection, pm)
             if s.target == target and s.init == init]
    task = SamplerTask(specs=specs, metrics=board_metrics(selection, pm), device="cpu",
                       timeout=None, results_dir=str(tmp_path), plugins_dirs=[])
    return {r["sampler"]: r for r in execute_sampler_task(task)}


def null_mmd_sd(dataset, m, replicates=30):
    """The standard deviation of the MMD statistic between two exact samples of size m,
    with the mmd plugin's kernel: the noise of a perfect sampler's score."""
    gen = torch.Generator().manual_seed(11)
    values = []
    for _ in range(replicates):
        x, y = (dataset.sample(m, gen).double() for _ in range(2))
        bandwidths = torch.tensor([0.125, 0.25, 0.5, 1.0], dtype=torch.float64) * median_distance(y)
        values.append(mmd2_unbiased(x, y, bandwidths, k_yy=_kernel(y, y, bandwidths)))
    return float(np.std(values))


# ---------------------------------------------------------------- quality on a Gaussian


def test_exact_samplers_match_a_gaussian_and_a_too_large_ula_step_does_not(fresh_plugins, tmp_path):
    # From noise (uniform over ±7 sd): adequate budgets for MALA (ε adapted to 0.574 acceptance
    # over 100 warm-up steps, which the budget pays for) and HMC; ULA with ε = 0.15, near the
    # limit 2σ² = 0.18 of the narrow direction, inflates its variance by 1/(1 − ε/2σ²) = 6.
    rows = board_rows(tmp_path, ["mala", "hmc", "ula"], "correlated_gaussian", init="noise",
                      overrides={"sampler.mala.warmup": 100, "sampler.ula.step_size": 0.15},
                      grad_budget=600, chains=512)
    m = ebmbench.get_metric("mmd", budget="smoke").hparams["max_samples"]  # 256 of the 512 chains
    noise = null_mmd_sd(ebmbench.get_dataset("correlated_gaussian"), m)
    for name in ("mala", "hmc"):
        m = rows[name]["metrics"]
        assert rows[name]["status"] == "ok", rows[name]["reason"]
        assert abs(m["mmd"]) < 4 * noise and abs(m["mmd_floor"]) < 4 * noise, (name, m, noise)
        assert abs(m["c2st_accuracy"] - 0.5) < 3 * m["c2st_accuracy_se"] + 0.01, (name, m)
    broken = rows["ula"]["metrics"]
    assert broken["mmd"] > 5 * noise and broken["c2st_accuracy"] > 0.6, broken
    for name in ("mala", "hmc"):  # worse on both sample-quality metrics
        assert broken["mmd"] > rows[name]["metrics"]["mmd"]
        assert broken["c2st_accuracy"] > rows[name]["metrics"]["c2st_accuracy"]


def test_a_sampler_that_explodes_is_diverged_and_one_that_raises_fails_alone(board_plugins, tmp_path):
    rows = board_rows(tmp_path, ["ula"], "correlated_gaussian", overrides={"sampler.ula.step_size": 10})
    assert rows["ula"]["status"] == "diverged" and "non-finite" in rows["ula"]["reason"]
    rows = board_rows(tmp_path, ["raising_sampler", "iid_draws"], "std_normal_2d")
    assert rows["raising_sampler"]["status"] == "failed"
    assert "deliberate sampler failure" in rows["raising_sampler"]["traceback"]
    assert rows["iid_draws"]["status"] == "ok"


# ------------------------------------------------------------ ESS per gradient, R-hat


@pytest.mark.parametrize("cost", [1, 3])
def test_ess_per_gradient_of_independent_draws_is_one_over_their_cost(board_plugins, tmp_path, cost):
    rows = board_rows(tmp_path, ["iid_draws"], "std_normal_2d", grad_budget=300 * cost,
                      overrides={"sampler.iid_draws.cost": cost}, trace_chains=16, max_draws=150)
    row = rows["iid_draws"]
    assert row["hyperparams"]["sampler_board"]["trace"] == {"burn_in": 150, "thin": 1, "draws": 150}
    assert 0.8 / cost < row["metrics"]["ess_per_grad"] < 1.25 / cost, row["metrics"]
    assert row["metrics"]["rhat"] < 1.02


def test_a_sticky_chain_has_far_lower_ess_per_gradient_than_independent_draws(board_plugins, tmp_path):
    rows = board_rows(tmp_path, ["iid_draws", "mh"], "std_normal_2d", grad_budget=300,
                      overrides={"sampler.mh.step_size": 0.02}, trace_chains=16, max_draws=150)
    iid, sticky = rows["iid_draws"]["metrics"], rows["mh"]["metrics"]
    assert rows["mh"]["sample_stats"]["acceptance_rate"] > 0.9  # it moves, in tiny steps
    assert sticky["ess_per_grad"] < 0.1 * iid["ess_per_grad"], (sticky, iid)
    assert sticky["rhat"] > 1.1  # 150 steps of 0.02 do not cross N(0, I): chains stay apart


def test_rhat_is_near_one_when_chains_mix_and_large_when_they_sit_in_different_modes(
    fresh_plugins, tmp_path
):
    # HMC with trajectories of length 5 × 0.15, about half the major axis's σ = 1.5, over
    # 600 iterations from exact draws; with 2 leapfrog steps the same budget does not mix
    # (R-hat ≈ 1.3, rightly).
    mixed = board_rows(tmp_path, ["hmc"], "correlated_gaussian", grad_budget=3000, trace_chains=16,
                       overrides={"sampler.hmc.step_size": 0.15, "sampler.hmc.leapfrog_steps": 5},
                       max_draws=300)
    assert mixed["hmc"]["metrics"]["rhat"] < 1.1, mixed["hmc"]["metrics"]
    # eight modes 2.8 apart with σ = 0.2, chains from noise, ε = 10⁻³: each chain keeps the
    # mode it fell into.
    stuck = board_rows(tmp_path, ["mala"], "eight_gaussians", init="noise", grad_budget=200,
                       overrides={"sampler.mala.step_size": 1e-3}, trace_chains=16)
    assert stuck["mala"]["metrics"]["rhat"] > 1.5, stuck["mala"]["metrics"]


def test_arviz_diagnostics_of_frozen_and_separated_chains():
    rng = np.random.default_rng(3)
    assert bulk_ess(np.ones((4, 50, 2))).tolist() == [0.0, 0.0]  # no chain moved: no information
    apart = np.arange(4.0)[:, None, None] * np.ones((4, 50, 1))
    assert rank_rhat(apart).tolist() == [math.inf]
    ar = np.zeros((8, 400))  # stationary AR(1), ρ = 0.9: ESS ≈ n (1 − ρ)/(1 + ρ) = 3200/19
    ar[:, 0] = rng.normal(size=8)
    for t in range(1, 400):
        ar[:, t] = 0.9 * ar[:, t - 1] + math.sqrt(1 - 0.81) * rng.normal(size=8)
    assert 3200 / 19 * 0.6 < float(bulk_ess(ar[:, :, None])[0]) < 3200 / 19 * 1.5


# --------------------------------------------------------------------- equal budgets


def test_every_sampler_spends_the_same_budget_within_one_step(board_plugins, tmp_path):
    budget = 101
    rows = board_rows(tmp_path, ["mh", "ula", "mala", "hmc"], "std_normal_2d", grad_budget=budget)
    steps = {}
    for name, row in rows.items():
        board, metrics = row["hyperparams"]["sampler_board"], row["metrics"]
        assert row["status"] == "ok", row["reason"]
        spent, per_step = metrics["grad_evals"], board["cost_per_step"]
        assert budget - per_step < spent <= budget, (name, spent, per_step)
        assert spent == row["sample_stats"][board["cost_unit"]]  # what the sampler reported
        steps[name] = board["steps"]
    assert rows["mh"]["hyperparams"]["sampler_board"]["cost_unit"] == "energy_evals"
    assert rows["mh"]["metrics"]["grad_evals"] == rows["mh"]["metrics"]["energy_evals"]
    assert {rows[n]["hyperparams"]["sampler_board"]["cost_unit"] for n in ("ula", "mala", "hmc")} \
        == {"grad_evals"}
    leapfrog = ebmbench.get_sampler("hmc", budget="smoke").hparams["leapfrog_steps"]
    # ULA caches nothing; MALA and HMC evaluate the start once; HMC pays L per step.
    assert steps == {"mh": budget - 1, "ula": budget, "mala": budget - 1,
                     "hmc": (budget - 1) // leapfrog}


# ------------------------------------------------------------ the sweep and the store


SWEEP = dict(methods=["dsm"], samplers=["ula", "hmc"], architectures=["mlp"],
             datasets=["eight_gaussians"], metrics=["fisher"], budget="smoke")


def test_the_sweep_writes_sampler_rows_and_a_second_run_does_nothing(fresh_plugins, tmp_path):
    results = tmp_path / "r.sqlite"
    first = run_sweep(Selection(**SWEEP, train_flops=2e7), results=results, sampler_board=True)
    board = first.sampler_board
    assert board.ran == 8 and board.resumed == 0 and set(board.frame.status) == {"ok"}
    frame = board.frame
    assert set(frame.role) == {"sampler"} and frame.run_id.is_unique
    assert set(zip(frame.method, frame.architecture, strict=True)) == {
        ("true_density", "exact"), ("reference", "mlp")}
    run_id = first.frame.set_index("sampler").loc["ula", "run_id"]  # the model board's dsm/ula
    for _, row in frame.iterrows():
        record = row.hyperparams["sampler_board"]
        assert record["init"] in ("noise", "data") and record["grad_budget"] == GRAD_BUDGET["smoke"]
        assert "steps" not in row.hyperparams["sampler"] and "step_size" in row.hyperparams["sampler"]
        for name in ("mmd", "mmd_floor", "c2st_accuracy", "ess_per_grad", "rhat", "grad_evals",
                     "energy_evals", "sample_seconds"):
            assert math.isfinite(row[f"metric.{name}"]), name
        assert {"grad_evals", "sample_seconds"} <= set(row.cost_values)
        assert {"mmd_floor", "rhat"} <= set(row.reference_values)
        assert row.directions["ess_per_grad"] is True and row.directions["mmd"] is False
        if row.method == "reference":
            ref = record["reference"]
            assert (ref["method"], ref["architecture"], ref["seed"]) == ("dsm", "mlp", 0)
            assert record["exact_samples"]["checkpoint"] == "reused"  # the sweep trained it
            assert row.train_key == ref["train_key"] == first.frame.train_key.iloc[0]
            if row.sampler == "ula":
                assert ref["run_id"] == run_id
        else:
            assert record["reference"] is None
    with ResultStore.open(results) as store:
        stored = len(list(store.rows()))
    second = run_sweep(Selection(**SWEEP, train_flops=2e7), results=results, sampler_board=True)
    assert second.ran == 0 and second.sampler_board.ran == 0 and second.sampler_board.resumed == 8
    with ResultStore.open(results) as store:
        assert len(list(store.rows())) == stored
    # The model board never ranks sampler rows.
    assert set(ebmbench.load_results(results).role) == {"run", "sampler"}


def test_a_missing_reference_model_is_trained_once_and_then_reused(fresh_plugins, tmp_path):
    def reference_rows():
        return board_rows(tmp_path, ["ula"], "two_moons", target="reference", chains=64,
                          trace_chains=4)
    rows = reference_rows()
    record = rows["ula"]["hyperparams"]["sampler_board"]
    assert rows["ula"]["status"] == "ok" and record["exact_samples"]["checkpoint"] == "trained"
    assert (tmp_path / "checkpoints" / f"{rows['ula']['train_key']}.pt").is_file()
    grid = record["exact_samples"]
    assert grid["kind"] == "grid" and 0 <= grid["tv_error"] < 0.05 and 0 <= grid["mass_outside_box"] <= 1
    again = reference_rows()
    assert again["ula"]["hyperparams"]["sampler_board"]["exact_samples"]["checkpoint"] == "reused"
    for name, value in rows["ula"]["metrics"].items():  # the same model, the same seeds
        assert name == "sample_seconds" or again["ula"]["metrics"][name] == value, name


def test_unfinished_rows_of_a_sampler_task_are_sampler_rows(fresh_plugins, tmp_path):
    selection = Selection(samplers=["ula", "mala"], datasets=["gmm_8d"], budget="smoke")
    specs = plan_board(selection)
    task = SamplerTask(specs=specs, metrics={}, device="cpu", timeout=None,
                       results_dir=str(tmp_path), plugins_dirs=[])
    rows = ebmbench.unfinished_rows(task, {specs[0].run_id}, "failed", "the worker died")
    assert [r["run_id"] for r in rows] == [s.run_id for s in specs[1:]]
    assert {r["role"] for r in rows} == {"sampler"} and {r["status"] for r in rows} == {"failed"}
    assert ebmbench.hard_time_limit(replace(task, timeout=2.0), grace=1.0) == 2.0 * (len(specs) + 1) + 1


@pytest.mark.slow
def test_a_sampler_that_kills_its_worker_fails_its_rows_and_the_board_goes_on(tmp_path):
    from tests.test_fault_isolation import write_fault_plugins

    plugins = write_fault_plugins(tmp_path / "plugins")
    ebmbench.add_plugins_dir(plugins)
    try:
        report = run_sweep(
            Selection(methods=["quadratic"], samplers=["ula", "exit_sampler"], architectures=["mlp"],
                      datasets=["gmm_8d"], metrics=[], budget="smoke"),
            results=tmp_path / "r.sqlite", executor="process", executor_params={"workers": 2},
            sampler_board=True)
    finally:
        from ebmbench.plugins import reset_plugin_manager

        reset_plugin_manager()
    frame = report.sampler_board.frame
    statuses = {(r.sampler, r.hyperparams["sampler_board"]["init"]): r.status for r in frame.itertuples()}
    assert statuses == {("ula", "noise"): "ok", ("ula", "data"): "ok",
                        ("exit_sampler", "noise"): "failed", ("exit_sampler", "data"): "failed"}
    assert all("exit code 4" in r for r in frame[frame.sampler == "exit_sampler"].reason)


def test_cli_runs_the_board_unless_told_not_to(fresh_plugins, tmp_path, capsys):
    args = ["run", "--method", "dsm", "--sampler", "ula", "--architecture", "mlp", "--dataset",
            "gmm_8d", "--metric", "fisher", "--budget", "smoke", "--train-flops", "1e7",
            "--no-leaderboard", "--no-progress"]
    main([*args, "--results", str(tmp_path / "a.sqlite")])
    assert "sampler board: 2 rows: 2 ok (2 run now, 0 already in the store)" in capsys.readouterr().out
    main([*args, "--results", str(tmp_path / "b.sqlite"), "--no-sampler-board"])
    assert "sampler board" not in capsys.readouterr().out
    assert set(ebmbench.load_results(tmp_path / "b.sqlite").role) == {"run"}


# ------------------------------------------------------------------- exact targets


def test_the_exact_energy_has_the_density_s_own_score(fresh_plugins):
    for name in ebmbench.list_plugins("dataset"):
        density = ebmbench.get_dataset(name, budget="smoke")
        if not isinstance(density, ToyDensity):
            continue
        x = density.sample(6, torch.Generator().manual_seed(1)).requires_grad_(True)
        energy = ExactLogDensity(density)
        (grad,) = torch.autograd.grad(energy(x).sum(), x)
        with torch.enable_grad():
            y = x.detach().requires_grad_(True)
            (expected,) = torch.autograd.grad(density.log_prob(y).sum(), y)
        torch.testing.assert_close(energy(x).detach(), density.log_prob(x.detach()))
        torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-4, msg=name)


def _gaussian(mean, cov):
    dist = torch.distributions.MultivariateNormal(torch.tensor(mean, dtype=torch.float64),
                                                  torch.tensor(cov, dtype=torch.float64))
    return lambda x: dist.log_prob(x.double())


def test_grid_density_moments_and_samples_match_a_gaussian():
    mean, cov = [0.3, -0.2], [[0.5, 0.2], [0.2, 0.3]]
    grid = GridDensity2D(_gaussian(mean, cov), ((-5, 5), (-5, 5)), cells=256)
    assert abs(grid.log_z) < 1e-6  # a normalised density, all of its mass in the box
    torch.testing.assert_close(grid.mean(), torch.tensor(mean, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(grid.covariance(), torch.tensor(cov, dtype=torch.float64),
                               atol=5e-4, rtol=0)  # the midpoint rule's O(h²), h = 0.04
    x = grid.sample(40_000, torch.Generator().manual_seed(0)).double()
    se = (torch.tensor(cov).diagonal() / len(x)).sqrt()
    assert ((x.mean(0) - torch.tensor(mean)).abs() < 4 * se).all()
    assert ((x.T.cov() - torch.tensor(cov, dtype=torch.float64)).abs() < 0.02).all()


def test_grid_tv_error_estimate_matches_the_exact_total_variation():
    # N(0, 0.4²I) on [-2, 2]² with 16 cells per axis (h = 0.25): a coarse grid, a visible error.
    s, bounds, cells = 0.4, ((-2.0, 2.0), (-2.0, 2.0)), 16
    log_f = _gaussian([0.0, 0.0], [[s * s, 0.0], [0.0, s * s]])
    grid = GridDensity2D(log_f, bounds, cells)
    # Exact TV(p̂, p_B) = ½ Σ_cells ∫_cell |p̂ᵢ − p_B(x)| dx, by Gauss–Legendre on a fine rule.
    z_box = (math.erf(2 / (s * math.sqrt(2)))) ** 2
    points, log_w = box_rule_2d(bounds, 1024, order=8)
    p_box = log_f(points).exp() / z_box
    h = 4.0 / cells
    cell = ((points[:, 1] + 2) // h).long().clamp(max=cells - 1) * cells \
        + ((points[:, 0] + 2) // h).long().clamp(max=cells - 1)
    p_hat = grid.probs[cell] / (h * h)
    exact = 0.5 * float((log_w.exp() * (p_hat - p_box).abs()).sum())
    estimate = grid.tv_error(40_000, torch.Generator().manual_seed(2))
    assert 0.02 < exact and abs(estimate - exact) < 0.1 * exact, (estimate, exact)
    # The truncation: the mass of N(0, I) in [-4, 4]² outside [-2, 2]².
    unit = GridDensity2D(_gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]), bounds, 256)
    inner, wide = math.erf(2 / math.sqrt(2)) ** 2, math.erf(4 / math.sqrt(2)) ** 2
    assert abs(unit.mass_outside() - (1 - inner / wide)) < 1e-3


def test_grid_samples_of_a_learned_energy_match_its_quadrature_moments():
    torch.manual_seed(5)
    net = ebmbench.get_architecture("mlp", budget="smoke").build((2,))
    with torch.no_grad():  # give the random network structure at the scale of the box
        for p in net.parameters():
            p.mul_(3.0)
    bounds = ebmbench.get_dataset("eight_gaussians").bounds
    grid = GridDensity2D(net, bounds, cells=512)
    points, log_w = box_rule_2d(bounds, 512, order=4)  # an independent rule: Gauss-Legendre
    with torch.no_grad():
        w = torch.softmax(net(points.float()).double() + log_w, dim=0)
    mean = w @ points
    cov = (points - mean).T @ ((points - mean) * w[:, None])
    x = grid.sample(40_000, torch.Generator().manual_seed(3)).double()
    se = (cov.diagonal() / len(x)).sqrt()
    assert ((x.mean(0) - mean).abs() < 4 * se + 1e-3).all(), (x.mean(0), mean)
    assert ((x.T.cov() - cov).abs() < 5 * math.sqrt(2 / len(x)) * cov.diagonal().max() + 1e-3).all()
    assert grid.tv_error(8192) < 0.02


def test_the_reference_target_is_the_energy_restricted_to_its_box_and_mala_stays_exact():
    # exp(−‖x‖²/2) on [−1, 1]²: each coordinate a standard normal truncated to [−1, 1],
    # variance 1 − 2φ(1)/(Φ(1) − Φ(−1)).
    class Quadratic(nn.Module):
        def forward(self, x):
            return -0.5 * x.pow(2).sum(1)

    energy = _BoxRestricted(Quadratic(), ((-1.0, 1.0), (-1.0, 1.0)))
    phi = math.exp(-0.5) / math.sqrt(2 * math.pi)
    variance = 1 - 2 * phi / math.erf(1 / math.sqrt(2))
    gen = torch.Generator().manual_seed(4)
    x0 = torch.rand((4000, 2), generator=gen) * 2 - 1
    x = ebmbench.get_sampler("mala", step_size=0.3).sample(energy, x0, 300, generator=gen).x
    assert x.abs().max() <= 1.0  # every proposal outside the box was rejected
    assert abs(float(x.var(0).mean()) - variance) < 0.015, (float(x.var(0).mean()), variance)
    grid = GridDensity2D(energy, ((-1.0, 1.0), (-1.0, 1.0)), cells=256)
    assert abs(float(grid.covariance().diagonal().mean()) - variance) < 1e-3


def test_every_toy_has_a_true_density_row_and_only_2d_toys_a_reference(fresh_plugins):
    specs = plan_board(Selection(samplers=["mala"], budget="smoke"))
    toys = {n for n in ebmbench.list_plugins("dataset")
            if isinstance(ebmbench.get_dataset(n), ToyDensity)}
    by_target = {t: {s.dataset for s in specs if s.target == t} for t in ("true_density", "reference")}
    assert by_target["true_density"] == toys
    assert by_target["reference"] == {n for n in toys if ebmbench.get_dataset(n).dim == 2}
    assert len({s.run_id for s in specs}) == len(specs)
