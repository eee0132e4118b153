"""Contrastive divergence: maximum likelihood with negative samples drawn by MCMC.

The log-likelihood gradient is ∇_θ f_θ(x_data) − ∇_θ log Z(θ) and ∇_θ log Z(θ) =
E_{x~p_θ}[∇_θ f_θ(x)], so with x_sample from a short MCMC run the ascent direction is

    ∇_θ f_θ(x_data) − ∇_θ f_θ(x_sample)

(Hinton 2002; the lecture's recap slide drops the second ∇_θ, ERRATA 3). Short-run CD starts
every chain from noise (Nijkamp et al. 2019), Hinton's CD-K from the data batch itself;
persistent CD keeps the chains alive in a replay buffer (Tieleman 2008; Du & Mordatch 2019).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ebmbench import (
    Method,
    Param,
    ReplayBuffer,
    Sampler,
    TrainContext,
    UserError,
    choice,
    frozen_parameters,
    int_range,
    log_uniform,
)

__all__ = ["ContrastiveDivergence", "PersistentContrastiveDivergence", "cd_loss", "chain_steps"]


def chain_steps(evaluations: int, sampler: Sampler) -> int:
    """The steps of ``sampler`` that spend ``evaluations`` per chain: ⌈K / L⌉ for a kernel
    whose step costs L evaluations (:meth:`~ebmbench.Sampler.evaluations_per_step`), at
    least one.

    K counts evaluations, not kernel steps, so that one K buys every training sampler the
    same work per update: with K = 20, ``ula`` and ``mala`` take 20 steps and ``hmc`` (3
    leapfrog steps at quick) 7, where it took 20 (60 gradients) until 2026-11-30 and so
    made a third as many updates of the compute budget. The evaluation chains follow the
    same rule (``hmc``'s default length, docs/protocol.md section 5).

    >>> from ebmbench import get_sampler
    >>> chain_steps(20, get_sampler("ula")), chain_steps(20, get_sampler("hmc", leapfrog_steps=3))
    (20, 7)
    """
    return max(1, math.ceil(evaluations / max(1, sampler.evaluations_per_step())))


def cd_loss(f_data: Tensor, f_sample: Tensor, alpha: float = 0.0) -> Tensor:
    """The contrastive-divergence surrogate to minimise, with Du & Mordatch's regulariser.

        L(θ) = E_sample[f_θ] − E_data[f_θ] + α (E_data[f_θ²] + E_sample[f_θ²]),

    whose gradient for α = 0 is −(∇_θ E_data f_θ − ∇_θ E_sample f_θ) with the samples held
    fixed (ERRATA 3). The α term (Du & Mordatch 2019, §3.3, with their energy E = −f) keeps
    the energies' magnitude bounded; it biases the optimum, so closed-form checks use α = 0.

    Args:
        f_data: f_θ on the data batch, shape (B,).
        f_sample: f_θ on the (detached) model samples, shape (B',).
        alpha: Weight of the energy-magnitude regulariser.

    >>> cd_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0])).item()
    -2.0
    """
    loss = f_sample.mean() - f_data.mean()
    if alpha:
        loss = loss + alpha * (f_data.pow(2).mean() + f_sample.pow(2).mean())
    return loss


class ContrastiveDivergence(Method):
    """Contrastive divergence with fresh chains at every update: short-run from noise, or
    Hinton's CD-K from the data.

    Negative chains start from the update's data batch (``chain_start="data"``, Hinton 2002;
    the ``quick`` default) or from ``dataset.init_noise`` (``"noise"``; the ``smoke`` and
    ``full`` default), and run the run's sampler for
    ``mcmc_steps`` = K evaluations of its score (:func:`chain_steps`: ⌈K/L⌉ steps of a
    kernel whose step takes L); the loss is :func:`cd_loss`. With few steps this is the short-run
    "non-convergent" MCMC of Nijkamp et al. (2019): the samples, not the density, are what
    it learns well, unless the chains mix within K steps. From the data, the chains need not
    forget a start far from the model, so K need not be long; but they explore only near the
    data, and a mode the data do not visit is never corrected (Carreira-Perpiñán & Hinton
    2005).

    **Training chains belong to the method.** They run the run's sampler kernel with their
    own step size, ``chain_step_scale`` × the sampler's step size (tuned with the method),
    and, for a kernel with an accept step, adapt it toward the sampler's target acceptance
    (``chain_adapt``) throughout training, or over the first ``chain_adapt_updates``
    updates when that is set. Evaluation sampling
    uses the sampler's own settings, so a step size good for evaluation is never forced
    on training, nor the reverse.
    """

    name = "cd"
    description = "Contrastive divergence: K-evaluation chains per update, from noise or the data"
    uses_sampler = True
    # α > 0 regularises the energy's magnitude (Du & Mordatch 2019), and chains from the data
    # are Hinton's CD-K rather than short-run CD: both labelled variants.
    variant_params = ("alpha", "chain_start")
    params = Method.params | {
        # 0.01 at quick, with chains from the data (chain_start): with chains from noise a
        # higher lr alone, 0.003, made the untuned cd diverge (docs/protocol.md section 6).
        "lr": Method.params["lr"].with_quick_default(1e-2),
        "mcmc_steps": Param(20, "evaluations K of the score (of f, gradient-free kernels) per "
                           "chain and update: ⌈K/L⌉ steps of a kernel whose step takes L (HMC)",
                           smoke=5, full=100, low=1,
                           # Searched from 5: short-run chains from noise with K < 5 leave
                           # the data's density biased at any lr (the start-at-truth control,
                           # docs/protocol.md section 7); log-uniform on [1, 50] spent ~40 %
                           # of trials there. Up to 100: K = 50 was the smallest that kept the
                           # quadratic energy at the truth. pcd's persistent chains keep [1, 50].
                           search=int_range(5, 100, log=True)),
        "alpha": Param(
            0.0, "weight α of the energy-magnitude regulariser α(E_data f² + E_sample f²)",
            low=0, search=choice(0.0, 0.001, 0.01, 0.1),
        ),
        # Searched: on the quadratic energy with ULA and α = 0, chains from noise settle at
        # Fisher divergence 0.245 or more within K ≤ 100, chains from the data at ULA's own
        # bias whatever K, 0.0048 at its step (scripts/cd_fixed_point.py; docs/protocol.md
        # sections 5 and 7). Which start suits other data is the tuning's question. At quick
        # the default is the data, with lr 0.01 (below): the tuned publication chose the
        # data in 32 of 52 studies, and untuned the two together lowered the mean Fisher
        # divergence of all 28 toy studies measured (7 energy-dataset pairs × 4 samplers;
        # geometric mean 7.4 → 0.83; the quadratic energy 0.9–4.9 → 0.003–0.004) against
        # noise with lr 0.001 (docs/protocol.md section 6 has the command and the table).
        "chain_start": Param("noise", "where each update's chains start: 'noise' (short-run "
                             "CD) or 'data' (the batch: Hinton's CD-K)",
                             choices=("noise", "data"),
                             search=choice("noise", "data")).with_quick_default("data"),
        "chain_step_scale": Param(
            1.0, "training chains' step size, as a multiple of the sampler's own",
            positive=True, search=log_uniform(0.1, 30.0),
        ),
        "chain_adapt": Param(
            True, "adapt the training chains' step size toward the sampler's target "
            "acceptance (kernels with an accept step)",
        ),
        # The energy the chains sample keeps changing, so their step keeps adapting: frozen
        # after the first 50 updates (the default until 2026-11-30), it no longer fitted an
        # energy that had sharpened, and cd with mala on the quadratic energy ended at Fisher
        # divergence 61 where adapting throughout gives 0.83 (correlated_gaussian, quick;
        # docs/protocol.md section 5 has the command).
        "chain_adapt_updates": Param(0, "updates over which the training chains adapt "
                                     "(0: every update of the run)", low=0),
    }

    def setup(self, ctx: TrainContext) -> None:
        if ctx.sampler is None:
            raise UserError(f"method {self.name} trains with a sampler, and none was given")
        super().setup(ctx)
        self.sampler = self.training_sampler(ctx.sampler)
        # init_noise takes a CPU generator; derive one from the run's generator so that
        # the chains are reproducible on any device.
        seed = torch.randint(2**62, (1,), generator=ctx.generator, device=ctx.generator.device)
        self._noise_generator = torch.Generator().manual_seed(int(seed))
        self._last_stats: dict[str, float] = {}

    def training_sampler(self, sampler: Sampler) -> Sampler:
        """The kernel of the training chains: ``sampler``'s, with the method's step size.

        A new instance of the sampler's class, so the evaluation sampler is untouched. With
        ``chain_adapt`` and a kernel that adapts (a ``target_accept``), ε adapts during the
        first ``chain_adapt_updates`` updates, persistently across updates, then stays
        fixed (0: through the whole run, the default); a sampler without a ``step_size`` is
        used as it is.
        """
        values = dict(sampler.hparams)
        if "step_size" not in values:
            return sampler
        values["step_size"] = values["step_size"] * self.hparams["chain_step_scale"]
        if self.hparams["chain_adapt"] and "target_accept" in values:
            updates = self.hparams["chain_adapt_updates"] or self.hparams["steps"]
            values |= {"adapt": "global", "persistent": True,
                       "warmup": chain_steps(self.hparams["mcmc_steps"], sampler) * updates}
        return type(sampler)(budget=sampler.budget, **values)

    def init_noise(self, n: int) -> Tensor:
        """``n`` fresh chain starts from the dataset's noise, on the training device."""
        x = self.ctx.dataset.init_noise(n, self._noise_generator)
        return x.to(device=self.ctx.device, dtype=self.ctx.train_data.dtype)

    def _run_chains(self, x0: Tensor) -> Tensor:
        # A sampler may call .backward() on f for ∇ₓf: with the parameters frozen nothing
        # reaches their .grad (and no parameter graph is built).
        with frozen_parameters(self.energy):
            result = self.sampler.sample(
                self.energy, x0, n_steps=chain_steps(self.hparams["mcmc_steps"], self.sampler),
                generator=self.ctx.generator,
            )
        self._last_stats = {
            f"sampler_{k}": float(v) for k, v in result.stats.items()
            if k in ("acceptance_rate", "step_size")
        }
        return result.x.detach()

    def negatives(self, batch: Tensor) -> Tensor:
        """As many model samples as ``batch`` has rows, for one update (detached): chains from
        noise, or from ``batch`` itself with ``chain_start="data"``."""
        # A copy: a kernel may mark its start as requiring grad, and the batch is reused.
        start = (batch.detach().clone() if self.hparams["chain_start"] == "data"
                 else self.init_noise(len(batch)))
        return self._run_chains(start)

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        x_neg = self.negatives(batch)
        f = self.energy(torch.cat([batch, x_neg]))
        f_data, f_sample = f[: batch.shape[0]], f[batch.shape[0] :]
        loss = cd_loss(f_data, f_sample, self.hparams["alpha"])
        logs = {
            "f_data": float(f_data.detach().mean()),
            "f_sample": float(f_sample.detach().mean()),
            **self._last_stats,
        }
        return loss, logs


class PersistentContrastiveDivergence(ContrastiveDivergence):
    """Persistent CD with a replay buffer (Tieleman 2008; Du & Mordatch 2019).

    Each update draws chain starts from a :class:`~ebmbench.ReplayBuffer`, restarting a
    fraction ``reinit_prob`` from noise (5 % in Du & Mordatch), runs the chains for K
    evaluations (:func:`chain_steps`) and
    writes the chains back, so that chains accumulate steps across updates.
    """

    name = "pcd"
    description = "Persistent CD: chains kept in a replay buffer, 5% restarted from noise"
    variant_params = ("alpha",)
    # The buffer decides where pcd's chains start.
    params = {k: v for k, v in ContrastiveDivergence.params.items() if k != "chain_start"} | {
        # cd's quick lr suits chains from the data; with a buffer of chains from noise, 0.005
        # already made pcd diverge on the quadratic energy (docs/protocol.md section 6).
        "lr": Method.params["lr"],
        "mcmc_steps": Param(10, "evaluations K of the score (of f, gradient-free kernels) per "
                           "chain and update: ⌈K/L⌉ steps of a kernel whose step takes L (HMC)",
                           smoke=5, full=60, low=1, search=int_range(1, 50, log=True)),
        "buffer_size": Param(10_000, "replay-buffer capacity", smoke=1_000, low=1),
        "reinit_prob": Param(0.05, "probability that a chain restarts from noise", low=0, high=1,
                            search=choice(0.0, 0.01, 0.05, 0.2)),
    }

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        self.buffer = ReplayBuffer(
            self.hparams["buffer_size"], self.init_noise, self.hparams["reinit_prob"]
        )

    def negatives(self, batch: Tensor) -> Tensor:
        x0, slots = self.buffer.sample(len(batch), generator=self.ctx.generator)
        x = self._run_chains(x0)
        self.buffer.push(x, slots)
        return x

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state["buffer"])
