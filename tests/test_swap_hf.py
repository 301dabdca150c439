"""swap_activations on Hugging Face transformers and timm models (model_zoo: small configs, random weights).

The activation classes each model uses, and how many, are read off the libraries' model code (see
EXPECTED); the swap must replace all of them, with the same outputs, gradients and state_dict.
"""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchinit as ti
from torchinit.swap import swap_activations
from torchinit.swap import table

model_zoo = pytest.importorskip("model_zoo")
transformers = model_zoo.transformers
timm = model_zoo.timm

_HF = "transformers.activations."
_TORCH = "torch.nn.modules.activation."
_TIMM = "timm.layers.activations."

# model -> {qualified activation class: count}, from each library's model code and the zoo's configs:
# HF: one MLP activation per layer (2 layers; T5: 2 encoder + 2 decoder), BERT/ViT add the pooler's Tanh;
# resnet50: stem + 3 per bottleneck x 16; convnext_tiny: one per block, depths 3+3+9+3; efficientnet_b0:
# stem + head + 2 in the depthwise block + 3 in each of 15 inverted residuals (SiLU), one SE gate per
# block (Sigmoid, 16); mobilenetv3_small_100: its arch string gives 19 hard_swish, 14 relu, 9 SE gates.
EXPECTED: dict[str, dict[str, int]] = {
    "gpt2": {_HF + "NewGELUActivation": 2},
    "bert": {_HF + "GELUActivation": 2, _TORCH + "Tanh": 1},
    "llama": {_HF + "SiLUActivation": 2},
    "mistral": {_HF + "SiLUActivation": 2},
    "qwen2": {_HF + "SiLUActivation": 2},
    "gemma": {_HF + "GELUTanh": 2},
    "phi3": {_HF + "SiLUActivation": 2},
    "t5": {_HF + "NewGELUActivation": 4},
    "vit": {_HF + "GELUActivation": 2, _TORCH + "Tanh": 1},
    "resnet50": {_TORCH + "ReLU": 49},
    "convnext_tiny": {_TIMM + "GELU": 18},
    "vit_small": {_TORCH + "GELU": 2},
    "efficientnet_b0": {_TORCH + "SiLU": 49, _TORCH + "Sigmoid": 16},
    "mobilenetv3_small_100": {_TORCH + "Hardswish": 19, _TORCH + "ReLU": 14, _TORCH + "Hardsigmoid": 9},
}


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine two threads spin against each other (measured 3-8x
    slower for resnet50 at 32x32). Both sides of every comparison run under the same setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _qualname(m: nn.Module) -> str:
    return f"{type(m).__module__}.{type(m).__qualname__}"


def _count(model: nn.Module, classes) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        if _qualname(m) in classes:
            counts[_qualname(m)] = counts.get(_qualname(m), 0) + 1
    return counts


def _loss_and_grads(model: nn.Module, inputs: dict) -> tuple[torch.Tensor, dict]:
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)  # the same dropout masks for both models (swapped activations draw no numbers)
    out = model_zoo.output_tensor(model(**inputs))
    loss = out.float().square().mean()
    loss.backward()
    model.eval()
    return loss.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_every_model_of_the_zoo_is_listed():
    assert set(EXPECTED) == set(model_zoo.MODELS)


def _small(name: str, inputs: dict) -> dict:
    """The zoo's inputs, timm images cropped to 32x32 (every timm zoo model takes it; 4x less work on 2 cores)."""
    if name in model_zoo.TIMM:
        return {"x": inputs["x"][:, :, :32, :32].contiguous()}
    return inputs


@pytest.mark.parametrize("name", list(model_zoo.MODELS))
def test_default_swap_replaces_every_activation(name):
    model, inputs = model_zoo.build(name)
    inputs = _small(name, inputs)
    reference = copy.deepcopy(model)
    found = _count(model, EXPECTED[name])
    assert found == EXPECTED[name], f"{name} no longer uses the activations its code did: {found}"
    keys = list(model.state_dict())

    report = swap_activations(model)

    # every activation module replaced, each counted once per place it sits; nothing left or unmatched
    replaced = sum(len(r.names) for r in report.modules)
    assert replaced + len(report.left) == sum(found.values()), str(report)
    assert replaced == sum(found.values()) and not report.left, str(report)
    assert not _count(model, EXPECTED[name])
    assert all(type(m).__module__.startswith(("torchinit", "torch.nn")) for r in report.modules
               for m in [model.get_submodule(r.names[0])])

    # eval: the same function (CPU: torchinit's torch path; python formulas differ from torch's by rounding)
    with torch.no_grad():
        want = model_zoo.output_tensor(reference(**inputs))
        got = model_zoo.output_tensor(model(**inputs))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)

    # state_dict: the same keys; a fresh unswapped model loads it and is then the unswapped model
    assert list(model.state_dict()) == keys
    fresh, _ = model_zoo.build(name, seed=1)
    fresh.load_state_dict(model.state_dict())
    for k, v in reference.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k

    # a training step: the same loss and gradients. Where HF computes a python formula (gpt2, t5: NewGELU)
    # it differs from torch's kernel, which torchinit runs on CPU, by < 1 ulp per element (the probe measures
    # 0.4 ulps forward, 0.7 for the gradient); through the layers and the backward pass that measured 1.1e-7
    # of the loss and 3.3e-7 of the largest gradient entry (t5). Elsewhere both sides run the same torch
    # kernels (measured: equal). Tolerances: 1e-6 of the loss, 1e-5 of the largest gradient entry.
    loss_ref, grads_ref = _loss_and_grads(reference, inputs)
    loss, grads = _loss_and_grads(model, inputs)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-6, atol=0)
    assert grads.keys() == grads_ref.keys()
    scale = max(g.abs().max().item() for g in grads_ref.values())
    for n, g in grads.items():
        torch.testing.assert_close(g, grads_ref[n], rtol=0, atol=1e-5 * scale, msg=f"{name}: grad of {n}")



# ---------------------------------------------------------------------------------------------
# torch.compile on a representative model: GPT-2, whose HF python GELU became torchinit's op (aot_eager:
# Dynamo + AOTAutograd over torchinit's ops, forward and backward; Inductor, slow on 2 cores, runs on a
# hand-written block in test_swap_models)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpt2"])
def test_torch_compile_of_a_swapped_zoo_model(name):
    model, inputs = model_zoo.build(name)
    inputs = _small(name, inputs)
    swap_activations(model)
    loss_ref, grads_ref = _loss_and_grads(model, inputs)
    torch._dynamo.reset()
    try:
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        loss, grads = _loss_and_grads(compiled, inputs)
    finally:
        torch._dynamo.reset()
    torch.testing.assert_close(loss, loss_ref, rtol=1e-6, atol=0)
    for n, g in grads.items():
        torch.testing.assert_close(g, grads_ref[n.removeprefix("_orig_mod.")], rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# the probe: a class with a known qualified name but another formula is reported, never swapped
# ---------------------------------------------------------------------------------------------


def _impostor(qualname: str, forward, module: str = "transformers.activations") -> nn.Module:
    """An instance of a class that claims to be ``module.qualname`` (as a changed library version would)."""
    cls = type(qualname, (nn.Module,), {"forward": lambda self, x: forward(x)})
    cls.__module__, cls.__qualname__ = module, qualname
    return cls()


class _WrongGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return F.silu(x)

    @staticmethod
    def backward(ctx, g):  # sigmoid(x) alone: the derivative of x * sigmoid(x) misses x * s * (1 - s)
        (x,) = ctx.saved_tensors
        return g * torch.sigmoid(x)


def _tanh_gelu(x, kappa=0.044715):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + kappa * torch.pow(x, 3.0))))


def test_probe_reports_a_changed_formula_and_swaps_a_faithful_one():
    model = nn.Sequential(
        nn.Linear(4, 4),
        _impostor("NewGELUActivation", _tanh_gelu),                              # as in transformers: swapped
        _impostor("NewGELUActivation", lambda x: _tanh_gelu(x, kappa=0.0447)),   # a changed constant: left
        _impostor("QuickGELUActivation", lambda x: x * torch.sigmoid(1.7 * x)),   # 1.7 instead of 1.702: left
        _impostor("SiLUActivation", _WrongGradient.apply),                       # right values, wrong gradient
        _impostor("Swish", lambda x: F.relu(x), module="timm.layers.activations"),
        _impostor("GELUActivation", lambda x: F.gelu(x)[..., :2]),                # not elementwise
    )
    before = [type(m) for m in model]
    report = swap_activations(model)
    assert type(model[1]) is ti.nn.GELU and model[1].approximate == "tanh"
    assert [type(m) for m in model[2:]] == before[2:]
    reasons = {x.name: x.reason for x in report.left}
    assert set(reasons) == {"2", "3", "4", "5", "6"}, str(report)
    assert "disagrees" in reasons["2"] and "at x=" in reasons["2"]
    assert "disagrees" in reasons["3"] and "Swish(beta=1.702)" in reasons["3"]
    assert "gradient" in reasons["4"]
    assert "disagrees" in reasons["5"]
    assert "elementwise" in reasons["6"]


def test_probe_checks_infinities_and_nan_and_in_place_writes():
    # HF's python erf GELU gives inf at +inf where torch's vectorised F.gelu (torchinit's path) gives nan:
    # a different function at a special value, so it is reported (the default F.gelu variant is swapped)
    act = transformers.activations
    report = swap_activations(nn.Sequential(act.GELUActivation(use_gelu_python=True), act.GELUActivation()))
    assert [x.name for x in report.left] == ["0"] and "x=inf" in report.left[0].reason
    assert [r.names for r in report.modules] == [("1",)]
    forced = nn.Sequential(act.GELUActivation(use_gelu_python=True))  # naming the class is the user's decision
    assert len(swap_activations(forced, {act.GELUActivation: ti.nn.GELU}).modules) == 1
    assert type(forced[0]) is ti.nn.GELU
    # NaN must stay NaN: a formula that turns it into 0 is not swapped
    nan_eater = _impostor("ReLUSquaredActivation", lambda x: torch.nan_to_num(F.relu(x)).square())
    assert "x=nan" in swap_activations(nn.Sequential(nan_eater)).left[0].reason
    # timm's Sigmoid(inplace=True) writes into its input; torchinit's computes out of place: said in the notes
    layers = timm.layers
    r = swap_activations(nn.Sequential(layers.activations.Sigmoid(inplace=True), layers.activations.GELU(inplace=True)))
    notes = {x.names[0]: " ".join(x.notes) for x in r.modules}
    assert "in place" in notes["0"] and "in place" not in notes["1"]


def test_every_hf_and_timm_activation_class_is_swapped_or_reported():
    act, tl, tme = transformers.activations, timm.layers.activations, timm.layers.activations_me
    mods = {
        "hf_gelu_tanh": (act.GELUTanh(), ti.nn.GELU, {"approximate": "tanh"}),
        "hf_gelu_tanh_py": (act.GELUTanh(use_gelu_tanh_python=True), ti.nn.GELU, {"approximate": "tanh"}),
        "hf_new": (act.NewGELUActivation(), ti.nn.GELU, {"approximate": "tanh"}),
        "hf_gelu": (act.GELUActivation(), ti.nn.GELU, {"approximate": "none"}),
        "hf_fast": (act.FastGELUActivation(), ti.nn.GELU, {"approximate": "tanh"}),
        "hf_accurate": (act.AccurateGELUActivation(), ti.nn.GELU, {"approximate": "tanh"}),
        "hf_quick": (act.QuickGELUActivation(), ti.nn.Swish, {"beta": 1.702}),
        "hf_clipped": (act.ClippedGELUActivation(-10, 10), ti.registry.ClippedGELU,
                       {"min_val": -10.0, "max_val": 10.0}),
        "hf_silu": (act.SiLUActivation(), ti.nn.SiLU, {}),
        "hf_mish": (act.MishActivation(), ti.nn.Mish, {}),
        "hf_relu2": (act.ReLUSquaredActivation(), ti.nn.SquaredReLU, {}),
        "hf_linear": (act.LinearActivation(), nn.Identity, {}),
        "timm_swish": (tl.Swish(inplace=True), ti.nn.SiLU, {"inplace": True}),
        "timm_mish": (tl.Mish(inplace=True), ti.nn.Mish, {"inplace": False}),  # timm's Mish works out of place
        "timm_sigmoid": (tl.Sigmoid(), ti.nn.Sigmoid, {}),
        "timm_tanh": (tl.Tanh(), ti.nn.Tanh, {}),
        "timm_hswish": (tl.HardSwish(inplace=True), ti.nn.Hardswish, {"inplace": True}),
        "timm_hsigmoid": (tl.HardSigmoid(), ti.nn.Hardsigmoid, {}),
        "timm_gelu": (tl.GELU(inplace=True), ti.nn.GELU, {"approximate": "none", "inplace": False}),
        "timm_gelu_tanh": (tl.GELUTanh(), ti.nn.GELU, {"approximate": "tanh"}),
        "timm_quick": (tl.QuickGELU(), ti.nn.Swish, {"beta": 1.702}),
        "timm_prelu": (tl.PReLU(num_parameters=3, init=0.1), ti.nn.PReLU, {"num_parameters": 3}),
        "me_swish": (tme.SwishMe(), ti.nn.SiLU, {}),
        "me_mish": (tme.MishMe(), ti.nn.Mish, {}),
        "me_hsigmoid": (tme.HardSigmoidMe(), ti.nn.Hardsigmoid, {}),
        "me_hswish": (tme.HardSwishMe(), ti.nn.Hardswish, {}),
    }
    no_function = {"hf_laplace": act.LaplaceActivation(), "hf_sqrt_softplus": act.SqrtSoftplusActivation(),
                   "timm_hard_mish": tl.HardMish(), "me_hard_mish": tme.HardMishMe()}
    model = nn.ModuleDict({**{k: m for k, (m, _, _) in mods.items()}, **no_function})
    prelu_weight = mods["timm_prelu"][0].weight
    seen = []
    mods["hf_new"][0].register_forward_hook(lambda m, i, o: seen.append(type(m)))
    x = torch.linspace(-6, 6, 3 * 50).reshape(50, 3)
    with torch.no_grad():
        want = {k: m(x.clone()) for k, m in model.items()}
    report = swap_activations(model)
    for k, (_, cls, settings) in mods.items():
        assert type(model[k]) is cls, k
        for attr, value in settings.items():
            assert getattr(model[k], attr) == value, (k, attr)
    assert model["timm_prelu"].weight is prelu_weight  # the same Parameter: optimizers and checkpoints keep it
    assert {x.name for x in report.left} == set(no_function)
    assert all("not a torchinit function" in x.reason for x in report.left)
    with torch.no_grad():
        for k, m in model.items():
            torch.testing.assert_close(m(x.clone()), want[k], rtol=1e-6, atol=1e-6, msg=k)
    assert seen == [transformers.activations.NewGELUActivation, ti.nn.GELU]  # the hook came along
    # a second default swap changes nothing and says why; the root module itself is reported, not replaced
    again = swap_activations(model)
    assert not again.replaced and all(x.reason == "already torchinit" or x.name in no_function for x in again.left)
    root = swap_activations(transformers.activations.SiLUActivation())
    assert [x.reason for x in root.left] == ["the root module itself cannot be replaced in place"]


def test_look_alike_activations_and_torchinit_modules_are_reported():
    class MyGELU(nn.Module):  # a model file's own activation: not in any table, so reported, never swapped
        def forward(self, x):
            return F.gelu(x)

    model = nn.Sequential(MyGELU(), ti.nn.ReLU(), nn.Dropout(), nn.Identity())
    report = swap_activations(model)
    assert not report.replaced and type(model[0]) is MyGELU
    reasons = {x.name: x.reason for x in report.left}
    assert set(reasons) == {"0", "1"}
    assert "MyGELU is not a class torchinit knows" in reasons["0"] and "already torchinit" in reasons["1"]


def test_kind_of_module_for_fuse():
    """The contract fuse uses: (kind, functional arguments) for torch, torchinit and recognised classes."""
    act, tl = transformers.activations, timm.layers.activations
    assert table.kind_of_module(act.GELUTanh()) == ("gelu", {"approximate": "tanh"})
    assert table.kind_of_module(act.QuickGELUActivation()) == ("swish", {"beta": 1.702})
    assert table.kind_of_module(act.SiLUActivation()) == ("silu", {})
    assert table.kind_of_module(tl.GELU()) == ("gelu", {"approximate": "none"})
    assert table.kind_of_module(nn.LeakyReLU(0.2)) == ("leaky_relu", {"negative_slope": 0.2})
    assert table.kind_of_module(ti.nn.get("gelu_new")()) is None  # a subclass: exact classes only
    prelu = tl.PReLU(4)
    assert table.kind_of_module(prelu) == ("prelu", {"weight": prelu.weight})
    for m in (act.LinearActivation(), act.ClippedGELUActivation(-1, 1), act.LaplaceActivation(), nn.Linear(2, 2),
              _impostor("NewGELUActivation", lambda x: _tanh_gelu(x, kappa=0.0447))):
        assert table.kind_of_module(m) is None, type(m).__name__


# ---------------------------------------------------------------------------------------------
# functional calls held as attributes (functools.partial), mapping keys (issue 13)
# ---------------------------------------------------------------------------------------------


def test_partial_held_as_attribute_is_switched_with_functional():
    model, inputs = model_zoo.build("gemma")
    reference = copy.deepcopy(model)
    # HF's GELUTanh holds functools.partial(F.gelu, approximate="tanh"); a mapping by torch.nn class leaves the
    # module (not an nn.GELU) but switches the partial it holds
    report = swap_activations(model, {nn.GELU: ti.nn.GELU}, functional=True)
    attrs = [r for r in report.replaced if r.how == "attribute"]
    assert len(attrs) == 2 and all("functools.partial(F.gelu, approximate='tanh')" == r.old for r in attrs)
    held = model.model.layers[0].mlp.act_fn.act
    assert isinstance(held, functools.partial) and held.func is ti.functional.gelu
    assert held.keywords == {"approximate": "tanh"}
    with torch.no_grad():
        torch.testing.assert_close(model_zoo.output_tensor(model(**inputs)),
                                   model_zoo.output_tensor(reference(**inputs)), rtol=1e-5, atol=1e-5)
    assert {x.name for x in report.left} == {"model.layers.0.mlp.act_fn", "model.layers.1.mlp.act_fn"}


def test_torch_class_key_matches_its_torchinit_twin_and_string_keys_are_names():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(inplace=True))
    swap_activations(model)
    assert type(model[1]) is ti.nn.ReLU
    report = swap_activations(model, {nn.ReLU: ti.nn.GELU()})  # README's sequence: the second call acts
    assert [type(m) for m in model[1::2]] == [ti.nn.GELU, ti.nn.GELU] and len(report.modules) == 2
    # a key naming the torchinit class wins over its torch twin's
    m2 = nn.Sequential(ti.nn.ReLU())
    swap_activations(m2, {nn.ReLU: ti.nn.GELU(), ti.nn.ReLU: None})
    assert type(m2[0]) is ti.nn.ReLU
    # string keys are module names: "relu" names no module here, and the report says which class to use
    m3 = nn.Sequential(nn.ReLU(), nn.Sigmoid())
    report = swap_activations(m3, {"relu": ti.nn.GELU(), "l": ti.nn.Tanh(), "1": ti.nn.Tanh()})
    assert type(m3[0]) is nn.ReLU and type(m3[1]) is ti.nn.Tanh
    unmatched = {x.name: x.reason for x in report.unmatched}
    assert set(unmatched) == {"relu", "l"}
    assert "{nn.ReLU: ...}" in unmatched["relu"] and "module names" in unmatched["relu"]
    assert "matched nothing" in str(report)


# ---------------------------------------------------------------------------------------------
# the meta device: swap before loading weights
# ---------------------------------------------------------------------------------------------


def test_swap_on_the_meta_device_then_load_weights():
    cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=128, max_position_embeddings=64)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(cfg)
        extra = nn.Sequential(nn.Linear(3, 3), timm.layers.activations.PReLU(3))
    report = swap_activations(model)
    assert len(report.modules) == 2 and not report.left
    assert all(type(layer.mlp.act_fn) is ti.nn.SiLU for layer in model.model.layers)
    r2 = swap_activations(extra)
    assert type(extra[1]) is ti.nn.PReLU and extra[1].weight.is_meta and len(r2.modules) == 1
    # now load real weights: the swapped model computes what the unswapped one does
    torch.manual_seed(0)
    reference = transformers.LlamaForCausalLM(cfg).eval()
    model.to_empty(device="cpu")
    model.load_state_dict(reference.state_dict())
    model.model.rotary_emb.inv_freq.copy_(reference.model.rotary_emb.inv_freq)  # a non-persistent buffer
    model.eval()
    ids = torch.randint(0, 128, (2, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, reference(input_ids=ids).logits, rtol=1e-5, atol=1e-5)


def test_swap_meta_benchmark_runs_on_a_small_shape():
    from benchmarks.swap_meta import run_swap_meta

    data = run_swap_meta(repeats=1, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, vocab_size=128)
    assert data["model"]["device"] == "meta" and data["model"]["config"]["num_hidden_layers"] == 2
    default = data["swap"]["default"]
    assert default["error"] is None and default["report"]["replaced_modules"] == 2 and default["report"]["left"] == 0
    assert set(data["swap"]) == {"default", "functional", "fuse"}
    assert all(row["error"] or row["time_s"]["runs"] == 1 for row in data["swap"].values())
