"""softmax / log_softmax / softmin against torch, on the torch path and on the Triton kernels (interpreter)."""

import os

import torch

if not torch.cuda.is_available():  # before torchinit's kernels are imported: Triton reads it when decorating
    os.environ.setdefault("TRITON_INTERPRET", "1")

import warnings  # noqa: E402

import pytest  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

import torchinit  # noqa: E402
from torchinit.backend import triton_can_run  # noqa: E402
from torchinit.softmax import (  # noqa: E402
    LogSoftmax, Softmax, SoftmaxFunction, Softmin, log_softmax, softmax, softmin,
)

# CPU tensors take the "triton" backend through Triton's interpreter
KERNELS_ON_CPU = triton_can_run(torch.device("cpu"))
BACKENDS = ["torch", "triton"] if KERNELS_ON_CPU else ["torch"]
needs_triton = pytest.mark.skipif(not KERNELS_ON_CPU, reason="Triton's interpreter is not available")
FUNCS = {"softmax": (softmax, TF.softmax), "log_softmax": (log_softmax, TF.log_softmax),
         "softmin": (softmin, TF.softmin)}
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
INF = float("inf")


def _close(actual, expected):
    """Same dtype and shape, equal within the dtype's resolution (NaN where expected has NaN, same infinities)."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, equal_nan=True)


@pytest.fixture
def online(monkeypatch):
    """Make rows longer than 4 take the online (chunked) kernels, in chunks of 4."""
    kernels = pytest.importorskip("torchinit.kernels.softmax")
    monkeypatch.setattr(kernels, "SINGLE_PASS_MAX_INTERPRETER", 4)
    monkeypatch.setattr(kernels, "CHUNK_INTERPRETER", 4)
    return kernels


# ---------------------------------------------------------------------------------------------
# forward values
# ---------------------------------------------------------------------------------------------


def _reference(name, x, dim, cast):
    """The exact result (fp64 math on the input rounded to the result dtype) rounded to the result dtype."""
    out = x.dtype if cast is None else cast
    return FUNCS[name][1](x.to(out).double(), dim).to(out)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(FUNCS))
def test_forward_matches_torch_every_dim_and_cast(backend, dtype, name):
    ours, ref = FUNCS[name]
    torch.manual_seed(0)
    x = (3 * torch.randn(3, 5, 19)).to(dtype)
    casts = [None, torch.float32, torch.float64] if dtype != torch.float64 else [None, torch.float16, torch.bfloat16]
    with torchinit.use_backend(backend):
        for dim in (0, 1, 2, -1):
            for cast in casts:
                y = ours(x, dim, dtype=cast)
                if backend == "torch":  # the plain torch path: torch's own result, bit for bit
                    assert torch.equal(y, ref(x, dim, dtype=cast))
                else:  # the kernels round once, from fp32 math: within 1 ulp of the exact result (torch's
                    # own fp16 CPU log_softmax is up to ~7 ulps off, so the reference is fp64, not torch)
                    _close(y, _reference(name, x, dim, cast))


@pytest.mark.parametrize("backend", BACKENDS)
def test_narrowing_cast_rounds_the_input_first(backend):
    # fp64 inputs that differ below fp16 resolution must give identical fp16 results, as x.to(fp16) would
    x = torch.tensor([[1.0, 2.0, 3.0], [1.0 + 1e-6, 2.0 - 1e-6, 3.0 + 1e-7]], dtype=torch.float64)
    with torchinit.use_backend(backend):
        y = softmax(x, 1, dtype=torch.float16)
        ly = log_softmax(x, 1, dtype=torch.bfloat16)
    assert torch.equal(y[0], y[1]) and torch.equal(ly[0], ly[1])
    _close(y, TF.softmax(x, 1, dtype=torch.float16))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(FUNCS))
def test_layouts_empty_and_0d(backend, name):
    ours, ref = FUNCS[name]
    torch.manual_seed(1)
    base = torch.randn(4, 6, 5, 3, dtype=torch.float64)
    cases = [
        (torch.tensor(2.5, dtype=torch.float64), 0), (torch.tensor(-1.0, dtype=torch.float64), -1),
        (torch.randn(7, dtype=torch.float64), 0), (torch.randn(1, 1, dtype=torch.float64), 1),
        (torch.empty(0, 5, dtype=torch.float64), 1), (torch.empty(3, 0, dtype=torch.float64), 1),
        (torch.empty(2, 0, 4, dtype=torch.float64), 2),
        (base.transpose(0, 3), 1), (base.transpose(0, 3), 3),  # transposed: no copy
        (base[:, ::2, 1:, :], 1), (base[1:3, :, ::3], 2),  # sliced
        (base.permute(2, 0, 3, 1), 1), (base.permute(1, 3, 0, 2), 0),  # layouts that need a copy
        (torch.randn(5, 1, dtype=torch.float64).expand(5, 9), 1),  # expanded (stride 0)
        (torch.randn(1, 9, dtype=torch.float64).expand(5, 9), 0),
        (base.to(memory_format=torch.channels_last), 1),
    ]
    with torchinit.use_backend(backend):
        for x, dim in cases:
            y = ours(x, dim)
            _close(y, ref(x, dim))
            assert y.is_contiguous()


@pytest.mark.parametrize("backend", BACKENDS)
def test_special_values(backend):
    x = torch.tensor([[-INF, -INF, -INF, -INF, -INF], [1.0, -INF, 2.0, -INF, 0.5], [INF, 1.0, 2.0, 0.0, 0.0],
                      [float("nan"), 1.0, 2.0, 0.0, 0.0], [-INF, -INF, -INF, -INF, 3.0], [1e4, -1e4, 0.0, 1e4, 5.0]])
    with torchinit.use_backend(backend):
        for dtype in (torch.float32, torch.bfloat16):
            xd = x.to(dtype)
            for name, (ours, ref) in FUNCS.items():
                _close(ours(xd, 1), ref(xd, 1))
    p = softmax(x, 1)
    assert torch.isnan(p[0]).all() and p[1, 1] == 0 and p[1, 3] == 0 and p[4, 4] == 1


@needs_triton
def test_online_loop_matches_torch(online):
    torch.manual_seed(2)
    x = torch.randn(5, 23, 3, dtype=torch.float64) * 4
    x[0, :9] = -INF  # the first two chunks of a row see only -inf, later ones finite values
    x[1, :, 0] = -INF  # a whole row of -inf -> NaN
    x[2, 17, 1] = INF
    with torchinit.use_backend("triton"):
        for name, (ours, ref) in FUNCS.items():
            for dim in (1, 0):
                _close(ours(x, dim), ref(x, dim))
        _close(softmax(x.float(), 1, dtype=torch.float16), TF.softmax(x.float(), 1, dtype=torch.float16))


@needs_triton
@pytest.mark.parametrize("path", ["one_pass", "online"])
def test_kernels_write_every_output_element(path, request):
    kernels = request.getfixturevalue("online") if path == "online" else pytest.importorskip(
        "torchinit.kernels.softmax")
    torch.manual_seed(3)
    x = torch.randn(3, 13, 6)[:, :, ::2]  # strided input
    for dim in (0, 1, 2):
        for log in (False, True):
            out = torch.full(x.shape, float("nan"))
            kernels.softmax_forward(x, dim, out, log)
            ref = torch.log_softmax(x, dim) if log else torch.softmax(x, dim)
            torch.testing.assert_close(out, ref)
            g = torch.randn(x.shape)
            dx = torch.full(x.shape, float("nan"), dtype=torch.float64)  # fp64 gradient from an fp32 output
            kernels.softmax_backward(g, ref, dim, dx, log)
            back = torch.ops.aten._log_softmax_backward_data if log else torch.ops.aten._softmax_backward_data
            torch.testing.assert_close(dx, back(g, ref, dim, torch.float32).double(), rtol=1.3e-6, atol=1e-5)


@needs_triton
def test_row_geometry_merges_batch_dims():
    from torchinit.kernels.softmax import row_geometry

    x = torch.empty(4, 5, 6, 7)
    geo = row_geometry([x, torch.empty_like(x)], 3)
    assert (geo.rows, geo.n, geo.b1) == (120, 7, 1) and geo.strides[0] == (7, 0, 1)
    geo = row_geometry([x], 1)  # before and after the reduced dim
    assert (geo.rows, geo.b1, geo.strides[0]) == (168, 42, (210, 1, 42))
    geo = row_geometry([torch.empty(2, 3, 4).permute(2, 0, 1), torch.empty(4, 2, 3)], 0)  # per-tensor strides
    assert (geo.rows, geo.n, geo.b1, geo.strides) == (6, 4, 1, ((4, 0, 1), (1, 0, 6)))
    assert row_geometry([x.permute(0, 2, 1, 3)], 3) is None  # three separate batch groups
    assert row_geometry([torch.empty(()).expand(())], 0).rows == 1


@needs_triton
def test_column_geometry_picks_a_unit_stride_batch_dim():
    """A reduced dim that is not contiguous while a batch dim is (NCHW over C or N, channels_last over C for
    the contiguous output) is read by columns; rows contiguous already, or no unit stride anywhere: None."""
    from torchinit.kernels.softmax import column_geometry, row_geometry

    x = torch.empty(4, 5, 6, 7)
    cols = column_geometry(row_geometry([x, torch.empty_like(x)], 1))
    assert (cols.b0, cols.b1, cols.n, cols.strides[0]) == (4, 42, 5, (210, 1, 42))
    cols = column_geometry(row_geometry([x], 0))  # one batch group: it becomes the inner one
    assert (cols.b0, cols.b1, cols.n, cols.strides[0]) == (1, 210, 4, (0, 1, 210))
    cl = x.to(memory_format=torch.channels_last)
    cols = column_geometry(row_geometry([cl, torch.empty_like(x)], 1))  # x rows contiguous, out columns
    assert (cols.b1, cols.strides) == (42, ((210, 5, 1), (210, 1, 42)))
    assert column_geometry(row_geometry([x], 3)) is None
    assert column_geometry(row_geometry([torch.empty(4, 10)[:, ::2]], 0)) is None  # stride 2 everywhere


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", ["one_pass", "online"])
def test_strided_dims_nchw_and_channels_last(dtype, path, request):
    """Forward and backward over every dim of an NCHW tensor, contiguous and channels_last, on the column
    kernels (reduced dim strided) and the row kernels: within 1 ulp of the fp64 result rounded once, the
    gradient as in test_backward_matches_torch."""
    if path == "online":
        request.getfixturevalue("online")
    torch.manual_seed(11)
    x0 = (3 * torch.randn(2, 6, 5, 7)).to(dtype)
    for fmt in (torch.contiguous_format, torch.channels_last):
        xf = x0.contiguous(memory_format=fmt)
        for dim in (0, 1, 2, -1):
            for name, (ours, ref) in FUNCS.items():
                x = xf.clone().requires_grad_()
                with torchinit.use_backend("triton"):
                    y = ours(x, dim)
                _close(y.detach(), _reference(name, x0, dim, None))
                g = torch.randn(y.shape).to(dtype)
                (dx,) = torch.autograd.grad(y, x, g)
                xr = x0.double().requires_grad_()
                (dx_ref,) = torch.autograd.grad(ref(xr, dim), xr, g.double())
                tol = torch.finfo(dtype).eps * dx_ref.abs().max().item()
                torch.testing.assert_close(dx.double(), dx_ref, rtol=4 * torch.finfo(dtype).eps, atol=8 * tol)


# ---------------------------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_matches_torch(backend, dtype):
    torch.manual_seed(4)
    x0 = (2 * torch.randn(4, 3, 10)).to(dtype)
    casts = [None, torch.float32] if dtype != torch.float64 else [None, torch.bfloat16]
    for name, (ours, ref) in FUNCS.items():
        for dim in (2, 1):
            for cast in casts:
                y_ref = ref(x0.clone().requires_grad_(), dim, dtype=cast)
                g = torch.randn(y_ref.shape).to(y_ref.dtype)
                x = x0.clone().requires_grad_()
                with torchinit.use_backend(backend):
                    y = ours(x, dim, dtype=cast)
                (dx,) = torch.autograd.grad(y, x, g)
                xr = x0.clone().requires_grad_()
                (dx_ref,) = torch.autograd.grad(ref(xr, dim, dtype=cast), xr, g)
                if backend == "triton":
                    _close(y.detach(), _reference(name, x0, dim, cast))
                assert dx.dtype == dtype
                # the gradient carries the precision of the saved output (dtype `cast`), and y * (g - sum)
                # cancels: a tolerance relative to the largest gradient, at the output dtype's resolution
                out = y.dtype
                tol = torch.finfo(out).eps * dx_ref.abs().max().item()
                torch.testing.assert_close(dx, dx_ref, rtol=4 * torch.finfo(out).eps, atol=4 * tol)


@needs_triton
def test_online_backward_matches_torch(online):
    torch.manual_seed(5)
    x0 = torch.randn(3, 11, 2, dtype=torch.float64)
    for name, (ours, ref) in FUNCS.items():
        x = x0.clone().requires_grad_()
        with torchinit.use_backend("triton"):
            (ours(x, 1) * torch.arange(66.0, dtype=torch.float64).reshape(3, 11, 2)).sum().backward()
        xr = x0.clone().requires_grad_()
        (ref(xr, 1) * torch.arange(66.0, dtype=torch.float64).reshape(3, 11, 2)).sum().backward()
        torch.testing.assert_close(x.grad, xr.grad)


# The operator path: backend "triton" runs the kernels; backend "torch" with SoftmaxFunction called directly
# runs the operators' torch implementations (the functions would bypass the operators entirely).
OP_PATHS = ["op_reference", "kernels"] if KERNELS_ON_CPU else ["op_reference"]


def _op_path(path):
    """(backend, {name: fn(t, dim)}) differentiating through the torchinit operators."""
    if path == "kernels":
        return "triton", {"softmax": softmax, "log_softmax": log_softmax, "softmin": softmin}
    return "torch", {"softmax": lambda t, d: SoftmaxFunction.apply(t, d, None, "softmax"),
                     "log_softmax": lambda t, d: SoftmaxFunction.apply(t, d, None, "log_softmax"),
                     "softmin": lambda t, d: SoftmaxFunction.apply(-t, d, None, "softmax")}


@pytest.mark.parametrize("path", OP_PATHS)
def test_gradcheck_fp64(path):
    torch.manual_seed(6)
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    backend, fns = _op_path(path)
    with torchinit.use_backend(backend):
        for fn in fns.values():
            assert torch.autograd.gradcheck(lambda t: fn(t, 1), (x,), fast_mode=path == "kernels")
            # a transposed view: dim 0 of x
            assert torch.autograd.gradcheck(lambda t: fn(t.t(), 1), (x,), fast_mode=path == "kernels")


@needs_triton
def test_gradcheck_online_fp64(online):
    x = torch.randn(2, 9, dtype=torch.float64, requires_grad=True)
    with torchinit.use_backend("triton"):
        assert torch.autograd.gradcheck(lambda t: softmax(t, 1), (x,), fast_mode=True)
        assert torch.autograd.gradcheck(lambda t: log_softmax(t, 1), (x,), fast_mode=True)


@pytest.mark.parametrize("path", OP_PATHS)
def test_expanded_gradient_and_vmap_and_func_grad(path):
    torch.manual_seed(7)
    x = torch.randn(3, 4, 6, dtype=torch.float64)
    backend, fns = _op_path(path)
    sm, lsm = fns["softmax"], fns["log_softmax"]
    with torchinit.use_backend(backend):
        xg = x.clone().requires_grad_()
        sm(xg, 2)[..., 0].sum().backward()  # a gradient with zeros, and log_softmax's .sum() below
        xl = x.clone().requires_grad_()
        lsm(xl, 1).sum().backward()  # an expanded (stride 0) incoming gradient
        batched = torch.func.vmap(lambda t: lsm(t, -1), in_dims=1)(x)
        scalars = torch.func.vmap(lambda t: sm(t, 0))(torch.randn(5, dtype=torch.float64))
        fgrad = torch.func.grad(lambda t: sm(t, 0)[1])(x[0, :, 0])
        # vmap of the backward: per-sample input gradients, batched along dim 1
        vgrad = torch.func.vmap(torch.func.grad(lambda t: (lsm(t, 0) * torch.arange(6.0, dtype=t.dtype)).sum()),
                                in_dims=1)(x[0].t())
    xr = x.clone().requires_grad_()
    torch.softmax(xr, 2)[..., 0].sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad)
    xr = x.clone().requires_grad_()
    torch.log_softmax(xr, 1).sum().backward()
    torch.testing.assert_close(xl.grad, xr.grad)
    torch.testing.assert_close(batched, torch.log_softmax(x, -1).movedim(1, 0))
    torch.testing.assert_close(scalars, torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(fgrad, torch.func.grad(lambda t: torch.softmax(t, 0)[1])(x[0, :, 0]))
    ref = torch.func.vmap(torch.func.grad(lambda t: (torch.log_softmax(t, 0) * torch.arange(6.0, dtype=t.dtype)).sum()),
                          in_dims=1)(x[0].t())
    torch.testing.assert_close(vgrad, ref)


# ---------------------------------------------------------------------------------------------
# operators
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    torch.manual_seed(8)
    x = torch.randn(3, 4, 5)
    samples = [
        (torch.ops.torchinit.softmax.default, (x, 1, None)),
        (torch.ops.torchinit.softmax.default, (x.transpose(0, 2), -1, torch.float64)),
        (torch.ops.torchinit.log_softmax.default, (x.to(torch.bfloat16), 0, torch.float32)),
        (torch.ops.torchinit.log_softmax.default, (torch.tensor(1.5), 0, None)),
        (torch.ops.torchinit.softmax_backward.default,
         (torch.randn(3, 4, 5), torch.softmax(x, 2), 2, torch.float16)),
        (torch.ops.torchinit.log_softmax_backward.default,
         (torch.randn(5, 4, 3).transpose(0, 2), torch.log_softmax(x, 0), 0, torch.float32)),
    ]
    with torchinit.use_backend(backend):
        for op, args in samples:
            if op in (torch.ops.torchinit.softmax.default, torch.ops.torchinit.log_softmax.default):
                args = (args[0].clone().requires_grad_(),) + args[1:]
            torch.library.opcheck(op, args)


@pytest.mark.parametrize("backend", BACKENDS)
def test_operator_reference_and_kernel_paths_agree(backend):
    # backend "torch" reaches the operators' torch implementation, "triton" their kernels
    torch.manual_seed(9)
    x = torch.randn(2, 7, 3).to(torch.bfloat16).transpose(1, 2)
    g = torch.randn(2, 3, 7)
    with torchinit.use_backend(backend):
        y = torch.ops.torchinit.softmax(x, 2, torch.float32)
        dx = torch.ops.torchinit.softmax_backward(g, y, 2, torch.bfloat16)
        ly = torch.ops.torchinit.log_softmax(x, 1, None)
    assert y.is_contiguous() and y.dtype == torch.float32 and dx.dtype == torch.bfloat16
    _close(y, torch.softmax(x, 2, dtype=torch.float32))
    _close(dx, torch.ops.aten._softmax_backward_data(g, y, 2, torch.float32).to(torch.bfloat16))
    _close(ly, torch.log_softmax(x, 1))


@needs_triton
def test_compile_keeps_or_drops_the_operator():
    calls = []

    def count(gm, example_inputs):
        calls.append([n.target for n in gm.graph.nodes if n.op == "call_function"])
        return gm.forward

    x = torch.randn(4, 6)
    with torchinit.use_backend("triton"):
        fn = torch.compile(lambda t: softmax(t, -1, dtype=torch.float64), backend=count, fullgraph=True)
        _close(fn(x), TF.softmax(x, -1, dtype=torch.float64))
        torch._dynamo.reset()
        with torchinit.use_kernels_in_compile():
            fn = torch.compile(lambda t: log_softmax(t, 0), backend=count, fullgraph=True)
            _close(fn(x), TF.log_softmax(x, 0))
    torch._dynamo.reset()
    assert not any("torchinit" in str(t) for t in calls[0])
    assert any("torchinit.log_softmax" in str(t) for t in calls[1])


@needs_triton
def test_export_records_the_operators_and_fx_keeps_the_calls():
    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p, self.lp = Softmax(-1), LogSoftmax(1)

        def forward(self, x):
            return self.p(x) + self.lp(x)

    x = torch.randn(3, 5)
    program = torch.export.export(Head(), (x,))
    targets = [n.target for n in program.graph.nodes if n.op == "call_function"]
    assert torch.ops.torchinit.softmax.default in targets and torch.ops.torchinit.log_softmax.default in targets
    _close(program.module()(x), torch.softmax(x, -1) + torch.log_softmax(x, 1))
    traced = torch.fx.symbolic_trace(Head())
    assert [n.target for n in traced.graph.nodes if n.op == "call_function"][:2] == [softmax, log_softmax]


# ---------------------------------------------------------------------------------------------
# API: signatures, implicit dim, errors, modules
# ---------------------------------------------------------------------------------------------


def test_implicit_dim_warns_and_picks_torchs_dim():
    for shape in [(5,), (3, 4), (2, 3, 4), (2, 3, 4, 5)]:
        x = torch.randn(shape)
        for name, (ours, ref) in FUNCS.items():
            with pytest.warns(UserWarning, match=f"Implicit dimension choice for {name}") as record:
                y = ours(x)
            assert record[0].filename == __file__  # the warning points at the caller, as torch's does
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _close(y, ref(x))


def test_integer_input_with_dtype_and_errors():
    ints = torch.arange(6).reshape(2, 3)
    _close(softmax(ints, 1, dtype=torch.float32), TF.softmax(ints, 1, dtype=torch.float32))
    with pytest.raises(NotImplementedError, match=r"torchinit.softmax: .*'Long'"):  # torch's path and error
        softmax(ints, 1)
    with pytest.raises(TypeError, match="torchinit.log_softmax: argument 'dtype'"):
        log_softmax(torch.randn(3), 0, dtype=torch.int32)
    with pytest.raises(TypeError, match="torchinit.softmin: argument 'input' must be a torch.Tensor"):
        softmin([1.0, 2.0], 0)
    for backend in BACKENDS:
        with torchinit.use_backend(backend), pytest.raises(IndexError):
            softmax(torch.randn(2, 3), 2)
    with torchinit.use_backend(BACKENDS[-1]), pytest.raises(IndexError, match=r"\[-1, 0\]"):
        torch.ops.torchinit.softmax(torch.tensor(1.0), 1, None)


@pytest.mark.parametrize("backend", BACKENDS)
def test_modules_subclass_torch_and_accept_inplace(backend):
    x = torch.randn(3, 4, 5)
    for ours, twin, fn in [(Softmax, torch.nn.Softmax, TF.softmax), (LogSoftmax, torch.nn.LogSoftmax, TF.log_softmax),
                           (Softmin, torch.nn.Softmin, TF.softmin)]:
        m = ours(dim=1, inplace=True)
        assert isinstance(m, twin) and m.inplace and repr(m) == repr(twin(dim=1))
        assert m.state_dict() == {} and ours().dim is None
        x_before = x.clone()
        with torchinit.use_backend(backend):
            _close(m(x), fn(x, 1))
        assert torch.equal(x, x_before)  # inplace=True computes out of place


# ---------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU): the compiled kernels, one pass and online, against torch
# ---------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("shape, dim", [((64, 1000), -1), ((8, 32768), -1), ((2, 131072), 1), ((4, 512, 33), 1),
                                         ((16, 1, 50), 0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_kernels_match_torch(shape, dim, dtype):
    torch.manual_seed(10)
    x = (4 * torch.randn(shape, device="cuda")).to(dtype).requires_grad_()
    g = torch.randn(shape, device="cuda", dtype=torch.float32)
    with torchinit.use_backend("triton"):
        for name, (ours, ref) in FUNCS.items():
            for cast in (None, torch.float32):
                y = ours(x, dim, dtype=cast)
                (dx,) = torch.autograd.grad(y, x, g.to(y.dtype))
                y_ref = _reference(name, x.detach(), dim, cast)
                _close(y.detach(), y_ref)
                xr = x.detach().double().requires_grad_()
                (dx_ref,) = torch.autograd.grad(ref(xr.to(y.dtype).double(), dim), xr, g.double())
                tol = torch.finfo(y.dtype).eps * dx_ref.abs().max().item()
                torch.testing.assert_close(dx.double(), dx_ref, rtol=4 * torch.finfo(y.dtype).eps, atol=8 * tol)


@pytest.mark.parametrize("name", sorted(FUNCS))
def test_cpu_auto_eager_call_is_one_route_decision(name, monkeypatch):
    """CPU under "auto": one backend decision (backend.route), then torch's own softmax -- no use_custom_op call
    (the old path's second, costlier decision), and the values are torch's."""
    import torchinit.backend as tb

    def refuse(*args, **kwargs):
        raise AssertionError("use_custom_op called on the eager CPU path")

    monkeypatch.setattr(tb, "use_custom_op", refuse)
    fn, ref = FUNCS[name]
    x = torch.randn(3, 5)
    with torchinit.use_backend("auto"):
        got = fn(x, dim=1)
    assert torch.equal(got, ref(x, dim=1))
