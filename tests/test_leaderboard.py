"""Leaderboards: boards, ranking rules, degenerate and unreliable values, pages.

Every rule the pages state is checked here against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ebmbench.leaderboard import (
    aggregate,
    check_leaderboards,
    model_label,
    render_dataset,
    render_rules,
    summarize,
    write_leaderboards,
)
from ebmbench.leaderboard.aggregate import EVALUATION_SAMPLERS, configuration_text
from ebmbench.leaderboard.figures import pareto_front
from ebmbench.leaderboard.ranking import normalised_scores, rank_rows
from tests.leaderboard_rows import frame, row, toy_rows


def board_of(rows, dataset="toy", not_applicable=None):
    (boards,) = [b for b in aggregate(frame(rows), not_applicable) if b.dataset == dataset]
    return boards


def ranks(table: pd.DataFrame) -> dict[str, int]:
    return {f"{r.method}/{r.training_sampler}": int(r.rank) for r in table.itertuples()}


# --------------------------------------------------------------------------- models board


def test_a_model_is_one_row_whatever_the_samplers_that_evaluated_it():
    models = board_of(toy_rows()).models
    table = models.table.set_index(["method", "training_sampler"])
    # a, b, c train once per seed; cd trains with each sampler: three models.
    assert sorted(table.index) == sorted(
        [("a", "–"), ("b", "–"), ("c", "–"), ("cd", "hmc"), ("cd", "mala"), ("cd", "ula")]
    )
    a = table.loc[("a", "–")]
    assert a["seeds"] == 3  # three trainings, not nine rows
    values = np.array([1.0, 1.01, 1.02])
    assert a["fisher_divergence"] == pytest.approx(values.mean())
    assert a["fisher_divergence_se"] == pytest.approx(values.std(ddof=1) / math.sqrt(3))
    assert models.ranked == ["fisher_divergence", "test_nll"]  # sample values are not ranked here


def test_a_sampler_free_model_rank_does_not_depend_on_the_evaluation_sampler():
    rows = toy_rows()
    before = board_of(rows).models.table
    for r in rows:  # make one method's samples terrible under one sampler, excellent under another
        if r["method"] == "a":
            r["metric.mmd"] = 9.0 if r["sampler"] == "ula" else 1e-6
            r["metric.c2st_accuracy"] = 1.0 if r["sampler"] == "ula" else 0.5
    after = board_of(rows).models.table
    pd.testing.assert_frame_equal(before, after)
    # Dropping a sampler altogether changes no model rank either.
    fewer = [r for r in rows if r["sampler"] != "ula" or r["method"] == "cd"]
    assert ranks(board_of(fewer).models.table) == ranks(after)


def test_sample_values_are_reported_per_model_and_sampler_unranked():
    samples = board_of(toy_rows()).samples.set_index(["method", "training_sampler", "sampler"])
    assert samples.loc[("a", "–", "ula"), "mmd"] == pytest.approx(0.03)
    assert samples.loc[("a", "–", "hmc"), "mmd"] == pytest.approx(0.01)
    assert "rank" not in samples.columns


def test_a_missing_value_is_never_ranked_and_costs_nothing():
    """log_z_abs_error exists only for some methods: the others are ranked on what they
    report, not pushed down; the rows that report it are ranked on it among themselves."""
    rows = [row("a", "ula", seed=s, fisher_divergence=1.0, test_nll=2.0) for s in range(2)]
    rows += [
        row("nce", "ula", seed=s, fisher_divergence=3.0, test_nll=3.0, log_z_abs_error=0.1) for s in range(2)
    ]
    rows += [
        row("fce", "ula", seed=s, fisher_divergence=2.0, test_nll=2.5, log_z_abs_error=0.5) for s in range(2)
    ]
    models = board_of(rows).models
    table = models.table.set_index("method")
    # Scores by hand: fisher and nll ranks among 3 scale to 0, 0.5, 1; log Z among 2 to 0, 1.
    assert table.loc["a", "score"] == pytest.approx(0.0)
    assert table.loc["fce", "score"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert table.loc["nce", "score"] == pytest.approx((1.0 + 1.0 + 0.0) / 3)
    assert ranks(models.table) == {"a/–": 1, "fce/–": 2, "nce/–": 2}  # equal scores share a rank
    page = render_dataset(board_of(rows))
    a_line = next(line for line in page.splitlines() if line.startswith("| 1 ") and "| a " in line)
    assert "| –" in a_line  # shown as "–", not NaN


def test_a_metric_only_one_method_reports_changes_no_rank():
    rows = toy_rows()
    before = ranks(board_of(rows).models.table)
    for r in rows:
        if r["method"] == "c":  # the worst method alone reports a new, excellent value
            r["metric.log_z_abs_error"] = 1e-9
            r["directions"]["log_z_abs_error"] = False
    after = board_of(rows)
    assert ranks(after.models.table) == before
    assert after.models.table.set_index("method").loc["c", "log_z_abs_error"] == pytest.approx(1e-9)


def test_normalised_scores_by_hand():
    means = np.array([[1.0, 10.0], [2.0, np.nan], [3.0, 30.0], [np.nan, np.nan]])
    scores = normalised_scores(means, np.array([False, True]))
    # metric 1 (lower better): 0, .5, 1; metric 2 (higher better, 2 reporters): 1, 0.
    assert scores[:3].tolist() == pytest.approx([0.5, 0.5, 0.5])
    assert math.isnan(scores[3])


def test_indistinguishable_rows_share_a_rank_and_separated_ones_do_not():
    rng = np.random.default_rng(0)
    units = pd.DataFrame(
        [
            {"m": m, "x": mu + rng.normal(0, 0.1)}
            for m, mu in (("a", 1.0), ("b", 1.0), ("c", 5.0))
            for _ in range(5)
        ]
    )
    out = rank_rows(units, ["m"], ["x"], {"x": False}).set_index("m")
    assert out.loc["a", "rank"] == out.loc["b", "rank"] == 1
    assert out.loc["c", "rank"] == 3 and out.loc["c", "rank_lo"] == 3
    # One seed each: the intervals are points; the rank is the plain rank, ties shared.
    single = pd.DataFrame({"m": ["a", "b", "c"], "x": [1.0, 1.0, 2.0]})
    out = rank_rows(single, ["m"], ["x"], {"x": False}).set_index("m")
    assert out["rank"].tolist() == [1, 1, 3] and (out["rank_lo"] == out["rank_hi"]).all()


def test_a_board_of_one_row_ranks_it_first_and_a_value_nobody_else_reports_ranks_nobody():
    alone = rank_rows(pd.DataFrame({"m": ["a", "a"], "x": [1.0, 2.0]}), ["m"], ["x"], {"x": False})
    assert alone[["rank", "rank_lo", "rank_hi"]].iloc[0].tolist() == [1, 1, 1]
    apart = pd.DataFrame({"m": ["a", "b"], "x": [1.0, np.nan], "y": [np.nan, 2.0]})
    out = rank_rows(apart, ["m"], ["x", "y"], {"x": False, "y": False})
    assert out["score"].isna().all() and out["rank"].isna().all()


def test_the_shared_rank_rule_behaves_as_stated_over_many_replications():
    """Coverage of the stated rule: two rows with the same true mean share rank 1 in most
    replications (they cannot be told apart), and a row ten standard errors worse is ranked
    below them in nearly all."""
    rng = np.random.default_rng(1)
    shared = separated = 0
    trials = 60
    for _ in range(trials):
        units = pd.DataFrame(
            [
                {"m": m, "x": mu + rng.normal(0, 1.0)}
                for m, mu in (("a", 0.0), ("b", 0.0), ("c", 10 / math.sqrt(5) * 2))
                for _ in range(5)
            ]
        )
        out = rank_rows(units, ["m"], ["x"], {"x": False}, n_boot=300).set_index("m")
        shared += out.loc["a", "rank"] == out.loc["b", "rank"] == 1
        separated += out.loc["c", "rank"] == 3
    assert shared / trials >= 0.8
    assert separated / trials >= 0.95


def test_unreliable_values_are_shown_marked_and_not_ranked():
    rows = [row("a", "ula", seed=s, fisher_divergence=2.0, test_nll=9.0) for s in range(2)]
    rows += [
        row(
            "b",
            "ula",
            seed=s,
            fisher_divergence=1.0,
            test_nll=1.0,
            notes={"unreliable:test_nll": "AIS effective sample size 3 < 30"},
        )
        for s in range(2)
    ]
    boards = board_of(rows)
    table = boards.models.table.set_index("method")
    # b's NLL is not ranked: a is the only NLL reporter, so NLL ranks nobody; fisher decides.
    assert table.loc["b", "rank"] == 1 and table.loc["a", "rank"] == 2
    assert table.loc["b", "score"] == pytest.approx(0.0) and table.loc["a", "score"] == pytest.approx(1.0)
    page = render_dataset(boards)
    assert "| 1 ± 0 †" in page and "| 9 ± 0 " in page and "flagged unreliable" in page


def test_a_degenerate_model_is_shown_not_ranked_and_changes_no_other_rank():
    rows = toy_rows()
    before = ranks(board_of(rows).models.table)
    collapsed = [
        row(
            "spike",
            s,
            seed=seed,
            status="degenerate",
            fisher_divergence=1e-9,
            test_nll=2346.0,
            notes={"degenerate:nll": "test NLL 2346 > 3.8"},
            reason="test NLL 2346 > 3.8",
        )
        for seed in (0, 1, 2)
        for s in ("hmc", "mala")
    ]
    boards = board_of(rows + collapsed)
    assert ranks(boards.models.table) == before
    unranked = boards.models.unranked.set_index("method")
    assert unranked.loc["spike", "why"].startswith("degenerate (3/3 seeds)")
    assert unranked.loc["spike", "test_nll"] == pytest.approx(2346.0)
    page = render_dataset(boards)
    assert "### Shown, not ranked" in page and "2346" in page
    assert "spike" not in page.split("### Shown, not ranked")[0].split("How the ranking works")[0]


def test_one_degenerate_seed_takes_a_model_off_the_ranking():
    rows = toy_rows()
    for r in rows:
        if r["method"] == "b" and r["seed"] == 2:
            r["status"], r["notes"] = "degenerate", {"degenerate:nll": "bad"}
    boards = board_of(rows)
    assert "b" not in set(boards.models.table["method"])
    assert boards.models.unranked.set_index("method").loc["b", "why"].startswith("degenerate (1/3 seeds)")


def test_collapsed_samples_take_off_only_a_model_that_trains_with_that_sampler():
    rows = toy_rows()
    for r in rows:
        if r["sampler"] == "ula" and r["method"] in ("a", "cd"):
            r["status"], r["notes"] = "degenerate", {"degenerate:collapse": "samples collapsed"}
    boards = board_of(rows)
    ranked = set(zip(boards.models.table["method"], boards.models.table["training_sampler"], strict=True))
    assert ("a", "–") in ranked  # its model is fine; ula collapsed
    assert ("cd", "ula") not in ranked  # its own training chains collapsed
    samples = boards.samples.set_index(["method", "sampler"])
    assert samples.loc[("a", "ula"), "collapsed"] == 3
    assert "⚠" in render_dataset(boards)


def test_images_are_ranked_on_one_designated_evaluation_sampler():
    rows = []
    for seed in (0, 1):
        for method, kid in (("a", 1.0), ("b", 2.0)):
            for sampler, shift in (("mala", 0.0), ("ula", 5.0)):
                rows.append(row(method, sampler, seed=seed, dataset="digits", kid=kid + shift + 0.01 * seed))
        rows.append(row("cd", "ula", seed=seed, dataset="digits", uses_sampler=True, kid=1.5))
    boards = board_of(rows, "digits")
    assert boards.evaluation_sampler == EVALUATION_SAMPLERS[0] == "mala"
    table = boards.models.table.set_index(["method", "training_sampler"])
    assert table.loc[("a", "–"), "kid"] == pytest.approx(1.005)  # from mala, not ula
    assert table.loc[("cd", "ula"), "kid"] == pytest.approx(1.5)  # its own sampler
    assert "`mala`, the same for every model" in render_dataset(boards)
    # Changing what a non-designated sampler gives changes nothing.
    for r in rows:
        if r["sampler"] == "ula" and r["method"] != "cd":
            r["metric.kid"] = 0.0
    assert ranks(board_of(rows, "digits").models.table) == ranks(boards.models.table)


def test_the_evaluation_sampler_order_is_the_one_tuning_uses():
    from ebmbench import tuning

    assert EVALUATION_SAMPLERS == tuning._TUNING_SAMPLERS


def test_a_variant_is_labelled_and_ranked_as_its_own_row():
    assert model_label("adversarial", {"variant": {"alpha": 0.1}}) == "adversarial (α=0.1)"
    assert model_label("adversarial", {"variant": {}}) == "adversarial"
    rows = toy_rows(samplers=("ula",))
    rows += [
        row("a", "ula", seed=s, hyperparams={"variant": {"alpha": 0.1}}, fisher_divergence=0.5, test_nll=2.0)
        for s in (0, 1, 2)
    ]
    methods = set(board_of(rows).models.table["method"])
    assert {"a", "a (α=0.1)"} <= methods


def ran_with(rows, **settings):
    """``rows`` as if each had run under the protocol ``settings`` (their own trainings),
    recorded as the runner records them."""
    tag = f"/{sorted(settings.items())}"
    out = []
    for r in rows:
        recorded = {**(r.get("hyperparams") or {}), **settings}
        out.append(
            {**r, "hyperparams": recorded, "train_key": r["train_key"] + tag, "run_id": r["run_id"] + tag}
        )
    return out


def test_a_protocol_setting_every_model_shares_is_stated_once_and_one_they_differ_in_labels_them():
    plain = board_of(toy_rows(samplers=("ula",)))
    rows = ran_with(toy_rows(samplers=("ula",)), checkpoint="best", weight_average="best")
    rows += ran_with([  # a method variant keeps its own label
        row("a", "ula", seed=s, hyperparams={"variant": {"alpha": 0.1}}, fisher_divergence=0.5, test_nll=2.0)
        for s in (0, 1, 2)
    ], checkpoint="best", weight_average="best")
    shared = board_of(rows)
    assert set(shared.models.table["method"]) == set(plain.models.table["method"]) | {"a (α=0.1)"}
    (note,) = [n for n in shared.models.notes if n.startswith("Every model")]
    assert "`checkpoint=best`" in note and "`weight_average=best`" in note
    assert note in render_dataset(shared).split("## Models")[1]
    # Rows that record no setting ran under the rule from before it existed.
    assert any("`weight_average=none`" in n for n in plain.models.notes)
    # Models that differ in a setting are labelled with it, whatever the default was when
    # each ran: rows from before averaging (no record) never merge with averaged ones.
    mixed = ran_with(toy_rows(samplers=("ula",)), weight_average="best") + [
        dict(r, run_id=f"old/{r['run_id']}", train_key=f"old/{r['train_key']}")
        for r in toy_rows(samplers=("ula",)) if r["method"] == "a"
    ]
    labels = set(board_of(mixed).models.table["method"])
    assert {"a (weight_average=none)", "a (weight_average=best)"} <= labels
    assert not any("weight_average" in n for n in board_of(mixed).models.notes)


def test_failed_runs_and_missing_data_skips_are_listed_with_their_reasons():
    rows = toy_rows(samplers=("ula",))
    rows.append(row("d", "ula", status="failed", reason="boom | bang"))
    rows.append(row("e", "ula", status="skipped", reason="no local copy of the data"))
    page = render_dataset(board_of(rows))
    failures, skipped = page.split("## Runs that did not finish ok")[1].split("## Skipped")
    assert "boom \\| bang" in failures and "no local copy" in skipped


def test_not_applicable_combinations_are_counted_in_the_header():
    na = pd.DataFrame(
        {"dataset": ["toy", "toy"], "reason": ["convnet takes images", "d > 8"], "combinations": [12, 3]}
    )
    page = render_dataset(board_of(toy_rows(), not_applicable=na))
    header = page.split("## Models")[0]
    assert "15 combinations not applicable" in header and "convnet takes images" in header


def on(dataset, rows):
    return [
        dict(r, dataset=dataset, run_id=f"{dataset}/{r['run_id']}", train_key=f"{dataset}/{r['train_key']}")
        for r in rows
    ]


def test_every_page_states_the_rules(tmp_path):
    rows = toy_rows() + on("toy2", toy_rows())
    written = write_leaderboards_from_rows(rows, tmp_path)
    rules = render_rules()
    for path in written:
        assert rules in path.read_text(), path.name


# --------------------------------------------------------------------------- compute and curves


def test_compute_to_reach_the_target_reads_the_learning_curve():
    curve = [
        {"step": 1, "flops": 1e8, "fisher_divergence": 9.0},
        {"step": 2, "flops": 4e8, "fisher_divergence": 0.9},
        {"step": 3, "flops": 8e8, "fisher_divergence": 0.5},
    ]
    slow = [
        {"step": 1, "flops": 1e8, "fisher_divergence": 9.0},
        {"step": 2, "flops": 8e8, "fisher_divergence": 3.0},
    ]
    rows = [row("a", "ula", seed=s, dataset="banana", curve=curve, fisher_divergence=0.5) for s in (0, 1)]
    rows += [
        row("b", "ula", seed=0, dataset="banana", curve=curve, fisher_divergence=0.5),
        row("b", "ula", seed=1, dataset="banana", curve=slow, fisher_divergence=3.0),
    ]
    boards = board_of(rows, "banana")
    assert boards.target == ("fisher_divergence", 1.0)
    table = boards.models.table.set_index("method")
    assert (
        table.loc["a", "flops_to_target"] == pytest.approx(4e8) and table.loc["a", "target_reached"] == "2/2"
    )
    assert (
        table.loc["b", "flops_to_target"] == pytest.approx(4e8) and table.loc["b", "target_reached"] == "1/2"
    )
    assert table.loc["a", "train_flops"] == pytest.approx(1e9)  # compute is shown, never ranked
    assert "train_flops" not in boards.models.ranked


def test_the_chosen_configuration_is_shown():
    tuning = {"study": "s", "trials": 8, "chosen_trial": 5, "chosen": {"lr": 0.003, "sigma": 0.1}}
    rows = [row("a", "ula", seed=s, hyperparams={"tuning": tuning}, fisher_divergence=1.0) for s in (0, 1)]
    rows += [row("b", "ula", seed=s, fisher_divergence=2.0) for s in (0, 1)]
    page = render_dataset(board_of(rows))
    assert "tuned (trial 5 of 8): lr=0.003, sigma=0.1" in page
    assert "| defaults" in page.replace("  ", " ")
    # A choice its replicate confirmed says so; one chosen after its rival failed does not.
    confirmed = tuning | {"confirmation": {"5": {"objectives": [0.1, 0.2], "failed": None},
                                           "2": {"objectives": [0.05, 9.0], "failed": "x"}}}
    assert configuration_text({"tuning": confirmed}) == (
        "tuned (trial 5 of 8, confirmed by a second seed): lr=0.003, sigma=0.1")
    assert configuration_text({"tuning": confirmed | {"chosen_trial": 2}}).startswith(
        "tuned (trial 2 of 8): ")


def test_an_unranked_models_configuration_is_shown_too():
    """A degenerate or failed model's tuned configuration is listed with the ranked ones':
    the configuration a tuned method degenerated with is part of the verdict."""
    tuned = {"study": "s", "trials": 8, "chosen_trial": 3, "chosen": {"lr": 0.02}}
    rows = [row("a", "ula", seed=s, hyperparams={"tuning": tuned | {"chosen_trial": 5}},
                fisher_divergence=1.0) for s in (0, 1)]
    rows += [row("spiky", "ula", seed=s, status="degenerate", fisher_divergence=1e-9,
                 hyperparams={"tuning": tuned}, notes={"degenerate:nll": "test NLL 99 > 3.8"},
                 reason="test NLL 99 > 3.8") for s in (0, 1)]
    rows += [row("broken", "ula", seed=s, status="diverged", fisher_divergence=math.nan,
                 hyperparams={"tuning": tuned | {"chosen": {"lr": 0.5}}}) for s in (0, 1)]
    boards = board_of(rows)
    assert set(boards.models.unranked["method"]) == {"spiky", "broken"}
    section = render_dataset(boards).split("### Configurations")[1].split("\n#")[0]
    table = section.split("\n\n")[2]  # after the heading's line break and the prose
    lines = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert set(lines) == {"method", "a", "spiky", "broken"}
    assert "tuned (trial 5 of 8): lr=0.02" in lines["a"]
    assert "tuned (trial 3 of 8): lr=0.02" in lines["spiky"]
    assert "tuned (trial 3 of 8): lr=0.5" in lines["broken"]


def test_pareto_front_keeps_the_non_dominated_points():
    cost = np.array([1.0, 2.0, 3.0, 0.5])
    loss = np.array([5.0, 1.0, 2.0, 9.0])
    assert pareto_front(cost, loss).tolist() == [True, True, False, True]


# --------------------------------------------------------------------------- samplers board


def sampler_rows():
    rows = []
    quality = {"hmc": (0.01, 0.52, 0.05), "mala": (0.02, 0.55, 0.03), "ula": (0.05, 0.70, 0.01)}
    for seed in (0, 1, 2):
        for init in ("noise", "data"):
            for sampler, (mmd, c2st, ess) in quality.items():
                for method in ("true_density", "reference"):
                    r = row(
                        method,
                        sampler,
                        seed=seed,
                        role="sampler",
                        architecture="exact" if method == "true_density" else "mlp",
                        hyperparams={
                            "sampler_board": {
                                "init": init,
                                "grad_budget": 1000,
                                "reference": None
                                if method == "true_density"
                                else {"method": "dsm", "architecture": "mlp", "run_id": "r"},
                            }
                        },
                        mmd=mmd * (1 + 0.01 * seed),
                        c2st_accuracy=c2st,
                        ess_per_grad=ess,
                        rhat=1.01,
                        grad_evals=1000,
                    )
                    r["run_id"] += f"/{init}"
                    rows.append(r)
    return rows


def test_samplers_are_ranked_per_target_and_initialisation_on_sample_quality():
    rows = toy_rows() + sampler_rows()
    boards = board_of(rows)
    assert len(boards.samplers) == 4
    titles = {b.title for b in boards.samplers}
    assert "Samplers on the true density, chains from noise" in titles
    assert "Samplers on the reference energy (dsm, mlp), chains from data" in titles
    for board in boards.samplers:
        assert board.ranked == ["c2st_accuracy", "ess_per_grad", "mmd"]
        assert "rhat" in board.reference and "grad_evals" in board.costs
        order = board.table.sort_values("score")["sampler"].tolist()
        assert order == ["hmc", "mala", "ula"]
        assert board.table.set_index("sampler").loc["hmc", "score"] == pytest.approx(1 / 3 * (0 + 0 + 0))
    # Sampler rows never enter the models board.
    assert set(boards.models.table["method"]) == {"a", "b", "c", "cd"}
    page = render_dataset(boards)
    assert "## Samplers on the true density, chains from noise" in page and "1,000" in page


def test_samplers_at_different_budgets_are_never_ranked_together():
    rows = sampler_rows()
    more = [dict(r, run_id=r["run_id"] + "/big", hyperparams={"sampler_board": {
        **r["hyperparams"]["sampler_board"], "grad_budget": 5000}}) for r in rows]
    boards = board_of(rows + more)
    assert len(boards.samplers) == 8
    assert "Samplers on the true density, chains from noise · 5,000 gradient evaluations" in {
        b.title for b in boards.samplers}


def test_summaries_across_datasets_for_models_and_samplers():
    rows = toy_rows() + sampler_rows()
    other = on("toy2", rows)
    for r in other:  # on toy2 c is the best model
        if r["method"] == "c" and "metric.fisher_divergence" in r:
            r["metric.fisher_divergence"] = 0.1
            r["metric.test_nll"] = 1.0
    boards = aggregate(frame(rows + other))
    models = summarize(boards, "models")
    assert models["scope_datasets"].unique().tolist() == ["toy, toy2"]
    average = models.set_index(["method", "training_sampler"])["average_rank"]
    by_hand = {}
    for b in boards:
        for r in b.models.table.itertuples():
            by_hand.setdefault((r.method, r.training_sampler), []).append(r.rank)
    assert average.to_dict() == pytest.approx({k: np.mean(v) for k, v in by_hand.items()})
    samplers = summarize(boards, "samplers")
    assert set(samplers["target_kind"]) == {"true density", "reference energy"}
    assert samplers[samplers["sampler"] == "hmc"]["average_rank"].eq(1).all()


# --------------------------------------------------------------------------- files


def write_leaderboards_from_rows(rows, tmp_path):
    from ebmbench.store import ResultStore

    store = tmp_path / "results.sqlite"
    with ResultStore.open(store) as s:
        for r in rows:
            metrics = {k[7:]: v for k, v in r.items() if k.startswith("metric.")}
            s.write({**r, "metrics": metrics})
    return write_leaderboards(store, tmp_path / "boards")


def test_boards_render_the_same_from_the_store_and_its_exports_and_check_detects_edits(tmp_path):
    from ebmbench.published import write_published
    from ebmbench.store import ResultStore, read_results

    rows = toy_rows() + sampler_rows() + [row("d", "ula", status="failed", reason="boom")]
    write_leaderboards_from_rows(rows, tmp_path)
    with ResultStore.open(tmp_path / "results.sqlite") as store:
        for fmt in ("csv", "parquet", "json"):
            store.export(fmt, tmp_path / f"results.{fmt}")
    write_published(read_results(tmp_path / "results.sqlite"), tmp_path / "published" / "results.csv")
    for source in (
        *(tmp_path / f"results.{f}" for f in ("csv", "parquet", "json")),
        tmp_path / "published" / "results.csv",
    ):
        assert check_leaderboards(source, tmp_path / "boards") == [], source
    page = tmp_path / "boards" / "toy.md"
    page.write_text(page.read_text().replace("3/3 ok", "4/4 ok"))
    assert check_leaderboards(tmp_path / "results.csv", tmp_path / "boards") == [
        f"{page} differs from what {tmp_path / 'results.csv'} renders"
    ]


def test_index_says_what_ran_and_links_every_dataset(tmp_path):
    averaged = ran_with(toy_rows(), checkpoint="best", weight_average="best")
    rows = toy_rows() + on("toy2", averaged) + on("toy3", averaged[:3] + toy_rows()[3:])
    written = write_leaderboards_from_rows(rows, tmp_path)
    index = written[-1].read_text()
    assert "budget: quick · seeds: 0, 1, 2 · device: cpu" in index
    assert "[toy](toy.md)" in index and "[toy2](toy2.md)" in index
    assert "### Models" in index
    # The protocol each dataset's models ran under, or which settings are mixed.
    lines = {line.split("|")[1].strip(): line for line in index.splitlines() if line.startswith("| [toy")}
    assert "lr_schedule=constant, checkpoint=last, weight_average=none" in lines["[toy](toy.md)"]
    assert "lr_schedule=constant, checkpoint=best, weight_average=best" in lines["[toy2](toy2.md)"]
    assert "checkpoint mixed, weight_average mixed" in lines["[toy3](toy3.md)"]


def test_the_harness_records_a_variant_and_the_board_labels_it(tmp_path):
    """A run whose variant-defining parameter leaves its default says so in its row and label."""
    import ebmbench
    from ebmbench.store import read_results

    kwargs = dict(
        methods=["adversarial"],
        samplers=["ula"],
        architectures=["mlp"],
        datasets=["eight_gaussians"],
        metrics=["fisher"],
        budget="smoke",
        results=tmp_path / "r.sqlite",
    )
    assert type(ebmbench.get_method("adversarial")).variant_params == ("alpha",)
    plain = ebmbench.run(**kwargs)
    regularised = ebmbench.run(overrides={"method.adversarial.alpha": 0.01}, **kwargs)
    assert "variant" not in plain["hyperparams"].iloc[0]
    assert regularised["hyperparams"].iloc[0]["variant"] == {"alpha": 0.01}
    (boards,) = aggregate(read_results(tmp_path / "r.sqlite"))
    assert set(boards.models.table["method"]) == {"adversarial", "adversarial (α=0.01)"}


def test_the_published_export_stores_a_shared_long_reason_once_and_reads_it_back(tmp_path):
    import json

    from ebmbench.published import read_published, write_published
    from ebmbench.store import ResultStore, read_results

    offline = "dataset far: no usable local copy and the download failed. " + "Put the files in place. " * 8
    rows = [row("d", "ula", seed=s, status="skipped", reason=offline) for s in range(12)]
    rows += [row("d", "mala", status="failed", reason="boom"),
             {**row("e", "ula"), "sample_stats": {"acceptance_rate": 0.123456789012, "grad_evals": 101.0}}]
    with ResultStore.open(tmp_path / "results.sqlite") as store:
        for r in rows:
            store.write({**r, "metrics": {k[7:]: v for k, v in r.items() if k.startswith("metric.")}})
    frame = read_results(tmp_path / "results.sqlite")
    out = tmp_path / "published" / "results.csv"
    write_published(frame, out)

    written = pd.read_csv(out, dtype={"reason": str})
    assert written["reason"].str.startswith("@").sum() == 12  # the shared text is not repeated
    assert (written["reason"] == "boom").sum() == 1  # a short or lone reason stays on its row
    blob = json.loads((tmp_path / "published" / "results.configurations.json").read_text())
    assert list(blob["parts"]["reason"].values()) == [offline]
    back = read_published(out).set_index("run_id")
    original = frame.set_index("run_id")
    assert (back["reason"] == original.loc[back.index, "reason"]).all()
    stats = back[back["method"] == "e"]["sample_stats"].iloc[0]
    assert stats == {"acceptance_rate": 0.123457, "grad_evals": 101.0}  # 6 significant digits
