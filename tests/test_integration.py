"""torchinit's activations inside torch's machinery: opcheck, compile, export, torch.func, checkpointing,
DTensor, gradcheck, modules (state_dict, deepcopy, repr) and random layouts."""

from __future__ import annotations

import copy
import inspect
import io
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import torchinit as ti
import torchinit.functional as F
import torchinit.nn as tnn
import torchinit.layout
import torchinit.sharding
from activation_cases import CASES, INPLACE, ids, params
from torchinit.activations import FORMULAS


@pytest.fixture(autouse=True)
def poison_outputs(monkeypatch):
    monkeypatch.setattr(torchinit.layout, "POISON_OUTPUTS", True)


def _sample_args(formula):
    x = torch.randn(3, 4, 5) * 2
    w0 = w1 = None
    if formula.name == "prelu":
        w0 = torch.rand(4)
    if formula.name == "swish":
        w0 = torch.tensor([1.3])
    if formula.name == "star_relu":
        w0, w1 = torch.tensor([0.9]), torch.tensor([-0.1])
    return x, w0, w1, (0.3, 1.2, 0.8) if "elu" in formula.name else (0.1, 2.0, 1.0)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("name", list(FORMULAS))
def test_opcheck(name, backend):
    formula = FORMULAS[name]
    if formula.name == "hardtanh":
        scalars = (-1.0, 1.0, 0.0)
    elif formula.name == "softplus":
        scalars = (1.0, 20.0, 0.0)
    else:
        scalars = _sample_args(formula)[3]
    x, w0, w1, _ = _sample_args(formula)
    ops = torch.ops.torchinit
    with ti.use_backend(backend):
        torch.library.opcheck(getattr(ops, name), (x.clone().requires_grad_(), w0, w1, *scalars))
        torch.library.opcheck(getattr(ops, name), (x.transpose(0, 2), w0, w1, *scalars))
        torch.library.opcheck(getattr(ops, name + "_backward"), (torch.randn_like(x), x, w0, w1, *scalars))
        torch.library.opcheck(getattr(ops, name + "_"), (x.clone(), w0, w1, *scalars),
                              test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_opcheck_glu(backend):
    with ti.use_backend(backend):
        torch.library.opcheck(torch.ops.torchinit.glu, (torch.randn(3, 8, requires_grad=True), 1))
        torch.library.opcheck(torch.ops.torchinit.glu, (torch.randn(4, 6, 5).transpose(0, 2), 1))
        torch.library.opcheck(torch.ops.torchinit.glu_backward, (torch.randn(3, 4), torch.randn(3, 8), 1))


class EveryActivation(torch.nn.Module):
    """A small model that uses every torchinit activation once, modules and functions."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(16, 16)
        self.acts = torch.nn.ModuleList(
            [cls() for name, cls in tnn.ACTIVATION_MODULES.items() if name not in ("glu", "prelu")]
            + [tnn.PReLU(16), tnn.Swish(learnable=True), tnn.LeakyReLU(-0.1), tnn.GELU("tanh"), tnn.Softplus(2, 3)]
        )
        self.glu = tnn.GLU()

    def forward(self, x):
        x = self.lin(x)
        for act in self.acts:
            x = act(x) * 0.5 + x
        return self.glu(torch.cat([x, x], dim=-1)) + F.elu(x, alpha=-0.3)


def _graph_breaks(fn, *args):
    torch._dynamo.reset()
    return torch._dynamo.explain(fn)(*args).graph_break_count


def test_compile_fullgraph_default_emits_aten(captured_graphs):
    """Under torch.compile the default hands Inductor plain aten code: no torchinit op, no graph break."""
    torch.manual_seed(0)
    model = EveryActivation()
    x = torch.randn(4, 16)
    assert _graph_breaks(model, x) == 0
    capture, graphs = captured_graphs

    torch._dynamo.reset()
    torch.compile(model, fullgraph=True, backend=capture)(x)
    targets = {str(n.target) for g in graphs for n in g.graph.nodes}
    assert not any("torchinit" in t for t in targets)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)  # Inductor
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)


def test_compile_fullgraph_keeps_kernels_when_asked(captured_graphs):
    torch.manual_seed(0)
    model = EveryActivation()
    x = torch.randn(4, 16)
    capture, graphs = captured_graphs

    with ti.use_kernels_in_compile(), ti.use_backend("triton"):
        torch._dynamo.reset()
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        xr = x.clone().requires_grad_()
        out = compiled(xr)
        out.sum().backward()
        torch._dynamo.reset()
        torch.compile(model, fullgraph=True, backend=capture)(x)
    xe = x.clone().requires_grad_()
    ref = model(xe)
    ref.sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xr.grad, xe.grad, rtol=1e-5, atol=1e-5)
    assert any("AutogradFunctionApply" in type(n.target).__name__ for g in graphs for n in g.graph.nodes)


def test_export_keeps_ops_and_round_trips():
    torch.manual_seed(0)
    model = EveryActivation().eval()
    x = torch.randn(4, 16)
    ep = torch.export.export(model, (x,))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert {"torchinit.gelu.default", "torchinit.prelu.default", "torchinit.glu.default"} <= targets
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    buf.seek(0)
    loaded = torch.export.load(buf)
    torch.testing.assert_close(loaded.module()(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_torch_func_grad_vmap(backend):
    x = torch.randn(6, 5, dtype=torch.float64)
    w = torch.rand(3, dtype=torch.float64)
    xb = torch.randn(4, 2, 3, 5, dtype=torch.float64)
    with ti.use_backend(backend):
        g = torch.func.grad(lambda t: F.mish(t).sum())(x)
        v = torch.func.vmap(F.gelu)(x)
        j = torch.func.jacrev(F.silu)(x[0])
        vp = torch.func.vmap(lambda t: F.prelu(t, w))(xb)
        per_sample = torch.func.vmap(torch.func.grad(lambda t: F.prelu(t, w).square().sum()))(xb)
        vglu = torch.func.vmap(lambda t: F.glu(t, 0), in_dims=1)(torch.randn(4, 3, 6, dtype=torch.float64))
    torch.testing.assert_close(g, torch.func.grad(lambda t: TF.mish(t).sum())(x))
    torch.testing.assert_close(v, TF.gelu(x))
    torch.testing.assert_close(j, torch.func.jacrev(TF.silu)(x[0]))
    torch.testing.assert_close(vp, torch.func.vmap(lambda t: TF.prelu(t, w))(xb))
    torch.testing.assert_close(per_sample, torch.func.vmap(torch.func.grad(lambda t: TF.prelu(t, w).square().sum()))(xb))
    assert vglu.shape == (3, 2, 6)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_activation_checkpointing(backend):
    torch.manual_seed(0)
    block = torch.nn.Sequential(torch.nn.Linear(8, 8), tnn.GELU(), torch.nn.Linear(8, 8), tnn.SiLU(),
                                tnn.PReLU(8), tnn.ReLU())
    x = torch.randn(5, 8, requires_grad=True)
    with ti.use_backend(backend):
        y = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
        grads = torch.autograd.grad(y.square().sum(), [x, *block.parameters()])
        y2 = block(x)
        grads2 = torch.autograd.grad(y2.square().sum(), [x, *block.parameters()])
    for a, b in zip(grads, grads2):
        torch.testing.assert_close(a, b)


def test_dtensor_one_process_mesh(cpu_mesh):
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    x = torch.randn(8, 6)
    dx = distribute_tensor(x, cpu_mesh, [Shard(0)])
    for backend in ("torch", "triton"):
        with ti.use_backend(backend):
            y = F.gelu(dx)
            yp = F.prelu(distribute_tensor(torch.randn(4, 3, 5), cpu_mesh, [Shard(0)]),
                         distribute_tensor(torch.rand(3), cpu_mesh, [Replicate()]))
        assert type(y).__name__ == "DTensor" and type(yp).__name__ == "DTensor"
        torch.testing.assert_close(y.full_tensor(), TF.gelu(x))
        assert y.placements == dx.placements


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("case", params(), ids=ids)
def test_gradcheck_fp64(case, backend):
    name, kw = case
    fn = CASES[name][0]
    x = torch.randn(2, 5, dtype=torch.float64) * 2
    x = x + 0.01 * torch.sign(x)  # keep away from the kinks at 0
    if name in ("relu6", "hardtanh", "hardswish", "hardsigmoid"):
        x = x[(x - 3).abs().gt(0.01) & (x + 3).abs().gt(0.01) & (x - 6).abs().gt(0.01)
              & (x + 2).abs().gt(0.01) & (x - 0.5).abs().gt(0.01) & (x + 1).abs().gt(0.01)
              & (x - 1).abs().gt(0.01)]
    x.requires_grad_()
    with ti.use_backend(backend):
        assert torch.autograd.gradcheck(lambda t: fn(t, **kw), (x,), fast_mode=True)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_gradcheck_learnable_parameters(backend):
    x = (torch.randn(2, 3, 4, dtype=torch.float64) * 2).requires_grad_()
    w = torch.rand(3, dtype=torch.float64, requires_grad=True)
    beta = torch.tensor([1.2], dtype=torch.float64, requires_grad=True)
    s = torch.tensor([0.9], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([-0.3], dtype=torch.float64, requires_grad=True)
    with ti.use_backend(backend):
        assert torch.autograd.gradcheck(F.prelu, (x, w))
        assert torch.autograd.gradcheck(F.swish, (x, beta))
        assert torch.autograd.gradcheck(F.star_relu, (x, s, b))
        assert torch.autograd.gradcheck(lambda t: F.glu(t, 1), (torch.randn(2, 4, 3, dtype=torch.float64,
                                                                            requires_grad=True),))


TORCH_TWINS = {name: getattr(torch.nn, cls.__bases__[0].__name__) for name, cls in tnn.ACTIVATION_MODULES.items()
               if cls.__bases__[0] is not torch.nn.Module}


@pytest.mark.parametrize("name", list(tnn.ACTIVATION_MODULES))
def test_modules_drop_in(name):
    cls = tnn.ACTIVATION_MODULES[name]
    module = cls()
    x = torch.randn(4, 6, 6)
    twin = TORCH_TWINS.get(name)
    if twin is not None:
        # a subclass of its twin: same repr, parameters of the twin's constructor, state_dict keys
        reference = twin()
        assert isinstance(module, twin)
        assert repr(module) == repr(reference)
        named = {inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY}
        twin_args = {p.name for p in inspect.signature(twin).parameters.values() if p.kind in named}
        assert twin_args <= set(inspect.signature(cls).parameters)
        assert module.state_dict().keys() == reference.state_dict().keys()
        reference.load_state_dict(module.state_dict())
        torch.testing.assert_close(module(x), reference(x))
    # every module accepts inplace (timm and torchvision build activations as act_layer(inplace=True))
    assert cls(inplace=True)(x.clone()).shape == module(x).shape
    clone = copy.deepcopy(module)
    torch.testing.assert_close(clone(x), module(x))
    buf = io.BytesIO()
    torch.save(module, buf)
    buf.seek(0)
    torch.testing.assert_close(torch.load(buf, weights_only=False)(x), module(x))


def test_learnable_modules():
    m = tnn.Swish(beta=1.5, learnable=True)
    assert [n for n, _ in m.named_parameters()] == ["beta"]
    x = torch.randn(5, 3)
    m(x).sum().backward()
    assert m.beta.grad is not None and m.beta.grad.shape == (1,)
    torch.testing.assert_close(tnn.Swish(beta=1.0)(x), TF.silu(x))
    s = tnn.StarReLU(scale_learnable=False)
    assert not s.scale.requires_grad and s.bias.requires_grad
    torch.testing.assert_close(s(x), 0.8944 * torch.relu(x) ** 2 - 0.4472)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(0, 6), min_size=1, max_size=4),
    data=st.data(),
    name=st.sampled_from(list(CASES)),
)
def test_random_shapes_and_strides(shape, data, name):
    """Hypothesis: any shape, any permutation of dims, any step slicing; triton == torch."""
    fn, ref, variants = CASES[name]
    base = torch.randn(*[s * 2 + 1 for s in shape], dtype=torch.float64) * 3
    perm = data.draw(st.permutations(range(len(shape))))
    steps = [data.draw(st.integers(1, 2)) for _ in shape]
    x = base.permute(*perm)
    x = x[tuple(slice(0, None, step) for step in steps)]
    x = x[tuple(slice(0, s) for s in shape)] if all(s <= d for s, d in zip(shape, x.shape)) else x
    g = torch.randn(x.shape, dtype=torch.float64)
    with ti.use_backend("triton"):
        xi = x.clone().requires_grad_()
        y = fn(xi, **variants[0])
        (gx,) = torch.autograd.grad(y, xi, g)
    xr = x.clone().requires_grad_()
    yr = ref(xr, **variants[0])
    (gr,) = torch.autograd.grad(yr, xr, g)
    torch.testing.assert_close(y, yr)
    torch.testing.assert_close(gx, gr)


# ---------------------------------------------------------------------------------------------
# dtypes torchinit's kernels do not take: torch's own path, so the result (or the error) is torch's
# ---------------------------------------------------------------------------------------------

NON_FLOATING = [torch.int64, torch.int32, torch.uint8, torch.int8, torch.bool, torch.complex64]


def _outcome(fn, x, *args, **kwargs):
    """``fn``'s result, or the type of the exception it raises."""
    try:
        return fn(x, *args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the test compares which error torch raises
        return type(exc)


def _assert_same_outcome(got, want, what):
    if isinstance(want, type):
        assert got is want, f"{what}: torch raises {want.__name__}, torchinit gives {got!r}"
    else:
        assert isinstance(got, torch.Tensor), f"{what}: torch returns a result, torchinit raises {got.__name__}"
        assert got.dtype == want.dtype and torch.equal(got, want), f"{what}: {got} != torch's {want}"


def _non_floating_input(dtype):
    return torch.arange(-3, 3).to(dtype)  # negatives, zero and positives (uint8 wraps them, for both sides)


@pytest.mark.parametrize("dtype", NON_FLOATING, ids=str)
@pytest.mark.parametrize("case", params(), ids=ids)
def test_non_floating_input_gets_torchs_result_or_error(case, dtype):
    name, kwargs = case
    ours, reference, _ = CASES[name]
    for inplace in ([False, True] if name in INPLACE else [False]):
        extra = {"inplace": True} if inplace else {}
        x_ours, x_torch = _non_floating_input(dtype), _non_floating_input(dtype)
        if inplace and name == "squared_relu":  # torch has no squared_relu: in place is its result copied back
            want = _outcome(lambda t: t.copy_(reference(t, **kwargs)), x_torch)
        else:
            want = _outcome(reference, x_torch, **kwargs, **extra)
        got = _outcome(ours, x_ours, **kwargs, **extra)
        _assert_same_outcome(got, want, f"{name}({dtype}, inplace={inplace})")
        assert torch.equal(x_ours, x_torch), f"{name}: the input was changed differently"


@pytest.mark.parametrize("dtype", NON_FLOATING, ids=str)
@pytest.mark.parametrize("name", ["prelu", "glu", "softmax", "log_softmax", "softmin", "softmax_dtype"])
def test_non_floating_input_of_the_other_functions_behaves_like_torch(name, dtype):
    x = _non_floating_input(dtype)
    if name == "prelu":
        for weight in (torch.tensor([0.25]), torch.tensor([2]).to(dtype)):
            _assert_same_outcome(_outcome(F.prelu, x, weight), _outcome(TF.prelu, x, weight), f"prelu({dtype})")
        return
    fn = name.removesuffix("_dtype")
    kwargs = {"dtype": torch.float64} if name.endswith("_dtype") else {}
    _assert_same_outcome(_outcome(getattr(F, fn), x, 0, **kwargs), _outcome(getattr(TF, fn), x, 0, **kwargs),
                         f"{name}({dtype})")


@pytest.mark.parametrize("name", sorted(TORCH_TWINS))
def test_modules_on_integer_input_behave_like_torch(name):
    x = torch.arange(-2, 3)  # the case: ti.nn.ReLU()(torch.arange(-2, 3))
    _assert_same_outcome(_outcome(tnn.ACTIVATION_MODULES[name](), x), _outcome(TORCH_TWINS[name](), x),
                         f"ti.nn module {name}")


def test_non_floating_error_names_the_op():
    with pytest.raises(NotImplementedError, match=r"torchinit\.elu: .*Long"):
        F.elu(torch.arange(3))


@pytest.mark.parametrize("name, act", [("swiglu", TF.silu), ("reglu", TF.relu), ("geglu", TF.gelu)])
@pytest.mark.parametrize("dim", [-1, 1])
def test_gated_second_positional_int_is_the_dim(name, act, dim):
    # README writes ti.functional.swiglu(x, -1): the one-tensor form, gate = first half along dim
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    gate, up = x.chunk(2, dim)
    torch.testing.assert_close(getattr(F, name)(x, dim), act(gate) * up, rtol=0, atol=0)
    with pytest.raises(TypeError, match=f"torchinit.{name}: got the dim twice"):
        getattr(F, name)(x, dim, dim=0)


# ---------------------------------------------------------------------------------------------
# import: torch.distributed.tensor only when the user imports it; TORCHINIT_BACKEND errors
# ---------------------------------------------------------------------------------------------

_DTENSOR_AFTER_IMPORT = """
import socket, sys
import torch
import torchinit as ti
import torchinit.functional as F
ti.apply_init(torch.nn.Linear(3, 3), "kaiming_normal", seed=0)  # first use: still no DTensor import
F.gelu(torch.randn(3))
print("dtensor imported by torchinit:", "torch.distributed.tensor" in sys.modules)
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Shard, distribute_tensor
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
mesh = init_device_mesh("cpu", (1,))
x = torch.randn(4, 6)
with ti.use_backend("triton"):  # the torchinit operator itself, which needs its sharding rule
    y = F.gelu(distribute_tensor(x, mesh, [Shard(1)]))
    print("placements", y.placements, "equal", torch.equal(y.full_tensor(), F.gelu(x)))
dist.destroy_process_group()
"""


def _python(code: str, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "TRITON_INTERPRET": "1", **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env,
                          timeout=900)  # a hang guard only


def test_import_leaves_dtensor_alone_and_registers_sharding_when_it_is_imported():
    out = _python(_DTENSOR_AFTER_IMPORT)
    assert out.returncode == 0, out.stderr
    assert "dtensor imported by torchinit: False" in out.stdout
    assert "placements (Shard(dim=1),) equal True" in out.stdout, out.stdout


def test_sharding_registration_runs_at_once_when_dtensor_is_already_imported():
    import torch.distributed.tensor  # noqa: F401

    called = []
    torchinit.sharding.on_dtensor_import(lambda: called.append(True))
    assert called == [True]
    assert torchinit.sharding._HOOK not in sys.meta_path  # the one-shot hook is gone once DTensor is imported


def test_backend_environment_variable_error_names_it_and_the_closest_value():
    out = _python("import torchinit", TORCHINIT_BACKEND="cuda")
    assert out.returncode != 0
    assert ("ValueError: environment variable TORCHINIT_BACKEND='cuda': expected one of ['auto', 'triton', 'torch']"
            in out.stderr), out.stderr


def test_backend_name_typos_suggest_the_closest(monkeypatch):
    monkeypatch.setenv("TORCHINIT_BACKEND", "tritn")
    with pytest.raises(ValueError, match=r"TORCHINIT_BACKEND='tritn'.*did you mean 'triton'"):
        ti.backend.set_default_backend()
    monkeypatch.delenv("TORCHINIT_BACKEND")
    ti.backend.set_default_backend()
    with pytest.raises(ValueError, match=r"torchinit\.use_backend: .*'troch'; did you mean 'torch'"):
        with ti.use_backend("troch"):
            pass
    assert ti.get_backend() == "auto"


@pytest.mark.parametrize("name, memory", [("relu", "bits"), ("relu6", "bits"), ("leaky_relu", "bits"),
                                          ("hardtanh", "bits"), ("prelu", "bits"), ("gelu", "fewbit"),
                                          ("silu", "fewbit"), ("mish", "fewbit")])
@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.complex64], ids=str)
def test_memory_modes_on_non_floating_input_behave_like_torch(name, memory, dtype):
    x = _non_floating_input(dtype)  # no gradient to save memory for: the default path, torch's own function
    module = tnn.ACTIVATION_MODULES[name](memory=memory)
    _assert_same_outcome(_outcome(module, x), _outcome(TORCH_TWINS[name](), x), f"{name}(memory={memory!r})")
