"""The abstract contracts every plugin implements.

An energy-based model is p_θ(x) = exp(f_θ(x)) / Z(θ). Throughout ebmbench, ``f`` is the
*log of the unnormalised density* (higher means more likely), as in the lecture notes, and
the score is ∇ₓf. An :class:`Architecture` builds the module computing f_θ; a
:class:`Method` trains it; a :class:`Sampler` draws from it; a :class:`Dataset` supplies
data (and, for toy densities, the exact truth); a :class:`Metric` scores a trained run; an
:class:`Executor` runs many runs.

Every plugin is a class with class-level metadata (``name``, ``description``, ``params``)
and a cheap constructor taking the budget and hyper-parameter values. Constructors must not
load data, download or allocate large tensors: the grid builds one instance of every plugin
to check compatibility.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from .params import Param, check_budget, resolve_params
from .search_space import log_uniform

__all__ = [
    "Plugin",
    "Combination",
    "Architecture",
    "Dataset",
    "ToyDensity",
    "ImageDataset",
    "Sampler",
    "SampleResult",
    "Method",
    "TrainContext",
    "Metric",
    "EvalContext",
    "Executor",
    "EnergyFn",
    "PLUGIN_KINDS",
    "uniform_in_box",
    "UNRELIABLE_PREFIX",
    "unreliable_values",
]

#: A callable mapping a batch ``x`` of shape (B, *shape) to f(x) of shape (B,).
EnergyFn = Callable[[Tensor], Tensor]

#: An axis-aligned box, one ``(low, high)`` pair per coordinate.
Box = Sequence[tuple[float, float]]


def uniform_in_box(box: Box, n: int, generator: torch.Generator) -> Tensor:
    """``n`` points uniform on ``box`` (one ``(low, high)`` per coordinate), shape
    (n, len(box)), float32, drawn from ``generator`` alone.

    Where samplers "from noise" start on a toy density (:attr:`ToyDensity.init_box`).

    >>> x = uniform_in_box(((-1.0, 1.0), (2.0, 4.0)), 1000, torch.Generator().manual_seed(0))
    >>> x.shape, bool((x[:, 1] >= 2).all() and (x[:, 1] <= 4).all())
    (torch.Size([1000, 2]), True)
    """
    lo = torch.tensor([float(b[0]) for b in box])
    hi = torch.tensor([float(b[1]) for b in box])
    return lo + (hi - lo) * torch.rand((n, len(lo)), generator=generator)

T = TypeVar("T")
R = TypeVar("R")


class Plugin:
    """Common base: metadata, hyper-parameters and compatibility.

    Class attributes every plugin sets:
        name: Unique within its kind; lower case, words joined by ``_`` or ``-``.
        description: One line, shown by ``ebmbench list``.
        params: Hyper-parameters with a default per budget (see :class:`~ebmbench.Param`).

    Args:
        budget: ``smoke``, ``quick`` or ``full``; picks the defaults of ``params``.
        **params: Values overriding the defaults; strings are coerced to the declared type.
    """

    kind: ClassVar[str] = "plugin"
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}

    def __init__(self, *, budget: str = "quick", **params: Any) -> None:
        self.budget = check_budget(budget)
        self.hparams: dict[str, Any] = resolve_params(
            f"{self.kind} {self.name!r}", self.params, budget, params
        )

    def incompatibility(self, combo: Combination) -> str | None:
        """Why this plugin cannot run in ``combo``, or ``None`` when it can."""
        return None

    def fetch(self, download: bool = True) -> str | None:
        """Make the files this plugin needs (data, weights) available; ``ebmbench data``.

        Returns ``None`` when the plugin needs no files (the default), else one line saying
        what is there and where. When the files are missing and cannot be had (offline, or
        ``download`` false), raises :class:`~ebmbench.UserError` naming exactly which files
        to put where. Only ``ebmbench data`` calls it: runs never download.
        """
        return None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
        return f"{type(self).__name__}({args})"


@dataclass(frozen=True)
class Combination:
    """One (method, sampler, architecture, dataset) cell of the grid, as instances."""

    method: Method
    sampler: Sampler
    architecture: Architecture
    dataset: Dataset


# --------------------------------------------------------------------------- datasets


class Dataset(Plugin, ABC):
    """A source of training and test data.

    ``data_kind`` is ``"vector"`` (shape ``(dim,)``) or ``"image"`` (shape ``(C, H, W)``).
    Training and test sets are fixed per seed: every method sees the same data.
    """

    kind: ClassVar[str] = "dataset"
    data_kind: ClassVar[str] = "vector"
    #: Budget → method hyper-parameters this dataset needs, e.g. fewer steps for images at
    #: ``quick``. Applied to every method that declares the parameter; ``--set`` still wins.
    method_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    #: Budget → evaluation samples drawn per sampler, where the harness default
    #: (``ebmbench.runner.EVAL_SAMPLES``) does not suit the dataset.
    eval_samples: ClassVar[dict[str, int]] = {}
    #: Budget → training FLOPs, where the budget's value for the data kind
    #: (``ebmbench.budgets.TRAIN_FLOPS``) does not suit the dataset.
    train_flops: ClassVar[dict[str, float]] = {}
    #: The value ``--tune`` minimises on the validation split: the dataset's primary model
    #: metric (``fisher_divergence`` on toy densities, ``kid`` on images).
    tuning_objective: ClassVar[str] = ""

    @property
    @abstractmethod
    def shape(self) -> tuple[int, ...]:
        """The shape of one example."""

    @abstractmethod
    def train_data(self, generator: torch.Generator) -> Tensor:
        """The training set, shape (N, *shape), float32 on the CPU."""

    @abstractmethod
    def test_data(self, generator: torch.Generator) -> Tensor:
        """A held-out set drawn independently of the training set."""

    def init_noise(self, n: int, generator: torch.Generator) -> Tensor:
        """Starting points for samplers "from noise": uniform on [-1, 1] by default."""
        return torch.rand((n, *self.shape), generator=generator) * 2 - 1


class ToyDensity(Dataset):
    """A density with exact, normalised ``log_prob`` and exact ``score``.

    Subclasses implement :meth:`sample` and :meth:`log_prob`; :meth:`score` defaults to
    autograd of ``log_prob``. Two-dimensional densities set :attr:`bounds`, a box holding
    all but a negligible mass, used for quadrature of the learned density.

    Samplers "from noise" (evaluation chains, contrastive divergence's negatives) start
    at :meth:`init_noise`: uniform on :attr:`init_box` when it is set, else uniform on
    :attr:`bounds` in 2-D, else N(0, I). Set :attr:`init_box` (a class attribute, or in
    ``__init__`` when it depends on the parameters) when the bounds are much wider than
    the region holding the mass, as for heavy tails or a funnel.
    """

    data_kind: ClassVar[str] = "vector"
    params: ClassVar[dict[str, Param]] = {
        "n_train": Param(10_000, "training-set size", smoke=1_000, low=1),
        "n_test": Param(5_000, "held-out set size", smoke=1_000, low=1),
    }

    #: Dimension of x.
    dim: int = 2
    #: ((x_lo, x_hi), (y_lo, y_hi)) for 2-D densities, else None.
    bounds: tuple[tuple[float, float], ...] | None = None
    #: The box samplers start on, one (low, high) per coordinate; None: :attr:`bounds`.
    init_box: tuple[tuple[float, float], ...] | None = None
    #: True when the density is exactly Gaussian (closed-form checks use these).
    gaussian: ClassVar[bool] = False
    tuning_objective: ClassVar[str] = "fisher_divergence"

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.dim,)

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """Draw ``n`` exact samples, shape (n, dim), reproducibly from ``generator``."""

    @abstractmethod
    def log_prob(self, x: Tensor) -> Tensor:
        """Exact normalised log-density log p(x), shape (n,)."""

    def score(self, x: Tensor) -> Tensor:
        """Exact score ∇ₓ log p(x), shape (n, dim)."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.log_prob(x).sum(), x)
        return grad

    def train_data(self, generator: torch.Generator) -> Tensor:
        return self.sample(self.hparams["n_train"], generator)

    def test_data(self, generator: torch.Generator) -> Tensor:
        return self.sample(self.hparams["n_test"], generator)

    def init_noise(self, n: int, generator: torch.Generator) -> Tensor:
        """Uniform on :attr:`init_box`, else on :attr:`bounds`; with neither, N(0, I)."""
        box = self.init_box if self.init_box is not None else self.bounds
        if box is not None:
            return uniform_in_box(box, n, generator)
        return torch.randn((n, self.dim), generator=generator)


class ImageDataset(Dataset):
    """Images scaled to [-1, 1], shape (C, H, W).

    Subclasses implement :meth:`load` returning (train, test) tensors; it may raise
    :class:`~ebmbench.errors.UserError` when data are missing offline, which the harness
    records as a skip with that reason.
    """

    data_kind: ClassVar[str] = "image"
    image_shape: tuple[int, int, int] = (1, 8, 8)
    tuning_objective: ClassVar[str] = "kid"

    @property
    def shape(self) -> tuple[int, ...]:
        return self.image_shape

    @abstractmethod
    def load(self) -> tuple[Tensor, Tensor]:
        """Return (train, test), float32 in [-1, 1]."""

    def train_data(self, generator: torch.Generator) -> Tensor:
        return self.load()[0]

    def test_data(self, generator: torch.Generator) -> Tensor:
        return self.load()[1]


# ----------------------------------------------------------------------- architectures


class Architecture(Plugin, ABC):
    """Builds the energy network f_θ: (B, *shape) → (B,), the unnormalised log-density.

    Class attributes:
        data_kinds: The dataset kinds it accepts (``"vector"``, ``"image"``).
        features: Properties methods may require, e.g. ``"nonzero_hessian"`` (smooth
            activations: exact score matching degenerates with ReLU, ERRATA 4).
        variant_params: As :attr:`Method.variant_params`: parameters that make a run a
            different experiment when they leave their default; the leaderboard labels
            such a run's model with them.
        control_params: Parameters that make a run a control experiment, not a trained
            model, when they leave their default (the quadratic energy's
            ``start="truth"``, which starts training at the answer): such a run is
            recorded in ``hyperparams["control"]``, and leaderboards show it, labelled,
            but never rank it.
    """

    kind: ClassVar[str] = "architecture"
    data_kinds: ClassVar[frozenset[str]] = frozenset({"vector"})
    features: ClassVar[frozenset[str]] = frozenset()
    variant_params: ClassVar[tuple[str, ...]] = ()
    control_params: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def build(self, shape: tuple[int, ...]) -> nn.Module:
        """Return a fresh module mapping (B, *shape) to (B,)."""

    def initialise(self, energy: nn.Module, dataset: Any) -> None:
        """Set the freshly built ``energy``'s starting point from ``dataset`` (default:
        leave it as :meth:`build` made it).

        The harness calls it once per training, after :meth:`build` and before the
        method's setup; a checkpoint loaded afterwards replaces what it set. It may read
        the dataset's declared properties (a toy's exact parameters), never its splits:
        tuning must not see the test split.
        """

    def incompatibility(self, combo: Combination) -> str | None:
        if combo.dataset.data_kind not in self.data_kinds:
            kinds = ", ".join(sorted(self.data_kinds))
            return f"architecture {self.name} takes {kinds} data, not {combo.dataset.data_kind}"
        return None


# ---------------------------------------------------------------------------- samplers


@dataclass
class SampleResult:
    """What a sampler returns: the final points and its diagnostics.

    ``stats`` holds at least ``energy_evals`` and ``grad_evals`` (per chain), and
    ``acceptance_rate`` for samplers with an accept step. ``notes`` are short texts the
    harness keeps in the run's ``notes`` (e.g. that a fast step implementation fell back to
    eager execution, and why).
    """

    x: Tensor
    stats: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


class Sampler(Plugin, ABC):
    """An MCMC kernel run for a number of steps, vectorised over chains.

    ``params`` should include ``steps`` (the default chain length at each budget).
    Samplers must not accumulate gradients into the energy's parameters.
    """

    kind: ClassVar[str] = "sampler"

    @abstractmethod
    def sample(
        self,
        energy: EnergyFn,
        x0: Tensor,
        n_steps: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        """Run every chain in ``x0`` for ``n_steps`` (default: ``hparams["steps"]``)."""

    def evaluations_per_step(self) -> int:
        """Evaluations one step costs each chain: of ∇ₓf for a gradient kernel, of f for a
        gradient-free one. 1 unless a kernel says otherwise (HMC: its L leapfrog steps).

        Methods that run chains inside training (``cd``, ``pcd``) spend K evaluations per
        chain and update as ⌈K / this⌉ steps, so that the same K buys every kernel the same
        work.
        """
        return 1


# ----------------------------------------------------------------------------- methods


@dataclass
class TrainContext:
    """What a method gets before training.

    Attributes:
        energy: The energy module f_θ, already on ``device``.
        sampler: The sampler of this run (methods with ``uses_sampler`` train with it).
        dataset: The dataset plugin.
        train_data: The whole training set, on ``device``.
        device: Where to compute.
        generator: Seeded generator on ``device`` for the method's own noise.
    """

    energy: nn.Module
    sampler: Sampler | None
    dataset: Dataset
    train_data: Tensor
    device: torch.device
    generator: torch.Generator


class Method(Plugin, ABC):
    """A training method. The harness owns the loop and calls :meth:`train_step`.

    Subclasses extend :attr:`params` (``params = Method.params | {...}``) so that
    ``steps``, ``batch_size`` and ``lr`` are always present.

    Lifecycle, as the harness (and ``ebmbench.train``) drives it:

    1. ``Method(budget=..., **params)``: cheap; sets :attr:`budget` and :attr:`hparams`.
       The grid builds one instance per plugin just to check compatibility.
    2. :meth:`setup` with a :class:`TrainContext`, once, before the first step. The default
       sets ``self.ctx`` (the context: ``sampler``, ``dataset``, ``train_data``,
       ``device``, ``generator``), ``self.energy`` (``ctx.energy``, the module f_θ) and
       ``self.optimizer`` (Adam over :meth:`trainable_parameters` at ``hparams["lr"]``).
       Create your own parameters (:meth:`extra_parameters`) *before* calling
       ``super().setup(ctx)`` so that the optimiser includes them.
    3. :meth:`train_step` on a batch of ``batch_size`` training examples, ``steps``
       times, the energy in train mode. The default takes one optimiser step on
       :meth:`loss`; the returned logs must hold a finite ``loss``.
    4. After the last step the harness puts the energy in eval mode, checks it is finite
       on the training data, and saves ``energy.state_dict()`` and :meth:`state_dict`
       (``checkpoints/<train_key>.pt``).
    5. Evaluation reads the trained method through ``EvalContext.method``
       (:meth:`log_partition`, or a method's own extras such as an amortised sampler).
    6. Restoring (re-evaluation, ``ebmbench.load_model``) builds a fresh instance, calls
       :meth:`setup` with the same data, then :meth:`load_state_dict`.

    Attributes (after :meth:`setup`):
        ctx: The :class:`TrainContext`.
        energy: The energy module being trained.
        optimizer: The default Adam optimiser (methods overriding :meth:`train_step` may
            add their own, e.g. for a flow).

    Class attributes:
        uses_sampler: True when training draws samples from the model (e.g. contrastive
            divergence). Methods without it are trained once per (architecture, dataset,
            seed) and every sampler is evaluated on the same trained model.
        required_features: Architecture features the method needs.
        variant_params: Parameters that make a different method, not just a different
            setting, when they leave their declared default (e.g. the adversarial method's
            regulariser ``alpha``): a run with such a value is labelled with it on the
            leaderboard, e.g. ``adversarial (α=0.1)``, and ranked as its own row.
        log_partition_is_bound: :meth:`log_partition` returns a bound on log Z(θ), not an
            estimate of it: its distance to log Z is reported as a bound gap (a reference
            value), never ranked with the estimation errors of methods that estimate log Z.
    """

    ctx: TrainContext
    energy: nn.Module
    optimizer: torch.optim.Optimizer

    kind: ClassVar[str] = "method"
    uses_sampler: ClassVar[bool] = False
    required_features: ClassVar[frozenset[str]] = frozenset()
    variant_params: ClassVar[tuple[str, ...]] = ()
    log_partition_is_bound: ClassVar[bool] = False
    params: ClassVar[dict[str, Param]] = {
        "steps": Param(2000, "most training steps; the compute budget normally stops training first",
                       smoke=30, full=50_000, low=1),
        "batch_size": Param(256, "data examples per step", smoke=128, low=1),
        "lr": Param(1e-3, "Adam learning rate", low=0, search=log_uniform(1e-4, 3e-2)),
    }

    def setup(self, ctx: TrainContext) -> None:
        """Create optimisers and extra parameters; called once before the first step."""
        self.ctx = ctx
        self.energy = ctx.energy
        self.optimizer = torch.optim.Adam(self.trainable_parameters(), lr=self.hparams["lr"])

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        """The parameters the default optimiser updates: the energy's and :meth:`extra`'s."""
        yield from self.energy.parameters()
        yield from self.extra_parameters()

    def extra_parameters(self) -> Iterable[nn.Parameter]:
        """Parameters the method owns beyond the energy (log Z, a flow)."""
        return ()

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Every optimiser the method trains with, for the harness's learning-rate schedule
        (``--lr-schedule``): by default each :class:`torch.optim.Optimizer` among the
        instance's attributes (``self.optimizer``, a flow's ``self.flow_optimizer``).
        Override it if an optimiser lives elsewhere, e.g. in a list."""
        return [v for v in vars(self).values() if isinstance(v, torch.optim.Optimizer)]

    @abstractmethod
    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The scalar loss to minimise on ``batch``, and extra logs."""

    def train_step(self, batch: Tensor) -> dict[str, float]:
        """One optimisation step; returns logs including ``loss``.

        The default minimises :meth:`loss` with the optimiser from :meth:`setup`.
        Adversarial methods override it to take their own alternating steps.
        """
        self.optimizer.zero_grad(set_to_none=True)
        loss, logs = self.loss(batch)
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.detach()), **logs}

    def log_partition(self) -> float | None:
        """The method's own estimate of log Z(θ), or ``None`` if it makes none."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Tensors of the method's own state to checkpoint (not the energy's)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def incompatibility(self, combo: Combination) -> str | None:
        missing = self.required_features - combo.architecture.features
        if missing:
            return (
                f"method {self.name} needs an architecture with {', '.join(sorted(missing))}; "
                f"{combo.architecture.name} has not"
            )
        return None


# ----------------------------------------------------------------------------- metrics


@dataclass
class EvalContext:
    """A trained run, as metrics see it.

    Attributes:
        energy: The trained f_θ, in eval mode, on ``device``.
        method: The trained method (for ``log_partition()``).
        dataset: The dataset plugin.
        sampler: The evaluation sampler.
        samples: The sampler's output (None for metrics run before sampling).
        sample_stats: The sampler's diagnostics.
        train_data: The training set, on the CPU.
        test_data: The held-out set, on the CPU.
        device: Where to compute.
        seed: The run's seed.
        budget: The run's budget.
        costs: ``train_seconds``, ``sample_seconds``, ``peak_memory_mb``, ...
        artifact_dir: A folder for figures; record paths in ``artifacts``.
        artifacts: Name → path (relative to the results folder) of files written.
        unreliable: Value name → why that value should not be trusted (e.g. "AIS ESS 3.1
            of 128 chains < 10%"). The harness records each entry in the row's ``notes`` as
            ``"unreliable:<value name>"``; leaderboards show such a value but do not rank
            it (see :func:`unreliable_values`).
    """

    energy: nn.Module
    method: Method
    dataset: Dataset
    sampler: Sampler | None
    samples: Tensor | None
    sample_stats: dict[str, float]
    train_data: Tensor
    test_data: Tensor
    device: torch.device
    seed: int
    budget: str
    costs: dict[str, float] = field(default_factory=dict)
    artifact_dir: Path | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    unreliable: dict[str, str] = field(default_factory=dict)

    def generator(self, salt: int = 0, device: torch.device | str = "cpu") -> torch.Generator:
        """A generator seeded from the run's seed and ``salt``, independent of others."""
        return torch.Generator(device).manual_seed(self.seed * 1_000_003 + salt)


#: The prefix of the ``notes`` entries that flag a value as unreliable.
UNRELIABLE_PREFIX = "unreliable:"


def unreliable_values(notes: Mapping[str, Any] | None) -> dict[str, str]:
    """Value name → reason, for the values a run's ``notes`` flag as unreliable.

    A metric flags a value through ``ctx.unreliable[name] = reason``; the harness stores it
    as ``notes["unreliable:<name>"]``. Pass a result row's ``notes`` (a dict, as in
    :func:`~ebmbench.load_results`' frame).

    >>> unreliable_values({"unreliable:test_nll": "AIS ESS 3 of 512 chains < 10%",
    ...                    "fid_extractor": "ebmbench-digits-v1"})
    {'test_nll': 'AIS ESS 3 of 512 chains < 10%'}
    """
    if not notes:
        return {}
    return {key[len(UNRELIABLE_PREFIX):]: str(value) for key, value in notes.items()
            if key.startswith(UNRELIABLE_PREFIX)}


class Metric(Plugin, ABC):
    """A function of a trained run returning named numbers.

    Class attributes:
        higher_is_better: Every value name the metric may return → its direction.
            A value ``name`` may be accompanied by ``name + "_se"``, its standard error.
        needs_samples: True when it reads ``ctx.samples``. Metrics without it are
            computed once per trained model and shared by every sampler's row.

    Files (figures) go in ``ctx.artifact_dir`` (created by the harness); record each as
    ``ctx.artifacts[key] = path relative to ctx.artifact_dir``; an entry that is not a file
    written there (e.g. "FID unavailable: no weights") is kept as a note. A metric that
    raises is noted in the row's ``metric_errors`` and never fails the run.

    A value the metric returns but cannot vouch for (an estimate whose diagnostics fail)
    is flagged with ``ctx.unreliable[name] = reason``: it is stored, shown, and not ranked.
    """

    kind: ClassVar[str] = "metric"
    higher_is_better: ClassVar[dict[str, bool]] = {}
    needs_samples: ClassVar[bool] = False
    #: Values that measure cost (seconds, evaluations, memory) rather than quality: the
    #: leaderboard ranks on quality and plots cost against it.
    cost_values: ClassVar[frozenset[str]] = frozenset()
    #: Values shown beside the ranked ones for reference (a floor, a sample count), never
    #: ranked. Like cost values, they are listed in ``higher_is_better`` too.
    reference_values: ClassVar[frozenset[str]] = frozenset()

    def applies_to(self, combo: Combination) -> bool:
        """Whether to compute this metric for ``combo`` (e.g. only on toy densities)."""
        return True

    @abstractmethod
    def compute(self, ctx: EvalContext) -> dict[str, float]:
        """The metric's values for this run."""


# --------------------------------------------------------------------------- executors


class Executor(Plugin, ABC):
    """Runs tasks and streams their results back to the driver, the store's only writer.

    ``fn`` is a picklable top-level function returning an iterable of results; an
    executor yields every result of every task, in any order, as tasks finish.

    A sweep hands ``tasks`` as a sized iterable that claims each task in the store when it
    is taken (``ebmbench.leases.ClaimingTasks``): an executor that takes a task only when it
    can start it lets overlapping sweeps on one store split the work. ``len(tasks)`` is an
    upper bound (a task whose runs another sweep holds is skipped); indexing it claims
    every task at once.
    """

    kind: ClassVar[str] = "executor"

    @abstractmethod
    def map(self, fn: Callable[[T], Iterable[R]], tasks: Sequence[T]) -> Iterator[R]:
        """Run ``fn`` on every task; yield results as they come."""

    def concurrency(self) -> int:
        """How many tasks run at once, for the progress display (which shows the first
        that many unfinished tasks as running). Default: the ``workers`` hyper-parameter
        when the executor declares one (0 meaning one per usable core), else 1."""
        workers = self.hparams.get("workers")
        if workers is None:
            return 1
        if int(workers) <= 0:
            from .device import usable_cpu_cores

            return usable_cpu_cores()
        return int(workers)


PLUGIN_KINDS: dict[str, type[Plugin]] = {
    "method": Method,
    "sampler": Sampler,
    "architecture": Architecture,
    "dataset": Dataset,
    "metric": Metric,
    "executor": Executor,
}


def is_finite(value: float | Tensor) -> bool:
    """True when ``value`` (a number or tensor) has no NaN or infinity."""
    if isinstance(value, Tensor):
        return bool(torch.isfinite(value).all())
    return math.isfinite(value)
