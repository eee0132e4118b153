"""scripts/sweep_report.py: the time table and targets of docs/protocol.md §7, on a real tuned store."""

from __future__ import annotations

import ebmbench
from tests.helpers import load_script


def _script():
    return load_script("sweep_report")


def test_the_report_counts_a_tuned_sweep(tmp_path):
    frame = ebmbench.run(methods=["dsm"], samplers=["ula", "mala"], architectures=["mlp"],
                         datasets=["eight_gaussians"], metrics=["fisher"], budget="smoke",
                         tune=2, seeds=[0, 1], results=tmp_path / "r.sqlite", device="cpu",
                         sampler_board=False)
    report = _script()
    table = report.time_table(ebmbench.load_results(tmp_path / "r.sqlite"))
    row = table.iloc[0]
    assert row["dataset"] == "eight_gaussians" and row["energies"] == "mlp"
    assert row["studies"] == 1  # dsm trains without a sampler: one study for both samplers
    assert row["trials+replicates (pruned)"].startswith("2+2 (")  # both trials confirmed
    assert row["models (3 seeds)"] == 2 and row["rows"] == 4  # 2 seeds x 2 samplers, 2 trainings
    assert row["trial training, CPU s"] > 0 and row["model training, CPU s"] > 0
    trials = report.study_trials(ebmbench.load_results(tmp_path / "r.sqlite"),
                                 "eight_gaussians/dsm/mlp")
    assert list(trials["trial"]) == ["0", "0 (replicate)", "1", "1 (replicate)"]
    # The columns are what the trials varied (the searched values) and the objective.
    assert {"lr", "sigma", "fisher_divergence"} <= set(trials) and "batch_size" not in trials
    assert trials.loc[0, "lr"] == ebmbench.get_method("dsm", budget="smoke").hparams["lr"]  # trial 0
    # A 2-D toy: each trial's validation NLL, and the reference the choice judged it by.
    assert trials["validation nll"].notna().all()
    from ebmbench.runner import validation_reference_nll

    frame_all = ebmbench.load_results(tmp_path / "r.sqlite")
    reference = report.validation_reference(frame_all, "eight_gaussians/dsm/mlp")
    spec = report._row_spec(frame_all[frame_all["role"] == "trial"].iloc[0].to_dict())
    assert reference == validation_reference_nll(spec) and 2.0 < reference < 6.0
    # The chosen configuration's runs: one line per training (dsm's two samplers share it),
    # the reported model's validation objective beside its test metric.
    runs = report.study_runs(frame_all, "eight_gaussians/dsm/mlp")
    assert list(runs["seed"]) == [0, 1] and set(runs["trials"]) == {2}
    chosen = frame_all[(frame_all["role"] == "run") & (frame_all["seed"] == 0)].iloc[0]
    assert runs.loc[0, "test fisher_divergence"] == chosen["metric.fisher_divergence"]
    from ebmbench.tuning import reported_point

    assert runs.loc[0, "validation fisher_divergence"] == reported_point(chosen)["fisher_divergence"]
    assert runs.loc[0, "lr"] == chosen["hyperparams"]["method"]["lr"]
    lines = report.targets(frame)
    assert "- no tuned 2-D model degenerate: met (0 of 1 models)" in lines  # dsm, one energy
    assert lines[-1].startswith("- compute of the runs stopped by their budget: ")
    # A store whose every run stopped at its step cap (the quadratic energy's) says so.
    capped = frame.assign(compute=frame["compute"].map(lambda c: {**c, "stopped_by": "max_steps"}))
    assert report.targets(capped)[-1] == (
        "- compute of the runs stopped by their budget: none did (2 stopped at the step cap first)")
    assert report.confirmations(frame_all).startswith(
        "- studies whose choice was confirmed by replicates: 1; candidates that failed")


def test_the_report_can_keep_some_datasets(tmp_path, monkeypatch, capsys):
    ebmbench.run(methods=["dsm"], samplers=["ula"], architectures=["mlp"],
                 datasets=["eight_gaussians", "banana"], metrics=["fisher"], budget="smoke",
                 tune=2, results=tmp_path / "r.sqlite", device="cpu", sampler_board=False)
    report = _script()
    monkeypatch.setattr("sys.argv", ["sweep_report.py", str(tmp_path / "r.sqlite"),
                                     "--dataset", "banana"])
    report.main()
    out = capsys.readouterr().out
    assert "| banana " in out and "eight_gaussians" not in out
    assert "- studies whose choice was confirmed by replicates: " in out


def test_the_wall_time_of_a_dataset_extended_later_sums_its_bursts():
    import pandas as pd

    report = _script()
    times = pd.to_datetime(pd.Series(["2026-01-01 01:00:00", "2026-01-01 01:04:00", "2026-01-01 01:06:00",
                                      "2026-01-01 04:00:00", "2026-01-01 04:01:30"]))
    assert report.wall_minutes(times) == 6 + 1.5  # not the 181.5 min from first to last
    assert report.wall_minutes(times[:3]) == 6


def test_studies_left_at_their_defaults_are_counted():
    """A study whose only finished trial is trial 0 kept the defaults; trials on images
    (scored at the end, never pruned) are not counted. Studies that chose trial 0 are
    counted once, however many runs record the choice."""
    import pandas as pd

    def trial(study, method, number, status, dataset="eight_gaussians"):
        return {"role": "trial", "status": status, "trial": number, "dataset": dataset,
                "method": method, "hyperparams": {"tuning": {"study": study}}}

    frame = pd.DataFrame([
        trial("a", "dsm", 0, "ok"), trial("a", "dsm", 1, "pruned"),
        trial("b", "nce", 0, "ok"), trial("b", "nce", 1, "ok"),
        trial("c", "cd", 0, "ok"), trial("c", "cd", 1, "pruned"), trial("c", "cd", 2, "pruned"),
        trial("d", "pcd", 0, "pruned"), trial("d", "pcd", 1, "ok"),
        trial("e", "cd", 0, "ok", dataset="digits"),
        {"role": "run", "status": "ok", "trial": None, "dataset": "eight_gaussians",
         "method": "dsm", "hyperparams": {}},
        *({"role": "run", "status": "ok", "trial": None, "dataset": "eight_gaussians",
           "method": "nce", "hyperparams": {"tuning": {"study": s, "chosen_trial": c}}}
          for s, c in (("a", 0), ("b", 1), ("b", 1), ("c", 0))),
    ])
    line = _script().defaults_only(frame)
    assert line.endswith(": 2 of 4 (1 of them cd or pcd); that chose trial 0: 2 of 3"), line


def test_choices_of_a_trial_degenerate_on_the_validation_split_are_counted():
    """On correlated_gaussian the validation Gaussian's NLL is ≈ 2.04, so the bar is ≈ 3.04:
    a study that chose its trial at NLL 9 while a trial at 2.5 finished counts as avoidable;
    one whose every trial is degenerate counts, not as avoidable; images are not judged."""
    import pandas as pd

    def trial(study, number, nll, status="ok"):
        return {"role": "trial", "status": status, "trial": number, "dataset": "correlated_gaussian",
                "method": "dsm", "sampler": "ula", "architecture": "mlp", "seed": 0,
                "budget": "quick", "uses_sampler": False,
                "hyperparams": {"tuning": {"study": study}, "dataset": {}},
                "curve": [{"fisher_divergence": 1.0, "nll": nll}]}

    def run(study, chosen, status="ok"):
        return {"role": "run", "status": status, "trial": None, "dataset": "correlated_gaussian",
                "method": "dsm", "sampler": "ula", "architecture": "mlp", "uses_sampler": False,
                "train_key": f"{study}-model",
                "hyperparams": {"tuning": {"study": study, "chosen_trial": chosen}}}

    frame = pd.DataFrame([
        trial("a", 0, 2.5), trial("a", 1, 9.0), run("a", 1, "degenerate"),  # avoidable
        trial("b", 0, 8.0), trial("b", 1, 9.0), run("b", 0, "degenerate"),  # every trial degenerate
        trial("c", 0, 2.2), trial("c", 1, 9.0, "pruned"), run("c", 0),      # a sound choice
    ])
    chose, hopeless = _script().degenerate_choices(frame)
    assert chose.endswith(": 2 of 3 (1 of them had a finished trial that is not)"), chose
    # Of the two degenerate models, only b's study had no sound trial.
    assert hopeless.endswith(": 1 of 2 (correlated_gaussian dsm/mlp)"), hopeless
