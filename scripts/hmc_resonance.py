"""Does a kernel forget where its chains started? HMC's half-period resonance, measured.

Chains start from a Gaussian dataset's ``init_noise`` and run on its exact density for
the gradient evaluations a training chain spends (K = 91 by default: ⌈91 / L⌉ HMC
iterations), at several fixed step sizes. For each run the script prints the acceptance
rate and the chains' variance along each of the true covariance's axes (narrowest first),
as a multiple of the truth's: 1 means the chains forgot the noise along that axis, the
noise's own spread (over 100 on ``correlated_gaussian``'s minor axis) means they never
moved off it.

With a fixed ε (``--jitter 0``) HMC's L leapfrog steps turn an axis of standard deviation s
by about Lε/s; near π every move sends x − μ to about −(x − μ) and is accepted, so that
axis keeps the noise's spread whatever the acceptance says (docs/samplers.md, "HMC's step
jitter"). MALA and jittered HMC (the default ``step_jitter``) do not.

Usage::

    python scripts/hmc_resonance.py [--dataset correlated_gaussian] [--evaluations 91]
        [--chains 4000] [--step 0.05,0.1,0.2,0.3,0.4] [--jitter 0,0.2,0.5]
"""

from __future__ import annotations

import argparse
import math

import torch
from tabulate import tabulate

import ebmbench


def variance_ratios(dataset: str, sampler: str, step: float, evaluations: int, chains: int,
                    **params: float) -> tuple[float, list[float]]:
    """The acceptance rate and the chains' variance along each true axis over the truth's,
    for ``chains`` chains from ``dataset``'s noise after ``evaluations`` score evaluations."""
    ds = ebmbench.get_dataset(dataset)
    x0 = ds.init_noise(chains, torch.Generator().manual_seed(0)).double()
    kernel = ebmbench.get_sampler(sampler, step_size=step, **params)
    steps = math.ceil(evaluations / kernel.evaluations_per_step())
    # The dataset's exact log density is the energy the chains sample.
    result = kernel.sample(ds.log_prob, x0, steps, generator=torch.Generator().manual_seed(1))
    variances, axes = torch.linalg.eigh(ds.covariance.double())
    along = (axes.T @ torch.cov(result.x.T) @ axes).diagonal() / variances
    return float(result.stats.get("acceptance_rate", math.nan)), along.tolist()


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="correlated_gaussian")
    parser.add_argument("--evaluations", type=int, default=91)
    parser.add_argument("--chains", type=int, default=4000)
    parser.add_argument("--step", default="0.05,0.1,0.2,0.3,0.4")
    parser.add_argument("--jitter", default=None,
                        help="hmc's step_jitter values, a comma list (default: 0 and the default)")
    args = parser.parse_args(argv)
    jitters = ([float(j) for j in args.jitter.split(",")] if args.jitter
               else [0.0, ebmbench.get_sampler("hmc").hparams["step_jitter"]])
    kernels = [("mala", {})] + [("hmc", {"step_jitter": j}) for j in jitters]
    body, along = [], []
    for step in (float(s) for s in args.step.split(",")):
        for name, params in kernels:
            accept, along = variance_ratios(args.dataset, name, step, args.evaluations,
                                            args.chains, **params)
            label = name + "".join(f" (jitter {v:g})" for v in params.values())
            body.append([label, f"{step:g}", f"{accept:.2f}", *(f"{v:.3g}" for v in along)])
    print(tabulate(body, headers=["kernel", "ε", "acceptance",
                                  *(f"variance / truth, axis {i + 1}" for i in range(len(along)))],
                   tablefmt="github", disable_numparse=True))
    return body


if __name__ == "__main__":
    main()
