"""Mixed precision: every built-in architecture's ``precision=bf16`` computes its body in bf16
and f in float32; scores, acceptance ratios and AIS weights stay in float32 (or wider) under
autocast; each run row records the precision. All on the CPU, whose autocast has bf16 too
(tests/test_cuda.py repeats the architecture check on CUDA)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal

import ebmbench
from ebmbench import (
    PRECISIONS,
    MixedPrecisionEnergy,
    annealed_importance_sampling,
    energy_and_score,
    energy_precision,
    get_architecture,
    get_sampler,
    list_plugins,
)
from ebmbench.plugins import get_plugin_manager

SHAPES = {"mlp": (2,), "quadratic": (2,), "convnet": (1, 8, 8), "resnet": (1, 8, 8),
          "wide_resnet": (1, 8, 8)}


def builtin_architectures() -> list[str]:
    pm = get_plugin_manager()
    return [n for n in list_plugins("architecture") if pm.info("architecture", n).source ==
            "ebmbench"]


def test_every_builtin_architecture_has_the_precision_parameter():
    assert set(builtin_architectures()) == set(SHAPES)
    for name in SHAPES:
        param = get_architecture(name).params["precision"]
        assert param.default == "fp32" and tuple(param.choices) == PRECISIONS
    with pytest.raises(ebmbench.UserError, match="precision"):
        get_architecture("mlp", precision="fp16")


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_bf16_runs_the_body_in_bf16_and_gives_float32_f_close_to_fp32(name):
    shape = SHAPES[name]
    torch.manual_seed(0)
    fp32 = get_architecture(name, budget="smoke").build(shape).eval()
    bf16 = get_architecture(name, budget="smoke", precision="bf16").build(shape).eval()
    bf16.load_state_dict(fp32.state_dict())
    assert energy_precision(bf16) == "bf16" and energy_precision(fp32) == "fp32"
    layers = [m for m in bf16.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    seen: list[torch.dtype] = []
    hooks = [m.register_forward_hook(lambda m, i, out: seen.append(out.dtype)) for m in layers]
    x = torch.randn(6, *shape, generator=torch.Generator().manual_seed(1))
    f_lo, s_lo = energy_and_score(bf16, x)
    for hook in hooks:
        hook.remove()
    f_hi, s_hi = energy_and_score(fp32, x)
    assert f_lo.dtype == s_lo.dtype == torch.float32
    if layers:  # every layer but the last (the head giving f) computed in bf16
        assert seen[:-1] == [torch.bfloat16] * (len(seen) - 1) and seen[-1] == torch.float32
    # bf16 rounds at 2⁻⁸ relative: f and the score agree with fp32 to about that.
    assert (f_lo - f_hi).abs().max() <= 0.02 * (f_hi.abs().max() + 1e-3)
    assert (s_lo - s_hi).norm() <= 0.05 * s_hi.norm()
    assert not torch.equal(f_lo, f_hi)  # it really is another computation


def test_mixed_precision_energy_wraps_any_network():
    torch.manual_seed(0)
    body, head = nn.Sequential(nn.Linear(3, 8), nn.SiLU()), nn.Linear(8, 1)
    f = MixedPrecisionEnergy(body, nn.Sequential(head, nn.Flatten(0)), precision="bf16")
    x = torch.randn(4, 3)
    assert f(x).dtype == torch.float32
    torch.testing.assert_close(f(x), head(body(x)).squeeze(-1), rtol=0.05, atol=0.02)
    whole = MixedPrecisionEnergy(nn.Sequential(body, head, nn.Flatten(0)), precision="bf16")
    assert whole(x).dtype == torch.float32  # f itself computed in bf16, then cast back
    with pytest.raises(ValueError, match="unknown precision"):
        MixedPrecisionEnergy(body, precision="int8")


def test_ais_weights_stay_wide_under_autocast_with_a_bf16_energy():
    """log Z of N(0, I) in 2-D (log 2π) through a bf16 quadratic energy, inside an autocast
    region: the weights are float64 and the estimate is within bf16's rounding of f."""
    energy = get_architecture("quadratic", precision="bf16").build((2,))  # P = I at init
    base = Independent(Normal(torch.zeros(2), 2 * torch.ones(2)), 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = annealed_importance_sampling(
            energy, base, get_sampler("mala", step_size=0.3), n_chains=512, n_temperatures=20,
            generator=torch.Generator().manual_seed(0))
    assert result.log_w.dtype == torch.float64 and result.x.dtype == torch.float32
    assert abs(result.log_z - math.log(2 * math.pi)) < 3 * result.log_z_se + 0.02


def test_run_rows_record_the_precision_and_the_samplers_notes(tmp_path, fresh_plugins):
    frame = ebmbench.run(
        methods=["dsm"], samplers=["ula"], architectures=["mlp", "quadratic"],
        datasets=["correlated_gaussian"], metrics=["cost"], budget="smoke",
        results=tmp_path / "r.sqlite",
        overrides={"architecture.mlp.precision": "bf16", "method.dsm.steps": 5,
                   "sampler.ula.step_impl": "cuda_graph"},
    )
    rows = {r.architecture: r for _, r in frame.iterrows()}
    assert {a: r.status for a, r in rows.items()} == {"mlp": "ok", "quadratic": "ok"}
    assert rows["mlp"].hyperparams["precision"] == "bf16"
    assert rows["quadratic"].hyperparams["precision"] == "fp32"
    for row in rows.values():
        assert "ran eagerly" in row.notes["sampler_step_impl"]
