"""scripts/grid_search.py: every grid point is a harness run with its values, reported as the run reports."""

from __future__ import annotations

import pytest

import ebmbench
from tests.helpers import load_script


def test_every_grid_point_runs_with_its_values_and_reports_the_run(tmp_path, capsys):
    script = load_script("grid_search")
    store = tmp_path / "grid.sqlite"
    script.main(["--method", "dsm", "--architecture", "quadratic", "--dataset", "correlated_gaussian",
                 "--grid", "lr=0.0001,0.03", "--grid", "sigma=0.05", "--budget", "smoke",
                 "--results", str(store)])
    out = capsys.readouterr().out
    runs = ebmbench.load_results(store)
    assert len(runs) == 2 and set(runs["status"]) == {"ok"}
    assert sorted(h["method"]["lr"] for h in runs["hyperparams"]) == [0.0001, 0.03]
    assert {h["method"]["sigma"] for h in runs["hyperparams"]} == {0.05}
    # The table gives each run's own test Fisher divergence, and the larger lr learns more
    # of the Gaussian in the smoke budget's steps (from P = I; the truth is 25x anisotropic).
    fisher = {h["method"]["lr"]: f for h, f in zip(runs["hyperparams"], runs["metric.fisher_divergence"],
                                                    strict=True)}
    assert fisher[0.03] < fisher[0.0001]
    for value in fisher.values():
        assert f"{value:.4g}" in out
    assert "lowest validation Fisher divergence a run reports: " in out
    assert out.strip().splitlines()[-1].split("(")[1].startswith("lr=0.03, sigma=0.05")
    # Run again on the same store: nothing trains again (the grid resumes).
    script.main(["--method", "dsm", "--architecture", "quadratic", "--dataset", "correlated_gaussian",
                 "--grid", "lr=0.0001,0.03", "--grid", "sigma=0.05", "--budget", "smoke",
                 "--results", str(store)])
    assert len(ebmbench.load_results(store)) == 2


@pytest.mark.parametrize(("grid", "says"), [
    ("lr", "--grid takes NAME=V1,V2,…, got 'lr'"),
    ("no_such_param=1", "no_such_param"),
])
def test_bad_input_is_refused_in_one_line_with_exit_2(grid, says, capsys):
    script = load_script("grid_search")
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--method", "dsm", "--architecture", "mlp", "--dataset", "eight_gaussians",
                     "--grid", grid, "--budget", "smoke"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert says in err[-1] and "Traceback" not in "\n".join(err)
