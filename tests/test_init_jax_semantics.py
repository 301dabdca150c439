"""Init against outside references (issue 14, items 1-5): validation of every rule before any write, JAX's
glorot_normal/he_normal and fan_geo_avg (semantics from the JAX docs, distributions from scipy),
delta_orthogonal's tap under torch's padding="same", and activation gains against scipy.integrate.quad."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
import torch.nn.functional as F

import torchinit.init as ti
from torchinit.init.gain import second_moment

scipy_stats = pytest.importorskip("scipy.stats")
scipy_integrate = pytest.importorskip("scipy.integrate")

ALPHA = 1e-4  # KS p-value floor (seeded draws: reproducible)


def snapshot(m):
    return [p.detach().clone() for p in m.parameters()]


# -- 1. every rule's actual parameters are validated before the first write ---------------------------------

@pytest.mark.parametrize("seeded", [True, False])
def test_trunc_normal_without_mass_fails_before_any_write(seeded):
    m = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    before = snapshot(m)
    rules = [ti.Rule(scheme="xavier_uniform"),
             ti.Rule(names="1.weight", scheme=ti.Scheme("trunc_normal", mean=0, std=1, a=40, b=41))]
    kwargs = {"seed": 0} if seeded else {"generator": torch.Generator().manual_seed(0)}
    with pytest.raises(ti.InitError, match=r"1.weight: trunc_normal: the interval \[40.0, 41.0\] has no probability mass"):
        ti.apply_init(m, rules, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))  # 0.weight, planned first, untouched


def test_values_beyond_fp32_fail_before_any_write():
    m = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    before = snapshot(m)
    with pytest.raises(ti.InitError, match=r"1.weight: b - a = 6e\+38 is beyond fp32's range"):
        ti.apply_init(m, [ti.Rule(scheme="zeros"), ti.Rule(names="1.weight", scheme=ti.Scheme("uniform", a=-3e38, b=3e38))],
                      seed=0)
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))


def test_an_overridden_invalid_rule_is_still_an_error():
    m = nn.Sequential(nn.Linear(8, 8))
    with pytest.raises(ti.InitError, match="std must be positive.*overridden by a later rule"):
        ti.apply_init(m, [ti.Rule(scheme=ti.Scheme("normal", std=-1.0)), ti.Rule(scheme="zeros")], seed=0)


# -- 3. names borrowed from JAX/Keras mean what they mean there --------------------------------------------

def test_truncation_constant_is_scipys():
    assert float(scipy_stats.truncnorm(-2, 2).std()) == pytest.approx(0.87962566103423978, rel=1e-15)


@pytest.mark.parametrize("name, scale, mode", [("he_normal", 2.0, "fan_in"), ("glorot_normal", 1.0, "fan_avg")])
def test_he_and_glorot_normal_follow_jax(name, scale, mode):
    """JAX: variance_scaling(scale, mode, "truncated_normal"): a normal truncated at +-2 sigma, std divided by
    the truncated std, so Var = scale / n."""
    conv = nn.Conv2d(16, 32, 3)
    ti.apply_init(conv, name, seed=3)
    fan_in, fan_out = 16 * 9, 32 * 9
    n = fan_in if mode == "fan_in" else (fan_in + fan_out) / 2
    sigma = math.sqrt(scale / n) / float(scipy_stats.truncnorm(-2, 2).std())
    w = conv.weight.detach().double().flatten().numpy()
    assert scipy_stats.kstest(w, scipy_stats.truncnorm(-2, 2, scale=sigma).cdf).pvalue > ALPHA
    assert abs(w).max() <= 2 * sigma * (1 + 1e-6)
    # torch's names stay torch's: kaiming_normal_/xavier_normal_ are untruncated
    t = torch.empty(256, 144)
    ti.kaiming_normal_(t, generator=torch.Generator().manual_seed(0))
    assert float(t.abs().max()) > 2 * math.sqrt(2 / 144) / 0.8796 * 1.2


def test_jax_layout_and_fan_geo_avg():
    w = torch.empty(3, 3, 16, 32)  # JAX's (*kernel, in, out)
    ti.glorot_normal_(w, in_axis=-2, out_axis=-1, generator=torch.Generator().manual_seed(1))
    var = 1.0 / ((16 * 9 + 32 * 9) / 2)
    assert abs(float(w.double().var()) / var - 1) < 5 * math.sqrt(2 / w.numel())  # truncated normal: kurtosis < 3
    w = torch.empty(96, 160)
    ti.variance_scaling_(w, scale=2.0, mode="fan_geo_avg", distribution="normal", generator=torch.Generator().manual_seed(2))
    var = 2.0 / math.sqrt(160 * 96)  # JAX: the geometric mean of fan_in and fan_out
    assert abs(float(w.double().var()) / var - 1) < 5 * math.sqrt(2 / w.numel())
    rep = ti.apply_init(nn.Linear(160, 96), "variance_scaling", scale=2.0, mode="fan_geo_avg", distribution="uniform", seed=0)
    assert rep["weight"].std == pytest.approx(math.sqrt(var))


# -- 4. delta_orthogonal: the tap that is the identity under padding="same" --------------------------------

@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note on its own padding copy
@pytest.mark.parametrize("k", [3, 4, (2, 5)])
def test_delta_orthogonal_is_an_isometry_under_same_padding(k):
    conv = nn.Conv2d(8, 8, k, padding="same", bias=False)
    ti.delta_orthogonal_(conv.weight, generator=torch.Generator().manual_seed(0))
    ks = (k, k) if isinstance(k, int) else k
    tap = tuple((s - 1) // 2 for s in ks)
    q = conv.weight.detach()[(slice(None), slice(None)) + tap]
    torch.testing.assert_close(q @ q.T, torch.eye(8), atol=1e-6, rtol=0)
    x = torch.randn(2, 8, 9, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = conv(x)  # torch pads (k - 1) // 2 on the left for "same"
    torch.testing.assert_close(y, torch.einsum("oi,nihw->nohw", q, x), atol=1e-5, rtol=1e-5)  # no shift
    torch.testing.assert_close(y.norm(dim=1), x.norm(dim=1), atol=1e-5, rtol=1e-5)


# -- 5. gains by quadrature split at the kinks, against scipy's adaptive quadrature ---------------------------

def _quad_second_moment(f, points=()):
    phi = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa: E731
    g = lambda z: float(f(torch.tensor([z], dtype=torch.float64))) ** 2 * phi(z)  # noqa: E731
    edges = (-40.0, *points, 40.0)
    return sum(scipy_integrate.quad(g, a, b, epsabs=1e-14, epsrel=1e-13, limit=200)[0] for a, b in zip(edges, edges[1:]))


@pytest.mark.parametrize("name, f, points", [
    ("hardswish", F.hardswish, (-3.0, 3.0)), ("elu", F.elu, (0.0,)), ("selu", F.selu, (0.0,)),
    ("hardsigmoid", F.hardsigmoid, (-3.0, 3.0)), ("gelu", F.gelu, ()), ("mish", F.mish, ()),
])
def test_variance_preserving_gain_matches_adaptive_quadrature(name, f, points):
    ref = 1 / math.sqrt(_quad_second_moment(f, points))
    assert ti.variance_preserving_gain(name) == pytest.approx(ref, rel=1e-12)
    if name == "selu":  # SELU's constants make E[selu(z)^2] = 1 (Klambauer et al.): was 0.99998
        assert ti.variance_preserving_gain(nn.SELU()) == pytest.approx(1.0, abs=1e-9)
    if name == "hardswish":
        assert ti.calculate_gain(nn.Hardswish()) == pytest.approx(1.7366572, abs=1e-7)  # was 1.73675


def test_kinks_of_parametrised_modules():
    ref = 1 / math.sqrt(_quad_second_moment(lambda z: F.hardtanh(z, -2.0, 0.5), (-2.0, 0.5)))
    assert ti.calculate_gain(nn.Hardtanh(-2.0, 0.5)) == pytest.approx(ref, rel=1e-12)


def test_tanh_slope_with_torchs_gain():
    """Slope of q -> g^2 E[f(sqrt(q) z)^2] at q = 1: 0.505 with g = 5/3 (gain.py's table said 0.461, which
    is the slope for the variance-preserving g = 1.593)."""
    def slope(g):
        h = 1e-4
        up = second_moment(lambda x: torch.tanh(x * math.sqrt(1 + h)))
        dn = second_moment(lambda x: torch.tanh(x * math.sqrt(1 - h)))
        return g * g * (up - dn) / (2 * h)

    phi = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa: E731
    exact = scipy_integrate.quad(lambda z: math.tanh(z) * (1 - math.tanh(z) ** 2) * z * phi(z), -40, 40)[0]
    assert slope(5 / 3) == pytest.approx((5 / 3) ** 2 * exact, rel=1e-6) and round(slope(5 / 3), 3) == 0.505
    assert round(slope(ti.variance_preserving_gain("tanh")), 3) == 0.461
