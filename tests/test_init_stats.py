"""Statistics of every scheme against theory: KS tests (p > 1e-4, so a correct sampler fails about once in
ten thousand runs per check) and moment checks with ~5-sigma confidence bounds."""

import math

import pytest
import torch
from scipy import stats
from torch import nn

import torchinit.init as ti
from torchinit.init.schemes import TRUNC_NORMAL_STD_CORRECTION

ALPHA = 1e-4


def ks(x, dist, *args):
    return stats.kstest(x.detach().double().reshape(-1).numpy(), dist, args=args).pvalue


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("how", ["generator", "seed"])
def test_uniform_normal(how):
    w = torch.empty(200, 300)
    if how == "generator":
        ti.uniform_(w, -0.5, 1.5, generator=gen(1))
    else:
        lin = nn.Linear(300, 200)
        ti.apply_init(lin, [ti.Rule(names="weight", scheme=ti.scheme("uniform", a=-0.5, b=1.5))], seed=1)
        w = lin.weight
    assert ks(w, "uniform", -0.5, 2.0) > ALPHA
    ti.normal_(w, 0.3, 0.02, generator=gen(2))
    assert ks(w, "norm", 0.3, 0.02) > ALPHA


@pytest.mark.parametrize("mean,std,a,b,units", [(0.0, 1.0, -2.0, 2.0, "abs"), (0.0, 0.02, -2.0, 2.0, "abs"),
                                                (1.0, 0.5, -1.0, 3.0, "std"), (0.0, 1.0, 1.5, math.inf, "abs")])
def test_trunc_normal(mean, std, a, b, units):
    w = torch.empty(300, 300)
    ti.trunc_normal_(w, mean, std, a, b, units=units, generator=gen(3))
    lo, hi = (a, b) if units == "std" else ((a - mean) / std, (b - mean) / std)
    assert ks(w, "truncnorm", lo, hi, mean, std) > ALPHA
    alo, ahi = (mean + a * std, mean + b * std) if units == "std" else (a, b)
    assert float(w.min()) >= alo and float(w.max()) <= ahi


def test_trunc_normal_bf16_tiny_std():
    w = torch.empty(256, 256, dtype=torch.bfloat16)
    ti.trunc_normal_(w, 0.0, 1e-4, -2e-4, 2e-4, generator=gen(4))
    assert float(w.float().abs().max()) <= 2e-4 * (1 + 2**-8)
    assert abs(float(w.float().std()) / (1e-4 * 0.8796) - 1) < 0.05


def _fans(shape):
    r = math.prod(shape[2:])
    return shape[1] * r, shape[0] * r


@pytest.mark.parametrize("shape", [(128, 256), (64, 32, 3, 3)])
@pytest.mark.parametrize("name", ["xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
                                  "lecun_uniform", "lecun_normal", "he_normal", "glorot_uniform", "glorot_normal"])
def test_fan_schemes(name, shape):
    fi, fo = _fans(shape)
    w = torch.empty(shape)
    getattr(ti, name + "_")(w, generator=gen(5))
    if name.startswith(("xavier", "glorot")):
        std = math.sqrt(2.0 / (fi + fo))
    elif name.startswith(("kaiming", "he")):
        std = math.sqrt(2.0 / (1 + 0.0)) / math.sqrt(fi)  # torch's default: leaky_relu with a=0
    else:
        std = 1 / math.sqrt(fi)
    if name.endswith("uniform"):
        bound = math.sqrt(3) * std
        assert ks(w, "uniform", -bound, 2 * bound) > ALPHA
    elif name in ("lecun_normal", "he_normal", "glorot_normal"):  # JAX/Keras: truncated at 2 sigma, variance kept
        s = std / TRUNC_NORMAL_STD_CORRECTION
        assert ks(w, "truncnorm", -2, 2, 0, s) > ALPHA
        assert float(w.abs().max()) <= 2 * s * (1 + 1e-6)
    else:
        assert ks(w, "norm", 0, std) > ALPHA


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["truncated_normal", "normal", "uniform"])
def test_variance_scaling(mode, distribution):
    w = torch.empty(96, 160)
    ti.variance_scaling_(w, scale=2.0, mode=mode, distribution=distribution, generator=gen(6))
    n = {"fan_in": 160, "fan_out": 96, "fan_avg": 128}[mode]
    var = 2.0 / n
    m = w.numel()
    # sample variance within 5 standard errors (kurtosis <= 3 for all three)
    assert abs(float(w.double().var()) / var - 1) < 5 * math.sqrt(2 / m)
    if distribution == "truncated_normal":
        s = math.sqrt(var) / 0.87962566103423978
        assert float(w.abs().max()) <= 2 * s * (1 + 1e-6)
        assert ks(w, "truncnorm", -2, 2, 0, s) > ALPHA


def test_variance_scaling_jax_layout():
    w = torch.empty(3, 3, 16, 64)  # (kh, kw, in, out)
    ti.variance_scaling_(w, 1.0, "fan_in", "normal", in_axis=-2, out_axis=-1, generator=gen(7))
    assert ks(w, "norm", 0, math.sqrt(1 / (16 * 9))) > ALPHA


def test_trunc_correction_constant():
    a = stats.truncnorm(-2, 2)
    assert abs(a.std() - TRUNC_NORMAL_STD_CORRECTION) < 1e-12


@pytest.mark.parametrize("shape", [(64, 128), (128, 64), (32, 16, 3, 3)])
def test_orthogonal(shape):
    w = torch.empty(shape)
    ti.orthogonal_(w, gain=2.0, generator=gen(8))
    m = w.reshape(shape[0], -1).double()
    small = min(m.shape)
    prod = m @ m.t() if m.shape[0] <= m.shape[1] else m.t() @ m
    assert torch.allclose(prod, 4 * torch.eye(small, dtype=torch.float64), atol=1e-5)


def test_delta_orthogonal_is_isometry():
    conv = nn.Conv2d(8, 16, 3, padding=1, bias=False)
    ti.delta_orthogonal_(conv.weight, generator=gen(9))
    x = torch.randn(4, 8, 10, 10)
    y = conv(x)
    assert torch.allclose(y.pow(2).sum((1,)), x.pow(2).sum((1,)), atol=1e-4)


def test_dirac_and_eye_are_identities():
    conv = nn.Conv2d(6, 6, 3, padding=1, groups=2, bias=False)
    ti.dirac_(conv.weight, groups=2)
    x = torch.randn(2, 6, 5, 5)
    assert torch.equal(conv(x), x)
    lin = nn.Linear(5, 5, bias=False)
    ti.identity_(lin.weight)
    assert torch.equal(lin.weight, torch.eye(5))


def test_sparse_is_reproducible_from_generator():
    a, b = torch.empty(100, 40), torch.empty(100, 40)
    ti.sparse_(a, 0.3, std=0.5, generator=gen(10))
    torch.manual_seed(123)  # the global RNG must not matter
    ti.sparse_(b, 0.3, std=0.5, generator=gen(10))
    assert torch.equal(a, b)
    assert ((a == 0).sum(0) == 30).all()
    assert ks(a[a != 0], "norm", 0, 0.5) > ALPHA


def test_prior_prob_and_constants():
    b = torch.empty(10)
    ti.prior_prob_(b, 0.01)
    assert torch.allclose(torch.sigmoid(b), torch.full((10,), 0.01))
    ti.constant_(b, 3.5)
    assert (b == 3.5).all()
    ti.zeros_(b)
    assert (b == 0).all()
    ti.ones_(b)
    assert (b == 1).all()


def test_apply_init_kaiming_fan_out_statistics():
    conv = nn.Conv2d(32, 64, 3)
    ti.apply_init(conv, "kaiming_normal", seed=11, mode="fan_out", nonlinearity="relu")
    std = math.sqrt(2) / math.sqrt(64 * 9)
    assert ks(conv.weight, "norm", 0, std) > ALPHA
    assert (conv.bias == 0).all()


def test_torch_default_reproducible():
    lin1, lin2 = nn.Linear(20, 30), nn.Linear(20, 30)
    ti.apply_init(lin1, "torch_default", seed=3)
    ti.apply_init(lin2, "torch_default", seed=3)
    assert torch.equal(lin1.weight, lin2.weight) and torch.equal(lin1.bias, lin2.bias)
    bound = 1 / math.sqrt(20)
    assert float(lin1.weight.detach().abs().max()) <= bound
    assert float(lin1.bias.detach().abs().max()) <= bound and bool((lin1.bias != 0).all())
