"""Equal tuning: the same number of trials, the same compute, a validation split.

``ebmbench run --tune N`` tunes every *study* before running its seeds. A study is one
(method, architecture, dataset) — plus the training sampler for a method that trains with
one — at a budget; its search space is the method's hyper-parameters that declare a
``search`` (see :mod:`ebmbench.search_space`) and that the user did not fix with ``--set``.
The rules follow AlgoPerf's tuning rulesets (Dahl et al. 2023, "Benchmarking neural network
training algorithms", §4) — every method gets the same number of trials and each trial the
same compute budget as a run — and are scored as benchopt scores solvers, on a curve:

- **Trials** train on the training split less the validation split and are scored on the
  validation split (the same examples for every trial and method); they never read the
  test split. A trial is a run in the results store (``trial`` = its number), executed by
  the same executor, so a killed tuning sweep resumes without repeating finished trials.
- **The objective** is the dataset's ``tuning_objective``, lower is better: the Fisher
  divergence on toy densities, at the learning-curve point of the model the trial reports
  (its best point under ``--checkpoint best``, the default, its last under ``last``;
  :mod:`ebmbench.early_stopping`), the KID of validation samples on images (samples from
  the training sampler, else ``mala`` when selected).
- **The search** is Optuna's TPE (Bergstra et al. 2011), seeded from the study, its first
  ``min(4, N)`` trials random; trial 0 is the declared defaults where they lie in the
  space, so tuning never does worse than the defaults on the validation split.
- **Pruning** is Optuna's successive halving (Li et al. 2020, "ASHA"; Jamieson &
  Talwalkar 2016) on the learning curve: at 1/8 of the budget, and again at 1/2 (the next
  point at or past a factor 3 further), a trial whose validation objective is not in the
  best third of the trials that reached the same point stops (status ``pruned``); with
  fewer than three such trials, only the best goes on. Only curve objectives are pruned,
  and never in the random start: its ``min(4, N)`` trials (:data:`STARTUP_TRIALS`) always
  finish (unless their objective is not finite), and their rung values are every later
  trial's reference. When trial 0 was the only reference (until 2026-11-30), 80 of 284 toy
  studies of the publication kept their defaults because every later trial was stopped at
  1/8, where curves have barely separated (docs/protocol.md, section 7).
- **Confirmation** (since 2026-11-30): the study's two best trials by the objective whose
  models are not degenerate on the validation split (:func:`degenerate_trials`) are each
  trained once more, with the same configuration and compute on another seed
  (:func:`replicate_seed`): another draw of the data, and so another validation split,
  initialisation and batches, as the runs' seeds differ (a *replicate*,
  :func:`confirmation_candidates`); a study with fewer than two such trials has no choice
  to confirm. Every study gets the same two replicates, so tuning stays equal. The best of
  N trials on one seed is partly the luckiest (the winner's curse): before, 13 of the
  publication's 14 degenerate 2-D models came from a configuration sound on the validation
  split that failed in one to three of the runs' seeds (docs/protocol.md, section 7). The
  replicate draws new data because the runs' seeds do, and they differ mostly by their data
  (``ssm_vr`` on rings: Fisher divergence 8.5 on the trials' data, 9.7 for the run on the
  same seed, 33 for the other two); replicating only the training seed, tried first, left
  as many failures on the seven toys it ran on (docs/protocol.md, section 4).
- **The choice** is, among the confirmed trials whose replicate finished, is finite and
  is not degenerate on its validation split, the one with the lowest mean objective over
  its two seeds. When neither passes, the lowest objective among the other
  trials not degenerate on the validation split; when there are none, the lowest among
  every finished trial, and the record says so. The choice is recorded with every run of
  the study (``hyperparams["tuning"]``, with the trials passed over and why). If no trial
  finished, the study runs with its defaults and says so. Until 2026-11-30 the objective
  alone chose: 10 of the publication's 208 2-D studies chose a trial already degenerate on
  the validation split, 5 of them while another trial was not (``scripts/sweep_report.py``
  counts them).

**Draws** (``--tune-draw D``, :func:`plan_studies`): draw D > 0 repeats every study's search
independently (its own keys, TPE seeds and trial seeds), as AlgoPerf repeats each workload's
tuning in several studies, to measure what a choice owes to chance; draw 0 is the default.

Trials run in *waves*: wave k holds trial k of every study, so that trial k's search and its
pruner see trials 0 … k−1, whatever the executor; within a wave all studies run in
parallel. The replicates are one last wave; they are never pruned and never enter the
search. The Optuna studies live in memory and are rebuilt from the results store, which
is the only record: the same store gives the same next trial.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from .degenerate import degenerate_notes
from .device import derive_seed
from .errors import UserError
from .grid import RunSpec
from .plugins import PluginManager
from .protocol_settings import from_record, study_tokens
from .schedules import TUNED_LR_SCHEDULE, TUNED_LR_SCHEDULES
from .search_space import Search, choice

__all__ = [
    "Study", "plan_studies", "trial_spec", "next_trial_params", "choose", "objective_of",
    "CurvePruner", "TrialPruned", "PRUNER_MIN_RESOURCE", "PRUNER_REDUCTION", "CURVE_RESOURCE",
    "STARTUP_TRIALS", "degenerate_trials", "validation_nll", "CONFIRMED_TRIALS",
    "confirmation_candidates", "is_replicate", "replicate_seed", "SCHEDULE", "searched_values",
    "tuned_spec",
]

#: The pruner's resource is the compute spent, in 1/128ths of the budget (the first
#: learning-curve point is 1, the last 128).
CURVE_RESOURCE = 128
#: The first rung: 1/8 of the budget. Earlier, a curve's order says little about its end
#: (a small learning rate starts slow), and successive halving would favour fast starters.
PRUNER_MIN_RESOURCE = 16
#: Each rung keeps the best 1/3 and is 3× further along.
PRUNER_REDUCTION = 3
#: TPE's random start: trials 0 … 3 (trial 0 the defaults; all of a study's trials when it
#: has fewer) are drawn without a model of the objective, and are never pruned, so that the
#: choice and every later trial's pruning rest on that many finished curves.
STARTUP_TRIALS = 4
#: The best trials sound on the validation split that are trained again on another seed
#: before the choice (see "Confirmation" above).
CONFIRMED_TRIALS = 2
#: The name of the learning-rate schedule among a study's searched values, when the sweep's
#: ``lr_schedule`` is :data:`~ebmbench.schedules.TUNED_LR_SCHEDULE` (a method may not
#: search a parameter of that name then).
SCHEDULE = "lr_schedule"
#: Samplers preferred, in order, for a sampler-free method's trials on sample objectives.
_TUNING_SAMPLERS = ("mala", "hmc", "ula", "mh")


class TrialPruned(Exception):
    """Raised inside a trial's training when the pruner stops it."""


@dataclass
class Study:
    """One tuning study: the runs it tunes and where it searches.

    Attributes:
        key: Identifies the study (a digest of the trained model's identity, without the
            searched values).
        base: The spec trials start from (defaults and ``--set`` values).
        searched: Method parameter → its search space.
        objective: The value to minimise.
        from_curve: The objective is read from the learning curve (no sampling needed).
        sampler: The sampler in trials (the training sampler, or one for sample objectives).
        seed: The seed trials use.
        schedules: The learning-rate schedules searched with ``searched`` (under
            :data:`SCHEDULE`), empty when the sweep fixes the schedule.
    """

    key: str
    base: RunSpec
    searched: dict[str, Search]
    objective: str
    from_curve: bool
    sampler: str
    seed: int
    specs: list[RunSpec] = field(default_factory=list)
    schedules: tuple[str, ...] = ()

    @property
    def space(self) -> dict[str, Search]:
        """Everything the study searches: the method's spaces, and the schedule's when it
        is tuned."""
        if not self.schedules:
            return dict(self.searched)
        return {**self.searched, SCHEDULE: choice(*self.schedules)}

    @property
    def label(self) -> str:
        extra = f"/{self.base.sampler}" if self.base.uses_sampler else ""
        return f"{self.base.dataset}/{self.base.method}{extra}/{self.base.architecture}"


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def plan_studies(
    specs: Iterable[RunSpec], pm: PluginManager, fixed: set[tuple[str, str]], draw: int = 0,
) -> dict[str, Study]:
    """Group runnable ``specs`` into studies.

    Args:
        specs: The runs to tune (skipped ones are ignored).
        pm: The plugin manager (for the datasets' objectives and the methods' spaces).
        fixed: (method, parameter) pairs the user set (method ``*`` for every method):
            they are not searched.
        draw: Which independent repetition of every study's search (``--tune-draw``): 0,
            the published one, trains its trials on the first run's seed; draw d > 0 has
            its own study keys (so its own TPE seed, trials and replicate seed) and trains
            its trials on a seed derived from its key, none of the runs' seeds. As
            AlgoPerf repeats each tuning study, it measures how much a study's outcome
            owes to its draws.
    """
    studies: dict[str, Study] = {}
    all_specs = [s for s in specs if not s.skip_reason]
    selected_samplers = sorted({s.sampler for s in all_specs})
    for spec in all_specs:
        method_cls = pm.info("method", spec.method).cls
        dataset_cls = pm.info("dataset", spec.dataset).cls
        searched = {
            name: p.search for name, p in method_cls.params.items()
            if p.search is not None and (spec.method, name) not in fixed and ("*", name) not in fixed
        }
        identity = {k: [getattr(spec, k), {n: v for n, v in spec.params[k].items()
                                           if not (k == "method" and n in searched)}]
                    for k in ("method", "architecture", "dataset")}
        if spec.uses_sampler:
            identity["sampler"] = [spec.sampler, spec.params["sampler"]]
        # A protocol setting other than its legacy rule makes other studies; the legacy
        # rule keeps the keys made before the setting existed (ebmbench.protocol_settings).
        key = _digest([identity, spec.budget, spec.train_flops] + study_tokens(spec)
                      + ([f"draw={draw}"] if draw else []))
        if key in studies:
            studies[key].specs.append(spec)
            continue
        objective = getattr(dataset_cls, "tuning_objective", "") or ""
        if not objective:
            raise UserError(f"dataset {spec.dataset} declares no tuning_objective: it cannot be tuned")
        from_curve = objective in _CURVE_OBJECTIVES
        sampler = spec.sampler if spec.uses_sampler or from_curve else next(
            (s for s in _TUNING_SAMPLERS if s in selected_samplers), selected_samplers[0])
        seed = derive_seed("tuning draw", key) % 2**31 if draw else spec.seed
        schedules = TUNED_LR_SCHEDULES if spec.lr_schedule == TUNED_LR_SCHEDULE else ()
        if schedules and SCHEDULE in searched:
            raise UserError(f"method {spec.method} searches a parameter named {SCHEDULE!r}, which "
                            f"--lr-schedule {TUNED_LR_SCHEDULE} searches too: fix one of them")
        studies[key] = Study(key, spec, searched, objective, from_curve, sampler, seed, [spec],
                             schedules)
    return studies


#: Objectives a learning curve provides (see :mod:`ebmbench.learning_curve`).
_CURVE_OBJECTIVES = frozenset({"fisher_divergence", "nll"})


def trial_spec(study: Study, number: int, values: dict[str, Any], pm: PluginManager) -> RunSpec:
    """The run spec of trial ``number`` of ``study``, with the searched ``values`` (a
    schedule among them, under :data:`SCHEDULE`, when the study searches one)."""
    method = study.base.method
    method_params = pm.info("method", method).cls.params
    # The one place a choice becomes a spec (tuned_spec) takes the coerced values; its
    # params are a fresh copy, changed below for the trials' sampler.
    base = tuned_spec(study.base, {
        name: value if name == SCHEDULE else method_params[name].coerce(value, name=f"method {method}.{name}")
        for name, value in values.items()})
    params = base.params
    if base.sampler != study.sampler:
        sampler_spec = next((s for s in study.specs if s.sampler == study.sampler), None)
        params["sampler"] = dict(sampler_spec.params["sampler"]) if sampler_spec else \
            pm.info("sampler", study.sampler).cls(budget=base.budget).hparams
    return replace(base, sampler=study.sampler, params=params, seed=study.seed, trial=number,
                   skip_reason=None, searched_schedule=bool(study.schedules))


def tuned_spec(spec: RunSpec, chosen: dict[str, Any], record: dict[str, Any] | None = None,
               ) -> RunSpec:
    """``spec`` with a study's ``chosen`` values (and its ``record``, when given): the
    method's into its parameters, a chosen schedule (:data:`SCHEDULE`) as its
    ``lr_schedule``. A spec whose schedule was to be tuned and that got none (no trial
    finished) trains under the first of :data:`~ebmbench.schedules.TUNED_LR_SCHEDULES`,
    the default's."""
    chosen = dict(chosen)
    schedule = chosen.pop(SCHEDULE, None)
    if schedule is None and spec.lr_schedule == TUNED_LR_SCHEDULE:
        schedule = TUNED_LR_SCHEDULES[0]
    params = {k: dict(v) for k, v in spec.params.items()}
    params["method"].update(chosen)
    return replace(spec, params=params, lr_schedule=schedule or spec.lr_schedule,
                   **({"tuning": record} if record is not None else {}))


def searched_values(study: Study, row: dict[str, Any]) -> dict[str, Any]:
    """The values of everything ``study`` searches that the trial ``row`` ran with."""
    values = {n: row["hyperparams"]["method"][n] for n in study.searched}
    if study.schedules:
        values[SCHEDULE] = from_record(row["hyperparams"])["lr_schedule"]
    return values


# ------------------------------------------------------------------ objective and search


def objective_of(row: dict[str, Any], study: Study) -> float | None:
    """The trial's objective (lower is better); None when it did not finish training.

    A trial that diverged scores +inf: the configuration is bad, and the search should
    learn so.
    """
    if row["status"] == "diverged":
        return math.inf
    if row["status"] != "ok":
        return None
    if study.from_curve:
        point = reported_point(row)
        value = point.get(study.objective) if point else None
    else:
        value = (row.get("metrics") or {}).get(study.objective)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _distribution(space: Search) -> Any:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if space.kind == "choice":
        return CategoricalDistribution(list(space.choices))
    if space.kind == "int":
        return IntDistribution(int(space.low), int(space.high), log=space.log)
    return FloatDistribution(space.low, space.high, log=space.kind == "log_uniform")


def _progress(point: dict[str, Any], budget_flops: float | None) -> float | None:
    """A curve point's progress through its run (rows before ``progress`` was recorded: its
    compute over the budget)."""
    if "progress" in point:
        return float(point["progress"])
    return point["flops"] / budget_flops if budget_flops else None


def _curve_values(row: dict[str, Any], objective: str) -> dict[int, float]:
    out: dict[int, float] = {}
    budget = (row.get("compute") or {}).get("budget_flops")
    for point in row.get("curve") or []:
        progress = _progress(point, budget)
        if objective in point and progress is not None:
            step = max(1, round(CURVE_RESOURCE * progress))
            out.setdefault(step, float(point[objective]))  # as the trial reported it
    return out


def _in_memory_study(study: Study, rows: list[dict[str, Any]], number: int) -> Any:
    """An Optuna study holding the finished trials in ``rows`` (any order), ready to ask."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # TPE draws at random while the study holds fewer than STARTUP_TRIALS trials: trials
    # 1 … 3 (trial 0 is the defaults). Until 2026-11-30 this was min(4, number), which let
    # TPE model trials 1 … 3 on one to three observations, against the docs.
    sampler = optuna.samplers.TPESampler(
        seed=derive_seed("tpe", study.key, number) % 2**32, n_startup_trials=STARTUP_TRIALS,
        multivariate=True,
    )
    opt = optuna.create_study(direction="minimize", sampler=sampler)
    distributions = {n: _distribution(s) for n, s in study.space.items()}
    for row in sorted(rows, key=lambda r: r["trial"]):
        params = searched_values(study, row)
        value = objective_of(row, study)
        if row["status"] == "pruned":
            curve = _curve_values(row, study.objective)
            state, value = optuna.trial.TrialState.PRUNED, None
            intermediate = curve
        elif value is None:
            state, intermediate = optuna.trial.TrialState.FAIL, {}
        else:
            state, intermediate = optuna.trial.TrialState.COMPLETE, _curve_values(row, study.objective)
        try:
            opt.add_trial(optuna.trial.create_trial(
                state=state, value=value, params=params, distributions=distributions,
                intermediate_values=intermediate,
            ))
        except ValueError:  # a stored value outside today's space: the search ignores it
            continue
    return opt


def next_trial_params(study: Study, rows: list[dict[str, Any]], number: int) -> dict[str, Any]:
    """The searched values of trial ``number``, given the study's finished trial ``rows``.

    Deterministic: the same rows give the same values (the store is the only record).
    When the study searches the schedule, the random start alternates it (trial 0, the
    defaults, ``constant``; 1 ``cosine``; 2 ``constant`` ...), so that TPE's model starts
    from both whatever the draws.
    """
    space = study.space
    if not space:
        return {}
    defaults = {n: study.base.params["method"][n] for n in study.searched}
    if study.schedules:
        defaults[SCHEDULE] = study.schedules[0]
    if number == 0 and all(s.contains(defaults[n]) for n, s in space.items()):
        return defaults
    opt = _in_memory_study(study, rows, number)
    if study.schedules and number < STARTUP_TRIALS:
        opt.enqueue_trial({SCHEDULE: study.schedules[number % len(study.schedules)]})
    trial = opt.ask()
    return {name: s.suggest(trial, name) for name, s in space.items()}


def reported_point(row: dict[str, Any]) -> dict[str, float] | None:
    """The learning-curve point of the model a trial reports (:mod:`ebmbench.early_stopping`:
    ``compute["reported_point"]``; the last point for rows made before the rule), or None
    when the curve is empty."""
    curve = row.get("curve") or []
    if not curve:
        return None
    index = (row.get("compute") or {}).get("reported_point")
    return curve[int(index)] if index is not None and 0 <= int(index) < len(curve) else curve[-1]


def validation_nll(row: dict[str, Any]) -> float | None:
    """The validation NLL of the model a trial reports (2-D toys, from its learning curve),
    else None."""
    point = reported_point(row)
    value = point.get("nll") if point else None
    return None if value is None else float(value)


def degenerate_trials(rows: list[dict[str, Any]], reference_nll: float | None) -> dict[int, str]:
    """Trial number → why its model is degenerate on the validation split.

    The runs' ``degenerate:nll`` test (:mod:`ebmbench.degenerate`) applied to a trial: its
    validation NLL at the curve point it reports (:func:`reported_point`) against
    ``reference_nll``, the NLL of the validation split under a Gaussian fitted to the rest
    of the training split (:func:`ebmbench.runner.validation_reference_nll`). Trials without an NLL on their
    curve (images, more than 2 dimensions) are never flagged.

    >>> rows = [{"trial": 0, "curve": [{"nll": 2.5}]}, {"trial": 1, "curve": [{"nll": 9.0}]}]
    >>> list(degenerate_trials(rows, reference_nll=2.8))
    [1]
    """
    if reference_nll is None:
        return {}
    out = {}
    for row in rows:
        nll = validation_nll(row)
        notes = {} if nll is None else degenerate_notes(nll, reference_nll, None, None, "validation")
        if notes:
            out[row["trial"]] = notes["degenerate:nll"]
    return out


def replicate_seed(study: Study) -> int:
    """The seed of the study's replicates: derived from the study, so the same for every
    candidate (their scores compare on one validation split) and almost surely none of the
    runs' seeds (a replicate never sees a run's data, nor any test split)."""
    return derive_seed("replicate", study.key) % 2**31


def is_replicate(row: dict[str, Any]) -> bool:
    """Whether a trial row is a replicate (a confirmed trial trained again), not a trial of
    the search."""
    return ((row.get("hyperparams") or {}).get("tuning") or {}).get("replicate") is not None


def _sound(study: Study, rows: list[dict[str, Any]], reference_nll: float | None,
           ) -> tuple[list[tuple[float, dict[str, Any]]], dict[int, str], list[tuple[float, dict[str, Any]]]]:
    """The search's finished trials (objective, row), those degenerate on the validation
    split (number → why), and the others, best first."""
    scored = [(objective_of(r, study), r) for r in rows if not is_replicate(r)]
    finished = [(v, r) for v, r in scored if v is not None and math.isfinite(v)]
    flagged = degenerate_trials([r for _, r in finished], reference_nll)
    sound = sorted(((v, r) for v, r in finished if r["trial"] not in flagged),
                   key=lambda vr: (vr[0], vr[1]["trial"]))
    return finished, flagged, sound


def confirmation_candidates(study: Study, rows: list[dict[str, Any]],
                            reference_nll: float | None = None) -> list[dict[str, Any]]:
    """The trial rows to train again on another seed before the choice: the
    :data:`CONFIRMED_TRIALS` best by the objective among the finished trials not degenerate
    on the validation split, when there are at least two (else there is no choice to
    confirm). Deterministic: the same rows give the same candidates.

    >>> study = Study("s", None, {}, "nll", True, "mala", 0)
    >>> rows = [{"trial": t, "status": "ok", "curve": [{"nll": v}]} for t, v in enumerate([3.0, 2.0, 2.5])]
    >>> [r["trial"] for r in confirmation_candidates(study, rows)]
    [1, 2]
    """
    _, _, sound = _sound(study, rows, reference_nll)
    return [r for _, r in sound[:CONFIRMED_TRIALS]] if len(sound) >= 2 else []


def _confirmations(study: Study, rows: list[dict[str, Any]], candidates: list[dict[str, Any]],
                   reference_nll: float | None) -> dict[int, dict[str, Any]]:
    """Candidate trial number → its two objectives, and why it failed its confirmation
    (``None`` when it passed), for the candidates whose replicate is stored."""
    replicas = {r["trial"]: r for r in rows if is_replicate(r)}
    out = {}
    for row in candidates:
        replica = replicas.get(row["trial"])
        if replica is None:
            continue
        value = objective_of(replica, study)
        why = None
        if value is None:
            why = f"its replicate did not finish training ({replica['status']})"
        elif not math.isfinite(value):
            why = "its replicate diverged"
        else:
            flagged = degenerate_trials([replica], reference_nll)
            if flagged:
                why = f"its replicate is degenerate: {next(iter(flagged.values()))}"
        out[row["trial"]] = {"objectives": [objective_of(row, study), value], "failed": why}
    return out


def choose(study: Study, rows: list[dict[str, Any]], reference_nll: float | None = None,
           replicate_reference_nll: float | None = None,
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The chosen searched values and the record kept with every run of the study.

    ``rows`` are the study's trials and replicates. The confirmed trial (see
    :func:`confirmation_candidates`) whose replicate passed (judged against
    ``replicate_reference_nll``, its own validation split's Gaussian; default
    ``reference_nll``), with the lowest mean objective over its two seeds; when none did,
    the finished trial with the lowest objective among those neither degenerate on the
    validation split
    (:func:`degenerate_trials`, given ``reference_nll``) nor failed in its replicate; when
    every finished trial is one of those, the lowest objective among them, and the record
    says so. The leaderboards do not rank a degenerate model, so choosing one when a
    configuration that is not exists would rank the method by its worst case; and the
    Fisher divergence alone cannot see it: it is blind to how mass is split between modes
    and to far tails (docs/protocol.md, "The choice").
    """
    finished, flagged, sound = _sound(study, rows, reference_nll)
    record: dict[str, Any] = {
        "study": study.key, "trials": sum(not is_replicate(r) for r in rows),
        "objective": study.objective,
        "split": "validation", "searched": {n: s.describe() for n, s in study.space.items()},
        "pruned": sum(r["status"] == "pruned" for r in rows if not is_replicate(r)),
    }
    if not finished:
        record |= {"chosen_trial": None, "note": "no trial finished training: defaults kept"}
        return {}, record
    confirmed = _confirmations(
        study, rows, confirmation_candidates(study, rows, reference_nll),
        reference_nll if replicate_reference_nll is None else replicate_reference_nll)
    passed = [(sum(c["objectives"]) / 2, number) for number, c in confirmed.items() if not c["failed"]]
    by_number = {r["trial"]: (v, r) for v, r in finished}
    if passed:
        value, number = min(passed)
        best = by_number[number][1]
    else:
        failed = {n for n, c in confirmed.items() if c["failed"]}
        eligible = [(v, r) for v, r in sound if r["trial"] not in failed] or finished
        value, best = min(eligible, key=lambda vr: (vr[0], vr[1]["trial"]))
        if len(eligible) == len(finished) and (flagged or failed):
            record["note"] = ("every finished trial is degenerate on the validation split"
                              + (" or failed its confirmation" if failed else ""))
    chosen = searched_values(study, best)
    record |= {"chosen_trial": best["trial"], "score": value, "chosen": chosen}
    if confirmed:
        record["confirmation"] = {str(n): c for n, c in sorted(confirmed.items())}
    if flagged:
        record["degenerate_trials"] = {str(k): v for k, v in sorted(flagged.items())}
    return chosen, record


# ------------------------------------------------------------------ pruning, in the worker


def pruning_history(study: Study, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a trial's pruner needs from the study's earlier trials (plain data)."""
    history = []
    for row in sorted(rows, key=lambda r: r["trial"]):
        curve = _curve_values(row, study.objective)
        if curve:
            history.append({"curve": {str(k): v for k, v in curve.items()},
                            "pruned": row["status"] == "pruned", "trial": row["trial"]})
    return history


class CurvePruner:
    """Optuna's successive-halving pruner for one trial, fed by its learning curve.

    The earlier trials' curves are replayed through the pruner in an in-memory study, so
    that its rung records are Optuna's own; then :meth:`should_stop` reports each new
    point of this trial. A trial of the random start (number < :data:`STARTUP_TRIALS`)
    records its rung values, which later trials compete with, but stops only on a
    non-finite objective.

    Args:
        objective: The curve value to minimise.
        history: The earlier trials, in order (:func:`pruning_history`).
        number: This trial's number; ``None`` prunes it like any later trial.
    """

    def __init__(self, objective: str, history: list[dict[str, Any]],
                 number: int | None = None) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.objective = objective
        pruner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=PRUNER_MIN_RESOURCE, reduction_factor=PRUNER_REDUCTION)
        self.study = optuna.create_study(direction="minimize", pruner=pruner)
        for past in history:
            trial = self.study.ask()
            curve = sorted((int(k), v) for k, v in past["curve"].items())
            stopped = False
            for step, value in curve:
                trial.report(value, step)
                if _stops(trial, past["trial"], value):
                    stopped = True
                    break
            if stopped or past["pruned"]:
                self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                self.study.tell(trial, curve[-1][1] if curve else math.inf)
        self.trial = self.study.ask()
        self.number = number
        self._last_step = 0

    def should_stop(self, point: dict[str, float]) -> bool:
        """Report a new curve point (with its ``progress``, see
        :func:`ebmbench.learning_curve.run_progress`); True when the trial should stop here."""
        value = point.get(self.objective)
        if value is None:
            return False
        step = max(1, round(CURVE_RESOURCE * point["progress"]))
        if step <= self._last_step:  # two points within one 1/128 of the run: keep the first
            return False
        self._last_step = step
        self.trial.report(float(value) if math.isfinite(value) else float("nan"), step)
        return _stops(self.trial, self.number, value)


def _stops(trial: Any, number: int | None, value: float) -> bool:
    """Whether the pruner stops ``trial`` (number ``number``) at the value just reported.

    ``should_prune`` is always asked, since asking records the trial's rung value, which
    later trials compete with; a trial of the random start ignores the answer unless its
    objective is no longer finite.
    """
    prune = bool(trial.should_prune())
    in_random_start = number is not None and number < STARTUP_TRIALS
    return prune and not (in_random_start and math.isfinite(value))
