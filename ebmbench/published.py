"""The published export: a runs table, a configurations table and compact curves.

A sweep's published results (``leaderboards/results.csv`` and its siblings) are the input
of the committed leaderboards, so they are kept small and readable on GitHub:

``results.csv``
    One row per run: its identity (``run_id``, ``train_key``, ``role``, ``trial``, method,
    sampler, architecture, dataset, seed, budget), ``status`` and ``reason`` (``@<key>``: a
    long reason many rows share, stored once in the configurations file's
    ``parts["reason"]``), timings, the
    metric values (``metric.<name>``), the compute it spent (``compute.<name>``), the small
    per-run records (``notes``, ``metric_errors``, ``sample_stats``, ``train_logs``, as JSON,
    their numbers to 6 significant digits)
    and ``config``, the hash of its configuration.
``results.configurations.json``
    ``config`` → the run's hyper-parameters, plugin versions and the value declarations of
    its metrics (directions, cost, reference and sample values). Most of a configuration is
    shared by many runs (the metric settings, the versions, a sampler's settings), so each
    part is stored once under ``parts`` and a configuration names its parts by hash. One
    line per configuration and per part.
``results.curves.csv``
    The learning curves, one line per point, keyed by ``train_key`` (every sampler's row of
    a model shares its training, hence its curve) or by ``run_id`` where rows of one
    training disagree.
``results.not_applicable.csv``
    Combinations that can never run, counted by dataset and reason (they are not runs).

:func:`read_published` joins them back into the frame :meth:`ResultStore.to_frame` gives
(less the columns the publisher dropped), so leaderboards render identically from the
store and from the export.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import UserError

__all__ = [
    "write_published",
    "read_published",
    "read_published_not_applicable",
    "is_published",
    "published_files",
    "scrub_paths",
    "scrub_frame",
    "PUBLISHED_FORMAT",
]

#: Version of the published layout (``format`` in the configurations file).
PUBLISHED_FORMAT = 1

_IDENTITY = (
    "run_id",
    "train_key",
    "config",
    "role",
    "trial",
    "method",
    "sampler",
    "architecture",
    "dataset",
    "seed",
    "budget",
    "uses_sampler",
    "status",
    "reason",
    "device",
    "host",
    "finished_at",
    "train_seconds",
    "sample_seconds",
    "peak_memory_mb",
)
#: Small per-run dictionaries kept on the row, as JSON text.
_ROW_JSON = ("notes", "metric_errors", "sample_stats", "train_logs", "artifacts")
#: Parts of a run's configuration (shared by many runs, stored once). ``hyperparams`` and
#: ``versions`` are split further: by plugin kind (``method``, ``sampler``, ...), since a
#: sampler's settings or a metric's version are the same in many configurations.
_CONFIG_FIELDS = ("directions", "cost_values", "reference_values", "sample_values")
_LIST_FIELDS = ("cost_values", "reference_values", "sample_values")
#: Significant digits written: metric values and compute, and learning-curve points.
_DIGITS, _CURVE_DIGITS = 9, 5
#: Significant digits of the floats in the per-run JSON records (``_ROW_JSON``).
_ROW_DIGITS = 6
#: A reason this long, shared by this many rows, is stored once (``parts["reason"]``).
_SHARED_REASON_CHARS, _SHARED_REASON_ROWS = 120, 10


def published_files(runs: str | Path) -> dict[str, Path]:
    """The files of the published export whose runs table is ``runs``."""
    runs = Path(runs)
    stem = runs.with_suffix("")
    return {
        "runs": runs,
        "configurations": Path(f"{stem}.configurations.json"),
        "curves": Path(f"{stem}.curves.csv"),
        "not_applicable": Path(f"{stem}.not_applicable.csv"),
    }


def is_published(path: str | Path) -> bool:
    """Whether ``path`` is the runs table of a published export (its configurations
    file is beside it)."""
    path = Path(path)
    return path.suffix == ".csv" and published_files(path)["configurations"].is_file()


#: An absolute path of two or more components (``/root/.cache/x``, ``/tmp/run/results.sqlite``),
#: not preceded by a word character (so ``exp(f)/Z`` and URLs' paths are left alone).
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.+@-]+/)+([\w.+@-]*)")


def scrub_paths(text: str) -> str:
    """``text`` with every absolute path of this machine replaced by ``…/<its last part>``:
    what a published file says must not depend on where it was made.

    >>> scrub_paths("no usable local copy in /root/.cache/ebmbench/mnist (offline)")
    'no usable local copy in …/mnist (offline)'
    >>> scrub_paths("exp(f)/Z at https://example.org/a/b, --results /work/out/results.sqlite")
    'exp(f)/Z at https://example.org/a/b, --results …/results.sqlite'
    """
    return _ABSOLUTE_PATH.sub(lambda m: f"…/{m.group(1)}" if m.group(1) else "…/", text)


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_paths(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    return value


def scrub_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with :func:`scrub_paths` applied to every text, in nested values too."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].map(_scrubbed)
    return frame


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _rounded(value: Any) -> Any:
    """``value`` with every float to :data:`_ROW_DIGITS` significant digits (recursively)."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{_ROW_DIGITS}g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def _json(value: Any) -> str:
    # The small per-run records (acceptance rates, last losses) are read, not computed on:
    # full float64 digits made them a sixth of the published runs table.
    return json.dumps(_rounded(value) if value is not None else {}, sort_keys=True)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def write_published(
    frame: pd.DataFrame, out: str | Path, not_applicable: pd.DataFrame | None = None
) -> list[Path]:
    """Write ``frame`` (as :func:`~ebmbench.store.read_results` gives) as a published
    export whose runs table is ``out`` (a ``.csv`` path); see the module's docstring.

    Columns the frame lacks (a publisher may drop ``traceback`` or ``artifacts``) are
    simply not written. Returns the files written.
    """
    out = Path(out)
    if out.suffix != ".csv":
        raise UserError(f"a published export is a .csv runs table, got {str(out)!r}")
    files = published_files(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    parts: dict[str, dict[str, Any]] = {}
    configurations: dict[str, dict[str, Any]] = {}

    def part(name: str, value: Any) -> str:
        key = _digest(value)
        parts.setdefault(name, {})[key] = value
        return key

    records = frame.to_dict("records")
    config_of = []
    for row in records:
        config: dict[str, Any] = {}
        hyperparams = row.get("hyperparams")
        if isinstance(hyperparams, dict):
            config["hyperparams"] = {k: part(f"hyperparams.{k}", v) for k, v in sorted(hyperparams.items())}
        versions = row.get("versions")
        if isinstance(versions, dict):
            groups: dict[str, dict[str, str]] = {}
            for k, v in versions.items():  # "method:dsm" → group "method"; "torch" → ""
                groups.setdefault(k.split(":", 1)[0] if ":" in k else "", {})[k] = v
            config["versions"] = {g: part(f"versions.{g}", d) for g, d in sorted(groups.items())}
        for name in _CONFIG_FIELDS:
            value = row.get(name)
            if isinstance(value, dict | list):
                config[name] = part(name, sorted(value) if name in _LIST_FIELDS else value)
        key = _digest(config)
        configurations[key] = config
        config_of.append(key)

    runs = pd.DataFrame({c: frame[c] for c in _IDENTITY if c in frame.columns and c != "config"})
    runs.insert(min(2, len(runs.columns)), "config", config_of)
    if "reason" in runs.columns:
        runs["reason"] = _shared_reasons(runs["reason"], lambda text: part("reason", text))
    for c in _ROW_JSON:
        if c in frame.columns:
            runs[c] = frame[c].map(_json)
    if "compute" in frame.columns:
        keys = sorted({k for d in frame["compute"] if isinstance(d, dict) for k in d})
        for k in keys:
            runs[f"compute.{k}"] = [d.get(k) if isinstance(d, dict) else None for d in frame["compute"]]
    metric_columns = [c for c in frame.columns if c.startswith("metric.")]
    runs = pd.concat([runs, frame[metric_columns]], axis=1)
    runs.to_csv(out, index=False, float_format=f"%.{_DIGITS}g")

    files["configurations"].write_text(
        _configurations_json({"format": PUBLISHED_FORMAT, "configurations": configurations,
                              "parts": parts}),
        encoding="utf-8",
    )
    _curves_frame(frame).to_csv(files["curves"], index=False, float_format=f"%.{_CURVE_DIGITS}g")
    counts = (
        not_applicable
        if not_applicable is not None
        else pd.DataFrame(columns=["dataset", "reason", "combinations"])
    )
    counts.to_csv(files["not_applicable"], index=False)
    return list(files.values())


def _shared_reasons(reasons: pd.Series, store: Any) -> pd.Series:
    """Each long reason that many rows share (an offline dataset's skip, with its advice on
    getting the files, on every combination) stored once, by ``store`` (text → key), and
    written as ``@<key>``; other reasons as they are."""
    counts = reasons.value_counts()
    shared = {text for text, n in counts.items()
              if isinstance(text, str) and n >= _SHARED_REASON_ROWS and len(text) >= _SHARED_REASON_CHARS}
    return reasons.map(lambda text: f"@{store(text)}" if text in shared else text)


def _configurations_json(blob: dict[str, Any]) -> str:
    """``blob`` as JSON with one line per configuration and per part, keys sorted: a diff
    shows which configurations changed, at a third of the size of an indented dump.

    >>> text = _configurations_json({"format": 1, "parts": {"a": {"k": [1, 2]}}, "configurations": {}})
    >>> print(text, end="")
    {
     "configurations": {},
     "format": 1,
     "parts": {
      "a": {
       "k": [1,2]
      }
     }
    }
    >>> json.loads(text)["parts"]["a"]["k"]
    [1, 2]
    """
    def compact(value: Any) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))

    def table(entries: dict[str, Any], indent: str) -> str:
        if not entries:
            return "{}"
        lines = [f"{indent} {json.dumps(k)}: {compact(v)}" for k, v in sorted(entries.items())]
        return "{\n" + ",\n".join(lines) + f"\n{indent}}}"

    parts = blob["parts"]
    part_lines = [f'  {json.dumps(name)}: {table(parts[name], "  ")}' for name in sorted(parts)]
    parts_text = "{\n" + ",\n".join(part_lines) + "\n }" if parts else "{}"
    return (
        "{\n"
        f' "configurations": {table(blob["configurations"], "")},\n'
        f' "format": {compact(blob["format"])},\n'
        f' "parts": {parts_text}\n'
        "}\n"
    )


def _curves_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per learning-curve point, keyed by training (or by run where the rows of a
    training disagree)."""
    lines: list[dict[str, Any]] = []
    if "curve" not in frame.columns:
        return pd.DataFrame(columns=["key", "point"])
    by_training: dict[str, list[tuple[str, list]]] = {}
    for run_id, train_key, curve in zip(
        frame["run_id"], frame.get("train_key", frame["run_id"]), frame["curve"], strict=True
    ):
        if isinstance(curve, list) and curve:
            by_training.setdefault(str(train_key), []).append((str(run_id), curve))
    for train_key, entries in by_training.items():
        first = entries[0][1]
        keyed = [(train_key, first)] if all(c == first for _, c in entries) else entries
        for key, curve in keyed:
            lines += [{"key": key, "point": i, **point} for i, point in enumerate(curve)]
    return pd.DataFrame.from_records(lines) if lines else pd.DataFrame(columns=["key", "point"])


def read_published(runs: str | Path) -> pd.DataFrame:
    """The frame of a published export (see :func:`write_published`)."""
    files = published_files(runs)
    try:
        blob = json.loads(files["configurations"].read_text(encoding="utf-8"))
        frame = pd.read_csv(files["runs"], keep_default_na=True, dtype={"reason": str})
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the published results {str(runs)!r}: {exc}") from None
    if blob.get("format") != PUBLISHED_FORMAT:
        raise UserError(
            f"{files['configurations']} has format {blob.get('format')!r}; this "
            f"ebmbench reads format {PUBLISHED_FORMAT}"
        )
    configurations, parts = blob["configurations"], blob["parts"]

    def resolved(key: str) -> dict[str, Any]:
        config = configurations[key]
        out: dict[str, Any] = {}
        if "hyperparams" in config:
            out["hyperparams"] = {k: parts[f"hyperparams.{k}"][h] for k, h in config["hyperparams"].items()}
        if "versions" in config:
            out["versions"] = {
                k: v for g, h in config["versions"].items() for k, v in parts[f"versions.{g}"][h].items()
            }
        for name in _CONFIG_FIELDS:
            if name in config:
                out[name] = parts[name][config[name]]
        return out

    cache = {key: resolved(key) for key in set(frame["config"])}
    for name in ("hyperparams", "versions", *_CONFIG_FIELDS):
        empty: Any = [] if name in _LIST_FIELDS else {}
        frame[name] = [cache[k].get(name, empty) for k in frame["config"]]
    for c in _ROW_JSON:
        if c in frame.columns:
            frame[c] = frame[c].map(lambda v: json.loads(v) if isinstance(v, str) else {})
    compute_columns = [c for c in frame.columns if c.startswith("compute.")]
    frame["compute"] = [
        {c[len("compute.") :]: v for c, v in zip(compute_columns, values, strict=True) if not _missing(v)}
        for values in frame[compute_columns].itertuples(index=False, name=None)
    ]
    frame = frame.drop(columns=compute_columns)
    curves = _read_curves(files["curves"])
    frame["curve"] = [
        curves.get(r, curves.get(t, [])) for r, t in zip(frame["run_id"], frame["train_key"], strict=True)
    ]
    shared = parts.get("reason", {})
    frame["reason"] = [
        shared.get(text[1:], text) if isinstance(text, str) and text.startswith("@") else text
        for text in frame["reason"].astype(object).where(frame["reason"].notna(), "")
    ]
    return frame


def _read_curves(path: Path) -> dict[str, list[dict[str, Any]]]:
    if not path.is_file() or path.stat().st_size == 0:
        return {}
    lines = pd.read_csv(path)
    if lines.empty:
        return {}
    fields = [c for c in lines.columns if c not in ("key", "point")]
    curves: dict[str, list[dict[str, Any]]] = {}
    for key, group in lines.sort_values(["key", "point"]).groupby("key", sort=False):
        curves[str(key)] = [
            {f: int(v) if f == "step" else v for f, v in zip(fields, values, strict=True) if not _missing(v)}
            for values in group[fields].itertuples(index=False, name=None)
        ]
    return curves


def read_published_not_applicable(runs: str | Path) -> pd.DataFrame:
    """The not-applicable counts of a published export."""
    path = published_files(runs)["not_applicable"]
    if not path.is_file():
        return pd.DataFrame(columns=["dataset", "reason", "combinations"])
    return pd.read_csv(path, dtype={"reason": str})


def replaced_slices(new: pd.DataFrame, by_method: bool = False
                    ) -> tuple[set[tuple[str, ...]], set[str]]:
    """What rows of ``new`` replace in a publication: the (dataset, architecture) pairs of
    its runs, or with ``by_method`` their (dataset, architecture, method) triples, and the
    datasets of its sampler-board rows (tuning trials replace nothing)."""
    role = new["role"].fillna("run") if "role" in new else pd.Series("run", index=new.index)
    runs, board = new[role == "run"], new[role == "sampler"]
    keys = _slice_keys(runs, by_method)
    return set(keys), set(board["dataset"])


def _slice_keys(runs: pd.DataFrame, by_method: bool) -> pd.Series:
    columns = ["dataset", "architecture", "method"] if by_method else ["dataset", "architecture"]
    return pd.Series(list(zip(*(runs[c] for c in columns), strict=True)), index=runs.index,
                     dtype=object)


def merge_published(base: pd.DataFrame, new: pd.DataFrame, by_method: bool = False) -> pd.DataFrame:
    """A publication's runs ``base`` with the rows of ``new`` (a later sweep's) in place of
    every row of the slices they cover (:func:`replaced_slices`): all of a (dataset,
    architecture)'s runs, whatever their method, sampler or seed, and all of a dataset's
    sampler-board rows. Rows of other slices are kept as published, so each slice comes
    from one sweep and its board compares rows made under one protocol.

    With ``by_method`` a slice is one method's runs on a (dataset, architecture): for a
    change that touches one method's code alone, whose other rows would come out of a rerun
    as they are (same protocol; the rows of every other method are kept).

    >>> base = pd.DataFrame({"run_id": ["a", "b", "c"], "role": ["run", "run", "sampler"],
    ...                      "dataset": ["x", "y", "x"], "architecture": ["mlp", "mlp", None],
    ...                      "method": ["dsm", "nce", "true_density"]})
    >>> new = pd.DataFrame({"run_id": ["d"], "role": ["run"], "dataset": ["x"],
    ...                     "architecture": ["mlp"], "method": ["dsm"]})
    >>> list(merge_published(base, new)["run_id"])
    ['b', 'c', 'd']
    >>> base.loc[1, "dataset"] = "x"     # nce on x is another method's slice
    >>> list(merge_published(base, new, by_method=True)["run_id"]), list(merge_published(base, new)["run_id"])
    (['b', 'c', 'd'], ['c', 'd'])
    """
    models, boards = replaced_slices(new, by_method)
    role = base["role"].fillna("run") if "role" in base else pd.Series("run", index=base.index)
    keys = _slice_keys(base, by_method)
    replaced = ((role == "run") & keys.isin(models)) | ((role == "sampler") & base["dataset"].isin(boards))
    kept = base[~replaced]
    return pd.concat([kept, new], ignore_index=True) if len(kept) else new.reset_index(drop=True)
