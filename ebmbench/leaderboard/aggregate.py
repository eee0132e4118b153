"""Aggregate result rows into boards: models, samples from each model, samplers.

Per dataset there are three tables (see docs/leaderboards.md):

**Models** (ranked): one row per (method, architecture), plus the training sampler for a
method that trains with one (``cd``, ``pcd``). A method that trains with no sampler has one
model per seed however many samplers evaluated it, so its model values are read once per
trained model (``train_key``) and the evaluation sampler has no say in its rank. Ranked on the
model values: those its metrics compute without samples (Fisher divergence, test NLL, log-Z
error of methods that estimate log Z). On a dataset where no model value exists (images),
the models are ranked on sample values (KID, FID) of one designated evaluation sampler, the
same for every model (:func:`evaluation_sampler`); methods that train with a sampler are
judged by their own.

**Samples from each model × sampler** (not ranked): the sample values (MMD, C2ST, FID, KID)
of every model under every evaluation sampler. They measure model and sampler together.

**Samplers** (ranked): each sampler on fixed targets (the dataset's true density and one
trained reference energy), per (target, chain initialisation), on sample quality at an
equal budget of gradient evaluations: rows with ``role = "sampler"``.

Rows are averaged over seeds (mean ± standard error) and ranked by the rules of
:mod:`ebmbench.leaderboard.ranking`. A value a run flags unreliable
(``notes["unreliable:<value>"]``) is shown with a mark and not ranked; a degenerate model
(:mod:`ebmbench.degenerate`) is shown below the table, not ranked.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..base import unreliable_values
from ..protocol_settings import NAMES as SETTING_NAMES
from ..protocol_settings import from_record as settings_from_record
from .ranking import rank_rows
from .targets import curve_target

__all__ = [
    "Board",
    "DatasetBoards",
    "aggregate",
    "summarize",
    "model_label",
    "configuration_text",
    "reported_model_text",
    "trained_models",
    "evaluation_sampler",
    "MODEL_KEY",
    "SAMPLE_KEY",
    "SAMPLER_KEY",
    "EVALUATION_SAMPLERS",
    "COMBO",
]

#: The columns of a run's full identity (kept for callers of the old API).
COMBO = ["method", "sampler", "architecture"]
#: A trained model: the method (with its variant), the energy, the sampler it trained with.
MODEL_KEY = ["method", "architecture", "training_sampler"]
#: A model evaluated with a sampler.
SAMPLE_KEY = [*MODEL_KEY, "sampler"]
#: A sampler on a target, from an initialisation.
SAMPLER_KEY = ["target", "init", "sampler"]
#: The evaluation sampler whose samples rank models where only sample values exist, the
#: first of these that ran on the dataset (the order tuning uses for sample objectives).
EVALUATION_SAMPLERS = ("mala", "hmc", "ula", "mh")
#: Sample values of rows written before the store recorded ``sample_values`` (schema 3).
LEGACY_SAMPLE_VALUES = frozenset(
    {
        "mmd",
        "mmd_floor",
        "c2st_accuracy",
        "fid",
        "fid_floor",
        "fid_samples",
        "kid",
        "fid_inception",
        "fid_inception_floor",
        "kid_inception",
        "grad_evals",
        "sample_seconds",
    }
)
#: Directions of the sampler board's values, where a row does not declare them.
SAMPLER_DIRECTIONS = {
    "mmd": False,
    "c2st_accuracy": False,
    "ess_per_grad": True,
    "rhat": False,
    "mmd_floor": False,
    "grad_evals": False,
}
#: Sampler-board values shown for reference or as cost, never ranked.
SAMPLER_REFERENCE = ("mmd_floor", "rhat")
SAMPLER_COST = ("grad_evals", "sample_seconds")
#: Compute columns of the models board (from each run's ``compute`` record).
COMPUTE_COLUMNS = {
    "train_flops": "flops",
    "train_energy_rows": "energy_rows",
    "train_grad_rows": "grad_rows",
    "train_steps": "steps",
}
#: How parameter names are shown in a variant's label.
_SYMBOLS = {
    "alpha": "α",
    "beta": "β",
    "gamma": "γ",
    "sigma": "σ",
    "lambda": "λ",
    "tau": "τ",
    "eta": "η",
    "epsilon": "ε",
}
_FINISHED = ("ok", "degenerate")


@dataclass
class Board:
    """A ranked table.

    Attributes:
        kind: ``models`` or ``samplers``.
        dataset: The dataset's name.
        title: The table's heading.
        key: The columns that identify a row.
        table: Ranked rows, best first: ``rank`` (shared ranks), ``rank_lo``/``rank_hi``
            (the bootstrap interval), ``score``, the key, ``seeds``, ``runs``, and for each
            value ``<v>`` (mean over seeds) and ``<v>_se`` (standard error, NaN with one
            seed); plus board-specific columns (compute, configuration).
        unranked: Rows shown but not ranked, with a ``why`` column (degenerate, unfinished,
            no ranked value), same columns otherwise.
        directions: Value → higher is better.
        ranked: The values the rank averages over.
        reference: Values shown for reference only (floors, bound gaps).
        costs: Cost columns (shown, not ranked).
        unreliable: Row key → values flagged unreliable (shown with a mark, not ranked).
        notes: Sentences the page must say about this board (e.g. the evaluation sampler).
        primary: The value figures plot and the interactive table sorts by first.
        units: The ranked rows' per-seed values (unreliable values removed), from which the
            ranks were computed; the cross-dataset summary re-ranks subsets of them.
    """

    kind: str
    dataset: str
    title: str
    key: list[str]
    table: pd.DataFrame
    unranked: pd.DataFrame
    directions: dict[str, bool]
    ranked: list[str]
    reference: list[str] = field(default_factory=list)
    costs: list[str] = field(default_factory=list)
    unreliable: dict[tuple, set[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    primary: str | None = None
    units: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def values(self) -> list[str]:
        """Every value column shown: ranked, then references, then costs."""
        return [*self.ranked, *self.reference, *self.costs]


@dataclass
class DatasetBoards:
    """Everything one dataset's page shows."""

    dataset: str
    models: Board
    #: Samples from each model × evaluation sampler (not ranked); columns as a board table.
    samples: pd.DataFrame
    #: The samples table's values, in order → ``quality``, ``reference`` or ``cost``.
    sample_values: dict[str, str]
    samplers: list[Board]
    #: Runs that did not finish ``ok`` (identity, seed, status, reason).
    not_ok: pd.DataFrame
    #: Combinations that can never run: ``reason``, ``combinations``.
    not_applicable: pd.DataFrame
    #: (curve value, threshold) of "compute to reach the target", or None.
    target: tuple[str, float] | None
    #: Learning-curve points of every ranked or degenerate model: the model key, ``unit``
    #: (its training), ``point``, ``flops`` and the curve values.
    curves: pd.DataFrame
    #: The designated evaluation sampler (datasets ranked on sample values), or None.
    evaluation_sampler: str | None = None
    #: Rows (all roles) of this dataset, for the page's counts.
    rows: int = 0
    #: Model key → its gallery data (``artifacts/<run>/gallery.npz``, relative to the results
    #: folder): the first seed, sampled by its training sampler or else ``gallery_sampler``.
    gallery: dict[tuple, str] = field(default_factory=dict)
    #: The sampler whose samples the gallery shows for sampler-free methods.
    gallery_sampler: str | None = None

    @property
    def empty(self) -> bool:
        return self.models.table.empty and self.models.unranked.empty and not self.samplers


# --------------------------------------------------------------------------- row helpers


def _column(frame: pd.DataFrame, name: str, default: Any) -> pd.Series:
    if name in frame.columns:
        return frame[name].map(lambda v: default if _missing(v) else v)
    return pd.Series([default] * len(frame), index=frame.index, dtype=object)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _normalised(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with every column the boards read, old exports included."""
    frame = frame.copy()
    for name, default in (("role", "run"), ("reason", ""), ("train_key", None), ("budget", "")):
        frame[name] = _column(frame, name, default)
    frame["train_key"] = frame["train_key"].where(frame["train_key"].notna(), frame.get("run_id"))
    for name in ("hyperparams", "notes", "directions", "compute"):
        frame[name] = _column(frame, name, {}).map(lambda v: v if isinstance(v, dict) else {})
    for name in ("cost_values", "reference_values", "curve"):
        frame[name] = _column(frame, name, []).map(lambda v: v if isinstance(v, list) else [])
    frame["sample_values"] = _column(frame, "sample_values", None)
    frame["uses_sampler"] = _column(frame, "uses_sampler", None)
    return frame


def model_label(method: str, hyperparams: dict[str, Any] | None) -> str:
    """The method's name on a leaderboard, with its variant if the run recorded one.

    >>> model_label("adversarial", {"variant": {"alpha": 0.1}}), model_label("dsm", {})
    ('adversarial (α=0.1)', 'dsm')
    """
    variant = (hyperparams or {}).get("variant") or {}
    if not variant:
        return method
    shown = ", ".join(
        f"{_SYMBOLS.get(k, k)}={v:g}"
        if isinstance(v, int | float) and not isinstance(v, bool)
        else f"{_SYMBOLS.get(k, k)}={v}"
        for k, v in sorted(variant.items())
    )
    return f"{method} ({shown})"


def protocol_of(hyperparams: dict[str, Any] | None) -> dict[str, Any]:
    """The protocol settings a run ran under, read from its row.

    >>> protocol_of({"checkpoint": "best", "weight_average": "best"})
    {'lr_schedule': 'constant', 'checkpoint': 'best', 'weight_average': 'best'}
    """
    return settings_from_record(hyperparams)


def shared_protocol(hyperparams: Iterable[dict[str, Any] | None]) -> dict[str, Any]:
    """The protocol settings every run ran under with one value: what a board states once
    instead of in every label. A setting with two values keeps its models labelled apart.

    >>> shared_protocol([{"weight_average": "best", "variant": {"alpha": 0.1}}, {"weight_average": "best"}])
    {'lr_schedule': 'constant', 'checkpoint': 'last', 'weight_average': 'best'}
    >>> shared_protocol([{"weight_average": "best"}, {}])
    {'lr_schedule': 'constant', 'checkpoint': 'last'}
    """
    protocols = [protocol_of(h) for h in hyperparams]
    return {
        name: protocols[0][name]
        for name in SETTING_NAMES
        if protocols and len({repr(p[name]) for p in protocols}) == 1
    }


def protocol_text(frame: pd.DataFrame, dataset: str) -> str:
    """The protocol ``dataset``'s runs ran under, for the index: each setting with its one
    value, or ``mixed`` where the runs differ in it (their labels then say which is which).

    >>> rows = pd.DataFrame({"dataset": "d", "role": "run", "status": ["ok", "ok", "skipped"],
    ...     "hyperparams": [{"checkpoint": "best", "weight_average": "best"}, {"checkpoint": "best"}, {}]})
    >>> protocol_text(rows, "d"), protocol_text(rows, "other")
    ('lr_schedule=constant, checkpoint=best, weight_average mixed', '–')
    """
    if "role" not in frame:
        return "–"
    ran = frame[(frame["dataset"] == dataset) & (frame["role"] == "run") & (frame["status"] != "skipped")]
    hyperparams = list(ran["hyperparams"])
    return protocol_summary(hyperparams) if hyperparams else "–"


def protocol_summary(hyperparams: Iterable[dict[str, Any] | None]) -> str:
    """The protocol settings of some runs in one line: each setting with its one value, or
    ``mixed`` where the runs differ in it.

    >>> protocol_summary([{"checkpoint": "best", "lr_schedule": "cosine"}, {"checkpoint": "best"}])
    'lr_schedule mixed, checkpoint=best, weight_average=none'
    """
    shared = shared_protocol(hyperparams)
    return ", ".join(
        f"{name}={shared[name]}" if name in shared else f"{name} mixed" for name in SETTING_NAMES
    )


def board_label(method: str, hyperparams: dict[str, Any] | None, shared: dict[str, Any]) -> str:
    """A model's label on a board: its method variant, and every protocol setting it ran
    under (:func:`protocol_of`) that the board's models do not all share.

    >>> board_label("cd", {"variant": {"alpha": 0.1, "checkpoint": "last"}}, {"checkpoint": "last"})
    'cd (α=0.1, lr_schedule=constant, weight_average=none)'
    >>> board_label("cd", {"weight_average": "best"}, {"lr_schedule": "constant", "checkpoint": "last"})
    'cd (weight_average=best)'
    """
    recorded = hyperparams or {}
    variant = {k: v for k, v in (recorded.get("variant") or {}).items() if k not in SETTING_NAMES}
    variant |= {k: v for k, v in protocol_of(recorded).items() if k not in shared}
    return model_label(method, {"variant": variant})


def _uses_sampler(rows: pd.DataFrame) -> pd.Series:
    """Whether each row's method trains with its sampler: as recorded, else inferred for
    rows written before it was (schema < 3): a training (``train_key``) shared by rows of
    different samplers trains with none."""
    recorded = rows["uses_sampler"]
    samplers_per_training = rows.groupby("train_key")["sampler"].transform("nunique")
    per_model = rows.groupby(["dataset", "method", "architecture", "seed", "budget"])
    keys_per_model = per_model["train_key"].transform("nunique")
    samplers_per_model = per_model["sampler"].transform("nunique")
    inferred = (samplers_per_training == 1) & (keys_per_model > 1) & (keys_per_model == samplers_per_model)
    return pd.Series(
        [bool(r) if not _missing(r) else bool(i) for r, i in zip(recorded, inferred, strict=True)],
        index=rows.index,
    )


def trained_models(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per trained model of the runs that finished: ``degenerate`` when any of its
    rows is (collapsed samples under one evaluation sampler exclude the model too), its
    tuning ``study``, and the sampler as the boards name it (``–`` for a method that trains
    without one)."""
    rows = frame[(frame["role"] == "run") & frame["status"].isin(["ok", "degenerate"])].copy()
    rows["degenerate"] = rows.groupby("train_key")["status"].transform(lambda s: (s == "degenerate").any())
    rows["study"] = rows["hyperparams"].map(lambda h: ((h or {}).get("tuning") or {}).get("study"))
    rows["uses_sampler"] = _column(rows, "uses_sampler", None)
    rows["sampler"] = rows["sampler"].where(_uses_sampler(rows), "–")
    return rows.drop_duplicates("train_key")


def _declared(rows: pd.DataFrame) -> tuple[dict[str, bool], set[str], set[str], set[str]]:
    """Directions, cost values, reference values and sample values the rows declare."""
    directions: dict[str, bool] = {}
    costs: set[str] = set()
    references: set[str] = set()
    samples: set[str] = set()
    for d in rows["directions"]:
        directions.update(d)
    for c in rows["cost_values"]:
        costs.update(c)
    for r in rows["reference_values"]:
        references.update(r)
    for s in rows["sample_values"]:
        samples.update(LEGACY_SAMPLE_VALUES if s is None else s)
    return directions, costs, references, samples


def _reported(rows: pd.DataFrame, names: Iterable[str]) -> list[str]:
    """The names, in order, that some row reports (a column with a value)."""
    return [v for v in names if f"metric.{v}" in rows.columns and rows[f"metric.{v}"].notna().any()]


def _unreliable(notes: dict[str, Any]) -> set[str]:
    return set(unreliable_values(notes))


def _runs_text(statuses: Iterable[str]) -> str:
    counts = Counter(statuses)
    total = sum(counts.values())
    others = ", ".join(
        f"{n} {s}" for s, n in sorted(counts.items(), key=lambda i: (-i[1], i[0])) if s != "ok"
    )
    return f"{counts.get('ok', 0)}/{total} ok" + (f" ({others})" if others else "")


def _aggregate_values(units: pd.DataFrame, key: list[str], values: list[str]) -> pd.DataFrame:
    """Mean and standard error (NaN with one seed) over seeds of each value, per key."""
    columns = [*key, *(c for v in values for c in (v, f"{v}_se"))]
    if units.empty:
        return pd.DataFrame(columns=columns)
    numbers = units.reindex(columns=values).apply(pd.to_numeric, errors="coerce")
    grouped = pd.concat([units[key], numbers], axis=1).groupby(key, sort=True, dropna=False)[values]
    mean, std, count = grouped.mean(), grouped.std(ddof=1), grouped.count()
    se = (std / np.sqrt(count)).where(count > 1)
    out = mean.copy()
    for v in values:
        out[f"{v}_se"] = se[v]
    return out.reset_index()[columns]


def _masked(
    units: pd.DataFrame, key: list[str], ranked: list[str], unreliable: dict[tuple, set[str]]
) -> pd.DataFrame:
    """The units with every value flagged unreliable removed (NaN: not ranked)."""
    masked = units.copy()
    for k, names in unreliable.items():
        if masked.empty:
            break
        hit = np.logical_and.reduce([masked[c] == v for c, v in zip(key, k, strict=True)])
        for name in names & set(ranked):
            masked.loc[hit, name] = np.nan
    return masked


def _finish_board(
    kind: str,
    dataset: str,
    title: str,
    key: list[str],
    units: pd.DataFrame,
    shown: pd.DataFrame,
    ranked: list[str],
    directions: dict[str, bool],
    reference: list[str],
    costs: list[str],
    unreliable: dict[tuple, set[str]],
    extra: pd.DataFrame | None,
    notes: list[str],
    primary_order: Iterable[str],
) -> Board:
    """Aggregate, rank and split into the ranked table and the rows shown but not ranked.

    ``units`` are the rankable (row, seed) lines; ``shown`` every row's status summary
    (``key``, ``seeds``, ``runs``, ``why``: empty when rankable).
    """
    values = [*ranked, *reference, *costs]
    aggregated = _aggregate_values(units, key, values) if len(units) else pd.DataFrame(columns=key)
    rankable = pd.DataFrame(columns=key)
    if len(units):
        # Rows shown but not ranked (degenerate, controls) keep their values, and take no part in the
        # ranking of the others.
        keep = units[key].merge(shown.loc[shown["why"] == "", key], on=key, how="left", indicator=True)
        rankable = _masked(units[(keep["_merge"] == "both").to_numpy()], key, ranked, unreliable)
    ranks = rank_rows(rankable, key, ranked, directions)
    table = shown.merge(aggregated, on=key, how="left").merge(ranks, on=key, how="left")
    if extra is not None and len(extra):
        table = table.merge(extra, on=key, how="left")
    no_value = table["why"].eq("") & table.get("score", pd.Series(np.nan, index=table.index)).isna()
    table.loc[no_value, "why"] = "reports no ranked value that another row reports"
    ranked_rows = table[table["why"] == ""].copy()
    unranked = table[table["why"] != ""].copy()
    ranked_rows = ranked_rows.sort_values(["rank", "score", *key], kind="stable").reset_index(drop=True)
    unranked = unranked.sort_values(key, kind="stable").reset_index(drop=True)
    for t in (ranked_rows, unranked):
        for c in ("rank", "rank_lo", "rank_hi", "point_rank"):
            if c in t:
                t[c] = t[c].astype("Int64") if t[c].notna().all() else t[c]
    primary = next((v for v in primary_order if v in ranked), ranked[0] if ranked else None)
    return Board(
        kind,
        dataset,
        title,
        key,
        ranked_rows,
        unranked,
        directions,
        ranked,
        reference,
        costs,
        unreliable,
        notes,
        primary,
        rankable.reset_index(drop=True),
    )


# --------------------------------------------------------------------------- models


def evaluation_sampler(samplers: Iterable[str]) -> str | None:
    """The designated evaluation sampler among those that ran: the first of
    :data:`EVALUATION_SAMPLERS`, else the first by name.

    >>> evaluation_sampler(["ula", "hmc"]), evaluation_sampler(["mine"]), evaluation_sampler([])
    ('hmc', 'mine', None)
    """
    present = sorted(set(samplers))
    return next((s for s in EVALUATION_SAMPLERS if s in present), present[0] if present else None)


#: The primary value of a board, the first of these it ranks.
PRIMARY_VALUES = ("fisher_divergence", "test_nll", "kid", "fid", "mmd", "c2st_accuracy", "ess_per_grad")


def reported_model_text(rows: list[dict[str, Any]]) -> str:
    """Which model each seed's run reports (:mod:`ebmbench.early_stopping`), in seed order:
    ``last`` for the end of training, or ``best: 100 %, 50 %, …``, the share of each run at
    which its reported (best validated) checkpoint was taken; a share is marked ``avg``
    where the run reports the average of its iterates there (:mod:`ebmbench.averaging`).

    >>> best = lambda seed, p: {"seed": seed, "hyperparams": {"checkpoint": "best"},
    ...                         "compute": {"reported_progress": p}}
    >>> reported_model_text([best(1, 0.5), best(0, 1.002)])
    'best: 100 %, 50 %'
    >>> averaged = best(2, 0.25) | {"compute": {"reported_progress": 0.25, "reported_point": 1},
    ...                             "curve": [{"averaged": 0.0}, {"averaged": 1.0}]}
    >>> reported_model_text([best(1, 0.5), averaged])
    'best: 50 %, 25 % avg'
    >>> reported_model_text([{"seed": 0, "hyperparams": {}, "compute": {}}])
    'last'
    """
    shares = []
    for row in sorted(rows, key=lambda r: r["seed"]):
        hyper = row.get("hyperparams") if isinstance(row.get("hyperparams"), dict) else {}
        compute = row.get("compute") or {}
        progress = compute.get("reported_progress")
        if hyper.get("checkpoint") == "best" and progress is not None:
            curve, point = row.get("curve") or [], compute.get("reported_point")
            averaged = (isinstance(point, int) and 0 <= point < len(curve)
                        and curve[point].get("averaged") == 1.0)
            shares.append(f"{min(float(progress), 1.0) * 100:.0f} %" + (" avg" if averaged else ""))
    return f"best: {', '.join(shares)}" if shares else "last"


def configuration_text(hyperparams: dict[str, Any] | None) -> str:
    """The configuration a run used, in one line: the tuned choice, or the defaults."""
    record = (hyperparams.get("tuning") if isinstance(hyperparams, dict) else None) or {}
    if not record:
        return "defaults"
    chosen = record.get("chosen") or {}
    values = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(chosen.items())
    )
    trial = record.get("chosen_trial")
    where = f"trial {trial} of {record.get('trials', '?')}" if trial is not None else "no trial finished"
    confirmation = (record.get("confirmation") or {}).get(str(trial))
    if confirmation is not None and not confirmation.get("failed"):
        where += ", confirmed by a second seed"  # ebmbench.tuning: the replicate held up
    return f"tuned ({where}): {values or 'defaults'}"


def _flops_to_target(curve: list[dict[str, Any]], target: tuple[str, float] | None) -> float:
    if target is None:
        return math.nan
    name, threshold = target
    for point in curve:
        value = point.get(name)
        if value is not None and not _missing(value) and value <= threshold:
            return float(point.get("flops", math.nan))
    return math.inf  # not reached within the budget


def _model_boards(rows: pd.DataFrame, dataset: str) -> tuple[Any, ...]:
    """The models board, the samples table, its values, the evaluation sampler, the curves,
    the target, the gallery data and the designated sampler of one dataset's ``run`` rows."""
    rows = rows.copy()
    rows["training_sampler"] = np.where(_uses_sampler(rows), rows["sampler"], "–")
    # A protocol setting every model of the board ran with is said once, in a note, not in
    # every label; a setting that differs between models keeps them labelled (and ranked) apart.
    shared = shared_protocol(rows.loc[rows["status"] != "skipped", "hyperparams"])
    rows["method"] = [
        board_label(m, h, shared) for m, h in zip(rows["method"], rows["hyperparams"], strict=True)
    ]
    directions, costs, references, samples = _declared(rows)
    quality = [v for v in sorted(directions) if v not in costs | references]
    model_values = _reported(rows, [v for v in quality if v not in samples])
    sample_quality = _reported(rows, [v for v in quality if v in samples])
    sample_refs = _reported(
        rows, sorted(v for v in references if v in samples and not v.startswith("train_"))
    )
    model_refs = _reported(rows, sorted(v for v in references if v not in samples))
    # Training costs reported by a sample metric (the cost metric) belong to the model.
    sample_costs = _reported(rows, sorted(v for v in costs if v in samples and not v.startswith("train_")))
    ran = rows[rows["status"] != "skipped"]
    on_samples = not model_values  # images: rank on sample values from one sampler
    designated = evaluation_sampler(ran.loc[ran["training_sampler"] == "–", "sampler"])
    chosen_sampler = designated if on_samples else None
    ranked = sample_quality if on_samples else model_values
    target = None if on_samples else curve_target(dataset)

    by_model: dict[tuple, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for record in ran.to_dict("records"):
        by_model[tuple(record[c] for c in MODEL_KEY)][record["train_key"]].append(record)
    units, shown, extra_rows, curves, unranked_lines = [], [], [], [], []
    unreliable: dict[tuple, set[str]] = {}
    gallery: dict[tuple, str] = {}
    for model in sorted(by_model):
        identity = dict(zip(MODEL_KEY, model, strict=True))
        own = model[2] != "–"  # trains with its sampler: judged by its own samples
        statuses, reasons, model_units = [], [], []
        # Every seed's configuration, whatever its status: an unranked model's tuned
        # choice is part of the verdict too (why did the tuned cd degenerate?).
        configurations: set[str] = set()
        firsts = []  # each training's first row: what its run reports
        for train_key in sorted(by_model[model]):
            training = by_model[model][train_key]
            configurations.add(configuration_text(training[0].get("hyperparams")))
            firsts.append(training[0])
            notes: dict[str, Any] = {}
            for r in training:
                notes.update(r["notes"])
            source = (
                [r for r in training if r["sampler"] == chosen_sampler]
                if on_samples and not own
                else training
            )
            finished = [r for r in source if r["status"] in _FINISHED]
            control = (training[0].get("hyperparams") or {}).get("control")
            if control and finished:  # started at the answer: shown, never ranked
                status = "control"
                reasons.append(", ".join(f"{k}={v}" for k, v in sorted(control.items())))
            elif "degenerate:nll" in notes or (own and "degenerate:collapse" in notes):
                status = "degenerate"
                reasons.append(notes.get("degenerate:nll") or notes.get("degenerate:collapse"))
            elif finished:
                status = "ok"
            elif source:
                status = source[0]["status"]
            else:
                status = f"no {chosen_sampler} run"
            statuses.append(status)
            if not finished or status not in ("ok", "degenerate", "control"):
                continue
            first = finished[0]
            values = {v: first.get(f"metric.{v}", math.nan) for v in [*ranked, *model_refs]}
            if status in ("degenerate", "control"):  # shown with its values, never ranked
                unranked_lines.append({**identity, "unit": train_key, **values})
                continue
            unit = {**identity, "unit": train_key, "seed": first["seed"], **values}
            for column, name in COMPUTE_COLUMNS.items():
                unit[column] = first["compute"].get(name, math.nan)
            unit["train_seconds"] = first["compute"].get("wall_seconds", first.get("train_seconds", math.nan))
            unit["flops_to_target"] = _flops_to_target(first["curve"], target)
            unreliable.setdefault(model, set()).update(_unreliable(first["notes"]) & set(ranked))
            model_units.append(unit)
            curves += [
                {**identity, "unit": train_key, "point": i, **point} for i, point in enumerate(first["curve"])
            ]
        why = ""
        if "control" in statuses:
            why = f"a control experiment ({reasons[0]}), not a trained model"
            model_units = []
        elif "degenerate" in statuses:
            why = f"degenerate ({statuses.count('degenerate')}/{len(statuses)} seeds): {reasons[0]}"
            model_units = []  # one degenerate seed takes the model off the ranking
        elif not model_units:
            why = f"no finished run ({', '.join(sorted(set(statuses)))})"
        units += model_units
        first_training = by_model[model][min(by_model[model])]
        pictured = [
            r
            for r in first_training
            if r["status"] in _FINISHED
            and (own or r["sampler"] == designated)
            and isinstance(r.get("artifacts"), dict)
            and r["artifacts"].get("density_figure")
        ]
        if pictured and (model_units or why.startswith("degenerate")):
            gallery[model] = pictured[0]["artifacts"]["density_figure"]
        shown.append(
            {
                **identity,
                "seeds": len(statuses) if why.startswith(("degenerate", "a control")) else len(model_units),
                "runs": _runs_text(statuses),
                "why": why,
            }
        )
        reached = [u["flops_to_target"] for u in model_units]
        extra_rows.append(
            {
                **identity,
                "configuration": "; ".join(sorted(configurations)),
                "reported_model": reported_model_text(firsts),
                "target_reached": f"{sum(math.isfinite(r) for r in reached)}/{len(reached)}"
                if target and reached
                else "",
            }
        )
    units_frame = pd.DataFrame(units)
    compute_costs = [
        c
        for c in [*COMPUTE_COLUMNS, "train_seconds"]
        if len(units_frame) and c in units_frame and units_frame[c].notna().any()
    ]
    if target is not None and len(units_frame):
        # A seed that never reached the target has no "compute to reach" it: the mean
        # is over seeds that did, and target_reached says how many.
        units_frame["flops_to_target"] = units_frame["flops_to_target"].replace(math.inf, math.nan)
        compute_costs.append("flops_to_target")
    unranked_units = pd.DataFrame(unranked_lines)
    notes = []
    if shared:
        settings = ", ".join(f"`{k}={v}`" for k, v in shared.items())
        notes.append(
            f"Every model on this board ran with {settings} (docs/protocol.md: the learning-rate "
            f"schedule, the checkpoint reported, the weight average), so no label repeats them; "
            f"a setting the models differ in is part of their labels."
        )
    if on_samples and chosen_sampler:
        notes.append(
            f"No model value (one computed without samples) exists on this dataset, so models are "
            f"ranked on {', '.join(ranked) or 'nothing'} of samples from one evaluation sampler, "
            f"`{chosen_sampler}`, the same for every model (the first of "
            f"{', '.join(EVALUATION_SAMPLERS)} that ran); methods that train with a sampler are "
            f"judged by their own."
        )
    board = _finish_board(
        "models",
        dataset,
        "Models",
        MODEL_KEY,
        pd.concat([units_frame, unranked_units], ignore_index=True)
        if len(unranked_units)
        else units_frame,
        pd.DataFrame(shown, columns=[*MODEL_KEY, "seeds", "runs", "why"]),
        ranked,
        directions,
        model_refs,
        compute_costs,
        unreliable,
        pd.DataFrame(extra_rows, columns=[*MODEL_KEY, "configuration", "reported_model", "target_reached"]),
        notes,
        PRIMARY_VALUES,
    )
    samples_table = _samples_table(ran, sample_quality, sample_refs, sample_costs)
    curve_frame = pd.DataFrame(curves)
    roles = {
        **dict.fromkeys(sample_quality, "quality"),
        **dict.fromkeys(sample_refs, "reference"),
        **dict.fromkeys(sample_costs, "cost"),
    }
    return board, samples_table, roles, chosen_sampler, curve_frame, target, gallery, designated


def _samples_table(
    ran: pd.DataFrame, quality: list[str], references: list[str], costs: list[str]
) -> pd.DataFrame:
    """Sample values of every model × evaluation sampler, mean ± SE over seeds (not ranked)."""
    values = [*quality, *references, *costs]
    if not quality:
        return pd.DataFrame(columns=[*SAMPLE_KEY, "runs"])
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for record in ran.to_dict("records"):
        groups[tuple(record[c] for c in SAMPLE_KEY)].append(record)
    lines, shown = [], []
    for key in sorted(groups):
        identity = dict(zip(SAMPLE_KEY, key, strict=True))
        shown.append(
            {
                **identity,
                "runs": _runs_text(r["status"] for r in groups[key]),
                "collapsed": sum("degenerate:collapse" in r["notes"] for r in groups[key]),
            }
        )
        lines += [
            {**identity, **{v: r.get(f"metric.{v}", math.nan) for v in values}}
            for r in groups[key]
            if r["status"] in _FINISHED
        ]
    table = pd.DataFrame(shown)
    if lines:
        table = table.merge(
            _aggregate_values(pd.DataFrame(lines), SAMPLE_KEY, values), on=SAMPLE_KEY, how="left"
        )
    return table


# --------------------------------------------------------------------------- samplers


def _sampler_boards(rows: pd.DataFrame, dataset: str) -> list[Board]:
    """One board per (target, initialisation) of the dataset's ``sampler`` rows."""
    if rows.empty:
        return []
    rows = rows.copy()
    board_info = rows["hyperparams"].map(lambda h: h.get("sampler_board") or {})
    rows["init"] = board_info.map(lambda b: b.get("init") or "–")
    rows["grad_budget"] = board_info.map(lambda b: b.get("grad_budget"))
    if rows["grad_budget"].nunique() > 1:  # samplers are only compared at equal budgets
        rows["init"] = [f"{i} · {int(b):,} gradient evaluations" if not _missing(b) else i
                        for i, b in zip(rows["init"], rows["grad_budget"], strict=True)]
    rows["target"] = [
        "true density"
        if m == "true_density"
        else f"reference energy ({(b.get('reference') or {}).get('method', m)}, {a})"
        for m, a, b in zip(rows["method"], rows["architecture"], board_info, strict=True)
    ]
    boards = []
    for (target, init), group in rows.groupby(["target", "init"], sort=True):
        directions = dict(SAMPLER_DIRECTIONS)
        declared, costs, references, _ = _declared(group)
        directions.update(declared)
        references = set(references) | set(SAMPLER_REFERENCE)
        costs = set(costs) | set(SAMPLER_COST)
        quality = _reported(group, [v for v in sorted(directions) if v not in costs | references])
        refs = _reported(group, sorted(references))
        cost_values = _reported(group, sorted(costs))
        units, shown = [], []
        unreliable: dict[tuple, set[str]] = {}
        for sampler, runs in group.groupby("sampler", sort=True):
            key = (target, init, sampler)
            finished = runs[runs["status"] == "ok"]
            for _, row in finished.iterrows():
                units.append(
                    {
                        **dict(zip(SAMPLER_KEY, key, strict=True)),
                        "unit": row["run_id"],
                        **{v: row.get(f"metric.{v}", math.nan) for v in [*quality, *refs, *cost_values]},
                    }
                )
                unreliable.setdefault(key, set()).update(_unreliable(row["notes"]) & set(quality))
            why = "" if len(finished) else f"no finished run ({', '.join(sorted(set(runs['status'])))})"
            shown.append(
                {
                    **dict(zip(SAMPLER_KEY, key, strict=True)),
                    "seeds": len(finished),
                    "runs": _runs_text(runs["status"]),
                    "why": why,
                }
            )
        budgets = sorted({int(b) for b in group["grad_budget"] if not _missing(b)})
        start = "the data" if init.startswith("data") else "noise" if init.startswith("noise") else init
        notes = [
            f"Every chain gets the same budget of gradient evaluations "
            f"({', '.join(f'{b:,}' for b in budgets) or 'not recorded'}), started from {start}."
        ]
        boards.append(
            _finish_board(
                "samplers",
                dataset,
                f"Samplers on the {target}, chains from {init}",
                SAMPLER_KEY,
                pd.DataFrame(units),
                pd.DataFrame(shown, columns=[*SAMPLER_KEY, "seeds", "runs", "why"]),
                quality,
                directions,
                refs,
                cost_values,
                unreliable,
                None,
                notes,
                PRIMARY_VALUES[4:],
            )
        )
    return boards


# --------------------------------------------------------------------------- per dataset


def aggregate(frame: pd.DataFrame, not_applicable: pd.DataFrame | None = None) -> list[DatasetBoards]:
    """One :class:`DatasetBoards` per dataset in ``frame`` (as from ``read_results``).

    Tuning trials are never ranked; rows with ``role = "sampler"`` feed the samplers boards,
    the rest (``run``) the models board and the samples table.
    """
    if frame.empty:
        return []
    frame = _normalised(frame)
    na = (
        not_applicable
        if not_applicable is not None
        else pd.DataFrame(columns=["dataset", "reason", "combinations"])
    )
    out = []
    datasets = sorted(set(frame["dataset"]))
    for dataset in datasets:
        rows = frame[frame["dataset"] == dataset]
        runs = rows[rows["role"] == "run"]
        models, samples, sample_values, chosen, curves, target, gallery, designated = _model_boards(
            runs, dataset
        )
        samplers = _sampler_boards(rows[rows["role"] == "sampler"], dataset)
        not_ok = rows[(rows["role"] != "trial") & ~rows["status"].isin(_FINISHED)]
        not_ok = not_ok.reindex(columns=[*COMBO, "seed", "status", "reason"])
        counts = na[na["dataset"] == dataset][["reason", "combinations"]].reset_index(drop=True)
        out.append(
            DatasetBoards(
                dataset,
                models,
                samples,
                sample_values,
                samplers,
                not_ok,
                counts,
                target,
                curves,
                chosen,
                len(rows),
                gallery,
                designated,
            )
        )
    return out


# --------------------------------------------------------------------------- summary


def summarize(boards: list[DatasetBoards], kind: str = "models") -> pd.DataFrame:
    """Average rank across datasets, over sets of datasets that rows share.

    A row (a model, or a sampler on a (target kind, initialisation)) is *complete* when it
    is ranked on every dataset where it has a ranked or unranked line (a degenerate or failed
    model on one dataset leaves the summary); its *coverage* is the set of datasets it was
    ranked on. Average ranks are only comparable over the same datasets and the same
    competitors, so each distinct coverage of two or more datasets is a *scope*: every
    complete row that covers all of the scope's datasets is re-ranked among those rows on each
    of them (by the same rules, :func:`~ebmbench.leaderboard.ranking.rank_rows`, with shared
    ranks), and its ranks are averaged. A row appears in every scope it covers.

    Returns:
        One line per (scope, row): ``scope`` (0, 1, ...; widest first), ``datasets``,
        ``scope_datasets`` (comma separated), the row's key and ``average_rank``, best first.
    """
    key = MODEL_KEY if kind == "models" else ["target_kind", "init", "sampler"]
    columns = ["scope", "datasets", "scope_datasets", *key, "average_rank"]
    tables: dict[str, list[tuple[Board, pd.DataFrame, pd.DataFrame]]] = {}
    for b in boards:
        for board in [b.models] if kind == "models" else b.samplers:
            table, unranked = board.table.copy(), board.unranked.copy()
            if kind != "models":
                for t in (table, unranked):
                    t["target_kind"] = t["target"].map(lambda s: s.split(" (")[0])
            tables.setdefault(b.dataset, []).append((board, table, unranked))
    ranked_lines, attempted_lines = [], []
    for dataset, entries in tables.items():
        for _, table, unranked in entries:
            ranked_lines += [(tuple(r), dataset) for r in table[key].itertuples(index=False, name=None)]
            attempted_lines += [(tuple(r), dataset) for r in unranked[key].itertuples(index=False, name=None)]
    coverage: dict[tuple, set[str]] = {}
    for row, dataset in ranked_lines:
        coverage.setdefault(row, set()).add(dataset)
    failed_somewhere = {row for row, _ in attempted_lines}
    complete = {row: frozenset(d) for row, d in coverage.items() if row not in failed_somewhere}
    scopes = sorted({c for c in complete.values() if len(c) >= 2}, key=lambda c: (-len(c), sorted(c)))
    parts = []
    for scope in scopes:
        members = {row for row, covered in complete.items() if scope <= covered}
        if len(members) < 2:
            continue
        per_dataset = []
        for dataset in sorted(scope):
            for board, table, _ in tables[dataset]:
                keep = [tuple(r) in members for r in table[key].itertuples(index=False, name=None)]
                if not any(keep):
                    continue
                units = board.units.copy()
                if kind != "models":
                    units["target_kind"] = units["target"].map(lambda s: s.split(" (")[0])
                members_here = {tuple(r) for r in table.loc[keep, key].itertuples(index=False, name=None)}
                units = units[
                    [tuple(r) in members_here for r in units[key].itertuples(index=False, name=None)]
                ]
                ranks = rank_rows(units, key, board.ranked, board.directions)
                per_dataset.append(ranks[[*key, "rank"]])
        if not per_dataset:
            continue
        averaged = pd.concat(per_dataset).groupby(key)["rank"].mean().rename("average_rank")
        part = averaged.reset_index().sort_values(["average_rank", *key], kind="stable")
        part.insert(0, "scope_datasets", ", ".join(sorted(scope)))
        part.insert(0, "datasets", len(scope))
        part.insert(0, "scope", len(parts))
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]
