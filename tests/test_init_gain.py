"""Gains: torch's table, Monte Carlo checks of g^2 E[f(z)^2] = 1, gain='auto' through module order and FX,
the 20-layer MLP check, and the (documented) instability of GELU-like activations."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchinit.init as ti
from torchinit.init.autogain import find_gains
from torchinit.init.gain import second_moment


@pytest.mark.parametrize("name,param", [("linear", None), ("conv2d", None), ("conv_transpose3d", None), ("sigmoid", None),
                                        ("tanh", None), ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2),
                                        ("leaky_relu", 1), ("selu", None)])
def test_torch_table(name, param):
    assert ti.calculate_gain(name, param) == torch.nn.init.calculate_gain(name, param)


def test_torch_errors_kept():
    with pytest.raises(ValueError, match="negative_slope"):
        ti.calculate_gain("leaky_relu", "x")
    with pytest.raises(ValueError, match="unknown nonlinearity 'no_such_thing'"):
        ti.calculate_gain("no_such_thing")


def test_modules_and_functionals_map_to_table():
    assert ti.calculate_gain(nn.ReLU()) == math.sqrt(2) == ti.calculate_gain(F.relu) == ti.calculate_gain(torch.relu)
    assert ti.calculate_gain(nn.Tanh()) == 5 / 3 == ti.calculate_gain(torch.tanh)
    assert ti.calculate_gain(nn.LeakyReLU(0.3)) == torch.nn.init.calculate_gain("leaky_relu", 0.3)
    assert ti.calculate_gain(nn.SELU()) == 0.75 and ti.calculate_gain(nn.Identity()) == 1


def monte_carlo_check(f, g, n=1 << 20):
    z = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(123))
    y2 = f(z).pow(2) * g * g
    m, se = float(y2.mean()), float(y2.std()) / math.sqrt(n)
    assert abs(m - 1) < 6 * se, (m, se)


@pytest.mark.parametrize("act,f", [
    (nn.GELU(), F.gelu), ("gelu", F.gelu), (nn.GELU(approximate="tanh"), lambda x: F.gelu(x, approximate="tanh")),
    (nn.SiLU(), F.silu), ("swish", F.silu), (nn.Mish(), F.mish), (nn.Hardswish(), F.hardswish), (F.elu, F.elu),
    (nn.Softplus(), F.softplus), (nn.ReLU6(), F.relu6), (lambda x: torch.sin(x) + 0.5, lambda x: torch.sin(x) + 0.5),
])
def test_variance_preserving_gain_monte_carlo(act, f):
    monte_carlo_check(f, ti.calculate_gain(act))


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "selu"])
def test_variance_preserving_for_table_names(name):
    f = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "selu": F.selu}[name]
    monte_carlo_check(f, ti.variance_preserving_gain(name))


def test_torchinit_functional_names_if_present():
    tif = pytest.importorskip("torchinit.functional")
    for name in ("swish", "squared_relu", "star_relu"):
        fn = getattr(tif, name, None)
        if fn is None:
            continue
        monte_carlo_check(fn, ti.calculate_gain(name), n=1 << 18)


def test_gain_is_cached():
    calls = {"n": 0}

    def f(x):
        calls["n"] += 1
        return torch.tanh(2 * x)

    g1, g2 = ti.calculate_gain(f), ti.calculate_gain(f)
    assert g1 == g2 and calls["n"] == 1


class FunctionalMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.drop = nn.Dropout(0.1)
        self.b = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.c = nn.Linear(8, 8)

    def forward(self, x):
        x = self.drop(F.gelu(self.a(x)))
        x = F.leaky_relu(self.b(x), 0.2)
        return self.c(self.norm(x))


def test_auto_gain_fx_and_order():
    gains = find_gains(FunctionalMLP())
    assert gains["a"].source == "fx"
    assert gains["a"].gain("fan_in") == (1.0, None)  # sees raw data
    assert gains["a"].gain("fan_out")[0] == pytest.approx(ti.calculate_gain("gelu"))
    assert gains["b"].gain("fan_in")[0] == pytest.approx(ti.calculate_gain("gelu"))  # through dropout
    assert gains["b"].gain("fan_out")[0] == pytest.approx(ti.calculate_gain("leaky_relu", 0.2))
    assert gains["c"].gain("fan_in") == (1.0, None)  # after a norm layer
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3))
    g = find_gains(seq, use_fx=False)
    assert g["0"].gain("fan_out")[0] == pytest.approx(math.sqrt(2)) and g["0"].gain("fan_in")[0] == 1
    assert g["4"].gain("fan_in")[0] == pytest.approx(math.sqrt(2))
    rep = ti.apply_init(seq, "kaiming_normal", gain="auto", mode="fan_out", seed=0)
    assert rep["0.weight"].gain == pytest.approx(math.sqrt(2)) and rep["4.weight"].gain == 1


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh, lambda: nn.LeakyReLU(0.1)])
def test_20_layer_mlp_auto_keeps_second_moment(act):
    ratios = []
    for seed in range(3):
        layers = []
        for _ in range(20):
            layers += [nn.Linear(256, 256), act()]
        net = nn.Sequential(*layers)
        ti.apply_init(net, "auto", generator=torch.Generator().manual_seed(seed))
        x = torch.randn(256, 256, generator=torch.Generator().manual_seed(1000 + seed))
        pre = []
        with torch.no_grad():
            for m in net:
                x = m(x)
                if isinstance(m, nn.Linear):
                    pre.append(float(x.pow(2).mean()))
        ratios.append(pre[-1] / pre[0])
    mean_ratio = sum(ratios) / len(ratios)
    assert 0.5 < mean_ratio < 2.0, ratios


def test_gelu_like_fixed_point_is_unstable():
    # slope of q -> g^2 E[f(sqrt(q) z)^2] at q = 1: above 1 for GELU/SiLU/Hardswish, 1 for ReLU, < 1 for tanh
    def slope(name, f):
        g = ti.variance_preserving_gain(name)
        h = 1e-3
        up = second_moment(lambda x: f(x * math.sqrt(1 + h)))
        dn = second_moment(lambda x: f(x * math.sqrt(1 - h)))
        return g * g * (up - dn) / (2 * h)

    assert slope("gelu", F.gelu) == pytest.approx(1.144, abs=2e-3)
    assert slope("silu", F.silu) == pytest.approx(1.173, abs=2e-3)
    assert slope("hardswish", F.hardswish) > 1.2
    assert slope("relu", F.relu) == pytest.approx(1.0, abs=1e-3)
    assert slope("tanh", torch.tanh) < 0.5


def test_auto_gain_reads_torchinit_activations_with_arguments():
    """A torchinit activation called with extra arguments (traced as fn(x, slope, inplace)) gives its gain."""
    import math

    import torchinit as ti
    from torchinit.init.autogain import find_gains

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), ti.nn.LeakyReLU(0.2), torch.nn.Linear(8, 8),
                                ti.nn.GELU(approximate="tanh"), torch.nn.Linear(8, 8))
    gains = find_gains(model)
    assert gains["2"].act_in == "leaky_relu"
    assert math.isclose(gains["2"].gain_in, math.sqrt(2 / (1 + 0.2 ** 2)), rel_tol=1e-6)
    assert gains["4"].act_in == "gelu"
    assert math.isclose(gains["4"].gain_in, ti.calculate_gain(torch.nn.GELU(approximate="tanh")), rel_tol=1e-6)
