"""Where a tuned sweep's time went, and the protocol's targets measured on it.

Prints, from a results store (or export), the per-dataset time table of docs/protocol.md §7
(studies, trials and how many were pruned, training CPU seconds, sampling seconds, rows, the wall
time from a dataset's first row to its last, summed over its bursts when a later command
extended it), then the targets of the fair-protocol issue, each marked met or not met, and
how many studies kept their defaults because only trial 0 finished, how many chose
them, how many chose a trial degenerate on the validation split, and which degenerate 2-D
models come from a study with no trial sound on it::

    python scripts/sweep_report.py sweep/results.sqlite
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

import ebmbench
from ebmbench.leaderboard.aggregate import trained_models
from ebmbench.tuning import is_replicate, reported_point

OFFLINE = ["mnist", "fashion_mnist", "cifar10"]
#: Rows of one dataset that finish more than this apart came from separate commands (a sweep
#: extended later, e.g. by another energy or method): its wall time sums the bursts.
BURST_GAP = pd.Timedelta(minutes=10)


def datasets(names) -> dict[str, object]:
    """The dataset plugins of ``names``, one instance each (their shape and data kind)."""
    return {name: ebmbench.get_dataset(name) for name in set(names)}


def wall_minutes(finished: pd.Series) -> float:
    """Minutes from first to last row of each burst of ``finished`` times, summed.

    >>> t = pd.to_datetime(pd.Series(["2026-01-01 00:00", "2026-01-01 00:05",
    ...                               "2026-01-01 03:00", "2026-01-01 03:02"]))
    >>> wall_minutes(t)
    7.0
    """
    t = finished.sort_values()
    burst = (t.diff() > BURST_GAP).cumsum()
    return sum((g.max() - g.min()).total_seconds() for _, g in t.groupby(burst)) / 60


def training_cpu_seconds(rows: pd.DataFrame) -> float:
    """The rows' training CPU seconds (``compute["cpu_seconds"]``; their training loop's wall
    clock where a row lacks it), which another process on the machine does not inflate.

    >>> training_cpu_seconds(pd.DataFrame({"compute": [{"cpu_seconds": 2.0}, {}],
    ...                                    "train_seconds": [3.0, 4.0]}))
    6.0
    """
    cpu = rows["compute"].map(lambda c: (c or {}).get("cpu_seconds"))
    return float(cpu.astype(float).fillna(rows["train_seconds"]).sum())


def time_table(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[~frame["dataset"].isin(OFFLINE)].copy()
    frame["finished"] = pd.to_datetime(frame["finished_at"])
    rows = []
    for dataset, g in frame.groupby("dataset", sort=False):
        trials, runs = g[g["role"] == "trial"], g[g["role"] == "run"]
        replicates = _replicates(trials)
        models = runs.drop_duplicates("train_key")
        studies = {(h.get("tuning") or {}).get("study") for h in runs["hyperparams"]} - {None}
        rows.append({
            "dataset": dataset, "energies": ", ".join(sorted(set(runs["architecture"]))),
            "studies": len(studies),
            "trials+replicates (pruned)": f"{len(trials) - int(replicates.sum())}+"
                                          f"{int(replicates.sum())} "
                                          f"({int((trials['status'] == 'pruned').sum())})",
            "trial training, CPU s": training_cpu_seconds(trials),
            "models (3 seeds)": len(models),
            "model training, CPU s": training_cpu_seconds(models), "rows": len(runs),
            "sampling, s": runs["sample_seconds"].sum(),
            "sampler-board rows": int((g["role"] == "sampler").sum()),
            "wall, min": wall_minutes(g["finished"]),
        })
    return pd.DataFrame(rows)


def targets(frame: pd.DataFrame) -> list[str]:
    models = trained_models(frame)
    mark = {True: "met", False: "not met"}
    out = []
    banana = models[(models["dataset"] == "banana") & (models["architecture"] == "mlp")]
    if (banana["method"] == "cd").any():  # the target compares cd with the best method
        fd = banana.groupby(["method", "sampler"])["metric.fisher_divergence"].mean()
        ratio = fd.loc["cd"].min() / fd.min()
        out.append(f"- tuned cd on banana within 10x of the best: {mark[ratio <= 10]} "
                   f"({fd.loc['cd'].min():.3g} vs {fd.min():.3g}, {ratio:.1f}x)")
    plugins = datasets(models["dataset"])
    flat_2d = {d for d, plugin in plugins.items() if tuple(plugin.shape) == (2,)}
    two_d = models[models["dataset"].isin(flat_2d)]
    bad = two_d[two_d["degenerate"]].groupby(
        ["dataset", "method", "architecture", "sampler"])["seed"].count()
    listed = "".join(f", {d} {m}/{a}/{s}: {n} seeds" for (d, m, a, s), n in bad.items())
    out.append(f"- no tuned 2-D model degenerate: {mark[len(bad) == 0]} ({len(bad)} of "
               f"{two_d.groupby(['dataset', 'method', 'architecture', 'sampler']).ngroups} models{listed})")
    quad = models[(models["dataset"] == "correlated_gaussian") & (models["architecture"] == "quadratic")]
    if len(quad):
        out += quadratic_target(quad.groupby(["method", "sampler"])["metric.fisher_divergence"].mean())
    spent = models["compute"].map(lambda c: (c or {}).get("budget_fraction"))
    stop = models["compute"].map(lambda c: (c or {}).get("stopped_by"))
    at_budget = spent[stop == "budget"]
    kind = models["dataset"].map({d: plugin.data_kind for d, plugin in plugins.items()})
    by_kind = "; ".join(f"{k}: {v.min():.3f}-{v.max():.3f}"
                        for k, v in at_budget.groupby(kind[stop == "budget"]))
    capped = int((stop == "max_steps").sum())
    if len(at_budget):
        out.append(f"- compute of the runs stopped by their budget: {at_budget.min():.3f}-"
                   f"{at_budget.max():.3f} of it ({by_kind}; {len(at_budget)} models; "
                   f"{capped} stopped at the step cap first)")
    else:
        out.append(f"- compute of the runs stopped by their budget: none did ({capped} "
                   "stopped at the step cap first)")
    return out


def quadratic_target(fd: pd.Series, target: float = 0.05) -> list[str]:
    """The quadratic-energy target, counted per model and per method at its best training
    sampler: ``fd`` is the mean Fisher divergence over seeds, indexed by (method, sampler),
    the sampler "–" for a method that trains without one.

    >>> fd = pd.Series({("cd", "hmc"): 0.006, ("cd", "ula"): 4.2, ("dsm", "–"): 0.07})
    >>> for line in quadratic_target(fd):
    ...     print(line.split(": ", 1)[1])
    not met (above: cd/ula 4.2, dsm/– 0.07)
    not met (above: dsm 0.07)
    """
    mark = {True: "met", False: "not met"}
    worst = {k: v for k, v in fd.items() if v > target}
    best = fd.groupby(level=0).min()
    above = {m: v for m, v in best.items() if v > target}
    return [f"- every method with the quadratic energy on correlated_gaussian <= {target:g}: "
            f"{mark[not worst]} (above: "
            + ", ".join(f"{m}/{s} {v:.3g}" for (m, s), v in worst.items()) + ")",
            f"- ... per method at its best training sampler: {mark[not above]} (above: "
            + ", ".join(f"{m} {v:.3g}" for m, v in above.items()) + ")"]


def defaults_only(frame: pd.DataFrame) -> str:
    """How many studies on vector data ended with trial 0, the defaults, as their only
    finished trial (docs/protocol.md section 7: the pruner's first rung, before the random
    start was exempt from it), and how many chose trial 0 among those that finished."""
    trials = _search_trials(frame)
    trials = trials[trials["status"].isin(["ok", "pruned", "diverged"])]
    kinds = {d: plugin.data_kind for d, plugin in datasets(trials["dataset"]).items()}
    trials = trials[trials["dataset"].map(kinds) == "vector"].copy()
    trials["study"] = trials["hyperparams"].map(lambda h: (h.get("tuning") or {}).get("study"))
    finished = trials[trials["status"] == "ok"].groupby("study")["trial"].agg(list)
    only_0 = finished[finished.map(lambda t: t == [0])]
    methods = trials.drop_duplicates("study").set_index("study").loc[only_0.index, "method"]
    runs = frame[frame["role"] == "run"]
    record = runs["hyperparams"].map(lambda h: (h or {}).get("tuning") or {})
    chosen = {r["study"]: r.get("chosen_trial") for r in record if r.get("study") in finished.index}
    chose_0 = sum(trial == 0 for trial in chosen.values())
    return (f"- studies on vector data whose only finished trial is trial 0 (the defaults): "
            f"{len(only_0)} of {trials['study'].nunique()} "
            f"({int(methods.isin(['cd', 'pcd']).sum())} of them cd or pcd); "
            f"that chose trial 0: {chose_0} of {len(chosen)}")


def _replicates(trials: pd.DataFrame) -> pd.Series:
    """Which of the ``trials`` rows are replicates of the confirmation (``ebmbench.tuning``)."""
    return pd.Series([is_replicate(row) for row in trials.to_dict("records")], index=trials.index,
                     dtype=bool)


def _search_trials(frame: pd.DataFrame) -> pd.DataFrame:
    """The trials of the search: tuning trials less the replicates of the confirmation."""
    trials = frame[frame["role"] == "trial"]
    return trials[~_replicates(trials)].copy()


def confirmations(frame: pd.DataFrame) -> str:
    """How many studies confirmed their choice with replicates (since 2026-11-30,
    ``ebmbench.tuning``), how many candidates failed their replicate, and in how many
    studies the confirmed choice differs from the best sound trial of the search."""
    records = {}
    for hyper in frame.loc[frame["role"] == "run", "hyperparams"]:
        record = (hyper or {}).get("tuning") or {}
        if record.get("confirmation"):
            records[record["study"]] = record
    failed = sum(bool(c["failed"]) for r in records.values() for c in r["confirmation"].values())
    candidates = sum(len(r["confirmation"]) for r in records.values())
    # The search's best sound trial is the candidate with the lowest first objective.
    changed = sum(str(r["chosen_trial"]) != min(
        r["confirmation"], key=lambda n: (r["confirmation"][n]["objectives"][0], int(n)))
        for r in records.values())
    return (f"- studies whose choice was confirmed by replicates: {len(records)}; candidates that "
            f"failed their replicate: {failed} of {candidates}; studies choosing another trial "
            f"than the search's best sound one: {changed}")


def _trial_verdicts(frame: pd.DataFrame) -> dict[str, tuple[int, int, bool]]:
    """Study key → (finished trials, of them degenerate on the validation split, whether
    the chosen one is), for the studies whose trials' curves have a validation NLL (2-D
    toys) and whose runs record a choice."""
    from ebmbench.runner import validation_reference_nll
    from ebmbench.tuning import degenerate_trials, validation_nll

    trials = _search_trials(frame)
    trials["study"] = trials["hyperparams"].map(lambda h: (h.get("tuning") or {}).get("study"))
    record = frame.loc[frame["role"] == "run", "hyperparams"].map(lambda h: (h or {}).get("tuning") or {})
    chosen = {r["study"]: r.get("chosen_trial") for r in record if r.get("study")}
    out = {}
    for study, rows in trials.groupby("study"):
        finished = [r for r in rows.to_dict("records")
                    if r["status"] == "ok" and validation_nll(r) is not None]
        if not finished or chosen.get(study) is None:
            continue
        flagged = degenerate_trials(finished, validation_reference_nll(_row_spec(finished[0])))
        out[study] = (len(finished), len(flagged), chosen[study] in flagged)
    return out


def degenerate_choices(frame: pd.DataFrame) -> list[str]:
    """How many studies with a validation NLL on their trials' curves (2-D toys) chose a
    trial whose model is degenerate on the validation split (the runs' NLL test, see
    ``ebmbench.tuning.degenerate_trials``), and how many of those had a finished trial that
    is not: since 2026-11-30 the choice passes over degenerate trials, so that count is 0
    on a sweep run since (docs/protocol.md section 4). Then, of the degenerate 2-D models,
    those whose study had no sound trial at all: a finding about the method, where the
    others are seeds failing a configuration that was sound with the trials' seed."""
    verdicts = _trial_verdicts(frame)
    bad = [v for v in verdicts.values() if v[2]]
    avoidable = sum(flagged < finished for finished, flagged, _ in bad)
    lines = [f"- 2-D studies that chose a trial degenerate on the validation split: {len(bad)} of "
             f"{len(verdicts)} ({avoidable} of them had a finished trial that is not)"]
    models = trained_models(frame)
    models = models[models["degenerate"] & models["study"].isin(verdicts)]
    labels = models.drop_duplicates("study").set_index("study")
    hopeless = sorted(
        f"{r.dataset} {r.method}/{r.architecture}" + ("" if r.sampler == "–" else f"/{r.sampler}")
        for study, r in labels.iterrows() if verdicts[study][1] == verdicts[study][0])
    lines.append(f"- degenerate 2-D models whose study had no trial sound on the validation split: "
                 f"{len(hopeless)} of {models['study'].nunique()} ({'; '.join(hopeless)})")
    return lines


def _study_rows(frame: pd.DataFrame, label: str, role: str) -> pd.DataFrame:
    """The rows of ``role`` (``trial`` or ``run``) of the study named ``label``,
    ``dataset/method[/sampler]/architecture``."""
    parts = label.split("/")
    keys = ["dataset", "method", "sampler", "architecture"] if len(parts) == 4 else \
        ["dataset", "method", "architecture"]
    rows = frame[frame["role"] == role]
    for key, value in zip(keys, parts, strict=True):
        rows = rows[rows[key] == value]
    return rows


def study_trials(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """The trials of one study, named ``dataset/method[/sampler]/architecture`` as the
    sweep's progress names it: number, status, the parameters the trials vary (the
    searched ones), the objective at the curve point the trial reports (its best under
    ``--checkpoint best``, its last under ``last``; where it stopped, for a pruned one) and,
    on 2-D toys, that point's validation NLL, which the choice judges against the
    validation Gaussian's (:func:`validation_reference`)."""
    trials = _study_rows(frame, label, "trial")
    params = pd.DataFrame([h["method"] for h in trials["hyperparams"]], index=trials.index)
    searched = [c for c in params if params[c].astype(str).nunique() > 1]  # what trials vary
    out = []
    for index, row in trials.sort_values("trial").iterrows():
        objective = (row["hyperparams"].get("tuning") or {}).get("objective", "fisher_divergence")
        last = reported_point(row) or {}
        nll = {"validation nll": last["nll"]} if "nll" in last else {}
        out.append({"trial": f"{int(row['trial'])}" + (" (replicate)" if is_replicate(row) else ""),
                    "status": row["status"],
                    **params.loc[index, searched].to_dict(),
                    "progress": last.get("progress"), objective: last.get(objective), **nll})
    return pd.DataFrame(out)


def study_runs(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """The runs of the configurations the study named ``label`` chose, one line per
    training: the study's trials when it chose (a store tuned on from 8 to 32 trials holds
    both choices' runs), the chosen trial and the searched values, and the objective of the
    model each run reports on the validation split (which chose that curve point) beside
    the same metric on the test split, so that a reader sees whether a choice's validation
    score was optimistic (the two differ) or the runs differ from the trials."""
    runs = _study_rows(frame, label, "run")
    out = []
    for _, row in runs.drop_duplicates("train_key").sort_values(["finished_at", "seed"]).iterrows():
        tuning = row["hyperparams"].get("tuning") or {}
        objective = tuning.get("objective", "fisher_divergence")
        point = reported_point(row) or {}
        out.append({"trials": tuning.get("trials"), "chosen trial": tuning.get("chosen_trial"),
                    **(tuning.get("chosen") or {}), "seed": int(row["seed"]), "status": row["status"],
                    "progress": point.get("progress"),
                    f"validation {objective}": point.get(objective),
                    f"test {objective}": row.get(f"metric.{objective}")})
    return pd.DataFrame(out)


def _row_spec(row: dict) -> object:
    """The spec a stored trial row ran as, enough for its data (dataset, seed, budget)."""
    from ebmbench.grid import RunSpec

    return RunSpec(row["method"], row["sampler"], row["architecture"], row["dataset"],
                   int(row["seed"]), row["budget"], row["hyperparams"], bool(row["uses_sampler"]))


def validation_reference(frame: pd.DataFrame, label: str) -> float | None:
    """The NLL of the validation split under a Gaussian fitted to the rest of the training
    split, for the study named ``label`` (None off the 2-D toys): the degenerate test's
    reference when its configuration is chosen."""
    from ebmbench.runner import validation_reference_nll
    from ebmbench.tuning import validation_nll

    parts = label.split("/")
    trials = frame[(frame["role"] == "trial") & (frame["dataset"] == parts[0])
                   & (frame["method"] == parts[1])]
    rows = [r for r in trials.to_dict("records") if validation_nll(r) is not None]
    return validation_reference_nll(_row_spec(rows[0])) if rows else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a results store or export")
    parser.add_argument("--study", help="instead, list the trials of one study and its "
                        "chosen configuration's runs: dataset/method[/sampler]/architecture, "
                        "e.g. banana/cd/mala/mlp")
    parser.add_argument("--dataset", help="only these datasets (comma list), e.g. digits")
    args = parser.parse_args()
    frame = ebmbench.load_results(args.results)
    if args.dataset:
        frame = frame[frame["dataset"].isin(args.dataset.split(","))]
    if args.study:
        print(study_trials(frame, args.study).to_markdown(index=False, floatfmt=".3g"))
        reference = validation_reference(frame, args.study)
        if reference is not None:
            print(f"\nvalidation NLL of a Gaussian fitted to the rest of the training split: "
                  f"{reference:.3f} (a trial is degenerate above {reference:.3f} + max(1 nat, 10 %))")
        runs = study_runs(frame, args.study)
        if len(runs):
            print("\nthe chosen configuration's runs (each model's objective on the validation "
                  "split, which chose it, and on the test split):\n")
            print(runs.to_markdown(index=False, floatfmt=".3g"))
        return
    table = time_table(frame)
    print(table.to_markdown(index=False, floatfmt=".0f"))
    kinds = table["dataset"].map({d: p.data_kind for d, p in datasets(table["dataset"]).items()})
    print("\nwall, min, by data kind: " + ", ".join(
        f"{k} {v:.1f}" for k, v in table.groupby(kinds)["wall, min"].sum().items()))
    print()
    print("\n".join(targets(frame)))
    if (frame["role"] == "trial").any():
        print(defaults_only(frame))
        print("\n".join(degenerate_choices(frame)))
        print(confirmations(frame))


if __name__ == "__main__":
    main()
