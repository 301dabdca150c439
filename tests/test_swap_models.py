"""swap_activations on torchvision models (random weights, small inputs) and small hand-written blocks."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchinit as ti
from torchinit.swap import DEFAULT, TORCH, swap_activations
from torchinit.swap import calls

torchvision = pytest.importorskip("torchvision")

# name, constructor kwargs, input side, whether its forward calls F.relu (functional=True must catch it)
MODELS = [
    ("resnet18", {}, 64, False),
    ("mobilenet_v3_small", {}, 64, False),
    ("efficientnet_b0", {}, 64, False),
    ("convnext_tiny", {}, 64, False),
    ("vit_b_16", {"image_size": 32}, 32, False),
    ("swin_t", {}, 64, False),
    ("regnet_y_400mf", {}, 64, False),
    ("densenet121", {}, 64, True),
    ("googlenet", {"init_weights": True, "aux_logits": True}, 64, True),
    ("squeezenet1_1", {}, 64, False),
]


def _logits(out):
    return out.logits if hasattr(out, "logits") else out


def _torch_activations(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if type(m) in DEFAULT]


@pytest.mark.parametrize("name,kwargs,side,calls_relu", MODELS, ids=[m[0] for m in MODELS])
def test_torchvision_model(name, kwargs, side, calls_relu):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, **kwargs).eval()
    x = torch.randn(1, 3, side, side)
    with torch.no_grad():
        ref = _logits(model(x))
    checkpoint = {k: v.clone() for k, v in model.state_dict().items()}

    report = swap_activations(model, functional=True)

    # the same function in eval mode (CPU: torchinit's torch path, so equal up to rounding)
    with torch.no_grad():
        torch.testing.assert_close(_logits(model(x)), ref, rtol=1e-5, atol=1e-5)
    # no torch.nn activation module is left unless the report says so; some were replaced
    left = {entry.name for entry in report.left}
    assert set(_torch_activations(model)) <= left
    assert report.modules or report.functional
    if calls_relu:
        assert any(r.old.startswith("F.relu") for r in report.functional), str(report)
    # every rewritten forward is plain torch.fx code, which torch.compile handles (see the compile test)
    assert not report.intercepted, str(report)
    assert all(calls.installed_kind(m) in (None, "fx") for m in model.modules())

    # state_dict keys unchanged: the swapped model loads the original's checkpoint
    assert list(model.state_dict()) == list(checkpoint)
    model.load_state_dict(checkpoint)

    # a training step runs and changes the weights
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = (_logits(model(torch.randn(2, 3, side, side))) - 1).square().mean()
    loss.backward()
    before = [p.detach().clone() for p in model.parameters() if p.grad is not None]
    assert before, "no parameter received a gradient"
    opt.step()
    assert any(not torch.equal(b, p.detach()) for b, p in
               zip(before, [p for p in model.parameters() if p.grad is not None]))

    # back to plain torch: no torchinit module or rewritten forward remains, same outputs, and the plain
    # model loads the swapped model's checkpoint
    model.eval()
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        swapped_out = _logits(model(x))
    undo = swap_activations(model, TORCH, functional=True)
    assert not any(type(m).__module__.startswith("torchinit") for m in model.modules())
    assert all(calls.installed_kind(m) is None for m in model.modules())
    assert len(undo.restored) == len({r.names[0].split(":")[0] for r in report.functional})
    model.load_state_dict(trained)
    with torch.no_grad():
        torch.testing.assert_close(_logits(model(x)), swapped_out, rtol=1e-5, atol=1e-5)


def test_functional_false_leaves_functional_calls():
    torch.manual_seed(0)
    model = torchvision.models.densenet121(weights=None).eval()
    report = swap_activations(model)
    assert report.modules and not report.functional
    assert calls.installed_kind(model) is None


# ---------------------------------------------------------------------------------------------
# transformer MLP with GELU and a hand-written SwiGLU block; torch.compile
# ---------------------------------------------------------------------------------------------


class MLP(nn.Module):
    def __init__(self, d: int = 16, h: int = 32) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(d, h), nn.GELU(approximate="tanh"), nn.Linear(h, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class SwiGLU(nn.Module):
    def __init__(self, d: int = 16, h: int = 24) -> None:
        super().__init__()
        self.w12, self.w3 = nn.Linear(d, 2 * h, bias=False), nn.Linear(h, d, bias=False)

    def forward(self, x):
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class Block(nn.Module):
    """A transformer-ish block: GELU module MLP, SwiGLU with F.silu, an exact F.gelu, a conv path with relu_."""

    def __init__(self) -> None:
        super().__init__()
        self.mlp, self.glu = MLP(), SwiGLU()
        self.conv = nn.Conv1d(16, 16, 1)

    def forward(self, x):
        h = self.glu(self.mlp(x))
        c = self.conv(h.transpose(1, 2)).relu_().transpose(1, 2)
        return F.gelu(h + c)


def test_mlp_and_swiglu_default_and_cross_mapping():
    torch.manual_seed(0)
    block = Block().eval()
    x = torch.randn(2, 5, 16)
    ref = block(x)
    m = copy.deepcopy(block)
    report = swap_activations(m, functional=True)
    assert isinstance(m.mlp.act, ti.nn.GELU) and m.mlp.act.approximate == "tanh"
    labels = sorted(r.old for r in report.functional)
    assert labels == ["F.gelu()", "F.silu(inplace=False)", "Tensor.relu_(inplace=True)"], labels
    torch.testing.assert_close(m(x), ref)

    # a module type's entry covers its functional twins: relu_ and GELU(module and F.gelu) change
    m2 = copy.deepcopy(block)
    swap_activations(m2, {nn.ReLU: ti.nn.SiLU(), nn.GELU: ti.nn.ReLU()}, functional=True)
    assert type(m2.mlp.act) is ti.nn.ReLU
    h = block.glu(block.mlp.fc2(torch.relu(block.mlp.fc1(block.mlp.norm(x)))) + x)
    c = F.silu(block.conv(h.transpose(1, 2))).transpose(1, 2)
    torch.testing.assert_close(m2(x), torch.relu(h + c))


def test_torch_compile_of_swapped_models():
    """Inductor on the hand-written block (fx-rewritten forwards + torchinit modules), dynamo on squeezenet."""
    torch.manual_seed(0)
    block = Block().eval()
    x = torch.randn(2, 5, 16)
    swap_activations(block, functional=True)
    ref = block(x)
    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True)
    torch.testing.assert_close(compiled(x), ref, rtol=1e-5, atol=1e-5)

    net = torchvision.models.squeezenet1_1(weights=None).eval()
    swap_activations(net, functional=True)
    xi = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = net(xi)
        got = torch.compile(net, backend="eager", fullgraph=True)(xi)
    torch.testing.assert_close(got, want)
    torch._dynamo.reset()
