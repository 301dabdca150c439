"""Init on the networks users have: Hugging Face transformers and timm models (tests/model_zoo.py).

References are the libraries' own: HF's ``_init_weights`` (the model as constructed), timm's ``has_skip``
flags, ``init_weights(mode="jax")`` and ``zero_init_last``, torchvision's ``zero_init_residual=True``.

Statistical comparisons: for a parameter with n elements drawn i.i.d. with std s, the sample std has
standard error about s / sqrt(2 n) and the sample mean s / sqrt(n). Two independent draws of the same
distribution (ours and the library's) differ in std by a normal variable of sd s / sqrt(n); the tests
allow 5 of those (a false alarm has probability ~6e-7 per parameter, and every draw is seeded, so a pass
or a failure is reproducible). Constant groups (biases, norm weights) must be equal exactly.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

import torchinit.init as ti
from model_zoo import build, output_tensor

Z = 5.0  # standard errors allowed in the statistical comparisons (see the module docstring)


def _scramble(model: nn.Module) -> None:
    """Overwrite every parameter with values no init produces, so a reset is visible."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=g) * 3 + 0.5)


def _same_distribution(ours: torch.Tensor, ref: torch.Tensor, name: str) -> None:
    ours, ref = ours.detach().double().flatten(), ref.detach().double().flatten()
    constant = ref.numel() == 1 or float(ref.std()) == 0.0
    if constant:
        assert torch.equal(ours, ref), f"{name}: expected the constant {ref[:3].tolist()}, got {ours[:3].tolist()}"
        return
    n, s = ref.numel(), float(ref.std())
    assert abs(float(ours.std()) - s) <= Z * s / math.sqrt(n), f"{name}: std {float(ours.std()):.5g} vs {s:.5g}"
    assert abs(float(ours.mean()) - float(ref.mean())) <= Z * s * math.sqrt(2.0 / n), f"{name}: mean differs"


def _input_dependence(model: nn.Module, x: torch.Tensor) -> float:
    other = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return float((output_tensor(model(x)) - output_tensor(model(other))).abs().max())


# -- zero_init_residual ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["efficientnet_b0", "mobilenetv3_small_100"])
def test_zero_init_residual_leaves_blocks_without_skip_and_reports_them(name):
    model, inputs = build(name)
    x = inputs["x"][:1]
    before = _input_dependence(model, x)
    no_skip = {n for n, m in model.named_modules() if getattr(m, "has_skip", None) is False}
    with_skip = {n for n, m in model.named_modules() if getattr(m, "has_skip", None) is True}
    assert no_skip and with_skip
    rep = ti.apply_init(model, ti.zero_init_residual, seed=0)
    # the output still depends on the input, at the order of magnitude it did (it was exactly 0.0 when
    # the blocks without a skip were zeroed too)
    after = _input_dependence(model, x)
    assert after > 0.1 * before > 0
    zeroed = {r.name for r in rep}
    assert {z.rsplit(".", 2)[0] for z in zeroed} == with_skip  # one zeroed scale per block with a skip
    for r in rep:
        assert r.name.endswith((".bn2.weight", ".bn3.weight")) and (model.get_parameter(r.name) == 0).all()
    notes = "\n".join(rep.notes)
    for block in no_skip:
        assert block in notes
    assert "has_skip=False" in notes and f"{len(with_skip)} of {len(with_skip) + len(no_skip)}" in notes


def test_zero_init_residual_on_torchvision_inverted_residuals():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small(num_classes=10).eval()
    no_skip = {n for n, m in model.named_modules() if getattr(m, "use_res_connect", None) is False}
    with_skip = {n for n, m in model.named_modules() if getattr(m, "use_res_connect", None) is True}
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    before = _input_dependence(model, x)
    rep = ti.apply_init(model, ti.zero_init_residual, seed=0)
    assert {r.name.split(".block.")[0] for r in rep} == with_skip and with_skip and no_skip
    assert all("use_res_connect=False" in "\n".join(rep.notes) and b in "\n".join(rep.notes) for b in no_skip)
    assert _input_dependence(model, x) > 0.1 * before > 0


def test_zero_init_residual_matches_timm_and_torchvision_on_resnet50():
    torchvision = pytest.importorskip("torchvision")
    def zero_norm_weights(m):
        return {n for n, p in m.named_parameters() if n.endswith(".weight") and p.dim() == 1 and (p == 0).all()}

    model, _ = build("resnet50")  # timm builds it with zero_init_last=True: its own choice is the reference
    timm_zero = zero_norm_weights(model)
    rep = ti.apply_init(model, ["ones", ti.zero_init_residual], seed=0)  # "ones" first: every norm weight 1
    assert zero_norm_weights(model) == timm_zero and len(timm_zero) == 16
    assert max(len(r.rule) for r in rep) <= 40  # the report's rule column stays readable (was 170 wide)

    for arch in (torchvision.models.resnet18, torchvision.models.resnet50):  # BasicBlock and Bottleneck
        tv = arch(weights=None, zero_init_residual=True)
        tv_zero = zero_norm_weights(tv)
        ti.apply_init(tv, ["ones", ti.zero_init_residual()], seed=0)
        assert zero_norm_weights(tv) == tv_zero and tv_zero


def test_zero_init_residual_zeroes_convnext_layer_scale():
    from timm.models.convnext import ConvNeXt  # convnext_tiny's class, from a smaller config (fast)

    model = ConvNeXt(depths=(2, 1, 1, 1), dims=(8, 16, 24, 32), num_classes=5).eval()
    gammas = {n for n, _ in model.named_parameters() if n.endswith(".gamma")}
    rep = ti.apply_init(model, ti.zero_init_residual, seed=0)
    assert {r.name for r in rep} == gammas and len(gammas) == 5
    assert all((model.get_parameter(g) == 0).all() for g in gammas)
    assert _input_dependence(model, torch.randn(1, 3, 32, 32)) > 0  # stem, downsampling and head carry the signal


def test_presets_refuse_models_they_do_not_cover():
    gpt, _ = build("gpt2")
    with pytest.raises(ti.PresetError, match="zero_init_residual: .*none with a skip connection"):
        ti.apply_init(gpt, ti.zero_init_residual, seed=0)
    with pytest.raises(ti.PresetError, match="vit_jax: GPT2LMHeadModel has no 'pos_embed'"):
        ti.apply_init(gpt, ti.vit_jax, seed=0)
    cnn, _ = build("mobilenetv3_small_100")
    with pytest.raises(ti.PresetError, match="gpt2: found no residual output projection in MobileNetV3.*register_residual"):
        ti.apply_init(cnn, ti.gpt2, seed=0)


# -- gpt2 preset against HF's own init ----------------------------------------------------------------------

def _check_against_hf(name: str, scaled: tuple[str, ...]) -> dict[str, float]:
    """Apply gpt2 to a scrambled copy; every group not in ``scaled`` must look like HF's own init."""
    hf, _ = build(name, seed=0)  # as constructed: HF's _init_weights
    ours, _ = build(name, seed=1)
    _scramble(ours)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a preset's unmatched rules are reported, not warned one by one
        rep = ti.apply_init(ours, ti.gpt2, seed=0)
    ref = dict(hf.named_parameters())
    n_res = sum(1 for r in rep if r.name.endswith(tuple(f"{s}.weight" for s in scaled)))
    stds = {}
    for pname, p in ours.named_parameters():
        if pname.endswith(tuple(f"{s}.weight" for s in scaled)):
            stds[pname] = float(p.detach().std())
            assert rep[pname].std == pytest.approx(0.02 / math.sqrt(n_res))
        else:
            _same_distribution(p, ref[pname], f"{name}: {pname}")
    return stds


def test_gpt2_preset_reproduces_hf_gpt2_init_per_group():
    hf, _ = build("gpt2", seed=0)
    std = 0.02 / math.sqrt(2 * hf.config.n_layer)
    stds = _check_against_hf("gpt2", ("c_proj",))
    for pname, s in stds.items():  # HF's own c_proj draws, against ours
        ref = hf.get_parameter(pname)
        assert abs(s - float(ref.detach().std())) <= Z * std / math.sqrt(ref.numel())
        assert abs(float(ref.detach().std()) - std) <= Z * std / math.sqrt(2 * ref.numel())  # HF: 0.02/sqrt(2L)


@pytest.mark.parametrize("name", ["llama", "mistral", "qwen2", "phi3"])
def test_gpt2_preset_on_llama_likes_scales_o_proj_and_down_proj_and_resets_rmsnorm(name):
    stds = _check_against_hf(name, ("o_proj", "down_proj"))
    assert len(stds) == 4  # 2 layers x (o_proj, down_proj)
    for pname, s in stds.items():
        n = build(name)[0].get_parameter(pname).numel()
        assert abs(s - 0.01) <= Z * 0.01 / math.sqrt(2 * n), pname  # 0.02 / sqrt(2 * 2 layers)


def test_gpt2_preset_on_bert_and_t5_norms():
    _check_against_hf("bert", ("output.dense",))
    bert, _ = build("bert", seed=1)
    pad = bert.embeddings.word_embeddings.padding_idx
    assert pad == 0 and (build("bert")[0].embeddings.word_embeddings.weight[pad] == 0).all()  # HF zeroes it
    rep = ti.apply_init(bert, ti.gpt2, seed=0)
    assert (bert.embeddings.word_embeddings.weight[pad] == 0).all() and any("padding rows" in n for n in rep.notes)
    t5, _ = build("t5", seed=1)
    _scramble(t5)
    rep = ti.apply_init(t5, ti.gpt2, seed=0)
    norms = [n for n, m in t5.named_modules() if type(m).__name__ == "T5LayerNorm"]
    assert norms and all((t5.get_submodule(n).weight == 1).all() for n in norms)
    assert sum(r.name.endswith((".o.weight", ".wo.weight")) and r.std < 0.02 for r in rep) == 10


def test_gemma_rmsnorm_reset_is_zero_because_it_scales_by_one_plus_weight():
    hf, _ = build("gemma", seed=0)
    norm_cls = type(hf.model.norm)
    assert all((m.weight == 0).all() for m in hf.modules() if type(m) is norm_cls)  # HF's own init
    ours, inputs = build("gemma", seed=1)
    _scramble(ours)
    ti.apply_init(ours, ti.gpt2, seed=0)
    norms = [m for m in ours.modules() if type(m) is norm_cls]
    assert len(norms) == 5 and all((m.weight == 0).all() for m in norms)
    x = torch.randn(3, norms[0].weight.numel())
    x_hat = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norms[0].eps)
    torch.testing.assert_close(norms[0](x), x_hat)  # the identity scale, by the module's own forward
    llama, _ = build("llama")
    assert ti.norm_identity_weight(llama.model.norm) == 1.0 and ti.norm_identity_weight(ours.model.norm) == 0.0


def test_preset_calling_convention_and_misuse():
    a, _ = build("gpt2", seed=0)
    b, _ = build("gpt2", seed=1)
    ti.apply_init(a, ti.gpt2, seed=3)
    ti.apply_init(b, ti.gpt2(), seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    with pytest.raises(TypeError, match=r"keyword options only .*apply_init\(model, ti.init.gpt2\)"):
        ti.gpt2(a)
    with pytest.raises(TypeError, match="unknown option 'n_layer'; did you mean 'n_layers'"):
        ti.gpt2(n_layer=2)
    with pytest.raises(TypeError, match="keyword options only"):
        ti.zero_init_residual(a)
    with pytest.raises(ti.InitError, match=r"a preset's options go in its call: ti.init.gpt2\(std=...\)"):
        ti.apply_init(a, ti.gpt2, std=0.01)
    with pytest.raises(ti.InitError, match="gpt2 is a preset, not a scheme"):
        ti.apply_init(a, ti.Rule(layers=nn.Linear, scheme=ti.gpt2))
    assert ti.is_preset(ti.gpt2) and ti.is_preset(ti.gpt2(std=0.01)) and not ti.is_preset(lambda m: None)


def test_residual_projection_list_is_extensible():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp, self.proj_out = nn.Linear(8, 8), nn.Linear(8, 8)

    m = nn.Sequential(Block(), Block())
    with pytest.raises(ti.PresetError, match="no residual output projection"):
        ti.apply_init(m, ti.gpt2, seed=0)
    rep = ti.apply_init(m, ti.gpt2(residual=["*.proj_out"]), seed=0)
    assert rep["0.proj_out.weight"].std == pytest.approx(0.02 / math.sqrt(2))
    assert "*.o_proj" in ti.RESIDUAL_PROJECTIONS and "*.output.dense" in ti.residual_projection_patterns()


# -- ViT presets --------------------------------------------------------------------------------------------

def test_vit_jax_matches_timm_jax_mode_per_group():
    ref, _ = build("vit_small", seed=0)
    ref.init_weights(mode="jax")
    ours, _ = build("vit_small", seed=1)
    _scramble(ours)
    ti.apply_init(ours, ti.vit_jax, seed=0, strict=True)
    refp = dict(ref.named_parameters())
    for pname, p in ours.named_parameters():
        _same_distribution(p, refp[pname], f"vit_small: {pname}")


def test_preset_rules_that_match_nothing_are_reported_once_not_warned():
    class TinyViT(nn.Module):  # no cls_token, no convolution: two of vit_jax's rules match nothing
        def __init__(self):
            super().__init__()
            self.patch_embed = nn.Linear(12, 8)
            self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
            self.head = nn.Linear(8, 3)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rep = ti.apply_init(TinyViT(), ti.vit_jax, seed=0)
    assert rep.unmatched == ["#1 vit_jax: MLP biases", "#2 vit_jax: convs", "#3 vit_jax: norms", "#5 vit_jax: tokens"]
    assert str(rep).count("rules matching nothing (4)") == 1
    with pytest.warns(UserWarning, match=r"2 rule\(s\) matched no parameter: #0 Conv2d; #1 LSTM") as caught:
        ti.apply_init(TinyViT(), [ti.Rule(layers=nn.Conv2d), ti.Rule(layers=nn.LSTM), ti.vit_jax], seed=0)
    assert len(caught) == 1


# -- tied parameters and LSUV ------------------------------------------------------------------------------

def test_tied_embedding_is_initialised_and_reported_once():
    model, _ = build("gpt2")
    assert model.lm_head.weight is model.transformer.wte.weight
    rep = ti.apply_init(model, ti.gpt2, seed=0)
    names = [r.name for r in rep]
    assert len(names) == len(list(model.parameters())) and "lm_head.weight" not in names
    assert rep["lm_head.weight"] is rep["transformer.wte.weight"] and rep["lm_head.weight"].tied == ("lm_head.weight",)
    assert str(rep).count("transformer.wte.weight (= lm_head.weight)") == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a rule naming the tied alias covers the parameter
        ti.apply_init(model, ti.Rule(names="lm_head.weight", scheme=ti.Scheme("normal", std=0.5)), seed=0)
    w = model.transformer.wte.weight.detach()
    assert abs(float(w.std()) - 0.5) <= Z * 0.5 / math.sqrt(2 * w.numel())


def test_lsuv_on_gpt2_rescales_conv1d_and_leaves_the_tied_embedding():
    model, inputs = build("gpt2")
    wte = model.transformer.wte.weight.detach().clone()
    rep = ti.lsuv(model, inputs, seed=0)
    conv1d = [n for n, m in model.named_modules() if type(m).__name__ == "Conv1D"]
    assert [layer.name for layer in rep.layers] == conv1d and rep.converged
    assert [name for name, _ in rep.skipped] == ["lm_head"] and "transformer.wte" in rep.skipped[0][1]
    assert torch.equal(model.transformer.wte.weight, wte)  # std 0.020 stays 0.020 (was 0.125)
    # the same through apply_init, reported like any scheme
    model2, _ = build("gpt2")
    report = ti.apply_init(model2, "lsuv", data=inputs, seed=0)
    assert {r.name for r in report} == {f"{n}.{p}" for n in conv1d for p in ("weight", "bias")}
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters()))
    assert report.data_report.skipped == rep.skipped
