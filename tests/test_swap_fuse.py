"""swap_activations(..., fuse=True): layer + activation -> bias_act, GLU patterns -> swiglu/geglu/reglu.

Every case runs with the "auto" backend (CPU: torchinit's torch path) and with "triton" (the fused
kernels under Triton's interpreter, set up by conftest.py); tensors stay small for the interpreter.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchinit as ti
from torchinit import backend
from torchinit.swap import TORCH, SwapError, calls, swap_activations
from torchinit.swap.fused_calls import gated_halves, gated_product, layer_bias_act

BACKENDS = ["auto", "triton"]


def _needs(name: str) -> None:
    if name == "triton" and not backend.triton_can_run(torch.device("cpu")):
        pytest.skip("Triton cannot run on CPU here (TRITON_INTERPRET unset or triton missing)")


def _graph_targets(module: nn.Module) -> set:
    """The functions the installed (rewritten) forward calls."""
    fn = module.__dict__["forward"].__func__
    return {v for v in fn.__globals__.values() if callable(v)} & {layer_bias_act, gated_product, gated_halves}


def _check_fused_model(model: nn.Module, x: torch.Tensor, be: str, n_fused: int, fused_ops: set,
                       torch_after_undo: bool = True) -> None:
    """Fuse ``model`` in place; check outputs, gradients, parameters, state_dict, report and undo (after which
    every activation is a torch.nn one again, unless ``torch_after_undo`` is False)."""
    ref_model = copy.deepcopy(model)
    params = [id(p) for p in model.parameters()]
    keys = list(model.state_dict())
    report = swap_activations(model, fuse=True)
    assert len(report.fused) == n_fused, str(report)
    assert all(r.how == "fused" for r in report.fused) and not report.unfused, str(report)
    assert [id(p) for p in model.parameters()] == params and list(model.state_dict()) == keys
    assert calls.installed_kind(model) == "fx" and _graph_targets(model) == fused_ops

    with ti.use_backend(be):
        if be == "triton":
            assert backend.kernel_runs_on(x.device)
        with torch.no_grad():
            torch.testing.assert_close(model(x), ref_model(x))
        # a training step: same gradients as the unfused model, and the optimizer moves the same Parameters
        xg = x.clone().requires_grad_()
        xr = x.clone().requires_grad_()
        model(xg).square().sum().backward()
        ref_model(xr).square().sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad)
    for (n, p), (_, q) in zip(model.named_parameters(), ref_model.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=lambda m, n=n: f"{n}: {m}")
    before = [p.detach().clone() for p in model.parameters()]
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))

    # the state_dict round-trips both ways; undo restores the unfused forward
    ref_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref_model(x))
    undo = swap_activations(model, TORCH, functional=True)
    assert "" in undo.restored and calls.installed_kind(model) is None
    assert not torch_after_undo or not any(type(m).__module__.startswith("torchinit") for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref_model(x))


@pytest.mark.parametrize("be", BACKENDS)
def test_mlp_linear_gelu(be):
    _needs(be)
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(8, 16), nn.GELU(approximate="tanh"), nn.Linear(16, 8))
    report = swap_activations(copy.deepcopy(mlp), fuse=True)
    assert "bias_act(act='gelu', dim=-1, approximate='tanh')" in report.fused[0].new
    _check_fused_model(mlp, torch.randn(3, 8), be, 1, {layer_bias_act})


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 1)
        self.act = nn.ReLU(inplace=True)  # shared by both convolutions

    def forward(self, x):
        return F.leaky_relu(self.c2(self.act(self.c1(x))), 0.2, inplace=True).mean((-1, -2))


@pytest.mark.parametrize("be", BACKENDS)
def test_conv_relu(be):
    _needs(be)
    torch.manual_seed(0)
    net = ConvNet()
    report = swap_activations(copy.deepcopy(net), fuse=True)
    assert sorted(r.new.split("(act=")[1].split(",")[0] for r in report.fused) == ["'leaky_relu'", "'relu'"]
    assert all("dim=-3" in r.new for r in report.fused)
    _check_fused_model(net, torch.randn(2, 3, 5, 5), be, 2, {layer_bias_act})


def test_conv_unbatched_input_uses_the_channel_dim():
    torch.manual_seed(0)
    net = ConvNet()
    ref = copy.deepcopy(net)
    swap_activations(net, fuse=True)
    x = torch.randn(3, 4, 4)  # (C, H, W): channel dim 0, counted from the end as -3
    torch.testing.assert_close(net(x), ref(x))


class SwiGLU(nn.Module):
    """Hand-written LLaMA-style SwiGLU: two gate/up projections, F.silu."""

    def __init__(self, d: int = 8, h: int = 12) -> None:
        super().__init__()
        self.w1, self.w3, self.w2 = nn.Linear(d, h, bias=False), nn.Linear(d, h, bias=False), nn.Linear(h, d)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class ChunkGLU(nn.Module):
    """One fused projection halved with chunk; the gate activation as a module or a method, up first."""

    def __init__(self, act: nn.Module | None, d: int = 8, h: int = 12) -> None:
        super().__init__()
        self.w12, self.w2, self.act = nn.Linear(d, 2 * h), nn.Linear(h, d, bias=False), act

    def forward(self, x):
        gate, up = self.w12(x).chunk(2, dim=-1)
        g = self.act(gate) if self.act is not None else gate.relu()
        return self.w2(up * g)


@pytest.mark.parametrize("be", BACKENDS)
def test_swiglu_two_tensors(be):
    _needs(be)
    torch.manual_seed(0)
    report = swap_activations(SwiGLU(), fuse=True)
    assert report.fused[0].old == "F.silu() * up" and "swiglu(gate, up)" in report.fused[0].new
    _check_fused_model(SwiGLU(), torch.randn(2, 3, 8), be, 1, {gated_product})


@pytest.mark.parametrize("be", BACKENDS)
@pytest.mark.parametrize("act,op", [(nn.SiLU(), "swiglu"), (nn.GELU(approximate="tanh"), "geglu"),
                                    (None, "reglu")], ids=["silu", "gelu", "relu-method"])
def test_chunk_glu(be, act, op):
    _needs(be)
    torch.manual_seed(0)
    report = swap_activations(ChunkGLU(copy.deepcopy(act)), fuse=True)
    assert f"torchinit.fused.{op}(x, dim=-1" in report.fused[0].new, str(report)
    _check_fused_model(ChunkGLU(act), torch.randn(2, 3, 8), be, 1, {gated_halves})


class NotFusable(nn.Module):
    """Patterns that must not fuse, each with a reason in the report."""

    def __init__(self) -> None:
        super().__init__()
        self.w1, self.w3 = nn.Linear(6, 6, bias=False), nn.Linear(6, 6, bias=False)
        self.fc, self.nobias, self.hooked = nn.Linear(6, 6), nn.Linear(6, 6, bias=False), nn.Linear(6, 6)
        self.act = nn.GELU()
        self.hooked.register_forward_hook(lambda m, i, o: o * 2)

    def forward(self, x):
        s = F.silu(self.w1(x))  # its output is used twice: no swiglu
        y = s * self.w3(x) + s
        h = self.fc(y)  # the layer's output is used twice: no bias_act
        y = self.act(h) + h
        y = F.relu(self.nobias(y))  # nothing to fuse without a bias
        return torch.tanh(self.hooked(y))  # bypassing the layer would skip its hook


@pytest.mark.parametrize("be", BACKENDS)
def test_not_fused_and_reported(be):
    _needs(be)
    torch.manual_seed(0)
    net = NotFusable()
    x = torch.randn(2, 6)
    ref = net(x)
    report = swap_activations(net, fuse=True)
    assert not report.fused
    reasons = {u.name: u.reason for u in report.unfused}
    assert reasons == {
        ":F.silu() * w3": "the activation's output has other users",
        ":w1 -> F.silu()": "the layer has no bias (nothing to fuse)",
        ":fc -> act (GELU)": "the layer's output is used elsewhere",
        ":nobias -> F.relu()": "the layer has no bias (nothing to fuse)",
        ":hooked -> torch.tanh()": "the layer has hooks",
    }, str(report)
    assert calls.installed_kind(net) is None  # nothing fused: the forward is untouched
    assert "not fused:" in str(report)
    with ti.use_backend(be):
        torch.testing.assert_close(net(x), ref)


def test_broadcasting_product_falls_back_to_the_composite():
    """``x * relu(s)`` with a broadcast ``s`` (squeeze-excitation style) is rewritten but computes the same."""

    class SE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Conv2d(4, 4, 1, bias=False)

        def forward(self, x):
            return x * F.relu(self.fc(x.mean((2, 3), keepdim=True)))

    torch.manual_seed(0)
    se = SE()
    x = torch.randn(2, 4, 3, 3)
    ref = se(x)
    assert len(swap_activations(se, fuse=True).fused) == 1
    torch.testing.assert_close(se(x), ref)


def test_fused_forward_compiles():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 16), nn.SiLU(), nn.Linear(16, 8), ChunkGLU(nn.SiLU(), d=8, h=4))
    x = torch.randn(2, 8)
    ref = m(x)
    assert len(swap_activations(m, fuse=True).fused) == 2
    torch._dynamo.reset()
    torch.testing.assert_close(torch.compile(m, backend="eager", fullgraph=True)(x), ref)
    torch._dynamo.reset()


def test_fuse_with_functional_swap_and_torch_refused():
    torch.manual_seed(0)
    net = SwiGLU()
    x = torch.randn(2, 8)
    ref = net(x)
    report = swap_activations(net, functional=True, fuse=True)  # F.silu -> ti.silu first, then fused
    assert len(report.functional) == 1 and len(report.fused) == 1
    torch.testing.assert_close(net(x), ref)
    with pytest.raises(SwapError, match="fuse=True"):
        swap_activations(net, TORCH, fuse=True)


torchvision = pytest.importorskip("torchvision")


@pytest.mark.parametrize("be", BACKENDS)
def test_resnet18(be):
    """Conv -> BatchNorm -> ReLU everywhere: nothing fuses, each near miss is reported, the model still works."""
    _needs(be)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    checkpoint = {k: v.clone() for k, v in model.state_dict().items()}
    report = swap_activations(model, fuse=True)
    assert not report.fused
    assert len(report.unfused) == 9 and all("BatchNorm" in u.reason for u in report.unfused), str(report)
    assert list(model.state_dict()) == list(checkpoint)
    model.load_state_dict(checkpoint)
    with ti.use_backend(be):
        with torch.no_grad():
            torch.testing.assert_close(model(x), ref)
        model.train()
        model(torch.randn(2, 3, 32, 32)).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_autocast_keeps_the_unfused_dtype():
    """Under CPU autocast the layer runs in bf16 and so does the fused bias + activation (bias cast, as the layer does)."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(8, 16), nn.GELU())
    ref = copy.deepcopy(mlp)
    swap_activations(mlp, fuse=True)
    x = torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = mlp(x), ref(x)
    assert got.dtype == want.dtype == torch.bfloat16
    # the fused path rounds the matmul to bf16 before adding the bias (the layer adds it inside the matmul):
    # measured at most one bf16 step apart here (0.0039), so bf16 resolution in absolute terms too
    torch.testing.assert_close(got, want, rtol=1.6e-2, atol=1e-2)


# ---------------------------------------------------------------------------------------------
# activations and layers recognised by what they compute
# ---------------------------------------------------------------------------------------------


def test_torchinit_subclasses_are_recognised():
    """``ti.nn.get("gelu_new")`` is a subclass of ti.nn.GELU (approximate='tanh'): it fuses as that GELU; a subclass
    with a forward of its own (ClippedGELU) computes something else and is reported, not fused."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(8, 16), ti.nn.get("gelu_new")(), nn.Linear(16, 8))
    assert type(mlp[1]) is not ti.nn.GELU
    report = swap_activations(copy.deepcopy(mlp), fuse=True)
    assert [r.new for r in report.fused] == ["Linear without bias + torchinit.fused.bias_act(act='gelu', dim=-1, "
                                             "approximate='tanh')"], str(report)
    # (mapping TORCH maps exact torchinit classes back: the registry's GELUTanh subclass stays)
    _check_fused_model(mlp, torch.randn(3, 8), "auto", 1, {layer_bias_act}, torch_after_undo=False)

    clipped = nn.Sequential(nn.Linear(8, 16), ti.nn.get("gelu_10")())
    report = swap_activations(clipped, fuse=True)
    assert not report.fused
    assert [u.reason for u in report.unfused] == ["ClippedGELU has a forward of its own (not GELU's): no fused "
                                                  "kernel is known to compute it"], str(report)


class Conv1D(nn.Module):
    """Shaped like Hugging Face's GPT-2 Conv1D ((in, out) weight, ``nf`` outputs); ``lies`` makes it compute x W - b."""

    def __init__(self, nf: int, nx: int, lies: bool = False) -> None:
        super().__init__()
        self.nf, self.lies = nf, lies
        self.weight = nn.Parameter(torch.randn(nx, nf) / nx ** 0.5)
        self.bias = nn.Parameter(torch.randn(nf))

    def forward(self, x):
        b = -self.bias if self.lies else self.bias
        return torch.addmm(b, x.view(-1, x.size(-1)), self.weight).view(*x.shape[:-1], self.nf)


class FancyLinear(nn.Linear):
    def forward(self, x):
        return super().forward(x) * 2


@pytest.mark.parametrize("be", BACKENDS)
def test_addmm_conv1d_becomes_bias_act(be):
    _needs(be)
    torch.manual_seed(0)
    mlp = nn.Sequential(Conv1D(12, 8), nn.SiLU(), Conv1D(8, 12))
    report = swap_activations(copy.deepcopy(mlp), fuse=True)
    assert [r.new for r in report.fused] == ["Conv1D without bias + torchinit.fused.bias_act(act='silu', dim=-1)"]
    _check_fused_model(mlp, torch.randn(2, 3, 8), be, 1, {layer_bias_act})


def test_layers_that_compute_something_else_are_reported():
    torch.manual_seed(0)
    net = nn.Sequential(Conv1D(6, 4, lies=True), nn.ReLU(), FancyLinear(6, 6), nn.ReLU())
    x = torch.randn(2, 4)
    ref = net(x)
    report = swap_activations(net, fuse=True)
    assert not report.fused
    assert {u.name: u.reason for u in report.unfused} == {
        ":0 -> 1 (ReLU)": "Conv1D looks like Hugging Face's Conv1D but does not compute x @ weight + bias",
        ":2 -> 3 (ReLU)": "FancyLinear is not a layer fuse can split from its bias (nn.Linear, nn.ConvNd or "
                          "Hugging Face's Conv1D, with their own forward)",
    }, str(report)
    torch.testing.assert_close(net(x), ref)


def test_bias_act_on_channels_first_input_says_pass_dim_1():
    x, bias = torch.randn(2, 3, 4, 5), torch.randn(3)
    with pytest.raises(ValueError, match=r"x.shape\[3\] = 5 elements \(dim=-1\), got shape \(3,\); the bias matches "
                                         r"x.shape\[1\] \(channels-first .*\): pass dim=1"):
        ti.bias_act(x, bias, "relu")
    torch.testing.assert_close(ti.bias_act(x, bias, "relu", dim=1), F.relu(x + bias.view(1, 3, 1, 1)))
    with pytest.raises(ValueError, match=r"got shape \(7,\)$"):  # no dim fits: no hint
        ti.bias_act(x, torch.randn(7), "relu")


class Experts(nn.Module):
    """MoE experts stored as one 3-D weight (as Mixtral's): a loop over the experts a batch uses, untraceable."""

    def __init__(self, n: int = 2, d: int = 4, h: int = 6) -> None:
        super().__init__()
        self.gate_up = nn.Parameter(torch.randn(n, 2 * h, d))
        self.act = nn.SiLU()

    def forward(self, x, idx):
        out = []
        for e in idx.unique():
            gate, up = F.linear(x, self.gate_up[e]).chunk(2, dim=-1)
            out.append(self.act(gate) * up)
        return torch.stack(out)


def test_lazy_layer_reported_until_initialised():
    torch.manual_seed(0)
    net = nn.Sequential(nn.LazyLinear(8), nn.ReLU())
    report = swap_activations(net, fuse=True)
    assert [u.reason for u in report.unfused] == ["the lazy layer is not initialised yet: run one batch through the "
                                                  "model, then fuse"], str(report)
    x = torch.randn(2, 3)
    ref = net(x)  # initialises it (it becomes an nn.Linear)
    assert len(swap_activations(net, fuse=True).fused) == 1
    torch.testing.assert_close(net(x), ref)


def test_untraceable_experts_are_reported():
    report = swap_activations(Experts(), fuse=True)
    assert not report.fused
    assert [(u.name, u.what) for u in report.unfused] == [("<root>", "Experts")], str(report)
    assert report.unfused[0].reason.startswith("not fused: torch.fx could not trace it: TraceError")


def test_fused_layer_still_runs_hooks_added_after_the_fuse():
    """A hook put on a fused Linear afterwards (tensor parallelism, FSDP, a user's) runs: the layer is called as
    a module then, its output through the activation unfused; without hooks the fused path runs again."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.GELU(), nn.Linear(6, 3))
    ref = copy.deepcopy(model)
    report = ti.swap_activations(model, fuse=True)
    assert any(r.how == "fused" for r in report.replaced)
    x = torch.randn(5, 4)
    calls = []
    double = lambda mod, inp, out: (calls.append(mod), out * 2)[1]  # noqa: E731
    handles = [m[0].register_forward_hook(double) for m in (model, ref)]
    torch.testing.assert_close(model(x), ref(x))
    assert calls.count(model[0]) == 1
    for h in handles:
        h.remove()
    torch.testing.assert_close(model(x), ref(x))
    assert calls.count(model[0]) == 1
