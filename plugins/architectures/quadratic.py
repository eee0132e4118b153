"""An analytic quadratic (Gaussian) energy, for checking methods against closed forms."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ebmbench import Architecture, Param, autocast_for, precision_param

__all__ = ["QuadraticEnergy", "Quadratic"]


class Quadratic(nn.Module):
    """f(x) = −½ (x − μ)ᵀ P (x − μ), the log of an unnormalised Gaussian N(μ, P⁻¹).

    P = L Lᵀ with L lower triangular and diagonal softplus(ρ) + ``min_diag`` > 0, so P is
    positive definite for every value of the parameters (μ, ρ and the strictly lower part
    of L). Then

        ∇ₓf = −P (x − μ),   ∇ₓ²f = −P,   log Z = ½ log det(2π Σ) = (d/2) log 2π − Σᵢ log Lᵢᵢ,

    with Σ = P⁻¹.

    Args:
        dim: The dimension d.
        min_diag: A floor on the diagonal of L.

    >>> q = Quadratic(2)
    >>> round(q(torch.tensor([[1.0, 2.0]])).item(), 4)   # P = I, μ = 0 at initialisation
    -2.5
    >>> round(q.log_partition().item(), 4) == round(math.log(2 * math.pi), 4)
    True
    """

    def __init__(self, dim: int, min_diag: float = 1e-3, precision: str = "fp32") -> None:
        super().__init__()
        self.dim = dim
        self.min_diag = min_diag
        self.numeric_precision = precision
        self.mean = nn.Parameter(torch.zeros(dim))
        # The diagonal of L starts at 1, so P starts at the identity.
        self.raw_diag = nn.Parameter(
            torch.full((dim,), math.log(math.expm1(max(1.0 - min_diag, 1e-6))))
        )
        self.lower = nn.Parameter(torch.zeros(dim, dim))

    def cholesky(self) -> Tensor:
        """L, lower triangular with a positive diagonal, such that P = L Lᵀ."""
        diag = F.softplus(self.raw_diag) + self.min_diag
        return torch.tril(self.lower, diagonal=-1) + torch.diag_embed(diag)

    def precision(self) -> Tensor:
        """P = L Lᵀ, shape (d, d)."""
        chol = self.cholesky()
        return chol @ chol.T

    def covariance(self) -> Tensor:
        """Σ = P⁻¹, from the Cholesky factor."""
        return torch.cholesky_inverse(self.cholesky())

    def log_partition(self) -> Tensor:
        """Exact log Z = log ∫ exp f = (d/2) log 2π − Σᵢ log Lᵢᵢ (a 0-d tensor)."""
        return 0.5 * self.dim * math.log(2 * math.pi) - torch.diagonal(self.cholesky()).log().sum()

    def set(self, mean: Tensor, precision: Tensor) -> Quadratic:
        """Set μ and P (positive definite) in place; returns ``self``."""
        chol = torch.linalg.cholesky(precision.to(self.lower))
        diag = (torch.diagonal(chol) - self.min_diag).clamp_min(1e-6)
        with torch.no_grad():
            self.mean.copy_(mean)
            self.raw_diag.copy_(diag + torch.log(-torch.expm1(-diag)))  # softplus⁻¹
            self.lower.copy_(torch.tril(chol, diagonal=-1))
        return self

    def _factor(self) -> Tensor:
        """L for :meth:`forward`: rebuilt whenever its parameters may need a gradient, else
        reused while they are unchanged. A sampler's chains run with the parameters frozen
        and call f thousands of times between two updates: rebuilding L at each call was a
        third of the energy's time in a sweep. The cache holds the parameter tensors
        themselves, their in-place version counters (an optimiser step, ``set`` or
        ``load_state_dict`` bumps them), storage, dtype and device (``.to()`` and ``.double()``
        swap a parameter's data in place), so it is never stale, and L is the tensor a rebuild
        would give, bit for bit."""
        if torch.is_grad_enabled() and (self.raw_diag.requires_grad or self.lower.requires_grad):
            return self.cholesky()
        params = (self.raw_diag, self.lower)
        state = tuple((p._version, p.data_ptr(), p.dtype, p.device) for p in params)
        cached = self.__dict__.get("_factor_cache")  # (params, state, L), not a registered buffer
        if cached is None or cached[0][0] is not params[0] or cached[0][1] is not params[1] \
                or cached[1] != state:
            with torch.no_grad():
                cached = (params, state, self.cholesky())
            self.__dict__["_factor_cache"] = cached
        return cached[2]

    def forward(self, x: Tensor) -> Tensor:
        # (x − μ)ᵀ L Lᵀ (x − μ) = ‖(x − μ)ᵀ L‖²: one matmul, no explicit P. Under bf16 only
        # the matmul is autocast; the squared norm, f itself, is summed in x's dtype.
        centred = x.flatten(1) - self.mean
        with autocast_for(self.numeric_precision, centred):
            z = centred @ self._factor()
        return -0.5 * z.to(x.dtype).pow(2).sum(dim=1)


class QuadraticEnergy(Architecture):
    """The Gaussian energy f(x) = −½(x − μ)ᵀP(x − μ) with learned μ and P ≻ 0.

    Every training method has a closed-form optimum for it (the data's mean and
    covariance, or Σ + σ²I for denoising score matching), and its log Z is exact, so it is
    how the test-suite checks the methods. In a sweep it runs only on datasets flagged
    ``gaussian = True``: fitting a Gaussian to spirals or rings says nothing about a
    method and would only cost time.
    """

    name = "quadratic"
    description = "Gaussian energy −½(x−μ)ᵀP(x−μ), learned μ and P≻0; Gaussian datasets only"
    data_kinds = frozenset({"vector"})
    features = frozenset({"nonzero_hessian"})
    # Starting at the truth is a control experiment, not a model: labelled, never ranked.
    variant_params = ("start",)
    control_params = ("start",)
    params = {
        "min_diag": Param(1e-3, "floor on the diagonal of the Cholesky factor of P", positive=True),
        "precision": precision_param(),
        "start": Param(
            "identity", "where training starts: identity (μ = 0, P = I) or truth (the "
            "dataset's exact μ and Σ⁻¹: a control that measures a method's drift away from "
            "the optimum, docs/protocol.md section 7)", choices=("identity", "truth"),
        ),
    }

    def build(self, shape: tuple[int, ...]) -> nn.Module:
        return Quadratic(math.prod(shape), self.hparams["min_diag"], self.hparams["precision"])

    def initialise(self, energy: nn.Module, dataset) -> None:
        """With ``start="truth"``, set μ and P to the dataset's exact mean and Σ⁻¹.

        Started there, a method whose objective is minimised by the truth stays within its
        gradient noise of it; one whose stationary point lies elsewhere (short-run CD's
        non-convergent fixed point, DSM's Σ + σ²I) drifts away, whatever its optimiser. So
        the control separates a method's bias from its optimisation.
        """
        if self.hparams["start"] == "truth":
            precision = torch.linalg.inv(dataset.covariance.to(torch.float64))
            energy.set(dataset.mean.to(torch.float64), precision)

    def incompatibility(self, combo) -> str | None:
        reason = super().incompatibility(combo)
        if reason is not None:
            return reason
        if not getattr(combo.dataset, "gaussian", False):
            return (
                f"architecture quadratic is a Gaussian energy, run only on Gaussian datasets "
                f"(closed-form checks); {combo.dataset.name} is not Gaussian"
            )
        return None
