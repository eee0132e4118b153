"""Trained models: train one, sample it, evaluate it, save it and load it back.

:func:`train` trains one (method, architecture, dataset) through the harness's own code
path (:func:`ebmbench.runner.train_model`): the same seeds, data and hyper-parameters,
including a dataset's ``method_defaults``, as ``ebmbench run`` uses, so the model it returns
is bit for bit the one a sweep trains. :func:`load_model` returns the same object for any
run of a results store (every trained model is checkpointed there) or for a file written
by :meth:`TrainedModel.save`. Model files load with ``torch.load(weights_only=True)``.

>>> model = train("dsm", "mlp", "eight_gaussians", budget="smoke", device="cpu")
>>> model.sample(100).shape
torch.Size([100, 2])
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .api import DEFAULT_RESULTS
from .averaging import check_weight_average
from .base import Combination, Dataset, Method, SampleResult, ToyDensity
from .checkpoint import model_payload, read_model_file, spec_from_payload, write_model_file
from .device import derive_seed
from .early_stopping import check_rule
from .errors import UserError
from .grid import RunSpec, Selection, Task, expand, instantiate
from .plugins import get_plugin_manager
from .protocol_settings import DEFAULTS as PROTOCOL_DEFAULTS
from .protocol_settings import from_record as settings_from_record
from .runner import TrainedRun, _base_row, checkpoint_path, evaluate_spec, train_model
from .schedules import check_lr_schedule

__all__ = ["TrainedModel", "train", "load_model"]

class TrainedModel:
    """A trained energy-based model p_θ(x) = exp(f_θ(x)) / Z(θ) with the plugins and data
    it was trained with.

    Made by :func:`train` and :func:`load_model`, never directly.

    Attributes:
        energy: f_θ, an ``nn.Module`` mapping (B, *shape) to (B,), in eval mode on
            :attr:`device`: the log of the unnormalised density (higher = more likely).
        method: The trained :class:`~ebmbench.Method`, with its own state (NCE's learned
            log Z, FCE's flow, PCD's replay buffer).
        dataset: The :class:`~ebmbench.Dataset` plugin (for a toy density: the exact
            ``log_prob``, ``score`` and ``sample`` to compare with).
        spec: The :class:`~ebmbench.RunSpec` it was trained as: the plugin names, their
            resolved hyper-parameters, the seed and the budget.
        train_key: Identifies the trained model (the checkpoint's name in a results store).
        train_data, test_data: The training and held-out sets (CPU), as the sweep drew them.
        device: Where the model computes.
        train_seconds: Wall-clock training time (of the original training when restored).
        logs: The last training step's logs (``loss`` and the method's own values).
    """

    def __init__(self, run: TrainedRun, *, overrides: Mapping[str, Any] | None = None,
                 plugins_dirs: Sequence[str] = ()) -> None:
        self._run = run
        self._overrides = dict(overrides or {})
        self._plugins_dirs = list(plugins_dirs)
        run.energy.eval()

    # ------------------------------------------------------------------ what it holds

    @property
    def energy(self) -> nn.Module:
        return self._run.energy

    @property
    def method(self) -> Method:
        return self._run.method

    @property
    def dataset(self) -> Dataset:
        return self._run.dataset

    @property
    def spec(self) -> RunSpec:
        return self._run.spec

    @property
    def train_key(self) -> str:
        return self._run.spec.train_key

    @property
    def train_data(self) -> Tensor:
        return self._run.train_data

    @property
    def test_data(self) -> Tensor:
        return self._run.test_data

    @property
    def device(self) -> torch.device:
        return self._run.device

    @property
    def train_seconds(self) -> float:
        return self._run.train_seconds

    @property
    def logs(self) -> dict[str, float]:
        return dict(self._run.logs)

    def __repr__(self) -> str:
        s = self.spec
        return (f"TrainedModel(method={s.method!r}, architecture={s.architecture!r}, "
                f"dataset={s.dataset!r}, seed={s.seed}, budget={s.budget!r})")

    # ------------------------------------------------------------------ using it

    def sample(self, n: int, sampler: str | None = None, *, seed: int = 0,
               return_stats: bool = False, **params: Any) -> Tensor | SampleResult:
        """Draw ``n`` samples with the MCMC ``sampler`` started where a sweep starts its
        chains (``dataset.init_noise``).

        Args:
            n: Number of chains, one sample each.
            sampler: A sampler plugin name; default: the one the model was trained with
                (``train(..., sampler="mala")``).
            seed: Seeds the starting points and the sampler's noise (reproducible).
            return_stats: Return the :class:`~ebmbench.SampleResult` (samples and the
                sampler's diagnostics) instead of the samples alone.
            **params: The sampler's hyper-parameters, e.g. ``steps=500, step_size=0.01``.

        Returns:
            The samples, shape (n, *shape), on the CPU.
        """
        sampler_obj = self._sampler(sampler, params)
        start_seed = derive_seed("model-sample", self.train_key, sampler_obj.name, int(seed))
        x0 = self.dataset.init_noise(int(n), torch.Generator().manual_seed(start_seed))
        gen = torch.Generator(self.device).manual_seed(start_seed)
        result = sampler_obj.sample(self.energy, x0.to(self.device), generator=gen)
        result = SampleResult(result.x.detach().cpu(), dict(result.stats))
        return result if return_stats else result.x

    def evaluate(self, metrics: str | Sequence[str] | None = None, *, sampler: str | None = None,
                 artifact_dir: str | os.PathLike[str] | None = None,
                 **params: Any) -> dict[str, float]:
        """Compute metrics as the sweep does for this model and ``sampler``.

        The evaluation is the harness's own (:func:`ebmbench.runner.evaluate_spec`): the
        same number of chains, the same seeds, so the values equal those of the sweep's
        row for the same run. A metric that raises, or samples that are not finite, give a
        warning; the values that could be computed are returned.

        Args:
            metrics: Metric plugin names (default: every registered metric that applies).
            sampler: The sampler whose samples the sample metrics read (default: the one
                the model was trained with).
            artifact_dir: Where figure metrics write their files (default: none written).
            **params: The sampler's hyper-parameters.

        Returns:
            Value name → value, e.g. ``{"fisher_divergence": ..., "mmd": ...}``.
        """
        pm = get_plugin_manager()
        if isinstance(metrics, str):
            metrics = [metrics]
        names = pm.registry("metric").names() if metrics is None else list(metrics)
        selection = self._selection()
        metric_objs = {n: instantiate(pm, "metric", n, selection) for n in names}
        spec = self._spec_for(sampler, params)
        task = self._task(spec, {n: m.hparams for n, m in metric_objs.items()})
        row = _base_row(spec, task, str(self.device))
        status, reason = evaluate_spec(
            self._run, spec, metric_objs, row, {},
            artifact_dir=None if artifact_dir is None else Path(artifact_dir),
        )
        if status != "ok":
            warnings.warn(f"{spec.sampler}: {reason}", RuntimeWarning, stacklevel=2)
        for name, error in row["metric_errors"].items():
            warnings.warn(f"metric {name} failed: {error}", RuntimeWarning, stacklevel=2)
        return dict(row["metrics"])

    def log_partition(self, source: str = "auto") -> float:
        """log Z(θ) = log ∫ exp f_θ(x) dx.

        Args:
            source: ``"method"``: the method's own estimate (NCE's and FCE's learned log Z,
                the adversarial method's bound); ``"quadrature"``: a Gauss–Legendre rule over
                a 2-D toy density's ``bounds`` (log Z of the model restricted to that box);
                ``"closed_form"``: the energy's own ``log_partition()`` (the quadratic
                energy's ½ log det 2πΣ); ``"ais"``: annealed importance sampling (Neal 2001)
                from a Gaussian fitted to the training data, by the tuned and replicated
                recipe of :func:`ebmbench.ais_log_partition` (HMC kernels), for vector data;
                ``"auto"``: the method's estimate when it makes one, else quadrature in 2-D,
                else the closed form, else AIS, as the ``log_partition`` metric chooses.
                Quadrature and AIS are that metric's own (its grid, chains, replicates and
                temperatures at the model's budget), so the two always agree.
        """
        choices = ("auto", "method", "quadrature", "closed_form", "ais")
        if source not in choices:
            raise UserError(f"unknown log-Z source {source!r}. Valid sources: {', '.join(choices)}")
        if source in ("auto", "method"):
            estimate = self.method.log_partition()
            if estimate is not None:
                return float(estimate)
            if source == "method":
                raise UserError(f"method {self.spec.method} makes no estimate of log Z: "
                                "use source='quadrature', 'closed_form' or 'ais'")
        # The metric plugin holds the recipes and their per-budget settings: one place for both.
        metric = get_plugin_manager().info("metric", "log_partition").cls(budget=self.spec.budget)
        bounds = getattr(self.dataset, "bounds", None)
        if source == "quadrature" or (source == "auto" and bounds is not None):
            if bounds is None or len(bounds) != 2:
                raise UserError(f"dataset {self.spec.dataset} has no 2-D bounds to integrate "
                                "over: use source='closed_form' or 'ais'")
            return metric.log_z_quadrature(self.energy, bounds, self.device)
        if source in ("auto", "closed_form"):
            closed = getattr(self.energy, "log_partition", None)
            if callable(closed):
                with torch.no_grad():
                    return float(closed())
            if source == "closed_form":
                raise UserError(f"architecture {self.spec.architecture} states no closed-form "
                                "log Z: use source='ais'")
        if len(self.dataset.shape) != 1 or not isinstance(self.dataset, ToyDensity):
            raise UserError(f"AIS estimates log Z of vector data only, not of {self.spec.dataset}")
        gen = torch.Generator(self.device).manual_seed(derive_seed("model-log-z", self.train_key))
        return metric.log_z_ais(self.energy, self.train_data, self.device, gen).log_z

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model to ``path``, a file that :func:`load_model` reads back.

        The file is self-describing: the plugin names, their resolved hyper-parameters,
        the seed and budget, the versions, and the energy's and the method's state dicts,
        all plain types and tensors (it loads with ``torch.load(weights_only=True)``).
        Loading it needs the same plugins installed, not this process.
        """
        from .runner import _versions

        payload = model_payload(
            self.spec, self.energy, self.method.state_dict(), train_seconds=self.train_seconds,
            logs=self._run.logs, versions=_versions(get_plugin_manager(), self.spec, {}),
        )
        return write_model_file(path, payload)

    # ------------------------------------------------------------------ internals

    def _selection(self) -> Selection:
        s = self.spec
        return Selection(methods=[s.method], samplers=[s.sampler], architectures=[s.architecture],
                         datasets=[s.dataset], seeds=(s.seed,), budget=s.budget,
                         overrides=dict(self._overrides))

    def _sampler(self, name: str | None, params: Mapping[str, Any]) -> Any:
        pm = get_plugin_manager()
        name = name or self.spec.sampler
        if name == self.spec.sampler and not params:
            return pm.info("sampler", name).cls(budget=self.spec.budget, **self.spec.params["sampler"])
        selection = dataclasses.replace(
            self._selection(),
            overrides=self._overrides | {f"sampler.{name}.{k}": v for k, v in params.items()},
        )
        sampler = instantiate(pm, "sampler", name, selection)
        architecture = pm.info("architecture", self.spec.architecture).cls(
            budget=self.spec.budget, **self.spec.params["architecture"])
        reason = sampler.incompatibility(Combination(self.method, sampler, architecture, self.dataset))
        if reason:
            raise UserError(f"sampler {name} cannot sample this model: {reason}")
        return sampler

    def _spec_for(self, sampler: str | None, params: Mapping[str, Any]) -> RunSpec:
        obj = self._sampler(sampler, params)
        if obj.name == self.spec.sampler and dict(obj.hparams) == self.spec.params["sampler"]:
            return self.spec
        return dataclasses.replace(self.spec, sampler=obj.name,
                                   params={**self.spec.params, "sampler": dict(obj.hparams)})

    def _task(self, spec: RunSpec, metrics: dict[str, dict[str, Any]]) -> Task:
        return Task(specs=[spec], metrics=metrics, device=str(self.device), timeout=None,
                    results_dir=".", plugins_dirs=self._plugins_dirs, checkpoints=False)


def _dtype(module: nn.Module) -> torch.dtype:
    param = next(iter(module.parameters()), None)
    return param.dtype if param is not None else torch.float32


def _plugins_dirs() -> list[str]:
    return [str(Path(p).resolve()) for p in get_plugin_manager()._plugins_dirs]


def train(
    method: str, architecture: str, dataset: str, *, sampler: str = "mala",
    budget: str = "quick", seed: int = 0, device: str = "auto",
    overrides: Mapping[str, Any] | None = None, timeout: float | None = None,
    lr_schedule: str = PROTOCOL_DEFAULTS["lr_schedule"], checkpoint: str = PROTOCOL_DEFAULTS["checkpoint"],
    weight_average: str = PROTOCOL_DEFAULTS["weight_average"],
    **params: Any,
) -> TrainedModel:
    """Train one model as ``ebmbench run`` would, and return it.

    >>> model = train("nce", "mlp", "eight_gaussians", budget="smoke", device="cpu")
    >>> isinstance(model.log_partition(), float)          # NCE's learned log Z
    True

    Args:
        method, architecture, dataset: Plugin names.
        sampler: The sampler a method with ``uses_sampler`` (contrastive divergence) trains
            with; also the default of :meth:`TrainedModel.sample` and ``evaluate``.
        budget: ``smoke``, ``quick`` or ``full``: the hyper-parameters' defaults.
        seed: The run's seed (data, initialisation, batches), as ``--seeds``.
        device: ``auto``, ``cpu`` or ``cuda``.
        overrides: ``"kind.name.param"`` → value for any plugin, like ``--set``.
        timeout: Seconds the training may take (then ``RunTimedOut`` is raised).
        lr_schedule: ``constant``, ``linear`` or ``cosine``: the learning rate's decay over
            the run, as ``--lr-schedule`` (:func:`ebmbench.lr_factor`).
        checkpoint: ``best`` (the model at the run's best learning-curve point on the
            validation split) or ``last`` (the final model), as ``--checkpoint``
            (:mod:`ebmbench.early_stopping`).
        weight_average: ``best`` (whichever of the run's iterate and the power-function
            EMA of its iterates validates better at each curve point), ``ema`` (always the
            average) or ``none`` (always the iterate), as ``--weight-average``
            (:mod:`ebmbench.averaging`).
        **params: The method's hyper-parameters, e.g. ``sigma=0.05, steps=2000``.

    Returns:
        The trained model.

    Raises:
        UserError: An unknown name or parameter, or a combination that cannot run (the
            reason a sweep would record as ``skipped``).
        ebmbench.errors.RunDiverged: The loss or the trained energy became non-finite.
    """
    check_lr_schedule(lr_schedule)
    check_rule(checkpoint)
    check_weight_average(weight_average)
    pm = get_plugin_manager()
    given = dict(overrides or {}) | {f"method.{method}.{k}": v for k, v in params.items()}
    selection = Selection(methods=[method], samplers=[sampler], architectures=[architecture],
                          datasets=[dataset], metrics=[], seeds=(int(seed),), budget=budget,
                          overrides=given, lr_schedule=lr_schedule, checkpoint=checkpoint,
                          weight_average=weight_average)
    (spec,), _ = expand(selection, pm)
    if spec.skip_reason:
        raise UserError(f"{method} × {architecture} × {dataset} cannot run: {spec.skip_reason}")
    dirs = _plugins_dirs()
    task = Task(specs=[spec], metrics={}, device=device, timeout=timeout, results_dir=".",
                plugins_dirs=dirs, checkpoints=False)
    return TrainedModel(_train_or_raise(task), overrides=given, plugins_dirs=dirs)


def _train_or_raise(task: Task) -> TrainedRun:
    from .runner import _DataUnavailable

    try:
        return train_model(task)
    except _DataUnavailable as exc:
        raise UserError(str(exc)) from None


def load_model(
    source: str | os.PathLike[str] | Mapping[str, Any] | Any,
    results: str | os.PathLike[str] = DEFAULT_RESULTS, *, device: str = "auto",
) -> TrainedModel:
    """The trained model of a run in a results store, or of a file :meth:`TrainedModel.save`
    wrote.

    Args:
        source: A run id (or a unique prefix of one), a row of :func:`ebmbench.load_results`
            or :func:`ebmbench.run` (a pandas Series or a dict), or the path of a model file.
        results: The results store the run is in (its ``checkpoints/`` folder holds the
            models).
        device: ``auto``, ``cpu`` or ``cuda``.

    Raises:
        UserError: No such run or file, or no checkpoint for the run (it did not train,
            or was run with ``--no-checkpoints``).
    """
    pm = get_plugin_manager()
    dirs = _plugins_dirs()
    if isinstance(source, (str, os.PathLike)) and _looks_like_file(source):
        state = read_model_file(source)
        spec = spec_from_payload(state, source)
        task = Task(specs=[spec], metrics={}, device=device, timeout=None,
                    results_dir=str(Path(source).parent), plugins_dirs=dirs, checkpoints=False,
                    restore_from=str(Path(source).resolve()))
        return TrainedModel(_train_or_raise(task), plugins_dirs=dirs)
    row = _find_row(source, results) if isinstance(source, (str, os.PathLike)) else dict(source)
    spec = _spec_from_row(pm, row)
    store_dir = Path(results).parent
    ckpt = checkpoint_path(store_dir, str(row["train_key"]))
    if not ckpt.is_file():
        raise UserError(
            f"run {row['run_id']} ({spec.method}/{spec.sampler}/{spec.architecture}/{spec.dataset}, "
            f"{row.get('status', '?')}) has no checkpoint in {store_dir / 'checkpoints'}: it did "
            "not finish training, or ran with --no-checkpoints. ebmbench.train() with the same "
            "names, seed and budget trains the same model again"
        )
    task = Task(specs=[spec], metrics={}, device=device, timeout=None, results_dir=str(store_dir),
                plugins_dirs=dirs, checkpoints=False, restore_from=str(ckpt.resolve()))
    return TrainedModel(_train_or_raise(task), plugins_dirs=dirs)


def _looks_like_file(source: str | os.PathLike[str]) -> bool:
    path = Path(source)
    return path.suffix in (".pt", ".pth") or path.is_file() or os.sep in str(source)


def _find_row(run_id: str | os.PathLike[str], results: str | os.PathLike[str]) -> dict[str, Any]:
    from .store import ResultStore

    key = str(run_id)
    with ResultStore.open_existing(results) as store:
        rows = [r for r in store.rows() if r["run_id"].startswith(key)]
    if not rows:
        raise UserError(f"no run {key!r} in {str(results)!r}")
    if len({r["run_id"] for r in rows}) > 1:
        shown = ", ".join(sorted(r["run_id"] for r in rows)[:5])
        raise UserError(f"run id prefix {key!r} matches several runs ({shown}): give more of it")
    return rows[0]


def _int_or_none(value: Any) -> int | None:
    """A row's trial number: None for a run (None, or NaN in a data frame's row)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)


def _spec_from_row(pm: Any, row: Mapping[str, Any]) -> RunSpec:
    """The spec a stored row was run as; its train key must match the row's."""
    hyper = row["hyperparams"]
    method_cls = pm.info("method", row["method"]).cls
    spec = RunSpec(
        method=row["method"], sampler=row["sampler"], architecture=row["architecture"],
        dataset=row["dataset"], seed=int(row["seed"]), budget=row["budget"],
        params={k: dict(hyper[k]) for k in ("method", "sampler", "architecture", "dataset")},
        uses_sampler=bool(method_cls.uses_sampler),
        trial=_int_or_none(row.get("trial")),
        replicate=_int_or_none((hyper.get("tuning") or {}).get("replicate")),
        train_flops=hyper.get("train_flops"), **settings_from_record(hyper),
    )
    if spec.train_key != row["train_key"]:
        raise UserError(
            f"run {row['run_id']}'s training cannot be matched to its checkpoint: its "
            f"{row['method']} uses a sampler differently from the installed one, or it ran "
            "with --train-flops before its rows recorded it"
        )
    return spec
