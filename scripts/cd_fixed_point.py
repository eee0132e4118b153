"""Where short-run CD with ULA can land on a Gaussian dataset, in closed form.

On the ``quadratic`` energy f(x) = −½ (x − m)ᵀ P (x − m), a ULA step is linear and Gaussian:

    x' = A x + ε P m + √(2ε) z,    A = I − εP,

so K steps from chains started at ``init_noise`` (mean m₀, covariance C₀) give chains of
mean and covariance

    m_K = m + Aᴷ (m₀ − m),    C_K = Aᴷ C₀ Aᴷ + 2ε Σ_{j<K} A²ʲ

exactly (with A = V diag(a) Vᵀ the sum is V diag(2ε (1 − a²ᴷ) / (1 − a²)) Vᵀ). f is linear in
the statistics x and x xᵀ, so the expected gradient of ``cd_loss`` (α = 0) vanishes exactly
when the chains' two moments equal the data's: m_K = μ and C_K = Σ. That (m, P) is where
short-run CD settles with exact expectations, wherever its optimiser came from; its Fisher
divergence from the data's N(μ, Σ) is

    ½ tr((P − Σ⁻¹) Σ (P − Σ⁻¹)) + ½ ‖P (μ − m)‖².

Two facts bound it (α = 0). Every chain variance is at least 2ε (the sum's first term), so
along an axis of standard deviation s a fixed point needs ε < s²/2: above it the energy
sharpens without end (the "no fixed point" cells; the chains then explode once εP passes 2).
And with ε small the K steps do not forget the wide noise they start from, which CD offsets
by a sharper energy. Between the two lies the best CD can do with that kernel and K.

With Du & Mordatch's regulariser (α > 0) the gradient also needs the third and fourth
moments of the data and the chains (:func:`expected_gradient`: Isserlis' theorem, plus the
fourth cumulant the chains keep from their uniform start); they are exact too, and the
fixed point is where that whole gradient vanishes.

The fixed point is found by the expected gradient's flow from P = I and the data's mean: a
step dP ∝ P (−2∇_P) P (which is P (C_K − Σ) P when α = 0) that keeps P positive definite,
and a Newton step on m; the flow stops at the root with 0 < εP < I, the one reached while
the chains still contract.

Hinton's CD-K (``chain_start=data``) starts the chains from the data batch instead: the same
formulas with (m₀, C₀) = (μ, Σ) and no fourth cumulant (the data are Gaussian). With α = 0 its
fixed point does not depend on K: C_K − Σ = L^K(Σ − C_∞) for the contraction L(C) = A C A,
which vanishes only when Σ = C_∞, ULA's stationary covariance, i.e. P − εP²/2 = Σ⁻¹ (its
bias is ULA's alone, of order ε).

This prints, for a Gaussian dataset and each α, the fixed point's Fisher divergence over
the training chains' step (``cd``'s ``chain_step_scale`` × ``ula``'s ε) and K (``cd``'s
``mcmc_steps``: ULA takes one evaluation per step); docs/protocol.md, section 7, compares
it with trained runs.

Usage::

    python scripts/cd_fixed_point.py [--dataset correlated_gaussian]
        [--scale 0.3,1,2,3,4,5,7,9,10] [--steps 5,10,20,50,100,200,400] [--alpha 0,0.01]
        [--chain-start noise|data]
    python scripts/cd_fixed_point.py --results leaderboards/results.csv [--dataset ...]

``--results`` sets each stored ``cd`` model trained with ``ula`` on the dataset's quadratic
energy beside its configuration's fixed point.
"""

from __future__ import annotations

import argparse
import math

import pandas as pd
import torch
from tabulate import tabulate

import ebmbench

#: Draws of ``init_noise`` for its moments (their error is about 1/√n relative).
NOISE_DRAWS = 200_000


def _outer(d: torch.Tensor) -> torch.Tensor:
    return d[..., :, None] * d[..., None, :]


def _transition(precision: torch.Tensor, eps: torch.Tensor, steps: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A = I − εP's eigenvalues a and eigenvectors V, and Aᴷ, batched."""
    eye = torch.eye(precision.shape[-1], dtype=precision.dtype)
    a, v = torch.linalg.eigh(eye - eps[:, None, None] * precision)
    power = v @ torch.diag_embed(a.pow(steps[:, None].to(a.dtype))) @ v.transpose(-1, -2)
    return a, v, power


def chain_moments(precision: torch.Tensor, mean: torch.Tensor, eps: torch.Tensor,
                  steps: torch.Tensor, m0: torch.Tensor, c0: torch.Tensor,
                  transition: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and covariance of ULA chains on N(mean, precision⁻¹) after ``steps`` steps of
    size ``eps`` from starts of mean m0 and covariance c0; batched over the leading dimension of
    ``precision`` (B, d, d), ``mean`` (B, d), ``eps`` (B,) and ``steps`` (B,);
    ``transition`` is :func:`_transition` of them when the caller has it already.

    >>> p = torch.tensor([[[4.0]]], dtype=torch.float64)
    >>> m, c = chain_moments(p, torch.zeros(1, 1, dtype=torch.float64),
    ...                      torch.tensor([0.1], dtype=torch.float64), torch.tensor([10**4]),
    ...                      torch.zeros(1, dtype=torch.float64), torch.eye(1, dtype=torch.float64))
    >>> round(c.item(), 6) == round(1 / (4 * (1 - 0.1 * 4 / 2)), 6)   # ULA's stationary variance
    True
    """
    a, v, _ = transition if transition is not None else _transition(precision, eps, steps)
    ak = a.pow(steps[:, None].to(a.dtype))
    denominator = 1 - a.square()
    flat = denominator.abs() < 1e-12          # a = ±1: the sum is K terms of 1
    geometric = torch.where(flat, steps[:, None].to(a.dtype),
                            (1 - ak.square()) / torch.where(flat, 1.0, denominator))
    vt = v.transpose(-1, -2)
    c0_rot = vt @ c0 @ v
    cov = v @ (ak[:, :, None] * ak[:, None, :] * c0_rot
               + torch.diag_embed(2 * eps[:, None] * geometric)) @ vt
    shift = (vt @ (m0 - mean)[..., None]).squeeze(-1) * ak
    return mean + (v @ shift[..., None]).squeeze(-1), cov


def expected_gradient(mean: torch.Tensor, precision: torch.Tensor, eps: torch.Tensor,
                      steps: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor,
                      noise: tuple[torch.Tensor, torch.Tensor, torch.Tensor], alpha: float,
                      transition: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The expected gradient of ``cd_loss`` with respect to m and P (samples held fixed),
    batched over (m, P, ε, K), for data N(μ, Σ) and chains from noise of moments
    ``noise`` = (mean, covariance, per-coordinate fourth cumulant).

    With y = x − m, q = yᵀPy and f = −q/2, the loss E_s f − E_d f + α (E_d f² + E_s f²) has

        ∇_P = ½ (E_d[y yᵀ] − E_s[y yᵀ]) + (α/2) (E_d[q y yᵀ] + E_s[q y yᵀ]),
        ∇_m = P (E_s[y] − E_d[y]) − α P (E_d[q y] + E_s[q y]).

    For y of mean δ and covariance C with no third cumulant, E[q y] = 2CPδ + (tr PC + δᵀPδ) δ
    and E[q y yᵀ] = (δᵀPδ + tr PC)(δδᵀ + C) + 2 (δδᵀPC + CPδδᵀ) + 2 CPC (Isserlis) plus, for the
    chains, Σ_c (b_cᵀ P b_c) κ_c b_c b_cᵀ: their start's fourth cumulants κ_c (−w⁴/120 for a
    uniform of width w; the coordinates of ``init_noise`` are independent) carried by the
    columns b_c of Aᴷ. With α = 0 only the first two moments matter. ``transition`` is
    :func:`_transition` of (P, ε, K) when the caller has it already.
    """
    m0, c0, k4 = noise
    transition = transition if transition is not None else _transition(precision, eps, steps)
    ak = transition[2]
    m_k, c_k = chain_moments(precision, mean, eps, steps, m0, c0, transition)
    d_data, d_chain = mu - mean, m_k - mean
    c_data = sigma.expand_as(c_k)
    grad_p = 0.5 * ((c_data + _outer(d_data)) - (c_k + _outer(d_chain)))
    grad_m = (precision @ (d_chain - d_data)[..., None]).squeeze(-1)
    if alpha:
        def third(d, c):
            pd = (precision @ d[..., None]).squeeze(-1)
            tr = torch.einsum("bij,bji->b", precision, c) + (d * pd).sum(-1)
            return 2 * (c @ pd[..., None]).squeeze(-1) + tr[:, None] * d

        def fourth(d, c):
            pd = (precision @ d[..., None]).squeeze(-1)
            tr = torch.einsum("bij,bji->b", precision, c) + (d * pd).sum(-1)
            dd = _outer(d)
            return (tr[:, None, None] * (dd + c) + 2 * (dd @ precision @ c + c @ precision @ dd)
                    + 2 * c @ precision @ c)

        weight = torch.einsum("bkc,bkl,blc->bc", ak, precision, ak) * k4
        kurtosis = torch.einsum("bic,bc,bjc->bij", ak, weight, ak)
        grad_p = grad_p + 0.5 * alpha * (fourth(d_data, c_data) + fourth(d_chain, c_k) + kurtosis)
        grad_m = grad_m - alpha * (precision @ (third(d_data, c_data) + third(d_chain, c_k)
                                                )[..., None]).squeeze(-1)
    return grad_m, grad_p


def fixed_points(mu: torch.Tensor, sigma: torch.Tensor,
                 noise: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                 eps: torch.Tensor, steps: torch.Tensor, alpha: float = 0.0,
                 iterations: int = 20_000, rate: float = 0.5, tolerance: float = 1e-7
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Short-run CD's fixed points (m, P) for each (ε, K) pair, and whether each exists:
    where :func:`expected_gradient` vanishes, reached from the energy's initialisation.

    Returns ``(mean, precision, status)``, batched over the pairs; ``status`` is 1 where the
    flow settled, 0 where it reached εP ≥ I (no fixed point with contracting chains: CD
    keeps sharpening the energy) and −1 where it did not settle within ``iterations``.
    """
    batch, dim = len(eps), len(mu)
    eye = torch.eye(dim, dtype=torch.float64)
    precision = eye.expand(batch, dim, dim).clone()
    # From the data's mean (the energy starts at m = 0; the fixed point does not depend on
    # where m starts, and a far m would sharpen P by the means' gap first).
    mean = mu.expand(batch, dim).clone()
    found = torch.zeros(batch, dtype=torch.bool)
    no_root = torch.zeros(batch, dtype=torch.bool)
    active = torch.ones(batch, dtype=torch.bool)
    # Each pair's own rate: halved when its residual grows (the flow overshot), else grown
    # back by 10 % up to ``rate``.
    rates = torch.full((batch,), rate, dtype=torch.float64)
    last = torch.full((batch,), math.inf, dtype=torch.float64)
    scale = sigma.abs().max()
    for _ in range(iterations):
        if not active.any():
            break
        idx = active.nonzero().squeeze(-1)
        p, m, e, k = precision[idx], mean[idx], eps[idx], steps[idx]
        # One eigendecomposition of A = I − εP per step serves the moments, the gradient and
        # the mean's Newton step.
        transition = _transition(p, e, k)
        grad_m, grad_p = expected_gradient(m, p, e, k, mu, sigma, noise, alpha, transition)
        # −2∇_P is C_K − Σ when α = 0 and the means match; the mean's step is Newton's for
        # the α = 0 part: m + Aᴷ(m₀ − m) = μ ⇔ (I − Aᴷ) m = μ − Aᴷ m₀, exact at rate 1.
        gap = -2 * grad_p
        shift = torch.linalg.solve(eye - transition[2], torch.linalg.solve(p, grad_m[..., None])).squeeze(-1)
        residual = torch.maximum(gap.abs().amax(dim=(-2, -1)), shift.abs().amax(dim=-1))
        # A non-finite residual (the flow ran off) ends that pair unsettled.
        lost = ~torch.isfinite(residual)
        if lost.any():
            active[idx[lost]] = False
            gap, shift, residual = (torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)
                                    for t in (gap, shift, residual))
        converged = (residual < tolerance * scale) & ~lost
        r = torch.where(residual > last[idx] * 1.01, rates[idx] / 2,
                        torch.clamp(rates[idx] * 1.1, max=rate))
        rates[idx], last[idx] = r, residual
        m_new = m - (r / rate)[:, None] * shift
        # The flow's step P (C_K − Σ) P, taken as P ← P^½ exp(η P^½ (C_K − Σ) P^½) P^½: P
        # stays positive definite, and a step moves each of P's eigenvalues by at most
        # 10 % (far from the fixed point the chains are 30 times too wide).
        w, u = torch.linalg.eigh(p)
        root = u @ torch.diag_embed(w.clamp_min(0).sqrt()) @ u.transpose(-1, -2)
        h = root @ gap @ root
        h = (h + h.transpose(-1, -2)) / 2
        hw, hu = torch.linalg.eigh(h)
        size = hw.abs().amax(dim=-1)
        r = r / torch.clamp(r * size / 0.1, min=1)
        expm = hu @ torch.diag_embed(torch.exp(r[:, None] * hw)) @ hu.transpose(-1, -2)
        p_new = root @ expm @ root
        p_new = (p_new + p_new.transpose(-1, -2)) / 2
        values = torch.linalg.eigvalsh(p_new)
        escaped = (e * values[:, -1] >= 1) | (values[:, 0] <= 0) | ~torch.isfinite(values).all(-1)
        precision[idx] = torch.where(converged[:, None, None], p, p_new)
        mean[idx] = torch.where(converged[:, None], m, m_new)
        found[idx[converged]] = True
        no_root[idx[escaped & ~converged & ~lost]] = True
        active[idx[converged | escaped | lost]] = False
    # The flow slows down along P's flat directions (16-D): Newton's method finishes what it
    # started, from where it got to.
    for i in active.nonzero().squeeze(-1).tolist():
        settled = _newton(mean[i], precision[i], eps[i:i + 1], steps[i:i + 1], mu, sigma, noise,
                          alpha, tolerance * float(scale))
        # Only a root whose chains contract counts; Newton may land on another (εP ≥ I),
        # which says nothing about whether a contracting one exists: still unsettled.
        if settled is not None and float(eps[i] * torch.linalg.eigvalsh(settled[1])[-1]) < 1:
            mean[i], precision[i] = settled
            found[i] = True
    return mean, precision, torch.where(found, 1, torch.where(no_root, 0, -1))


def _newton(mean: torch.Tensor, precision: torch.Tensor, eps: torch.Tensor, steps: torch.Tensor,
            mu: torch.Tensor, sigma: torch.Tensor,
            noise: tuple[torch.Tensor, torch.Tensor, torch.Tensor], alpha: float,
            tolerance: float, iterations: int = 30) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Newton's method on :func:`expected_gradient` = 0 over (m, the upper triangle of P)
    from one pair's (m, P); the root, or None when it does not converge to a positive
    definite P."""
    dim = len(mu)
    upper = torch.triu_indices(dim, dim)

    def unpack(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = torch.zeros(dim, dim, dtype=theta.dtype)
        p[upper[0], upper[1]] = theta[dim:]
        return theta[:dim], p + p.T - torch.diag(p.diagonal())

    def residual(theta: torch.Tensor) -> torch.Tensor:
        m, p = unpack(theta)
        grad_m, grad_p = expected_gradient(m[None], p[None], eps, steps, mu, sigma, noise, alpha)
        return torch.cat([grad_m[0], grad_p[0][upper[0], upper[1]]])

    theta = torch.cat([mean, precision[upper[0], upper[1]]])
    for _ in range(iterations):
        value = residual(theta)
        if not torch.isfinite(value).all():
            return None
        if float(value.abs().max()) < tolerance:
            m, p = unpack(theta)
            return (m, p) if float(torch.linalg.eigvalsh(p)[0]) > 0 else None
        jacobian = torch.autograd.functional.jacobian(residual, theta)
        try:
            theta = theta - torch.linalg.solve(jacobian, value)
        except torch.linalg.LinAlgError:  # a singular Jacobian: no Newton step from here
            return None
    return None


def fisher_divergence(mu: torch.Tensor, sigma: torch.Tensor, mean: torch.Tensor,
                      precision: torch.Tensor) -> torch.Tensor:
    """½ E‖∇log N(μ, Σ) − ∇f‖² for f = −½ (x − m)ᵀ P (x − m), batched over (m, P).

    >>> s = torch.eye(2, dtype=torch.float64)
    >>> fisher_divergence(torch.zeros(2, dtype=torch.float64), s, torch.zeros(1, 2, dtype=torch.float64),
    ...                   2 * s[None]).item()   # ½ tr(I·I·I)
    1.0
    """
    diff = precision - torch.linalg.inv(sigma)
    trace = torch.einsum("bij,jk,bki->b", diff, sigma, diff)
    offset = (precision @ (mu - mean)[..., None]).squeeze(-1)
    return 0.5 * trace + 0.5 * offset.square().sum(-1)


def noise_moments(dataset: ebmbench.Dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The mean, covariance and per-coordinate fourth cumulant E(x − x̄)⁴ − 3 var² of
    ``dataset.init_noise``, from :data:`NOISE_DRAWS` draws."""
    x = dataset.init_noise(NOISE_DRAWS, torch.Generator().manual_seed(0)).double()
    centred = x - x.mean(0)
    var = centred.square().mean(0)
    return (x.mean(0), torch.cov(x.T).reshape(x.shape[1], x.shape[1]),
            centred.pow(4).mean(0) - 3 * var.square())


def start_moments(dataset: ebmbench.Dataset, chain_start: str
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The chains' starting moments (mean, covariance, fourth cumulant): ``init_noise``'s for
    short-run CD, the data's own N(μ, Σ) (no fourth cumulant) for CD-K from the data."""
    if chain_start == "data":
        mean = dataset.mean.double()
        return mean, dataset.covariance.double(), torch.zeros_like(mean)
    return noise_moments(dataset)


def _cell(value: float) -> str:
    """A fixed point's Fisher divergence as printed (``inf``: none; ``nan``: unsettled)."""
    if math.isinf(value):
        return "no fixed point"
    return "not settled" if math.isnan(value) else f"{value:.3g}"


def _gaussian(dataset_name: str) -> ebmbench.Dataset:
    """The dataset plugin, or a UserError naming the Gaussian ones."""
    dataset = ebmbench.get_dataset(dataset_name)
    if not getattr(dataset, "gaussian", False):
        gaussian = [n for n in ebmbench.list_plugins("dataset")
                    if getattr(ebmbench.get_dataset(n), "gaussian", False)]
        raise ebmbench.UserError(f"dataset {dataset_name!r} is not Gaussian (the closed form "
                                 f"needs the data's mean and covariance). Gaussian datasets: "
                                 f"{', '.join(gaussian)}")
    return dataset


def settled_values(dataset: ebmbench.Dataset, eps: torch.Tensor, steps: torch.Tensor,
                   alpha: float, chain_start: str = "noise") -> list[float]:
    """The fixed point's Fisher divergence for each (ε, K) pair: ``inf`` where there is none,
    ``nan`` where the flow did not settle."""
    mean, precision, status = fixed_points(dataset.mean, dataset.covariance,
                                           start_moments(dataset, chain_start), eps, steps, alpha)
    fd = fisher_divergence(dataset.mean, dataset.covariance, mean, precision)
    return [{1: float(v), 0: math.inf, -1: math.nan}[st]
            for v, st in zip(fd.tolist(), status.tolist(), strict=True)]


def table(dataset_name: str, scales: list[float], steps: list[int], alpha: float = 0.0,
          chain_start: str = "noise") -> tuple[list[list[str]], dict[tuple[float, int], float]]:
    """The fixed point's Fisher divergence per (chain step scale, K) at regulariser weight
    ``alpha``, chains from ``chain_start``, as printed rows and as numbers (``inf`` where
    there is none)."""
    dataset = _gaussian(dataset_name)
    base_eps = ebmbench.get_sampler("ula").hparams["step_size"]
    pairs = [(s, k) for s in scales for k in steps]
    eps = torch.tensor([s * base_eps for s, _ in pairs], dtype=torch.float64)
    ks = torch.tensor([k for _, k in pairs])
    values = dict(zip(pairs, settled_values(dataset, eps, ks, alpha, chain_start), strict=True))
    rows = [[f"×{s:g}", f"{s * base_eps:.4g}", *(_cell(values[s, k]) for k in steps)]
            for s in scales]
    return rows, values


def stored_models(results: str, dataset_name: str) -> pd.DataFrame:
    """Each ``cd`` model trained with ``ula`` on the quadratic energy of ``dataset_name`` in
    a results store or export, one line per configuration: its chain start, K, chain step,
    α, the mean (min–max) over seeds of the test Fisher divergence its runs report and of
    their last curve point's validation one (where it settled, not the checkpoint it kept),
    beside the configuration's fixed point."""
    dataset = _gaussian(dataset_name)
    frame = ebmbench.load_results(results)
    runs = frame[(frame["role"] == "run") & (frame["method"] == "cd") & (frame["sampler"] == "ula")
                 & (frame["architecture"] == "quadratic") & (frame["dataset"] == dataset_name)
                 # a degenerate model (a status of its samples or density) still has its
                 # Fisher divergence; a failed run has none
                 & frame["metric.fisher_divergence"].notna()].drop_duplicates("train_key")
    lines = []
    for _, row in runs.iterrows():
        method, sampler = row["hyperparams"]["method"], row["hyperparams"]["sampler"]
        curve = [p for p in (row.get("curve") or []) if "fisher_divergence" in p]
        # rows from before chain_start existed started from noise
        lines.append({"start": method.get("chain_start", "noise"), "K": int(method["mcmc_steps"]),
                      "chain step": float(method["chain_step_scale"]),
                      "α": float(method["alpha"]), "ε": method["chain_step_scale"] * sampler["step_size"],
                      "reported": row["metric.fisher_divergence"],
                      "last point": curve[-1]["fisher_divergence"] if curve else math.nan})
    if not lines:
        return pd.DataFrame()
    models = pd.DataFrame(lines).groupby(["start", "K", "chain step", "α", "ε"], as_index=False).agg(
        seeds=("reported", "size"), reported=("reported", "mean"),
        reported_min=("reported", "min"), reported_max=("reported", "max"),
        last_point=("last point", "mean"))
    predicted = pd.Series(math.nan, index=models.index)
    for (start, alpha), group in models.groupby(["start", "α"]):  # batched per start and α
        predicted[group.index] = settled_values(
            dataset, torch.tensor(group["ε"].tolist(), dtype=torch.float64),
            torch.tensor(group["K"].astype(int).tolist()), float(alpha), start)
    return models.assign(fixed_point=predicted)


def _numbers(kind: type, positive: bool = True):
    """An argparse type: a comma list of ``kind`` (positive ones when ``positive``)."""
    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of numbers") from None
        if any(not math.isfinite(v) or v < 0 or (positive and v == 0) for v in values):
            raise argparse.ArgumentTypeError(
                f"{text!r}: every value must be {'positive' if positive else 'at least 0'}")
        return values
    return parse


def main(argv: list[str] | None = None) -> dict[tuple[float, float, int], float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="correlated_gaussian")
    parser.add_argument("--scale", type=_numbers(float), default="0.3,1,2,3,4,5,7,9,10",
                        help="cd's chain_step_scale values (× ula's step size), a comma list")
    parser.add_argument("--steps", type=_numbers(int), default="5,10,20,50,100,200,400",
                        help="cd's mcmc_steps values K, a comma list")
    parser.add_argument("--alpha", type=_numbers(float, positive=False), default="0",
                        help="cd's regulariser weights α, a comma list (one table each)")
    parser.add_argument("--chain-start", choices=("noise", "data"), default="noise",
                        help="where cd's chains start: noise (short-run CD, the default) or "
                        "the data (Hinton's CD-K)")
    parser.add_argument("--results", help="instead, each cd/ula quadratic model of a results "
                        "store or export (e.g. leaderboards/results.csv) beside its fixed point")
    args = parser.parse_args(argv)
    if args.results:
        try:
            models = stored_models(args.results, args.dataset)
        except ebmbench.UserError as error:
            parser.error(str(error))
        shown = models.assign(fixed_point=models["fixed_point"].map(_cell)) if len(models) else models
        print(shown.to_markdown(index=False, floatfmt=".3g") if len(models)
              else f"no cd model trained with ula on {args.dataset}'s quadratic energy there")
        return {(m["α"], m["chain step"], m["K"]): m["fixed_point"] for _, m in models.iterrows()}
    values: dict[tuple[float, float, int], float] = {}
    for alpha in args.alpha:
        try:
            rows, by_pair = table(args.dataset, args.scale, args.steps, alpha, args.chain_start)
        except ebmbench.UserError as error:
            parser.error(str(error))
        values |= {(alpha, *pair): v for pair, v in by_pair.items()}
        print(f"\nα = {alpha:g}, chains from the {args.chain_start}\n")
        print(tabulate(rows, headers=["chain step", "ε", *(f"K = {k}" for k in args.steps)],
                       tablefmt="github", disable_numparse=True))
    return values


if __name__ == "__main__":
    main()
