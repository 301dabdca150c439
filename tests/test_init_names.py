"""The names people type and the errors they get (issue 13): aliases, "did you mean", init functions and
data-dependent schemes as schemes, Rule keyword typos, bias-only schemes, integer and zero-element tensors
as torch.nn.init treats them; checkpoint names as seed keys (wrappers do not change the init)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

import torchinit.init as ti


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.LayerNorm(128), nn.Linear(128, 10))


def params(m):
    return [p.detach().clone() for p in m.parameters()]


@pytest.mark.parametrize("alias, canonical", [
    ("he", "he_normal"), ("HE", "he_normal"), ("kaiming", "kaiming_normal"),
    ("Kaiming_Normal_", "kaiming_normal"), ("xavier", "xavier_uniform"), ("Glorot", "xavier_uniform"),
    ("xavier_uniform_", "xavier_uniform"), ("lecun", "lecun_normal"), ("LeCun_Normal", "lecun_normal"),
])
def test_short_names_case_and_trailing_underscore(alias, canonical):
    a, b = mlp(), mlp()
    ti.apply_init(a, alias, seed=1)
    rep = ti.apply_init(b, canonical, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert rep["0.weight"].scheme == canonical
    for name in ("he", "xavier", "glorot", "kaiming", "lecun", "lsuv"):
        assert name in ti.scheme_names()


@pytest.mark.parametrize("call, message", [
    (lambda: ti.apply_init(mlp(), "kaimng_normal"), r"unknown scheme 'kaimng_normal'; did you mean 'kaiming_normal'"),
    (lambda: ti.apply_init(mlp(), "xavir"), r"did you mean 'xavier'"),
    (lambda: ti.apply_init(mlp(), "kaiming_normal", mdoe="fan_out"), r"\['mdoe'\]; did you mean 'mode'"),
    (lambda: ti.apply_init(mlp(), "lsuv", data=torch.randn(4, 64), tl=0.1), r"'tl'; did you mean 'tol'"),
    (lambda: ti.scheme("normall", std=1.0), r"did you mean 'normal'"),
    (lambda: ti.gpt2(sdt=0.1), r"unknown option 'sdt'; did you mean 'std'"),
    (lambda: ti.calculate_gain("hardswsh"), r"did you mean 'hardswish'"),
    (lambda: ti.variance_scaling_(torch.empty(3, 3), distribution="truncatednormal"), r"did you mean 'truncated_normal'"),
    (lambda: ti.apply_init(mlp(), "kaiming_normal", mode="fan_inn"), r"did you mean 'fan_in'"),
])
def test_every_unknown_name_gets_the_closest(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_a_layer_class_name_that_matches_nothing_gets_the_closest():
    with pytest.warns(UserWarning, match=r"#0 layernorm \(no 'layernorm' in the model; did you mean 'LayerNorm'\?\)"):
        ti.apply_init(mlp(), ti.Rule(layers="layernorm", scheme="ones"), seed=0)


def test_rule_keyword_typos_name_the_rule_keyword():
    with pytest.raises(TypeError, match=r"Rule: unexpected keyword argument 'layer'; did you mean 'layers'"):
        ti.Rule(layer=nn.Conv2d, scheme="kaiming_normal")
    with pytest.raises(TypeError, match=r"Rule: unexpected keyword argument 'schem'; did you mean 'scheme'"):
        ti.Rule(schem="kaiming_normal")
    with pytest.raises(TypeError, match=r"'nmes'; did you mean 'names'"):
        ti.Rule(nmes="head.*", scheme="zeros")
    ti.Rule(layers=nn.Conv2d, scheme="kaiming_normal", mode="fan_out")  # scheme arguments still pass


def test_init_functions_are_schemes_for_weights():
    m = mlp()
    rep = ti.apply_init(m, torch.nn.init.kaiming_normal_, seed=0, nonlinearity="relu")
    w = m[0].weight.detach()
    expected = math.sqrt(2.0 / 64)  # torch's formula: gain sqrt(2) / sqrt(fan_in)
    assert abs(float(w.std()) - expected) <= 5 * expected / math.sqrt(2 * w.numel())
    assert (m[0].bias == 0).all() and (m[2].weight == 1).all() and (m[2].bias == 0).all()  # biases, norms as usual
    row = rep["0.weight"]
    assert row.scheme == "torch.nn.init.kaiming_normal_" and row.std == pytest.approx(float(w.double().std()))
    again = mlp()
    ti.apply_init(again, torch.nn.init.kaiming_normal_, seed=0, nonlinearity="relu")
    assert all(torch.equal(x, y) for x, y in zip(m.parameters(), again.parameters()))  # seeded per parameter
    # torchinit's own functions are their registered schemes (real fans, counter-based sampling)
    a, b = mlp(), mlp()
    ti.apply_init(a, ti.kaiming_normal_, seed=2)
    ti.apply_init(b, "kaiming_normal", seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    with pytest.raises(ti.InitError, match="torch.nn.init.sparse_.* needs argument"):
        ti.apply_init(mlp(), torch.nn.init.sparse_)


def test_lsuv_is_a_first_class_scheme():
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    a, b = mlp(), mlp()
    rep = ti.apply_init(a, "lsuv", data=x, seed=0)
    ref = ti.lsuv(b, x, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert [r.name for r in rep] == ["0.weight", "0.bias", "3.weight", "3.bias"] and rep.data_report.converged
    assert [u[0] for u in rep.untouched] == ["2.weight", "2.bias"] and ref.converged
    with pytest.raises(ti.InitError, match=r"'lsuv' is data-dependent: pass a batch, apply_init\(model, 'lsuv', data=batch\)"):
        ti.apply_init(mlp(), "LSUV")
    with pytest.raises(ti.InitError, match="data-dependent and runs on the whole model"):
        ti.apply_init(mlp(), [ti.Rule(layers=nn.Linear, scheme="lsuv")])
    with pytest.raises(ti.InitError, match="data= is for data-dependent schemes"):
        ti.apply_init(mlp(), "kaiming_normal", data=x)


def test_bias_only_scheme_refuses_weights():
    m = mlp()
    before = params(m)
    with pytest.raises(ti.InitError, match="prior_prob is a bias-only scheme and 3.weight is a weight"):
        ti.apply_init(m, ti.Rule(names="3.weight", scheme=ti.prior_prob(0.01)), seed=0)
    assert all(torch.equal(x, y) for x, y in zip(before, m.parameters()))
    rep = ti.apply_init(m, ti.Rule(layers=nn.Linear, scheme=ti.prior_prob(0.01)), seed=0)  # biases only
    assert {r.name for r in rep} == {"0.bias", "3.bias"} and any("bias-only" in n for n in rep.notes)
    torch.testing.assert_close(m[3].bias.detach(), torch.full((10,), -math.log(99.0)))
    assert torch.equal(m[3].weight, before[4])  # the weight is not covered, so not touched


_RANDOM = [
    ("normal_", {}), ("uniform_", {}), ("kaiming_normal_", {}), ("kaiming_uniform_", {}), ("xavier_uniform_", {}),
    ("xavier_normal_", {}), ("trunc_normal_", {}), ("orthogonal_", {}),
]


@pytest.mark.parametrize("name, kwargs", _RANDOM)
def test_integer_tensors_raise_like_torch(name, kwargs):
    with pytest.raises(NotImplementedError):
        getattr(torch.nn.init, name)(torch.zeros(4, 4, dtype=torch.long), **kwargs)
    t = torch.zeros(4, 4, dtype=torch.long)
    with pytest.raises(NotImplementedError, match=f"{name}: tensor has dtype torch.int64"):
        getattr(ti, name)(t, **kwargs)
    assert (t == 0).all()


@pytest.mark.parametrize("name, args", [("zeros_", ()), ("ones_", ()), ("constant_", (3,)), ("eye_", ())])
def test_integer_constant_fills_work_like_torch(name, args):
    a, b = torch.full((3, 4), 7, dtype=torch.long), torch.full((3, 4), 7, dtype=torch.long)
    getattr(torch.nn.init, name)(a, *args)
    getattr(ti, name)(b, *args)
    assert torch.equal(a, b) and b.dtype == torch.long


class TestZeroElementTensorsLikeTorch:
    """torch's own test/nn/test_init.py cases (TestNNInit), run against torchinit.init."""

    def test_kaiming_uniform_warning_on_0element_tensor(self):
        tensor = torch.empty(0, 1)
        with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
            _ = ti.kaiming_uniform_(tensor)

    def test_kaiming_normal_warning_on_0element_tensor(self):
        tensor = torch.empty(0, 1)
        with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
            _ = ti.kaiming_normal_(tensor)

    def test_every_scheme_is_a_no_op(self):
        for name in ("normal_", "xavier_uniform_", "orthogonal_", "trunc_normal_", "zeros_"):
            t = torch.empty(0, 3)
            with pytest.warns(UserWarning, match="no-op"):
                assert getattr(ti, name)(t) is t

    def test_apply_init_on_an_empty_layer(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's own reset warns on the empty layer too
            m = nn.Sequential(nn.Linear(4, 0), nn.Linear(4, 3))
        with pytest.warns(UserWarning, match=r"zero-element tensors is a no-op \(0.weight, 0.bias\)"):
            rep = ti.apply_init(m, "kaiming_normal", seed=0)
        assert "0.weight" in [r.name for r in rep] and any("zero-element" in n for n in rep.notes)


def test_wrappers_do_not_change_the_seeded_init():
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    ref = mlp()
    ti.apply_init(ref, "kaiming_normal", seed=5)
    compiled = torch.compile(mlp())  # an OptimizedModule holding _orig_mod; nothing is compiled here
    rep = ti.apply_init(compiled, "kaiming_normal", seed=5)
    assert [r.name for r in rep][:2] == ["0.weight", "0.bias"]
    assert all(torch.equal(x, y) for x, y in zip(ref.parameters(), compiled.parameters()))
    wrapped = mlp()
    wrapped[0] = checkpoint_wrapper(wrapped[0])
    ti.apply_init(wrapped, [ti.Rule(names="0.weight", scheme="kaiming_normal"), ti.Rule(names="*.bias", scheme="zeros"),
                            ti.Rule(layers=nn.Linear, names="3", scheme="kaiming_normal")], seed=5)
    assert torch.equal(wrapped[0]._checkpoint_wrapped_module.weight, ref[0].weight)
    assert torch.equal(wrapped[3].weight, ref[3].weight)


def test_wrappers_do_not_change_auto_gains_or_presets():
    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))

    plain, compiled = net(), torch.compile(net())
    a = ti.apply_init(plain, "auto", seed=0)
    b = ti.apply_init(compiled, "auto", seed=0)
    assert [r.gain for r in a] == [r.gain for r in b] and a["2.weight"].activation == "GELU"
    assert all(torch.equal(x, y) for x, y in zip(plain.parameters(), compiled.parameters()))

    class Blk(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.c_proj = nn.Linear(8, 8), nn.Linear(8, 8)

    gpt = torch.compile(nn.Sequential(Blk(), Blk()))
    rep = ti.apply_init(gpt, ti.gpt2, seed=0)  # the preset's rules name the layers by checkpoint name too
    assert rep["0.c_proj.weight"].std == pytest.approx(0.02 / math.sqrt(2)) and rep["0.fc.weight"].std == pytest.approx(0.02)


def test_wrapped_in_ddp_gives_the_same_init(cpu_mesh):
    ref = mlp()
    ti.apply_init(ref, "xavier_normal", seed=9)
    ddp = nn.parallel.DistributedDataParallel(mlp())
    ti.apply_init(ddp, "xavier_normal", seed=9)
    assert all(torch.equal(x, y) for x, y in zip(ref.parameters(), ddp.module.parameters()))
