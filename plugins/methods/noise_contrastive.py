"""Noise-contrastive estimation, with a fixed Gaussian noise or an adversarial flow.

NCE (Gutmann & Hyvärinen 2010, 2012) fits the unnormalised model p_m = exp(f_θ − c), with
c a learned log Z, by logistic regression of data against ν times as many noise samples
from a density p_n it can evaluate. Flow contrastive estimation (Gao et al. 2020,
arXiv:1912.00589) makes the noise a normalising flow trained to make that classification
as hard as possible.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal

from ebmbench import (
    Method,
    Param,
    TrainContext,
    flow_rsample,
    frozen_parameters,
    int_range,
    log_uniform,
    standardised_maf,
)

__all__ = ["NoiseContrastiveEstimation", "FlowContrastiveEstimation", "nce_loss"]


def nce_loss(
    f_data: Tensor,
    f_noise: Tensor,
    log_pn_data: Tensor,
    log_pn_noise: Tensor,
    log_z: Tensor,
    nu: float = 1.0,
) -> Tensor:
    """The negative NCE objective −J, to minimise (Gutmann & Hyvärinen 2012, eq. 8).

    With T_d data x, T_n = ν T_d noise y and G(u) = log p_m(u) − log p_n(u), where
    log p_m = f_θ − log Z,

        J = (1/T_d) [ Σ_x log h(x) + Σ_y log(1 − h(y)) ],  h(u) = σ(G(u) − log ν),

    i.e. J = E_data[log h] + ν E_noise[log(1 − h)]. In the lecture's log-sum-exp form,

        log h(x)       = f(x) − logsumexp(f(x), log Z + log ν + log p_n(x)),
        log(1 − h(y))  = log Z + log ν + log p_n(y) − logsumexp(f(y), log Z + log ν + log p_n(y)).

    The lecture's NCE step writes ``log Z + p_n(y)`` where ``log Z + log p_n(y)`` is meant
    (ERRATA 1); this follows the paper. Its optimum in (θ, log Z) is p_m = p_data, so the
    learned log Z is the model's exact log-partition function.

    Args:
        f_data: f_θ on the data, shape (T_d,).
        f_noise: f_θ on the noise, shape (T_n,).
        log_pn_data: log p_n on the data.
        log_pn_noise: log p_n on the noise.
        log_z: The learned log Z (0-d).
        nu: The noise ratio ν = T_n / T_d.

    >>> zero = torch.zeros(1)                          # p_m = p_n, ν = 1: h = ½
    >>> round(nce_loss(zero, zero, zero, zero, torch.tensor(0.0)).item(), 4)  # 2 log 2
    1.3863
    """
    log_nu = math.log(nu)
    shift_data = log_z + log_nu + log_pn_data
    shift_noise = log_z + log_nu + log_pn_noise
    log_h_data = f_data - torch.logaddexp(f_data, shift_data)
    log_not_h_noise = shift_noise - torch.logaddexp(f_noise, shift_noise)
    return -(log_h_data.mean() + nu * log_not_h_noise.mean())


def _n_noise(batch: int, nu: float) -> int:
    return max(1, round(nu * batch))


class NoiseContrastiveEstimation(Method):
    """NCE with a learned log Z and a Gaussian noise fitted to the training data.

    The noise is N(m, s²·C) with m and C the training data's mean and covariance (``full``)
    or its diagonal (``diagonal``), fitted once in :meth:`setup`; images are flattened.
    ``noise_ratio`` is ν, the noise samples per data example; the loss is :func:`nce_loss`.
    """

    name = "nce"
    description = "Noise-contrastive estimation with learned log Z and fitted Gaussian noise"
    params = Method.params | {
        # quick: what tuning chose most often (docs/protocol.md, 6)
        "lr": Method.params["lr"].with_quick_default(1e-2),
        "noise_ratio": Param(1.0, "ν: noise samples per data example", positive=True,
                             search=log_uniform(0.25, 8.0)),
        "noise": Param("full", "Gaussian noise covariance", choices=("full", "diagonal")),
        "noise_scale": Param(1.0, "s: noise standard deviation over the data's", positive=True,
                             search=log_uniform(0.5, 3.0)).with_quick_default(2.0),
        "init_samples": Param(4096, "noise samples for the initial log Z estimate", smoke=512,
                              low=1),
    }

    def setup(self, ctx: TrainContext) -> None:
        data = ctx.train_data
        self.noise_dist = self._fit_noise(data.flatten(1))
        self.ctx = ctx
        self.log_z = nn.Parameter(self._initial_log_z(ctx.energy, data))
        super().setup(ctx)

    def _fit_noise(self, flat: Tensor) -> MultivariateNormal:
        # Fit in float64: the covariance of images can be near-singular.
        x = flat.double()
        mean = x.mean(0)
        centred = x - mean
        if self.hparams["noise"] == "full" and x.shape[1] > 1:
            cov = centred.T @ centred / max(x.shape[0] - 1, 1)
        else:
            cov = torch.diag(centred.pow(2).sum(0) / max(x.shape[0] - 1, 1))
        cov = cov * self.hparams["noise_scale"] ** 2
        jitter = 1e-6 * float(cov.diagonal().mean()) + 1e-8
        tril = torch.linalg.cholesky(cov + jitter * torch.eye(len(cov), dtype=cov.dtype,
                                                              device=cov.device))
        return MultivariateNormal(mean.to(flat.dtype), scale_tril=tril.to(flat.dtype))

    def _initial_log_z(self, energy: nn.Module, data: Tensor) -> Tensor:
        # Start log Z at the importance-sampling estimate log E_{p_n}[e^f / p_n] of the
        # initial energy's: from 0, the energy first distorts itself to make up for a
        # wildly wrong log Z (it moved a Gaussian's mean away from the data in tests).
        n = self.hparams["init_samples"]
        with torch.no_grad():
            y = self.sample_noise(n)
            w = energy(y.view(n, *data.shape[1:])) - self.noise_dist.log_prob(y)
            return (torch.logsumexp(w, 0) - math.log(n)).to(data.dtype)

    def extra_parameters(self):
        return [self.log_z]

    def sample_noise(self, n: int) -> Tensor:
        """``n`` noise samples, flattened, from the method's generator."""
        dist = self.noise_dist
        z = torch.randn(
            (n, dist.loc.shape[0]), generator=self.ctx.generator,
            device=dist.loc.device, dtype=dist.loc.dtype,
        )
        return dist.loc + z @ dist.scale_tril.T

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        nu = self.hparams["noise_ratio"]
        noise = self.sample_noise(_n_noise(batch.shape[0], nu))
        f = self.energy(torch.cat([batch, noise.view(-1, *batch.shape[1:])]))
        f_data, f_noise = f[: batch.shape[0]], f[batch.shape[0] :]
        loss = nce_loss(
            f_data, f_noise,
            self.noise_dist.log_prob(batch.flatten(1)), self.noise_dist.log_prob(noise),
            self.log_z, nu,
        )
        return loss, {"log_z": float(self.log_z.detach())}

    def log_partition(self) -> float:
        """The learned log Z (NCE's estimate of log Z(θ))."""
        return float(self.log_z.detach())

    def state_dict(self) -> dict[str, Any]:
        return {
            "log_z": self.log_z.detach().clone(),
            "noise_loc": self.noise_dist.loc.detach().clone(),
            "noise_scale_tril": self.noise_dist.scale_tril.detach().clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        log_z = torch.as_tensor(state["log_z"])
        if hasattr(self, "log_z"):
            with torch.no_grad():
                self.log_z.copy_(log_z)
        else:
            self.log_z = nn.Parameter(log_z.clone())
        self.noise_dist = MultivariateNormal(
            state["noise_loc"].to(self.log_z.device),
            scale_tril=state["noise_scale_tril"].to(self.log_z.device),
        )


# ---------------------------------------------------------------------------- flows


class FlowContrastiveEstimation(Method):
    """Flow contrastive estimation (Gao et al. 2020, arXiv:1912.00589).

    NCE whose noise q_φ is a normalising flow (zuko MAF on flattened data). With the NCE
    value V(θ, c, φ) = E_data[log D] + ν E_{q_φ}[log(1 − D)] (:func:`nce_loss` is −V),

        max_{θ, c} min_φ V,

    taken as alternating Adam steps: one on (θ, c) with the flow's samples fixed, then
    ``flow_steps`` on φ through reparameterised samples y = T_φ(z). The flow can be
    warm-started by ``pretrain_steps`` steps of maximum likelihood on the data.
    """

    name = "fce"
    description = "Flow contrastive estimation (Gao et al. 2020): NCE against an adversarial flow"
    params = Method.params | {
        # Each update also trains the flow (about 4 flow passes): fewer updates at quick.
        # quick: what tuning chose most often (docs/protocol.md, 6)
        "lr": Method.params["lr"].with_quick_default(8e-3),
        "noise_ratio": Param(1.0, "ν: flow samples per data example", positive=True,
                             search=log_uniform(0.25, 8.0)).with_quick_default(0.5),
        "flow_transforms": Param(3, "MAF transforms", smoke=2, full=5, low=1,
                                 search=int_range(1, 5)),
        "flow_hidden": Param(32, "hidden width of each MAF conditioner", smoke=16, full=128, low=1,
                             search=int_range(16, 128, log=True)).with_quick_default(26),
        "flow_lr": Param(1e-3, "Adam learning rate of the flow", positive=True,
                         search=log_uniform(1e-4, 1e-2)).with_quick_default(6e-4),
        "flow_steps": Param(1, "flow updates per energy update", low=1),
        "pretrain_steps": Param(50, "maximum-likelihood warm-up steps of the flow",
                                smoke=10, full=1000, low=0),
        "init_samples": Param(4096, "flow samples for the initial log Z estimate", smoke=512,
                              low=1),
    }

    def setup(self, ctx: TrainContext) -> None:
        data = ctx.train_data
        self.ctx = ctx
        self.flow = standardised_maf(
            data.flatten(1), self.hparams["flow_transforms"], self.hparams["flow_hidden"]
        )
        self.flow_optimizer = torch.optim.Adam(self.flow.parameters(), lr=self.hparams["flow_lr"])
        self._pretrain(data.flatten(1))
        # As in NCE, start log Z at the importance-sampling estimate, here under the flow.
        n = self.hparams["init_samples"]
        with torch.no_grad():
            y, log_q = flow_rsample(self.flow, n, ctx.generator, data)
            w = ctx.energy(y) - log_q
            self.log_z = nn.Parameter(torch.logsumexp(w, 0) - math.log(n))
        super().setup(ctx)

    def _pretrain(self, flat: Tensor) -> None:
        batch = min(self.hparams["batch_size"], flat.shape[0])
        for _ in range(self.hparams["pretrain_steps"]):
            idx = torch.randint(
                flat.shape[0], (batch,), generator=self.ctx.generator, device=flat.device
            )
            loss = -self.flow().log_prob(flat[idx]).mean()
            self.flow_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.flow_optimizer.step()

    def extra_parameters(self):
        return [self.log_z]

    def _neg_value(
        self, batch: Tensor, noise: Tensor, log_q_noise: Tensor, log_q_data: Tensor
    ) -> Tensor:
        f = self.energy(torch.cat([batch, noise]))
        n = batch.shape[0]
        return nce_loss(
            f[:n], f[n:], log_q_data, log_q_noise, self.log_z, self.hparams["noise_ratio"]
        )

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        """−V for the energy and log Z, the flow held fixed."""
        n = _n_noise(batch.shape[0], self.hparams["noise_ratio"])
        with torch.no_grad():
            noise, log_q_noise = flow_rsample(self.flow, n, self.ctx.generator, batch)
            log_q_data = self.flow().log_prob(batch.flatten(1))
        loss = self._neg_value(batch, noise, log_q_noise, log_q_data)
        return loss, {"log_z": float(self.log_z.detach())}

    def flow_loss(self, batch: Tensor) -> Tensor:
        """V, to minimise in the flow's parameters (through reparameterised samples)."""
        n = _n_noise(batch.shape[0], self.hparams["noise_ratio"])
        noise, log_q_noise = flow_rsample(self.flow, n, self.ctx.generator, batch)
        log_q_data = self.flow().log_prob(batch.flatten(1))
        return -self._neg_value(batch, noise, log_q_noise, log_q_data)

    def train_step(self, batch: Tensor) -> dict[str, float]:
        logs = super().train_step(batch)
        flow_params = list(self.flow.parameters())
        for _ in range(self.hparams["flow_steps"]):
            with frozen_parameters(self.energy):  # no parameter graph for f: cheaper
                value = self.flow_loss(batch)
            self.flow_optimizer.zero_grad(set_to_none=True)
            # Only the flow's gradients: the energy and log Z keep theirs for their own step.
            value.backward(inputs=flow_params)
            self.flow_optimizer.step()
            # V = −2 log 2 (ν = 1) when the energy and the flow both match the data.
            logs["flow_value"] = float(value.detach())
        return logs

    def log_partition(self) -> float:
        """The learned log Z."""
        return float(self.log_z.detach())

    def amortised_sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples of the noise flow q_φ (an approximation of the data), data-shaped."""
        like = self.ctx.train_data
        with torch.no_grad():
            x, _ = flow_rsample(self.flow, n, generator, like)
        return x

    def state_dict(self) -> dict[str, Any]:
        return {"log_z": self.log_z.detach().clone(), "flow": self.flow.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.log_z.copy_(torch.as_tensor(state["log_z"]))
        self.flow.load_state_dict(state["flow"])
