"""The learned energy's log-partition function log Z(θ), and what it gives: test NLL, log-Z error.

In 2-D, Z(θ) = ∫_B exp f_θ over the dataset's box B by a tensor-product Gauss–Legendre
rule (error < 1e-3 nats for smooth energies on the default grid; tested). Above 2-D, the
energy's own closed form when it has one (``energy.log_partition()``, e.g. the quadratic
energy), else annealed importance sampling (Neal 2001) from a Gaussian fitted to the
training data, tuned and replicated by :func:`ebmbench.ais_log_partition`, with a standard
error from independent replicates (or the delta method over all chains, whichever is
larger) and its effective sample size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from ebmbench import (
    EvalContext,
    Metric,
    Param,
    ToyDensity,
    ais_log_partition,
    ais_unreliable_reason,
    get_sampler,
    log_integrate_2d,
)

__all__ = ["LogPartition", "fit_gaussian", "closed_form_log_partition"]

_CHUNK = 16_384


def _dtype(energy) -> torch.dtype:
    """The dtype of the energy's parameters (float32 if it has none)."""
    param = next(iter(energy.parameters()), None) if hasattr(energy, "parameters") else None
    return param.dtype if param is not None else torch.float32


def fit_gaussian(data: Tensor, jitter: float = 1e-4) -> MultivariateNormal:
    """N(mean, cov + δI) fitted to ``data`` (n, d); δ = ``jitter`` × mean variance.

    >>> g = fit_gaussian(torch.randn(1000, 3, generator=torch.Generator().manual_seed(0)))
    >>> g.loc.shape, bool((g.covariance_matrix.diagonal() - 1).abs().max() < 0.15)
    (torch.Size([3]), True)
    """
    mean = data.mean(0)
    cov = torch.cov(data.T).reshape(data.shape[1], data.shape[1])
    cov = 0.5 * (cov + cov.T)
    cov = cov + jitter * float(cov.diagonal().mean()) * torch.eye(len(mean), dtype=cov.dtype,
                                                                  device=cov.device)
    return MultivariateNormal(mean, covariance_matrix=cov)


def closed_form_log_partition(energy) -> float | None:
    """The energy's exact log Z from its ``log_partition()`` method, or None if it has none.

    The contract: an energy module may define ``log_partition()`` returning its exact
    log ∫ exp f (a number or a 0-d tensor), e.g. the quadratic energy's
    ½ log det(2πΣ). A non-finite value counts as none.

    >>> class Half(torch.nn.Module):
    ...     def log_partition(self):
    ...         return torch.tensor(0.5)
    >>> closed_form_log_partition(Half()), closed_form_log_partition(torch.nn.Linear(1, 1))
    (0.5, None)
    """
    method = getattr(energy, "log_partition", None)
    if not callable(method):
        return None
    with torch.no_grad():
        value = float(method())
    return value if math.isfinite(value) else None


class LogPartition(Metric):
    """log Z(θ) = log ∫ exp f_θ(x) dx of the trained energy, and the values it gives.

    Values:

    * ``test_nll`` (lower is better) = −(1/n) Σᵢ f_θ(xᵢ) + log Z(θ) over the held-out set,
      in nats per example; ``test_nll_se`` is sd(f_θ(xᵢ))/√n, combined in quadrature with
      the AIS standard error of log Z when AIS is used.
    * ``log_z_abs_error`` (lower is better) = |log Ẑ − log Z(θ)| for methods that estimate
      log Z themselves (``method.log_partition()`` is not None, e.g. NCE, FCE); with AIS,
      ``log_z_abs_error_se`` is the AIS standard error.
    * ``log_z_bound_gap`` = |log Ẑ − log Z(θ)| instead, for methods whose log Ẑ is a bound
      (``Method.log_partition_is_bound``, e.g. the adversarial method's E_q f + H(q)): a
      reference value, not ranked.
    * ``log_z_ess`` and ``log_z_chains`` (reference values, never ranked; only with AIS):
      the effective sample size (Σw)²/Σw² of the AIS weights and the number of chains N.

    When the AIS diagnostics fail (:func:`ebmbench.ais_unreliable_reason`: ESS below
    ``ais_min_ess`` × N, or replicates that disagree beyond their own standard errors),
    ``test_nll`` and ``log_z_abs_error`` are flagged in ``ctx.unreliable``: stored and
    shown, not ranked.

    log Z itself is not reported: f_θ is defined up to an additive constant, so it has no
    direction and cannot be compared across methods.

    How log Z(θ) is computed: in 2-D, the integral over the dataset's box B (which holds
    all but a negligible mass of the data): the model is p_θ(x) = exp f_θ(x) / Z(θ)
    restricted to B, which is also what makes Z(θ) finite for energies that do not decay;
    every energy on a 2-D dataset is thereby the same kind of model. Above 2-D, the
    energy's closed form if it has one (:func:`closed_form_log_partition`), else AIS.
    """

    name = "log_partition"
    description = "Exact log Z(θ) (2-D quadrature, closed form, else AIS): test NLL, log-Z error"
    higher_is_better = {"test_nll": False, "log_z_abs_error": False, "log_z_bound_gap": False,
                        "log_z_ess": True, "log_z_chains": True}
    reference_values = frozenset({"log_z_bound_gap", "log_z_ess", "log_z_chains"})
    params = {
        "grid": Param(256, "2-D: about √(quadrature nodes) on the box", smoke=128, full=512,
                      low=8),
        "ais_chains": Param(32, "AIS: chains per replicate", smoke=8, full=64, low=2),
        "ais_replicates": Param(16, "AIS: independent replicates (their spread bounds the SE)",
                                smoke=4, full=32, low=2),
        "ais_temperatures": Param(300, "AIS: annealing steps", smoke=20, full=3000, low=1),
        "ais_kernel": Param("hmc", "AIS: transition kernel (a registered sampler)",
                            choices=("hmc", "mala")),
        "ais_leapfrog_steps": Param(3, "AIS: leapfrog steps per HMC move", low=1),
        "ais_min_ess": Param(0.3, "AIS: ESS / chains below which a value is unreliable",
                             low=0.0, high=1.0),
        "max_test": Param(10_000, "held-out examples used for the NLL", low=1),
    }

    def applies_to(self, combo) -> bool:
        return isinstance(combo.dataset, ToyDensity)

    # -- log Z
    def log_z_quadrature(self, energy, bounds, device: torch.device) -> float:
        """log ∫_B exp f over the 2-D box ``bounds``."""
        return log_integrate_2d(energy, bounds, self.hparams["grid"], device=device,
                                dtype=_dtype(energy))

    def log_z_ais(self, energy, train_data: Tensor, device: torch.device,
                  generator: torch.Generator | None):
        """The :class:`~ebmbench.AISResult` of AIS from a Gaussian fitted to ``train_data``."""
        dtype = _dtype(energy)
        base = fit_gaussian(train_data.flatten(1).to(device=device, dtype=torch.float64))
        base = MultivariateNormal(base.loc.to(dtype), scale_tril=base.scale_tril.to(dtype))
        hp = self.hparams
        if hp["ais_kernel"] == "hmc":
            kernel = get_sampler("hmc", budget=self.budget, leapfrog_steps=hp["ais_leapfrog_steps"])
            target_accept = 0.65  # Neal (2011), §5.4.4; Beskos et al. (2013)
        else:
            kernel = get_sampler("mala", budget=self.budget)
            target_accept = 0.574  # Roberts & Rosenthal (1998)
        return ais_log_partition(
            energy, base, kernel, n_chains=hp["ais_chains"], replicates=hp["ais_replicates"],
            n_temperatures=hp["ais_temperatures"], target_accept=target_accept,
            generator=generator,
        )

    # -- the metric
    @torch.no_grad()
    def _mean_energy(self, energy, data: Tensor, device: torch.device) -> tuple[float, float]:
        dtype = _dtype(energy)
        values = torch.cat([
            energy(data[i : i + _CHUNK].to(device=device, dtype=dtype)).double().cpu()
            for i in range(0, len(data), _CHUNK)
        ])
        return float(values.mean()), float(values.std() / math.sqrt(len(values)))

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        density: ToyDensity = ctx.dataset  # type: ignore[assignment]
        out: dict[str, float] = {}
        exact = None if density.bounds is not None else closed_form_log_partition(ctx.energy)
        ais = None
        if density.bounds is not None:
            log_z, log_z_se = self.log_z_quadrature(ctx.energy, density.bounds, ctx.device), 0.0
        elif exact is not None:
            log_z, log_z_se = exact, 0.0
        else:
            gen = ctx.generator(salt=211, device=ctx.device)
            ais = self.log_z_ais(ctx.energy, ctx.train_data, ctx.device, gen)
            log_z, log_z_se = ais.log_z, ais.log_z_se
            out["log_z_ess"] = ais.ess
            out["log_z_chains"] = float(ais.n_chains)
        test = ctx.test_data[: self.hparams["max_test"]]
        mean_f, mean_f_se = self._mean_energy(ctx.energy, test, ctx.device)
        out["test_nll"] = log_z - mean_f
        out["test_nll_se"] = math.sqrt(mean_f_se**2 + log_z_se**2)
        estimate = ctx.method.log_partition()
        if estimate is not None:
            # A bound's distance to log Z is not an estimation error: reported apart, as a
            # reference value, so that the two are never ranked together.
            name = "log_z_bound_gap" if type(ctx.method).log_partition_is_bound else "log_z_abs_error"
            out[name] = abs(float(estimate) - log_z)
            if ais is not None:
                out[f"{name}_se"] = log_z_se
        if ais is not None:
            reason = ais_unreliable_reason(ais, min_ess_fraction=self.hparams["ais_min_ess"])
            if reason is not None:
                for name in ("test_nll", "log_z_abs_error", "log_z_bound_gap"):
                    if name in out:
                        ctx.unreliable[name] = reason
        return out
