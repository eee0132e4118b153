"""scripts/hmc_resonance.py: the measurement behind HMC's step jitter (docs/samplers.md)."""

from __future__ import annotations

from tests.helpers import load_script


def test_fixed_step_hmc_keeps_the_noise_along_the_resonant_axis_and_jitter_forgets_it(capsys):
    """On correlated_gaussian at ε = 0.3, three leapfrog steps turn the minor axis (s = 0.3)
    by about π: fixed-ε chains from the noise keep over 100 times the truth's variance
    along it, all accepted; jittered HMC (the default) reaches the truth's."""
    rows = load_script("hmc_resonance").main(["--chains", "2000", "--step", "0.3"])
    by_kernel = {row[0]: row for row in rows}
    fixed, jittered = by_kernel["hmc (jitter 0)"], by_kernel["hmc (jitter 0.5)"]
    assert float(fixed[2]) > 0.99 and float(fixed[3]) > 100      # accepted, never contracted
    assert 0.8 < float(jittered[3]) < 1.25 and 0.8 < float(jittered[4]) < 1.25
    assert "| hmc (jitter 0)" in capsys.readouterr().out
