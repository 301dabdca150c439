"""apply_init: rules and their precedence, the report, strictness, validation before any change,
atomicity, reproducibility and order independence, meta-device models, presets."""

import math
import re
import warnings

import pytest
import torch
from torch import nn

import torchinit.init as ti
from torchinit.init import apply as apply_mod


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc1 = nn.Linear(d, 2 * d)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(2 * d, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class Net(nn.Module):
    def __init__(self, order=("stem", "blocks", "head")):
        super().__init__()
        for name in order:
            if name == "stem":
                self.stem = nn.Conv2d(3, 8, 3)
            elif name == "blocks":
                self.blocks = nn.Sequential(Block(8), Block(8))
            else:
                self.head = nn.Linear(8, 4)
        self.cls_token = nn.Parameter(torch.ones(1, 1, 8))

    def forward(self, x):
        x = self.stem(x).mean((2, 3))
        return self.head(self.blocks(x + self.cls_token[:, 0]))


def snapshot(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_issue_example_and_report_table():
    m = Net()
    rep = ti.apply_init(m, [
        ti.Rule(layers=nn.Conv2d, scheme="kaiming_normal", mode="fan_out"),
        ti.Rule(layers=nn.Linear, scheme="xavier_uniform"),
        ti.Rule(names="head.*", scheme="zeros"),
        ti.Rule(names="*.bias", scheme=ti.prior_prob(0.01)),
    ], seed=0)
    text = str(rep)
    for col in ("parameter", "rule", "scheme", "fan_in", "fan_out", "gain", "std"):
        assert col in text.splitlines()[1]
    assert (m.head.weight == 0).all()
    assert rep["head.weight"].rule.startswith("#2")
    assert rep["head.bias"].rule.startswith("#3")  # later rule wins
    assert torch.allclose(torch.sigmoid(m.head.bias), torch.full((4,), 0.01))
    assert rep["stem.weight"].fan_out == 72 and rep["stem.weight"].scheme == "kaiming_normal"
    assert rep["blocks.0.fc1.weight"].scheme == "xavier_uniform"
    assert rep["blocks.0.fc1.weight"].std == pytest.approx(math.sqrt(2 / 24))
    untouched = {n for n, _, _ in rep.untouched}
    assert untouched == {"cls_token", "blocks.0.norm.weight", "blocks.1.norm.weight"}
    assert "untouched (3)" in text and "cls_token" in text.split("untouched")[-1]


def test_regex_and_param_name_rules():
    m = Net()
    rep = ti.apply_init(m, [ti.Rule(scheme="zeros"), ti.Rule(names=re.compile(r"blocks\.\d+\.fc2"), scheme="ones"),
                            ti.Rule(params="cls_token", scheme=ti.scheme("constant", val=2.0)),
                            ti.Rule(names="re:blocks\\.1\\..*", layers="LayerNorm", scheme=ti.scheme("constant", val=5.0))],
                        seed=0)
    assert (m.blocks[0].fc2.weight == 1).all() and (m.blocks[0].fc2.bias == 0).all()
    assert (m.cls_token == 2).all()
    assert (m.blocks[1].norm.weight == 5).all() and (m.blocks[0].norm.weight == 1).all()
    assert rep.untouched == []


def test_strict_and_unmatched_rule_warning():
    m = Net()
    before = snapshot(m)
    with pytest.raises(ti.InitError, match="cls_token"):
        ti.apply_init(m, "kaiming_normal", seed=0, strict=True)
    assert same(before, snapshot(m))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep = ti.apply_init(m, [ti.Rule(scheme="zeros"), ti.Rule(layers=nn.LSTM, scheme="orthogonal"),
                                ti.Rule(layers=nn.GRU, scheme="orthogonal")], seed=0)
    unmatched = [w for w in caught if "matched no parameter" in str(w.message)]
    assert len(unmatched) == 1 and "#1 LSTM" in str(unmatched[0].message) and "#2 GRU" in str(unmatched[0].message)
    assert rep.unmatched == ["#1 LSTM", "#2 GRU"] and "rules matching nothing (2)" in str(rep)


def test_validation_happens_before_any_change():
    m = Net()
    before = snapshot(m)
    with pytest.raises(ti.InitError, match="valid schemes: .*kaiming_normal"):
        ti.apply_init(m, [ti.Rule(scheme="zeros"), ti.Rule(layers=nn.Linear, scheme="kaiming_norml")], seed=0)
    with pytest.raises(ti.InitError, match="unexpected argument.*'stdev'.*accepts: mean, std"):
        ti.apply_init(m, [ti.Rule(scheme="zeros"), ti.Rule(layers=nn.Linear, scheme="normal", stdev=1)], seed=0)
    with pytest.raises(ti.InitError, match="mode must be 'fan_in', 'fan_out', 'fan_avg' or 'fan_geo_avg'"):
        ti.apply_init(m, [ti.Rule(scheme="zeros"), ti.Rule(layers=nn.Linear, scheme="kaiming_normal", mode="in")], seed=0)
    with pytest.raises(ti.InitError, match="cls_token.*orthogonal.*2 dimensions|orthogonal"):
        ti.apply_init(m, [ti.Rule(scheme="zeros"), ti.Rule(params="bias", scheme="orthogonal")], seed=0)
    assert same(before, snapshot(m))


def _flaky(monkeypatch, name, fail_at):
    """Make apply's ``name`` raise on its ``fail_at``-th call; returns the call counter."""
    calls = {"n": 0}
    real = getattr(apply_mod, name)

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise RuntimeError("device fell over")
        return real(*args, **kwargs)

    monkeypatch.setattr(apply_mod, name, flaky)
    return calls


@pytest.mark.parametrize("mode", ["generator", "seed"])
def test_sampling_failure_leaves_model_untouched(monkeypatch, mode):
    # Linear weights are orthogonal (a staged, whole-matrix value); everything else is sampled in place.
    # The 5th staged value fails: in seed mode after in-place parameters come earlier in module order,
    # in generator mode (where every value is staged to keep torch's draw order) after 4 were drawn.
    m = Net()
    before = snapshot(m)
    rules = ["kaiming_normal", ti.Rule(layers=nn.Linear, params="weight", scheme="orthogonal")]
    calls = _flaky(monkeypatch, "materialize", 5)
    kw = {"seed": 0} if mode == "seed" else {"generator": torch.Generator().manual_seed(0)}
    with pytest.raises(RuntimeError, match="fell over"):
        ti.apply_init(m, rules, **kw)
    assert calls["n"] == 5
    assert same(before, snapshot(m))


def test_failing_in_place_path_or_user_code_leaves_model_untouched(monkeypatch):
    # every in-place sampling path runs once on a scratch tensor before the first write
    m = Net()
    before = snapshot(m)
    calls = _flaky(monkeypatch, "sample_into_", 1)
    with pytest.raises(RuntimeError, match="fell over"):
        ti.apply_init(m, "kaiming_normal", seed=0)
    assert calls["n"] == 1
    assert same(before, snapshot(m))
    monkeypatch.undo()

    class Broken(nn.Linear):
        def reset_parameters(self):
            if hasattr(self, "weight") and getattr(self, "armed", False):
                raise RuntimeError("user reset failed")
            super().reset_parameters()

    m.tail = Broken(4, 4)  # last in module order: every other parameter was planned before it
    m.tail.armed = True
    before = snapshot(m)
    with pytest.raises(RuntimeError, match="user reset failed"):
        ti.apply_init(m, ["kaiming_normal", ti.Rule(names="tail.*", scheme="torch_default")], seed=0)
    assert same(before, snapshot(m))


@pytest.mark.parametrize("kw", [{"seed": 4}, {"generator": 4}])
def test_in_place_equals_staged_values(kw):
    # contiguous parameters are sampled in place, non-contiguous twins are staged: same values
    # (fp32 and bf16, the q/k/v blocks of a fused projection, uniform / normal / truncated normal)
    def build(contiguous):
        m = nn.Module()
        m.attn = nn.MultiheadAttention(8, 2)
        m.lin = nn.Linear(33, 17).to(torch.bfloat16)
        m.emb = nn.Embedding(50, 6)
        if not contiguous:
            for mod, name in ((m.attn, "in_proj_weight"), (m.lin, "weight"), (m.emb, "weight")):
                p = getattr(mod, name)
                setattr(mod, name, nn.Parameter(torch.empty(p.shape[::-1], dtype=p.dtype).t()))
        return m

    rules = ["xavier_uniform", ti.Rule(layers=nn.Embedding, scheme="trunc_normal", std=0.5),
             ti.Rule(layers=nn.Linear, params="weight", scheme="kaiming_normal")]
    a, b = build(True), build(False)
    assert not b.lin.weight.is_contiguous()
    for m in (a, b):
        args = {"seed": 4} if "seed" in kw else {"generator": torch.Generator().manual_seed(4)}
        ti.apply_init(m, rules, **args)
    assert same(snapshot(a), snapshot(b))


def test_seed_reproducible_and_order_independent():
    a, b = Net(), Net(order=("head", "blocks", "stem"))
    ti.apply_init(a, "kaiming_uniform", seed=42)
    ti.apply_init(b, "kaiming_uniform", seed=42)
    sa, sb = snapshot(a), snapshot(b)
    assert same(sa, sb)
    ti.apply_init(b, "kaiming_uniform", seed=43)
    assert not torch.equal(sa["stem.weight"], b.stem.weight)
    # the same name in another model gets the same values
    c = nn.Module()
    c.head = nn.Linear(8, 4)
    ti.apply_init(c, "kaiming_uniform", seed=42)
    assert torch.equal(c.head.weight, sa["head.weight"])


def test_generator_mode_reproducible():
    a, b = Net(), Net()
    ti.apply_init(a, "xavier_normal", generator=torch.Generator().manual_seed(1))
    ti.apply_init(b, "xavier_normal", generator=torch.Generator().manual_seed(1))
    assert same(snapshot(a), snapshot(b))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_parameters(dtype):
    a = nn.Linear(64, 64).to(dtype)
    b = nn.Linear(64, 64)
    ti.apply_init(a, "kaiming_normal", seed=0)
    ti.apply_init(b, "kaiming_normal", seed=0)
    assert torch.equal(a.weight, b.weight.to(dtype))


def test_meta_plan_then_to_empty():
    with torch.device("meta"):
        m = Net()
    rep = ti.apply_init(m, "kaiming_normal", seed=3)
    assert rep.planned_only and "[planned]" in str(rep)
    assert rep["stem.weight"].std == pytest.approx(math.sqrt(2 / 27))
    m = m.to_empty(device="cpu")
    rep = ti.apply_init(m, "kaiming_normal", seed=3)
    ref = Net()
    ti.apply_init(ref, "kaiming_normal", seed=3)
    assert not rep.planned_only
    assert torch.equal(m.stem.weight, ref.stem.weight)


def test_shared_parameters_initialised_once():
    m = nn.Module()
    m.a = nn.Linear(4, 4)
    m.b = m.a
    rep = ti.apply_init(m, "xavier_uniform", seed=0)
    assert [r.name for r in rep] == ["a.weight", "a.bias"]


def test_lazy_module_is_an_error():
    m = nn.Sequential(nn.LazyLinear(4))
    with pytest.raises(ti.InitError, match="lazy"):
        ti.apply_init(m, "xavier_uniform", seed=0)


def test_gpt2_preset():
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(16, 48)
            self.c_proj = nn.Linear(16, 16)

    class GPTBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(16)
            self.attn = Attn()
            self.mlp = nn.Sequential()
            self.mlp.c_fc = nn.Linear(16, 64)
            self.mlp.c_proj = nn.Linear(64, 16)

    m = nn.Module()
    m.wte = nn.Embedding(5000, 16)
    m.h = nn.ModuleList([GPTBlock() for _ in range(12)])
    rep = ti.apply_init(m, ti.gpt2(n_layers=12), seed=0, strict=True)
    assert rep["h.0.attn.c_proj.weight"].std == pytest.approx(0.02 / math.sqrt(24))
    assert rep["h.0.mlp.c_fc.weight"].std == pytest.approx(0.02)
    assert abs(float(m.wte.weight.detach().std()) / 0.02 - 1) < 0.02
    assert (m.h[3].ln_1.weight == 1).all() and (m.h[3].attn.c_proj.bias == 0).all()


def test_zero_init_residual_and_fixup_on_resnet():
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.resnet18(weights=None)
    rules = ["kaiming_normal", ti.zero_init_residual]
    ti.apply_init(net, rules, generator=torch.Generator().manual_seed(0))
    for layer in (net.layer1, net.layer4):
        for blk in layer:
            assert (blk.bn2.weight == 0).all() and (blk.bn1.weight == 1).all()
    rep = ti.apply_init(net, ti.fixup(), generator=torch.Generator().manual_seed(0))
    assert (net.layer2[0].conv2.weight == 0).all() and (net.fc.weight == 0).all()
    scale = 8 ** (-1 / 2)  # L = 8 branches, m = 2 layers each
    assert rep["layer2.0.conv1.weight"].gain == pytest.approx(math.sqrt(2) * scale)


def test_vit_presets():
    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch_embed = nn.Conv2d(3, 16, 4, 4)
            self.cls_token = nn.Parameter(torch.ones(1, 1, 16))
            self.pos_embed = nn.Parameter(torch.ones(1, 5, 16))
            self.blocks = nn.ModuleList([Block(16)])
            self.blocks[0].mlp = nn.Sequential(nn.Linear(16, 32), nn.Linear(32, 16))
            self.head = nn.Linear(16, 10)

    m = ViT()
    rep = ti.apply_init(m, ti.vit_jax(), seed=0, strict=True)
    assert (m.head.weight == 0).all() and 0 < float(m.cls_token.detach().abs().max()) < 1e-4  # timm: N(0, 1e-6^2)
    assert rep["patch_embed.weight"].scheme == "lecun_normal"
    assert 0 < float(m.blocks[0].mlp[0].bias.detach().abs().max()) < 1e-4
    assert (m.blocks[0].fc1.bias == 0).all()
    rep = ti.apply_init(m, ti.timm(), seed=0)
    assert rep["head.weight"].std == pytest.approx(0.02, rel=1e-3)
    assert 0 < float(m.cls_token.detach().abs().max()) < 1e-4


def test_public_names_and_aliases():
    assert ti.glorot_uniform_ is ti.xavier_uniform_ and ti.he_uniform_ is ti.kaiming_uniform_
    assert ti.he_normal_ is not ti.kaiming_normal_  # JAX's he_normal is truncated, torch's kaiming_normal_ is not
    a, b = nn.Linear(5, 6), nn.Linear(5, 6)
    ti.apply_init(a, "he_uniform", seed=1)
    ti.apply_init(b, "kaiming_uniform", seed=1)
    assert torch.equal(a.weight, b.weight)
    for name in ("auto", "variance_scaling", "delta_orthogonal", "sparse", "torch_default", "prior_prob", "identity"):
        assert name in ti.scheme_names()
