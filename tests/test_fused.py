"""Fused ops: the GLU family, bias_act, learnable activations' in-kernel parameter gradients, Rational."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as TF

import torchinit as ti
import torchinit.fused as fu
import torchinit.layout
from activation_cases import DTYPES, tolerance
from torchinit.fused.rational import rational_init, torch_rational

BACKENDS = ["torch", "triton"]


@pytest.fixture(autouse=True)
def poison_outputs(monkeypatch):
    """Kernel outputs start as NaN: an element a kernel forgets to write cannot pass."""
    monkeypatch.setattr(torchinit.layout, "POISON_OUTPUTS", True)


def _randn(shape, dtype, scale=3.0):
    return (torch.randn(shape, dtype=torch.float64) * scale).to(dtype)


def _grads(fn, inputs, grad_out):
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    y = fn(*leaves)
    return (y.detach(), *torch.autograd.grad(y, leaves, grad_out))


def _close(got, want, dtype, backward=False, **override):
    tol = {**tolerance(dtype, backward), **override}
    for a, b in zip(got, want):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, **tol)


# ---------------------------------------------------------------------------------------------
# GLU family
# ---------------------------------------------------------------------------------------------

GLU_CASES = [("swiglu", {}, TF.silu), ("geglu", {}, TF.gelu),
             ("geglu", {"approximate": "tanh"}, lambda t: TF.gelu(t, approximate="tanh")), ("reglu", {}, TF.relu)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", GLU_CASES, ids=lambda c: c[0] + "".join(f"-{v}" for v in c[1].values()))
def test_glu_family_two_tensors(case, dtype, backend):
    name, kw, act = case
    fn = getattr(fu, name)
    gate, up = _randn((3, 37, 11), dtype), _randn((3, 37, 11), dtype)  # 1221 elements: no block multiple
    g = _randn(gate.shape, dtype, 1.0)
    want = _grads(lambda a, b: act(a) * b, (gate, up), g)
    with ti.use_backend(backend):
        got = _grads(lambda a, b: fn(a, b, **kw), (gate, up), g)
    _close(got[:1], want[:1], dtype)
    # grad_gate = act'(gate) * (g * up): products of O(10) terms that cancel near act's minimum
    _close(got[1:], want[1:], dtype, backward=True, **({"atol": 1e-4} if dtype == torch.float32 else {}))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_glu_family_one_tensor_gates_first_half(dtype, backend):
    for shape, dim in [((4, 10), -1), ((3, 8, 5), 1), ((6, 3, 4), 0), ((0, 4), 1)]:
        x = _randn(shape, dtype)
        g = _randn(TF.glu(x, dim).shape, dtype, 1.0)

        def ref(t):
            a, b = t.chunk(2, dim)
            return TF.silu(a) * b

        want = _grads(ref, (x,), g)
        with ti.use_backend(backend):
            got = _grads(lambda t: fu.swiglu(t, dim=dim), (x,), g)
        _close(got[:1], want[:1], dtype)
        _close(got[1:], want[1:], dtype, backward=True)
        assert got[0].is_contiguous()


@pytest.mark.parametrize("backend", BACKENDS)
def test_glu_family_layouts_and_edges(backend):
    base = torch.randn(2, 6, 5, 4) * 3
    for label, (gate, up) in {
        "channels_last": (base.to(memory_format=torch.channels_last),
                          (base * 0.5).to(memory_format=torch.channels_last)),
        "mixed": (base.to(memory_format=torch.channels_last), base * 0.5),
        "transposed": (torch.randn(9, 7).t(), torch.randn(7, 9)),
        "sliced": (base[:, ::2], base[:, 1::2]),
        "empty": (torch.randn(0, 3), torch.randn(0, 3)),
        "one": (torch.tensor([1.3]), torch.tensor([-2.0])),
        "specials": (torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e30, -88.0]),
                     torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0, 1e-30, 2.0])),
    }.items():
        with ti.use_backend(backend):
            y = fu.swiglu(gate, up)
        torch.testing.assert_close(y, TF.silu(gate) * up, equal_nan=True, msg=lambda m: f"{label}: {m}")
        if backend == "triton" and label == "channels_last":
            assert y.stride() == gate.stride()


def test_glu_bad_arguments():
    with pytest.raises(ValueError, match=r"torchinit\.swiglu: .*even"):
        fu.swiglu(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"torchinit\.geglu: .*'gate' and 'up'"):
        fu.geglu(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(IndexError, match=r"torchinit\.reglu: .*'dim'"):
        fu.reglu(torch.randn(3, 4), dim=2)
    with pytest.raises(TypeError, match=r"torchinit\.swiglu: .*'input'.*int64"):
        fu.swiglu(torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"torchinit\.gated: .*'act'"):
        fu.gated(torch.randn(2, 4), act="nope")


# ---------------------------------------------------------------------------------------------
# bias_act
# ---------------------------------------------------------------------------------------------

BIAS_ACTS = [("gelu", {}), ("relu", {}), ("silu", {}), ("leaky_relu", {"negative_slope": 0.2}), ("tanh", {}),
             ("elu", {"alpha": -0.5})]


def _eager_bias_act(act, kw, dim):
    def fn(x, b):
        shape = [1] * x.dim()
        shape[dim] = -1
        return getattr(ti.functional, act)(x + b.reshape(shape), **kw)

    return fn


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("act,kw", BIAS_ACTS, ids=[a for a, _ in BIAS_ACTS])
def test_bias_act_matches_composite(act, kw, dtype, backend):
    for shape, dim, layout in [((5, 7, 37), -1, None), ((3, 6, 5, 7), 1, None), ((3, 6, 5, 7), 1, torch.channels_last)]:
        x = _randn(shape, dtype)
        if layout is not None:
            x = x.contiguous(memory_format=layout)
        b = _randn((shape[dim],), dtype, 1.0)
        g = _randn(shape, dtype, 1.0)
        with ti.use_backend("torch"):
            want = _grads(_eager_bias_act(act, kw, dim), (x, b), g)
        with ti.use_backend(backend):
            got = _grads(lambda t, c: fu.bias_act(t, c, act, dim, **kw), (x, b), g)
        _close(got[:2], want[:2], dtype, backward=True)
        if dtype in (torch.float16, torch.bfloat16):
            # a half-precision bias gradient sums ~100 rounded terms, and an output-saving activation's
            # terms move by g times an ulp of the output: bound the error by sum |dz| + sum |g| (fp64 reference)
            with ti.use_backend("torch"):
                exact = _grads(_eager_bias_act(act, kw, dim), (x.double(), b.double()), g.double())
            others = [d for d in range(x.dim()) if d != dim % x.dim()]
            scale = exact[1].abs().sum(dim=others) + g.double().abs().sum(dim=others)
            assert ((got[2].double() - exact[2]).abs() <= 2 ** -6 * scale + 1e-2).all()
        else:
            _close(got[2:], want[2:], dtype, backward=True)
        if backend == "triton":
            assert got[0].stride() == x.stride()


@pytest.mark.parametrize("backend", BACKENDS)
def test_bias_act_dtype_promotion_and_autocast(backend):
    """bf16 x + fp32 bias -> fp32, as eager's act(x + bias); grads keep each input's dtype; autocast alike."""
    x = _randn((4, 37), torch.bfloat16)
    b = _randn((37,), torch.float32, 1.0)
    g = _randn((4, 37), torch.float32, 1.0)
    want = _grads(lambda t, c: TF.gelu(t + c), (x, b), g)
    with ti.use_backend(backend):
        got = _grads(lambda t, c: fu.bias_act(t, c, "gelu"), (x, b), g)
    assert [t.dtype for t in got] == [torch.float32, torch.bfloat16, torch.float32]
    _close(got[::2], want[::2], torch.float32, rtol=1e-5, atol=1e-5)
    _close(got[1:2], want[1:2], torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16), ti.use_backend(backend):
        y = fu.bias_act(x, b, "gelu")
        y_eager = TF.gelu(x + b)
    assert y.dtype == y_eager.dtype == torch.float32


@pytest.mark.parametrize("backend", BACKENDS)
def test_bias_act_partial_sums_across_programs(backend):
    """Rows far beyond one tile: the per-program partial sums of the bias gradient add up."""
    x = torch.randn(3000, 9, dtype=torch.float64)
    b = torch.randn(9, dtype=torch.float64)
    g = torch.randn_like(x)
    want = _grads(lambda t, c: TF.silu(t + c), (x, b), g)
    with ti.use_backend(backend):
        got = _grads(lambda t, c: fu.bias_act(t, c, "silu"), (x, b), g)
    _close(got, want, torch.float64)


def test_bias_act_bad_arguments():
    with pytest.raises(ValueError, match=r"torchinit\.bias_act: .*'bias'.*1-D"):
        fu.bias_act(torch.randn(3, 4), torch.randn(5), "relu")
    with pytest.raises(ValueError, match=r"torchinit\.bias_act: .*'act'"):
        fu.bias_act(torch.randn(3, 4), torch.randn(4), "nope")
    with pytest.raises(TypeError, match=r"torchinit\.bias_act: .*'gelu'.*unexpected"):
        fu.bias_act(torch.randn(3, 4), torch.randn(4), "gelu", alpha=1.0)
    with pytest.raises(ValueError, match=r"torchinit\.bias_act: .*learnable"):
        fu.bias_act(torch.randn(3, 4), torch.randn(4), "swish", beta=torch.ones(1))


# ---------------------------------------------------------------------------------------------
# learnable activations: the parameter gradient reduced inside the kernel
# ---------------------------------------------------------------------------------------------


def test_param_grads_come_from_the_kernel(monkeypatch):
    """On the kernel path the weight gradient is the kernel's sum: the torch per-element form is not called."""
    monkeypatch.setattr(torchinit.param_ops, "_param_grads", lambda *a, **k: pytest.fail("torch parameter pass ran"))
    for shape, layout in [((4, 6, 5, 3), torch.contiguous_format), ((4, 6, 5, 3), torch.channels_last),
                          ((300, 6), torch.contiguous_format)]:
        x = torch.randn(shape, dtype=torch.float64).contiguous(memory_format=layout)
        w = torch.rand(6, dtype=torch.float64)
        g = torch.randn(shape, dtype=torch.float64)
        want = _grads(TF.prelu, (x, w), g)
        with ti.use_backend("triton"):
            got = _grads(ti.functional.prelu, (x, w), g)
        _close(got, want, torch.float64)
    x = torch.randn(50, 70, dtype=torch.float64)
    beta = torch.tensor([1.3], dtype=torch.float64)
    want = _grads(lambda t, bb: t * torch.sigmoid(bb * t), (x, beta), torch.ones_like(x))
    with ti.use_backend("triton"):
        got = _grads(ti.functional.swish, (x, beta), torch.ones_like(x))
    _close(got, want, torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_param_grads_low_precision(dtype):
    x = _randn((40, 8, 9), dtype)
    w = torch.rand(8).to(dtype)
    g = _randn(x.shape, dtype, 1.0)
    want = _grads(TF.prelu, (x.double(), w.double()), g.double())
    with ti.use_backend("triton"):
        got = _grads(ti.functional.prelu, (x, w), g)
    # the kernel sums in fp32: it is at least as close to the fp64 answer as torch's own sum
    ref_err = (_grads(TF.prelu, (x, w), g)[2].double() - want[2]).abs().max()
    assert (got[2].double() - want[2]).abs().max() <= max(ref_err * 1.01, 1e-3 * want[2].abs().max())


def test_opcheck_backward_params():
    ops = torch.ops.torchinit
    x = torch.randn(3, 4, 5)
    for backend in BACKENDS:
        with ti.use_backend(backend):
            torch.library.opcheck(ops.prelu_backward_params,
                                  (torch.randn_like(x), x, torch.rand(4), None, 0.0, 0.0, 0.0))
            torch.library.opcheck(ops.swish_backward_params,
                                  (torch.randn(5, 4, 3), x.transpose(0, 2), torch.tensor([1.2]), None, 0.0, 0.0, 0.0))


# ---------------------------------------------------------------------------------------------
# Rational
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rational_matches_torch_composite(dtype, backend):
    num, den, _ = rational_init("gelu", (5, 4))
    x = _randn((5, 37, 11), dtype)
    g = _randn(x.shape, dtype, 1.0)
    coef = dict(dtype=torch.float32 if dtype != torch.float64 else torch.float64)
    want = _grads(torch_rational, (x, num.to(**coef), den.to(**coef)), g)
    with ti.use_backend(backend):
        got = _grads(fu.rational, (x, num.to(**coef), den.to(**coef)), g)
    _close(got[:2], want[:2], dtype, backward=True)
    # coefficient gradients: sums over 2035 elements, fp32 partial sums in a different order
    torch.testing.assert_close(got[2], want[2], rtol=1e-4 if dtype != torch.float64 else 1e-9, atol=1e-3)
    torch.testing.assert_close(got[3], want[3], rtol=1e-4 if dtype != torch.float64 else 1e-9, atol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rational_gradcheck_and_module(backend):
    x = (torch.randn(3, 7, dtype=torch.float64) * 2).requires_grad_()
    a = torch.tensor([0.1, 0.5, 0.3, -0.2], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.4, -0.7, 0.2], dtype=torch.float64, requires_grad=True)
    x = x + 0.05 * torch.sign(x.detach())  # away from |x|'s kink at 0
    with ti.use_backend(backend):
        assert torch.autograd.gradcheck(fu.rational, (x, a, b))
        m = ti.nn.Rational("silu", degrees=(5, 4))
        xs = torch.linspace(-4, 4, 101)
        assert (m(xs) - TF.silu(xs)).abs().max() <= m.fit_error + 1e-5
        assert m.fit_error < 1e-3
        m(torch.randn(4, 5)).sum().backward()
        assert m.numerator.grad.shape == (6,) and m.denominator.grad.shape == (4,)


def test_rational_fit_quality():
    """The least-squares start: max abs error on [-4, 4], measured for the documented degrees."""
    for act, bound in [("gelu", 5e-3), ("tanh", 1e-3), ("relu", 5e-2)]:
        assert rational_init(act, (5, 4))[2] < bound, act
    with pytest.raises(ValueError, match=r"torchinit\.Rational: .*'approximate'"):
        rational_init("nope")


# ---------------------------------------------------------------------------------------------
# torch.library machinery: opcheck, vmap, torch.func, compile, export
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck_fused_ops(backend):
    ops = torch.ops.torchinit
    x = torch.randn(3, 4, 6) * 2
    t = x.transpose(0, 2)
    b = torch.randn(4)
    num, den, _ = rational_init("gelu", (3, 2))
    num, den = num.float(), den.float()
    with ti.use_backend(backend):
        for gate in (x, t):
            torch.library.opcheck(ops.gated, (gate.clone().requires_grad_(), (gate * 0.5).detach().requires_grad_(),
                                              "silu", 0.0, 0.0, 0.0))
        torch.library.opcheck(ops.gated_backward, (torch.randn_like(t), t, t * 0.5, "gelu_tanh", 0.0, 0.0, 0.0))
        torch.library.opcheck(ops.gated_split, (x.clone().requires_grad_(), 2, "relu", 0.0, 0.0, 0.0))
        torch.library.opcheck(ops.gated_split, (t, 1, "silu", 0.0, 0.0, 0.0))
        torch.library.opcheck(ops.gated_split_backward, (torch.randn(3, 4, 3), x, 2, "gelu", 0.0, 0.0, 0.0))
        torch.library.opcheck(ops.bias_act, (x.clone().requires_grad_(), b.clone().requires_grad_(), 1, "gelu",
                                             0.0, 0.0, 0.0))
        torch.library.opcheck(ops.bias_act, (t.to(torch.bfloat16), torch.randn(6), 0, "relu", 0.0, 0.0, 0.0))
        torch.library.opcheck(ops.bias_act_backward, (torch.randn_like(x), x, b, 1, "silu", 0.0, 0.0, 0.0,
                                                      torch.float32))
        torch.library.opcheck(ops.rational, (x.clone().requires_grad_(), num.requires_grad_(), den.requires_grad_()))
        torch.library.opcheck(ops.rational_backward, (torch.randn_like(t), t, num.detach(), den.detach()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_func(backend):
    x = torch.randn(4, 3, 6, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    with ti.use_backend(backend):
        v = torch.func.vmap(lambda t: fu.swiglu(t, dim=-1))(x)
        vg = torch.func.vmap(torch.func.grad(lambda t: fu.geglu(t[:, :3], t[:, 3:]).sum()))(x)
        per_sample_bias = torch.func.vmap(torch.func.grad(lambda t, c: fu.bias_act(t, c, "gelu").sum(), argnums=1),
                                          in_dims=(0, None))(x, b)
        jac = torch.func.jacrev(lambda t: fu.reglu(t, dim=0))(x[0, :2])
    torch.testing.assert_close(v, TF.silu(x[..., :3]) * x[..., 3:])
    torch.testing.assert_close(vg, torch.func.vmap(torch.func.grad(lambda t: (TF.gelu(t[:, :3]) * t[:, 3:]).sum()))(x))
    torch.testing.assert_close(per_sample_bias, torch.stack(
        [torch.autograd.functional.jacobian(lambda c: TF.gelu(x[i] + c).sum(), b) for i in range(4)]))
    torch.testing.assert_close(jac, torch.func.jacrev(lambda t: TF.relu(t[:1]) * t[1:])(x[0, :2]))


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 16, bias=False)
        self.bias = torch.nn.Parameter(torch.randn(16))
        self.rat = ti.nn.Rational("gelu", (3, 2))
        self.prelu = ti.nn.PReLU(8)

    def forward(self, x):
        h = fu.bias_act(self.lin(x), self.bias, "gelu")
        return self.prelu(self.rat(fu.swiglu(h)))


def test_compile_fullgraph_emits_aten_and_keeps_kernels_when_asked(captured_graphs):
    torch.manual_seed(0)
    model = _Block()
    x = torch.randn(5, 8)
    capture, graphs = captured_graphs

    torch._dynamo.reset()
    torch.compile(model, fullgraph=True, backend=capture)(x)
    assert not any("torchinit" in str(n.target) for g in graphs for n in g.graph.nodes)
    with ti.use_kernels_in_compile(), ti.use_backend("triton"):
        torch._dynamo.reset()
        xr = x.clone().requires_grad_()
        out = torch.compile(model, fullgraph=True, backend="aot_eager")(xr)
        grads = torch.autograd.grad(out.square().sum(), [xr, *model.parameters()])
    xe = x.clone().requires_grad_()
    with ti.use_backend("torch"):
        ref = model(xe)
    ref_grads = torch.autograd.grad(ref.square().sum(), [xe, *model.parameters()])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()


def test_export_keeps_fused_ops():
    torch.manual_seed(0)
    model = _Block().eval()
    x = torch.randn(5, 8)
    ep = torch.export.export(model, (x,))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert {"torchinit.bias_act.default", "torchinit.gated_split.default", "torchinit.rational.default"} <= targets
    torch.testing.assert_close(ep.module()(x), model(x), rtol=1e-5, atol=1e-5)


def test_modules():
    x = torch.randn(4, 10)
    torch.testing.assert_close(ti.nn.SwiGLU()(x), TF.silu(x[:, :5]) * x[:, 5:])
    torch.testing.assert_close(ti.nn.GEGLU(dim=1, approximate="tanh")(x[:, :5], x[:, 5:]),
                               TF.gelu(x[:, :5], approximate="tanh") * x[:, 5:])
    torch.testing.assert_close(ti.nn.ReGLU(inplace=True)(x), TF.relu(x[:, :5]) * x[:, 5:])
    m = ti.nn.BiasAct(6, "leaky_relu", dim=1, negative_slope=0.1)
    assert [n for n, _ in m.named_parameters()] == ["bias"]
    xc = torch.randn(2, 6, 3, 3)
    torch.testing.assert_close(m(xc), TF.leaky_relu(xc, 0.1))
    assert "leaky_relu" in repr(m)
    assert set(fu.TORCH_COMPOSITES) == set(fu.__all__)


def test_dtensor_learnable_backward(cpu_mesh):
    """The one-pass parameter-gradient op has a sharding rule: PReLU backward on a DTensor (one-process mesh)."""
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    x, w = torch.randn(4, 3, 5), torch.rand(3)
    dx = distribute_tensor(x, cpu_mesh, [Shard(0)]).requires_grad_()
    dw = distribute_tensor(w, cpu_mesh, [Replicate()]).requires_grad_()
    with ti.use_backend("triton"):
        gx, gw = torch.autograd.grad(ti.functional.prelu(dx, dw).sum(), (dx, dw))
    want = _grads(TF.prelu, (x, w), torch.ones_like(x))
    torch.testing.assert_close(gx.full_tensor(), want[1])
    torch.testing.assert_close(gw.full_tensor(), want[2])


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_fp64(backend):
    def leaf(*shape):
        t = torch.randn(*shape, dtype=torch.float64) * 2
        return (t + 0.05 * torch.sign(t)).requires_grad_()  # away from relu's kink

    with ti.use_backend(backend):
        assert torch.autograd.gradcheck(lambda a, b: fu.swiglu(a, b), (leaf(3, 5), leaf(3, 5)))
        assert torch.autograd.gradcheck(lambda t: fu.geglu(t, dim=0, approximate="tanh"), (leaf(4, 3),))
        assert torch.autograd.gradcheck(lambda t: fu.reglu(t, dim=1), (leaf(2, 6, 3),))
        assert torch.autograd.gradcheck(lambda t, c: fu.bias_act(t, c, "silu", 1), (leaf(2, 3, 4), leaf(3)))
        assert torch.autograd.gradcheck(lambda t, c: fu.bias_act(t, c, "elu", alpha=0.7), (leaf(5, 3), leaf(3)))
        assert torch.autograd.gradcheck(lambda t: fu.leaky_relu_bits(t * 1, 0.1), (leaf(4, 5),))


def _torch_bias_act(act):
    """The unfused reference: torch.nn.functional's activation of x + bias (bias along the last dim)."""
    return lambda x, b: getattr(TF, act)(x + b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bias_act_special_values(backend):
    """Triton: fp64's value rounded to fp32 (torch's vectorised fp32 gelu gives NaN at +inf: see the table in
    test_activations.py); torch path: exactly what torch's unfused ops give on the same tensor."""
    x = torch.tensor([[0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e30, -1e30, 88.5, -104.0]])
    b = torch.tensor([0.5, -0.0, -1.0, 2.0, 0.0, 1.0, -1.0, 0.5, 3.0])
    for act in ("gelu", "relu", "silu", "sigmoid", "softplus"):
        if backend == "triton":
            want = [t.float() for t in _grads(_torch_bias_act(act), (x.double(), b.double()),
                                              torch.ones_like(x, dtype=torch.float64))]
            tol = dict(rtol=4e-6, atol=1e-6)
        else:
            want = _grads(_torch_bias_act(act), (x, b), torch.ones_like(x))
            tol = dict(rtol=0, atol=0)
        with ti.use_backend(backend):
            got = _grads(lambda t, c: fu.bias_act(t, c, act), (x, b), torch.ones_like(x))
        for a, c in zip(got, want):
            torch.testing.assert_close(a, c, equal_nan=True, **tol, msg=lambda m: f"{act}: {m}")


# ---------------------------------------------------------------------------------------------
# few-bit tables on the device (issue 12): no host-to-device copy or cast per call, graph-safe cache
# ---------------------------------------------------------------------------------------------


class _CopyRecorder(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the casts and device moves of the given tensors (``aten._to_copy`` reading them: ``Tensor.to``;
    Triton's interpreter copies every argument to host buffers with ``copy_``, which is not what is looked for)."""

    COPIES = ("_to_copy", "_copy_from", "_copy_from_and_resize")

    def __init__(self, watched):
        super().__init__()
        self.watched = [w.untyped_storage().data_ptr() for w in watched]
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in self.COPIES:
            for a in list(args) + list((kwargs or {}).values()):
                if isinstance(a, torch.Tensor) and a.device.type != "meta" and \
                        a.untyped_storage().data_ptr() in self.watched:
                    self.seen.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fewbit_kernels_take_the_host_tables_without_a_copy_per_call(dtype):
    """The few-bit kernels read the fitted fp64 bounds and levels as they are (the kernel converts what it
    loads): no cast or copy of them per call, as the old launcher's bounds.to(device, fp32) made."""
    pytest.importorskip("triton")
    from torchinit.kernels.bits import launch_pack_forward, launch_unpack_backward
    from torchinit.kernels.math import gelu_bwd, gelu_fwd, relu_bwd

    from torchinit.fused.bits import fewbit_quantizer

    bounds, levels = fewbit_quantizer("gelu", 2)
    x = _randn(3000, dtype)
    y, codes, dx = torch.empty_like(x), torch.empty(750, dtype=torch.uint8), torch.empty_like(x)
    g = torch.randn_like(x)
    with _CopyRecorder([bounds, levels]) as rec:
        launch_pack_forward(gelu_fwd, gelu_bwd, False, x, y, codes, (0.0, 0.0, 0.0), bounds=bounds, bits=2)
        launch_unpack_backward(relu_bwd, g, codes, dx, (0.0, 0.0, 0.0), levels=levels, bits=2)
    assert rec.seen == []
    _, codes_ref = fu.bits.torch_fewbit_forward(x, bounds, "gelu", 2, 0.0, 0.0, 0.0)
    assert torch.equal(codes, codes_ref)
    assert torch.equal(dx, fu.bits.torch_fewbit_backward(g, codes_ref, levels, 2))


def test_device_tables_are_filled_on_the_device_and_cached_for_good(monkeypatch):
    """kernels.launch.device_table (param_buffer and the few-bit tables): made by fills on the device, never a
    copy from the host; one table per bit pattern (-0.0 and 0.0 apart); none cached while a CUDA graph is
    being captured (its fills only run at replay)."""
    from torchinit.kernels import launch

    from torchinit.fused.bits import fewbit_quantizer, fewbit_tables

    bounds, levels = fewbit_quantizer("silu", 4)
    with _CopyRecorder([bounds, levels]) as rec:
        b1, l1 = fewbit_tables("silu", 4, "meta")
        b2, l2 = fewbit_tables("silu", 4, torch.device("meta"))
    assert rec.seen == [] and b1 is b2 and l1 is l2
    assert (b1.shape, l1.shape, b1.dtype) == (bounds.shape, levels.shape, torch.float64)
    assert fewbit_tables("silu", 4, "cpu") == (bounds, levels)
    zero = launch.device_table((0.0, 1.0), torch.device("meta"), torch.float32)
    assert launch.device_table((-0.0, 1.0), torch.device("meta"), torch.float32) is not zero
    assert launch.device_table((0.0, 1.0), torch.device("meta"), torch.float32) is zero
    monkeypatch.setattr(launch, "_capturing", lambda device: True)
    made = launch.device_table((2.0, 3.0, 5.0), torch.device("meta"), torch.float32)
    assert launch.device_table((2.0, 3.0, 5.0), torch.device("meta"), torch.float32) is not made
    monkeypatch.undo()
    t = launch.device_table((0.5, -0.0), torch.device("cpu"), torch.float64)
    assert t.tolist() == [0.5, -0.0] and str(t[1].item()) == "-0.0"


@pytest.mark.parametrize("shape, dim", [((5, 600), -1), ((7, 6), -1), ((2, 18000), 1), ((3, 4, 2, 300), 2)])
def test_gated_split_rows_and_column_tiles(shape, dim):
    """A split tensor runs on a (rows, column tiles) grid: rows shorter than the smallest block, not a multiple
    of it, and longer than one interpreter block (two tiles, the second partial), forward and backward."""
    x = _randn(shape, torch.float32)
    g = _randn(TF.glu(x, dim).shape, torch.float32, 1.0)

    def ref(t):
        a, b = t.chunk(2, dim)
        return TF.silu(a) * b

    want = _grads(ref, (x,), g)
    with ti.use_backend("triton"):
        got = _grads(lambda t: fu.swiglu(t, dim=dim), (x,), g)
    _close(got[:1], want[:1], torch.float32)
    _close(got[1:], want[1:], torch.float32, backward=True)


def _channel_index_cases():
    span = 256
    for cs, channels in [(1, 3), (1, 64), (1, 300), (49, 512), (196, 7), (255, 2), (256, 3), (3136, 64),
                         (1 << 20, 5), ((1 << 20) - 1, 1 << 21), (7, (1 << 21) + 3)]:
        for base in (0, span, 37 * span, (cs * channels // span) * span, (2**31 // span - 1) * span,
                     (2**33 // span + 5) * span):
            yield base, cs, channels, span


def test_channel_index_is_exact():
    """kernels.elementwise.channel_index (PReLU's per-channel weight, bits' weight) in the mode per_channel_mode
    picks and in the exact mode: (k // stride) % channels for every offset of a program's span, strides and
    channel counts above and below the span, channel runs near 2**20, two million channels, offsets past
    2**31, against Python's integer arithmetic."""
    triton = pytest.importorskip("triton")
    import triton.language as tl
    from torchinit.kernels.elementwise import (
        PARAM_PER_CHANNEL_EXACT,
        channel_index,
        per_channel_mode,
    )

    @triton.jit
    def probe(out_ptr, base, channel_stride, channels, FN: tl.constexpr, MODE: tl.constexpr, SPAN: tl.constexpr):
        offs = base + tl.arange(0, SPAN)
        tl.store(out_ptr + tl.arange(0, SPAN), FN(offs, base, channel_stride, channels, MODE, SPAN))

    modes = set()
    for base, cs, channels, span in _channel_index_cases():
        want = (torch.arange(base, base + span, dtype=torch.int64) // cs) % channels
        for mode in {per_channel_mode(cs, channels, span), PARAM_PER_CHANNEL_EXACT}:
            out = torch.empty(span, dtype=torch.int64)
            probe[(1,)](out, base, cs, channels, FN=channel_index, MODE=mode, SPAN=span)
            assert torch.equal(out, want), (base, cs, channels, mode)
            modes.add(mode)
    assert modes == {2, 3, 4}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [(3, 304), (2, 5, 128), (4, 9008), (3, 300)])
def test_bias_act_last_dim_row_tiles(shape, dtype):
    """bias_act along a last dim of at least 128 channels (a multiple of 16) runs on a (rows, channel tiles)
    grid: a partial tile, one exact tile, two interpreter tiles (and 300 channels the flat range); forward and
    both gradients against the eager composite."""
    x, b, g = _randn(shape, dtype), _randn((shape[-1],), dtype, 1.0), _randn(shape, dtype, 1.0)
    with ti.use_backend("torch"):
        want = _grads(_eager_bias_act("gelu", {}, -1), (x, b), g)
    with ti.use_backend("triton"):
        got = _grads(lambda t, c: fu.bias_act(t, c, "gelu", -1), (x, b), g)
    _close(got[:2], want[:2], dtype, backward=True)
    if dtype == torch.bfloat16:  # the bias gradient's bound of test_bias_act_matches_composite (fp64 reference)
        with ti.use_backend("torch"):
            exact = _grads(_eager_bias_act("gelu", {}, -1), (x.double(), b.double()), g.double())
        rows = tuple(range(x.dim() - 1))
        scale = exact[1].abs().sum(dim=rows) + g.double().abs().sum(dim=rows)
        assert ((got[2].double() - exact[2]).abs() <= 2 ** -6 * scale + 1e-2).all()
    else:
        _close(got[2:], want[2:], dtype, backward=True)


def test_fewbit_tables_under_compile_are_the_host_tables():
    """Traced by torch.compile (fullgraph), fewbit_tables gives the host tensors, which the operators take as
    they are: no .to(device) traced into the graph (a host-to-device copy at every call)."""
    from torchinit.fused.bits import fewbit_quantizer, fewbit_tables

    bounds, _ = fewbit_quantizer("gelu", 4)
    compiled = torch.compile(lambda: fewbit_tables("gelu", 4, "meta")[0] * 1, fullgraph=True, backend="eager")
    out = compiled()
    assert out.device.type == "cpu" and torch.equal(out, bounds)


def test_fewbit_functions_under_compile_trace_no_table_copy():
    """silu_fewbit traced by torch.compile (fullgraph) on a non-CPU tensor: the fitted tables enter the graph as
    they are, with no .to(device) (the old _quantizer_on traced one per table: a host-to-device copy per call)."""
    from torchinit.fused.bits import fewbit_quantizer

    fewbit_quantizer("silu", 4)
    graphs = []

    def record(gm, inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    x = torch.randn(64, device="meta", requires_grad=True)
    y = torch.compile(lambda t: fu.silu_fewbit(t, bits=4), backend=record, fullgraph=True)(x)
    y.sum().backward()
    torch._dynamo.reset()
    moves = [(n.target, n.args, n.kwargs) for g in graphs for m in g.modules() if isinstance(m, torch.fx.GraphModule)
             for n in m.graph.nodes if n.op in ("call_method", "call_function") and str(n.target) in ("to", "cuda")
             and any(isinstance(a, (torch.device, str)) for a in (*n.args, *n.kwargs.values()))]
    assert graphs and moves == []
    assert y.shape == x.shape and x.grad.shape == x.shape
