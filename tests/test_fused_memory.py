"""Memory-lean backward: the 1-bit mode's exact gradients and saved bytes; the few-bit mode's measured error."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as TF

import torchinit as ti
import torchinit.fused as fu
import torchinit.layout
from activation_cases import DTYPES, tolerance
from torchinit.fused.bits import FEWBIT_ERROR, fewbit_quantizer

BACKENDS = ["torch", "triton"]
SPECIAL = [0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), float("nan"), 6.0, -6.0, 0.5, -0.5, 2.0, 1e-30]

BIT_CASES = [
    ("relu", fu.relu_bits, TF.relu, {}),
    ("relu6", fu.relu6_bits, TF.relu6, {}),
    ("leaky_relu", fu.leaky_relu_bits, TF.leaky_relu, {"negative_slope": 0.2}),
    ("leaky_relu_neg", fu.leaky_relu_bits, TF.leaky_relu, {"negative_slope": -0.3}),
    ("hardtanh", fu.hardtanh_bits, TF.hardtanh, {"min_val": -2.0, "max_val": 0.5}),
]


@pytest.fixture(autouse=True)
def poison_outputs(monkeypatch):
    monkeypatch.setattr(torchinit.layout, "POISON_OUTPUTS", True)


def _fwd_bwd(fn, x, g, **kw):
    leaf = x.detach().clone().requires_grad_()
    y = fn(leaf * 1, **kw)
    (gx,) = torch.autograd.grad(y, leaf, g)
    return y.detach(), gx


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", BIT_CASES, ids=[c[0] for c in BIT_CASES])
def test_bits_gradient_is_exact(case, dtype, backend):
    """Bit for bit the default mode's gradient and output (special values included, odd sizes, layouts),
    and torch's on ordinary values (to the core's tolerances: the kernels' fp32 math may round differently)."""
    name, fn, ref, kw = case
    default = getattr(ti.functional, name.replace("_neg", ""))
    xs = [(torch.randn(3, 37, 11, dtype=torch.float64) * 3).to(dtype),  # 1221: not a multiple of 8 or a block
          torch.tensor(SPECIAL, dtype=torch.float64).to(dtype),
          (torch.randn(2, 6, 5, 3) * 3).to(dtype).to(memory_format=torch.channels_last),
          (torch.randn(9, 7) * 3).to(dtype).t(),
          torch.randn(0, 3).to(dtype), torch.tensor([-1.5]).to(dtype)]
    for i, x in enumerate(xs):
        g = torch.randn(x.shape).to(dtype)
        if g.numel() > 2:
            g.view(-1)[:2] = torch.tensor([float("inf"), float("nan")])
        with ti.use_backend(backend):
            y_default, gx_default = _fwd_bwd(default, x, g, **kw)
            y, gx = _fwd_bwd(fn, x, g, **kw)
        torch.testing.assert_close(y, y_default, equal_nan=True, rtol=0, atol=0)
        torch.testing.assert_close(gx, gx_default, equal_nan=True, rtol=0, atol=0)
        if i != 1:  # torch's CPU hardtanh/relu6 gradient at NaN is 1 below 16 elements, 0 above (its
                    # vectorised path): the special values are compared with the default mode only
            y_ref, gx_ref = _fwd_bwd(ref, x, g, **kw)
            torch.testing.assert_close(y, y_ref, equal_nan=True, **tolerance(dtype))
            torch.testing.assert_close(gx, gx_ref, equal_nan=True, **tolerance(dtype, backward=True))


@pytest.mark.parametrize("backend", BACKENDS)
def test_prelu_bits_frozen_weight_exact_and_trainable_falls_back(backend):
    for shape, layout in [((4, 6, 5, 3), torch.contiguous_format), ((4, 6, 5, 3), torch.channels_last), ((7, 6), None)]:
        x = torch.randn(shape)
        if layout is not None:
            x = x.contiguous(memory_format=layout)
        w = torch.rand(6) - 0.5
        g = torch.randn(shape)
        y_ref, gx_ref = _fwd_bwd(lambda t: TF.prelu(t, w), x, g)
        saved = []
        with ti.use_backend(backend), torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t,
                                                                                lambda t: t):
            y, gx = _fwd_bwd(lambda t: fu.prelu_bits(t, w), x, g)
        torch.testing.assert_close((y, gx), (y_ref, gx_ref), rtol=0, atol=0)
        assert any(t.dtype == torch.uint8 for t in saved)
    m = ti.nn.PReLU(6, memory="bits")  # trainable weight: the default path, exact weight gradient
    x = torch.randn(4, 6, requires_grad=True)
    with ti.use_backend(backend):
        m(x).sum().backward()
    ref = torch.nn.PReLU(6)
    xr = x.detach().clone().requires_grad_()
    ref(xr).sum().backward()
    torch.testing.assert_close(m.weight.grad, ref.weight.grad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bits_inplace_survives_later_inplace_ops(backend):
    """With the mask saved, the output may be modified in place afterwards (a saved output could not be)."""
    x = torch.randn(5, 9, requires_grad=True)
    with ti.use_backend(backend):
        h = x * 2
        y = ti.nn.ReLU(inplace=True, memory="bits")(h)
        assert y.data_ptr() == h.data_ptr()
        y.add_(1.0)  # with the default ReLU this would make backward fail
        (gx,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(gx, 2.0 * (x > 0).float())
    with pytest.raises(RuntimeError, match="leaf Variable"):
        fu.relu_bits(torch.randn(3, requires_grad=True), inplace=True)


def _saved_bytes(block, x, backend):
    """Bytes of unique storages autograd keeps for backward of one forward of ``block``."""
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with ti.use_backend(backend), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = block(x)
    return sum(storages.values()), y


@pytest.mark.parametrize("backend", BACKENDS)
def test_saved_bytes_linear_act_linear(backend):
    """Linear -> act -> Linear: the bit mode keeps N/8 bytes where plain torch keeps N * 4 (or shares)."""
    torch.manual_seed(0)
    n_in, n_hidden, batch = 16, 64, 32
    x = torch.randn(batch, n_in, requires_grad=True)
    n = batch * n_hidden
    measured = {}
    for name, torch_act, lean_act in [
        ("leaky_relu", torch.nn.LeakyReLU(0.1), ti.nn.LeakyReLU(0.1, memory="bits")),
        ("hardtanh", torch.nn.Hardtanh(), ti.nn.Hardtanh(memory="bits")),
        ("relu", torch.nn.ReLU(), ti.nn.ReLU(memory="bits")),
        ("gelu", torch.nn.GELU(), ti.nn.GELU(memory="fewbit", memory_bits=4)),
        ("silu", torch.nn.SiLU(), ti.nn.SiLU(memory="fewbit", memory_bits=2)),
    ]:
        lin1, lin2 = torch.nn.Linear(n_in, n_hidden), torch.nn.Linear(n_hidden, n_in)
        plain, _ = _saved_bytes(torch.nn.Sequential(lin1, torch_act, lin2), x, "torch")
        lean, y = _saved_bytes(torch.nn.Sequential(lin1, lean_act, lin2), x, backend)
        measured[name] = plain - lean
        y_ref = torch.nn.Sequential(lin1, torch_act, lin2)(x)
        torch.testing.assert_close(y, y_ref)
    assert measured["leaky_relu"] == n * 4 - n // 8  # torch keeps leaky_relu's input; the mask is N/8 bytes
    assert measured["hardtanh"] == n * 4 - n // 8
    assert measured["relu"] == -(n // 8)  # relu's output is shared with lin2's saved input: the mask is extra
    # few-bit: codes of 4 (2) bits instead of the fp32 input, plus the 2**bits fp64 levels (shared, fixed size)
    assert measured["gelu"] == n * 4 - n // 2 - 16 * 8
    assert measured["silu"] == n * 4 - n // 4 - 4 * 8


def test_fewbit_error_is_bounded():
    """Re-measure the documented few-bit gradient error on a smaller sample (10**5 elements)."""
    torch.manual_seed(0)
    x = torch.randn(100_000, dtype=torch.float64, requires_grad=True)
    g = torch.randn(100_000, dtype=torch.float64)
    for name, fn, ref in [("gelu", fu.gelu_fewbit, TF.gelu), ("silu", fu.silu_fewbit, TF.silu),
                          ("mish", fu.mish_fewbit, TF.mish)]:
        (exact,) = torch.autograd.grad(ref(x), x, g)
        for bits in (1, 2, 4):
            (approx,) = torch.autograd.grad(fn(x, bits=bits), x, g)
            err = ((approx - exact).norm() / exact.norm()).item()
            assert abs(err - FEWBIT_ERROR[(name, 1.0)][bits]) < 0.01, (name, bits, err)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fewbit_kernel_matches_torch_path(dtype):
    """Both paths compute the same codes and levels: identical gradients (up to the final rounding to a half
    dtype, which Triton's interpreter may do differently from torch); forward unchanged."""
    x = (torch.randn(3, 37, 11, dtype=torch.float64) * 2).to(dtype)
    g = torch.randn(x.shape).to(dtype)
    for fn, ref in [(fu.gelu_fewbit, TF.gelu), (fu.silu_fewbit, TF.silu), (fu.mish_fewbit, TF.mish)]:
        for bits in (1, 2, 4):
            with ti.use_backend("torch"):
                want = _fwd_bwd(fn, x, g, bits=bits)
            with ti.use_backend("triton"):
                got = _fwd_bwd(fn, x, g, bits=bits)
            exact = dtype in (torch.float32, torch.float64)
            torch.testing.assert_close(got[1], want[1], **(dict(rtol=0, atol=0) if exact else tolerance(dtype)))
            torch.testing.assert_close(got[0], ref(x), **tolerance(dtype))


def test_fewbit_quantizer_shape():
    for bits in (1, 2, 4):
        bounds, levels = fewbit_quantizer("gelu", bits)
        assert bounds.numel() == 2 ** bits - 1 and levels.numel() == 2 ** bits
        assert torch.all(bounds[1:] > bounds[:-1])
    with pytest.raises(ValueError, match="'bits'"):
        fu.gelu_fewbit(torch.randn(3, requires_grad=True), bits=3)
    with pytest.raises(ValueError, match=r"torchinit\.nn\.ReLU: .*'memory'"):
        ti.nn.ReLU(memory="fewbit")


@pytest.mark.parametrize("backend", BACKENDS)
def test_bits_opcheck_vmap_compile(backend):
    ops = torch.ops.torchinit
    x = torch.randn(3, 4, 7)
    with ti.use_backend(backend):
        torch.library.opcheck(ops.bits_forward, (x, None, "relu", 0.0, 0.0, 0.0))
        torch.library.opcheck(ops.bits_forward, (x.transpose(0, 2), torch.rand(4), "prelu", 0.0, 0.0, 0.0))
        y, codes = ops.bits_forward(x, None, "hardtanh", -1.0, 1.0, 0.0)
        torch.library.opcheck(ops.bits_backward, (torch.randn_like(x), codes, None, "hardtanh", -1.0, 1.0, 0.0))
        b, lv = fewbit_quantizer("silu", 2)
        torch.library.opcheck(ops.fewbit_forward, (x, b, "silu", 2, 0.0, 0.0, 0.0))
        _, c2 = ops.fewbit_forward(x, b, "silu", 2, 0.0, 0.0, 0.0)
        torch.library.opcheck(ops.fewbit_backward, (torch.randn_like(x), c2, lv, 2))
        xb = torch.randn(4, 5, 3)
        per_sample = torch.func.vmap(torch.func.grad(lambda t: fu.leaky_relu_bits(t, 0.1).square().sum()))(xb)
    torch.testing.assert_close(per_sample, torch.func.vmap(torch.func.grad(
        lambda t: TF.leaky_relu(t, 0.1).square().sum()))(xb))


def test_memory_modes_compile_fullgraph():
    """memory='bits'/'fewbit' modules compile without graph breaks, on the torch path and with kernels kept."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), ti.nn.ReLU(memory="bits"), torch.nn.Linear(8, 8),
                                ti.nn.GELU(memory="fewbit"))
    x = torch.randn(4, 8, requires_grad=True)
    (want,) = torch.autograd.grad(model(x).sum(), x)
    for kernels in (False, True):
        torch._dynamo.reset()
        with ti.use_kernels_in_compile(kernels), ti.use_backend("triton" if kernels else "auto"):
            out = torch.compile(model, fullgraph=True, backend="aot_eager")(x)
            (got,) = torch.autograd.grad(out.sum(), x)
        torch.testing.assert_close(got, want)
    torch._dynamo.reset()


def test_fused_functions_import_no_higher_layer():
    """torchinit.fused.functions sits below torchinit.functional (which re-exports it): it imports neither
    torchinit.functional nor torchinit.nn, deferred imports inside functions included (read by AST)."""
    import ast
    import pathlib

    path = pathlib.Path(fu.functions.__file__)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ["torchinit", "fused"][: 3 - node.level] if node.level else []
            found.append(".".join(base + ([node.module] if node.module else [])))
            found += [f"{found[-1]}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    higher = [m for m in found if m.split(".")[:2] in (["torchinit", "functional"], ["torchinit", "nn"])]
    assert higher == []


@pytest.mark.parametrize("formula, p0, p1", [("relu", 0.0, 0.0), ("hardtanh", -2.0, 0.5), ("hardtanh", 0.0, 6.0),
                                             ("hardtanh", float("-inf"), 1.0), ("leaky_relu", 0.2, 0.0),
                                             ("leaky_relu_from_input", -0.3, 0.0), ("prelu", 0.25, 0.0)])
def test_table_bit_stand_ins_reproduce_torch_backward(formula, p0, p1):
    """The table's bits-mode fields (Formula.stand_ins, pass_bit) against torch's own backward: the bit from
    pass_bit is the generic rule's (backward(1, s) != backward(1, off)), and the backward fed the stand-in the
    bit selects is bit-for-bit the backward on the saved value, NaN and infinities included."""
    from torchinit.activations import FORMULAS

    f = FORMULAS[formula]
    assert f.two_valued and f.stand_ins is not None
    x = torch.cat([torch.tensor(SPECIAL, dtype=torch.float64), torch.randn(500, dtype=torch.float64) * 4])
    s = f.forward(x, p0, p1, 0.0, False) if f.saves == "output" else x
    on, off = f.stand_ins(p0, p1)
    ones = torch.ones_like(s)
    generic = f.backward(ones, s, p0, p1, 0.0) != f.backward(ones, torch.full_like(s, off), p0, p1, 0.0)
    bit = f.pass_bit(s) if f.pass_bit is not None else generic
    if f.pass_bit is not None:
        assert torch.equal(bit[~s.isnan()], generic[~s.isnan()])
    g = torch.randn_like(s)
    got = f.backward(g, torch.where(bit, on, off).to(s.dtype), p0, p1, 0.0)
    torch.testing.assert_close(got, f.backward(g, s, p0, p1, 0.0), rtol=0, atol=0, equal_nan=True)


def test_bit_operators_vmap_one_call_per_sample():
    """vmap of the four packing operators (opdef.per_sample: single-tensor outputs and a None weight included)
    gives each sample's own call, codes with a batch dim, over any batched dim."""
    ops = torch.ops.torchinit
    torch.manual_seed(0)
    x, w = torch.randn(3, 4, 5), torch.rand(5)
    g = torch.randn_like(x)
    for weight, formula in ((w, "prelu"), (None, "relu")):
        y, c = torch.vmap(lambda t, wt=weight, f=formula: ops.bits_forward(t, wt, f, 0.0, 0.0, 0.0))(x)
        dx = torch.vmap(lambda a, b, wt=weight, f=formula: ops.bits_backward(a, b, wt, f, 0.0, 0.0, 0.0))(g, c)
        for b in range(3):
            yb, cb = ops.bits_forward(x[b], weight, formula, 0.0, 0.0, 0.0)
            assert torch.equal(y[b], yb) and torch.equal(c[b], cb)
            assert torch.equal(dx[b], ops.bits_backward(g[b], cb, weight, formula, 0.0, 0.0, 0.0))
    bounds, levels = fewbit_quantizer("silu", 2)
    y, c = torch.vmap(lambda t: ops.fewbit_forward(t, bounds, "silu", 2, 0.0, 0.0, 0.0), in_dims=1)(x)
    dx = torch.vmap(lambda a, b: ops.fewbit_backward(a, b, levels, 2))(g.movedim(1, 0), c)
    for b in range(4):
        yb, cb = ops.fewbit_forward(x[:, b], bounds, "silu", 2, 0.0, 0.0, 0.0)
        assert torch.equal(y[b], yb) and torch.equal(c[b], cb)
        assert torch.equal(dx[b], ops.fewbit_backward(g[:, b], cb, levels, 2))


def test_autograd_functions_carry_their_signature(monkeypatch):
    """Function.apply binds the arguments with inspect.signature at every call; the opdef-made Functions' forward
    carries its signature, so no call rebuilds it from the code object (about 20 us of a 16-element call)."""
    import inspect

    from torchinit.fused.bits import BitsFunction, FewBitFunction
    from torchinit.fused.gated import GatedFunction

    x = torch.randn(16, requires_grad=True)
    bounds, levels = fewbit_quantizer("silu", 4)
    built = []
    real = inspect._signature_from_function
    monkeypatch.setattr(inspect, "_signature_from_function", lambda *a, **k: built.append(a[1]) or real(*a, **k))
    BitsFunction.apply(x, None, "relu", 0.0, 0.0, 0.0, False)
    FewBitFunction.apply(x, bounds, levels, "silu", 4, 0.0, 0.0, 0.0, False)
    GatedFunction.apply(x, x, "silu", 0.0, 0.0, 0.0)
    assert built == []
