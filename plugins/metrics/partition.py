"""The learned energy's log-partition function log Z(θ), and what it gives: test NLL, log-Z error.

In 2-D, Z(θ) = ∫_B exp f_θ over the dataset's box B by a tensor-product Gauss–Legendre
rule (error < 1e-3 nats for smooth energies on the default grid; tested). Above 2-D by
annealed importance sampling (Neal 2001) from a Gaussian fitted to the training data,
with its standard error.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from ebmbench import EvalContext, Metric, Param, ToyDensity, log_integrate_2d

__all__ = ["LogPartition", "fit_gaussian"]

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


class LogPartition(Metric):
    """log Z(θ) = log ∫ exp f_θ(x) dx of the trained energy, and the values it gives.

    Values (all lower is better):

    * ``test_nll`` = −(1/n) Σᵢ f_θ(xᵢ) + log Z(θ) over the held-out set, in nats per
      example; ``test_nll_se`` is sd(f_θ(xᵢ))/√n, combined in quadrature with the AIS
      standard error of log Z above 2-D.
    * ``log_z_abs_error`` = |log Ẑ − log Z(θ)| for methods that estimate log Z themselves
      (``method.log_partition()`` is not None, e.g. NCE, FCE); above 2-D
      ``log_z_abs_error_se`` is the AIS standard error.
    * ``log_z_bound_gap`` = |log Ẑ − log Z(θ)| instead, for methods whose log Ẑ is a bound
      (``Method.log_partition_is_bound``, e.g. the adversarial method's E_q f + H(q)): a
      reference value, not ranked.

    log Z itself is not reported: f_θ is defined up to an additive constant, so it has no
    direction and cannot be compared across methods.

    In 2-D, Z(θ) is the integral over the dataset's box B (which holds all but a negligible
    mass of the data): the model is p_θ(x) = exp f_θ(x) / Z(θ) restricted to B, which is
    also what makes Z(θ) finite for energies that do not decay. Above 2-D, log Ẑ_AIS is
    unbiased for Z but, by Jensen, biased low for log Z, so ``test_nll`` is then slightly
    optimistic; the bias shrinks with more temperatures.
    """

    name = "log_partition"
    description = "Exact log Z(θ) (2-D quadrature, AIS above): test NLL and log-Z error"
    higher_is_better = {"test_nll": False, "log_z_abs_error": False, "log_z_bound_gap": False}
    reference_values = frozenset({"log_z_bound_gap"})
    params = {
        "grid": Param(256, "2-D: about √(quadrature nodes) on the box", smoke=128, full=512,
                      low=8),
        "ais_chains": Param(128, "AIS: independent chains", smoke=16, full=1024, low=2),
        "ais_temperatures": Param(100, "AIS: annealing steps", smoke=10, full=2000, low=1),
        "ais_step_scale": Param(1.0, "AIS: kernel step ε = scale · λ_min(Σ_base) · d^(-1/3)",
                                positive=True),
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
                  generator: torch.Generator | None) -> tuple[float, float]:
        """(log Ẑ, its standard error) by AIS from a Gaussian fitted to ``train_data``."""
        from ebmbench import annealed_importance_sampling, get_sampler, list_plugins

        dtype = _dtype(energy)
        base = fit_gaussian(train_data.to(device=device, dtype=torch.float64))
        lam_min = float(torch.linalg.eigvalsh(base.covariance_matrix)[0])
        d = train_data.shape[1]
        base = MultivariateNormal(base.loc.to(dtype), scale_tril=base.scale_tril.to(dtype))
        step = self.hparams["ais_step_scale"] * lam_min * d ** (-1 / 3)
        kernel_name = "mala" if "mala" in list_plugins("sampler") else "ula"
        kernel = get_sampler(kernel_name, budget=self.budget, step_size=step)
        result = annealed_importance_sampling(
            energy, base, kernel, n_chains=self.hparams["ais_chains"],
            n_temperatures=self.hparams["ais_temperatures"], generator=generator,
        )
        return result.log_z, result.log_z_se

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
        if density.bounds is not None:
            log_z = self.log_z_quadrature(ctx.energy, density.bounds, ctx.device)
            log_z_se = 0.0
        else:
            gen = ctx.generator(salt=211, device=ctx.device)
            log_z, log_z_se = self.log_z_ais(ctx.energy, ctx.train_data, ctx.device, gen)
        test = ctx.test_data[: self.hparams["max_test"]]
        mean_f, mean_f_se = self._mean_energy(ctx.energy, test, ctx.device)
        out = {
            "test_nll": log_z - mean_f,
            "test_nll_se": math.sqrt(mean_f_se**2 + log_z_se**2),
        }
        estimate = ctx.method.log_partition()
        if estimate is not None:
            # A bound's distance to log Z is not an estimation error: reported apart, as a
            # reference value, so that the two are never ranked together.
            name = "log_z_bound_gap" if type(ctx.method).log_partition_is_bound else "log_z_abs_error"
            out[name] = abs(float(estimate) - log_z)
            if density.bounds is None:
                out[f"{name}_se"] = log_z_se
        return out
