"""Every activation, both backends, forward and backward, against torch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as TF

import torchinit as ti
import torchinit.functional as F
import torchinit.layout
from activation_cases import (BACKENDS, CASES, COMPOSITE_REFERENCES, DEVICES, DTYPES, INPLACE, ids, params,
                              tolerance)


@pytest.fixture(autouse=True)
def poison_outputs(monkeypatch):
    """Kernel outputs start as NaN: an element a kernel forgets to write cannot pass."""
    monkeypatch.setattr(torchinit.layout, "POISON_OUTPUTS", True)


def _fresh(shape, dtype, device, scale=3.0):
    # fresh random values every run (no fixed seed), in a range that covers every branch
    return (torch.randn(shape, device=device, dtype=torch.float64) * scale).to(dtype)


def _run(fn, x, kw, grad_out):
    x = x.detach().clone().requires_grad_(True)
    y = fn(x, **kw)
    (gx,) = torch.autograd.grad(y, x, grad_out)
    return y.detach(), gx


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", params(), ids=ids)
def test_matches_torch(case, dtype, backend, device):
    name, kw = case
    fn, ref, _ = CASES[name]
    x = _fresh((3, 37, 11), dtype, device)  # 1221 elements: not a multiple of any block
    g = _fresh(x.shape, dtype, device, scale=1.0)
    if name in COMPOSITE_REFERENCES and dtype in (torch.float16, torch.bfloat16):
        y_ref, gx_ref = (t.to(dtype) for t in _run(ref, x.float(), kw, g.float()))
    else:
        y_ref, gx_ref = _run(ref, x, kw, g)
    with ti.use_backend(backend):
        y, gx = _run(fn, x, kw, g)
    assert y.dtype == dtype and gx.dtype == dtype
    torch.testing.assert_close(y, y_ref, **tolerance(dtype))
    torch.testing.assert_close(gx, gx_ref, **tolerance(dtype, backward=True))


SPECIAL = [0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), float("nan"), 1e30, -1e30, 1e-30, -1e-30,
           1e-8, -1e-8, 3.0, -3.0, 6.0, 20.0, -20.0, 20.0001, 19.9999, 5.0, 88.0, -88.0, 88.8, -88.8, 89.0, -89.0,
           -104.0, 700.0, -700.0, 2.5, 0.5]

# Where torch disagrees with itself on SPECIAL (torch 2.14.1, x86-64 CPU; found by evaluating every case's
# forward and backward (grad_out = 1) in fp32/bf16/fp16 on a one-element tensor, on a 64-element tensor (the
# vectorised path) and in fp64 rounded to the dtype). The right value is fp64's, rounded: the Triton path
# returns it (test_special_values holds it to that); the torch path calls torch's kernels and inherits
# whichever answer torch gives for that tensor length on that CPU (test_torch_path_inherits_torch).
#
#   op (args)                    fwd/bwd  x       one element   vectorised   fp64 (right)   dtypes
#   gelu (erf)                   fwd      +inf    inf           nan          inf            fp32 bf16 fp16
#   gelu (tanh)                  bwd      +1e30   nan           nan          1              fp32 bf16
#   gelu (tanh)                  bwd      -1e30   nan           nan          0              fp32 bf16
#   relu6, hardtanh (any bounds) bwd      nan     1             0            0              fp32 bf16 fp16
#   elu, celu (any alpha), selu  bwd      nan     1 (selu:      nan          nan            fp32 bf16 fp16
#                                                  its scale)
#   hardswish                    bwd      nan     1             nan          nan            fp32 bf16 fp16
#
# In bf16/fp16 torch also differs from fp64-rounded by more than one ulp where it computes in the half
# dtype itself: sigmoid/tanh backward from the rounded output (tanh bwd at 5 and 6: 0 against 1.8e-4 and
# 2.5e-5), softsign backward (bf16: 20, 88, 104, 700), tanhshrink forward (bf16 at 0.5). There the one-element
# and vectorised paths agree, and the Triton path (fp32 math, rounded once) is within the dtype tolerance
# of fp64.


def _right_values(ref, x, kw, g):
    """The reference on SPECIAL: torch in fp64, rounded to x's dtype (see the table above)."""
    y, gx = _run(ref, x.double(), kw, g.double())
    return y.to(x.dtype), gx.to(x.dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", params(), ids=ids)
def test_special_values(case, dtype):
    """Triton path: inf, NaN, -0.0, huge and tiny magnitudes, the branch points and the exp overflow points
    give fp64's value rounded to the dtype, wherever torch's own fp32 kernels disagree with it."""
    name, kw = case
    fn, ref, _ = CASES[name]
    x = torch.tensor(SPECIAL, dtype=dtype)
    g = torch.ones_like(x)
    y_ref, gx_ref = _right_values(ref, x, kw, g)
    with ti.use_backend("triton"):
        y, gx = _run(fn, x, kw, g)
    if dtype == torch.float32:
        fwd_tol = bwd_tol = dict(rtol=4e-6, atol=1e-6)
    elif dtype == torch.float64:
        # torch itself uses fp32 constants in a few fp64 kernels (hardsigmoid's 1/6), hence 1e-7
        fwd_tol = bwd_tol = dict(rtol=1e-7, atol=1e-12)
    else:
        fwd_tol, bwd_tol = tolerance(dtype), tolerance(dtype, backward=True)
    torch.testing.assert_close(y, y_ref, equal_nan=True, **fwd_tol)
    torch.testing.assert_close(gx, gx_ref, equal_nan=True, **bwd_tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", params(), ids=ids)
def test_torch_path_inherits_torch(case, dtype):
    """Torch path: on SPECIAL it returns what torch returns for a tensor of the same length, whole and one
    element at a time (so at the points of the table above it gives torch's answer for that length)."""
    name, kw = case
    fn, ref, _ = CASES[name]
    x = torch.tensor(SPECIAL, dtype=dtype)
    tol = dict(rtol=0, atol=0) if name not in COMPOSITE_REFERENCES else dict(rtol=4e-6, atol=1e-6)
    if name in COMPOSITE_REFERENCES and dtype in (torch.float16, torch.bfloat16):
        tol = tolerance(dtype, backward=True)
    for part in [x] + [x[i:i + 1] for i in range(len(SPECIAL))]:
        g = torch.ones_like(part)
        want = _run(ref, part, kw, g)
        with ti.use_backend("torch"):
            got = _run(fn, part, kw, g)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, equal_nan=True, **tol, msg=lambda m: f"{name} at {part.tolist()}: {m}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(CASES))
def test_shapes_and_layouts(name, backend):
    """Empty, 0-d, one element, transposed, channels_last and strided slices: values and strides."""
    fn, ref, variants = CASES[name]
    kw = variants[-1]
    base = torch.randn(2, 6, 5, 4) * 3
    inputs = {
        "empty": torch.randn(0, 3),
        "zero-d": torch.tensor(-0.7),
        "one": torch.tensor([1.3]),
        "transposed": torch.randn(9, 7).t(),
        "channels_last": base.to(memory_format=torch.channels_last),
        "sliced": base[:, ::2, 1:, ::3],
        "expanded": torch.randn(5, 1).expand(5, 4),
    }
    for label, x in inputs.items():
        with ti.use_backend(backend):
            y = fn(x, **kw)
        torch.testing.assert_close(y, ref(x, **kw), msg=lambda m: f"{name} on {label}: {m}")
        assert y.shape == x.shape
        if backend == "triton" and label in ("transposed", "channels_last"):
            assert y.stride() == x.stride(), f"{name} on {label}: layout not kept"


@pytest.mark.parametrize("backend", BACKENDS)
def test_dense_layouts_are_not_copied(backend, monkeypatch):
    """A channels_last or transposed input runs without a hidden copy of the input."""
    calls = []
    real = torch.Tensor.copy_
    monkeypatch.setattr(torch.Tensor, "copy_", lambda self, src, *a, **k: calls.append(1) or real(self, src, *a, **k))
    x = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    with ti.use_backend("triton"):
        F.gelu(x)
        F.gelu(torch.randn(6, 7).t())
    assert calls == []


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_prelu_matches_torch(dtype, backend):
    for shape, layout in [((4, 6, 5, 3), torch.contiguous_format), ((4, 6, 5, 3), torch.channels_last),
                          ((7, 6), torch.contiguous_format), ((6,), torch.contiguous_format)]:
        for channels in ([1, shape[1]] if len(shape) > 1 else [1]):
            x = (torch.randn(shape, dtype=torch.float64) * 3).to(dtype)
            if len(shape) == 4:
                x = x.contiguous(memory_format=layout)
            w = torch.rand(channels, dtype=dtype)
            g = torch.randn(shape).to(dtype)
            outs = []
            for impl, b in ((TF.prelu, None), (F.prelu, backend)):
                xi = x.clone().requires_grad_()
                wi = w.clone().requires_grad_()
                if b is None:
                    y = impl(xi, wi)
                else:
                    with ti.use_backend(b):
                        y = impl(xi, wi)
                gx, gw = torch.autograd.grad(y, (xi, wi), g)
                outs.append((y, gx, gw))
            tol = tolerance(dtype)
            if dtype in (torch.float16, torch.bfloat16):  # weight gradients sum many rounded terms
                tol = dict(rtol=5e-2, atol=5e-2)
            for a, b in zip(outs[0], outs[1]):
                torch.testing.assert_close(b, a, **tol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_glu_matches_torch(dtype, backend):
    for shape, dim in [((4, 10), -1), ((3, 8, 5), 1), ((6, 3, 4), 0), ((2, 4, 3, 2), 3), ((0, 4), 1)]:
        x = (torch.randn(shape, dtype=torch.float64) * 3).to(dtype)
        g = torch.randn(TF.glu(x, dim).shape).to(dtype)
        y_ref, gx_ref = _run(lambda t: TF.glu(t, dim), x, {}, g)
        with ti.use_backend(backend):
            y, gx = _run(lambda t: F.glu(t, dim), x, {}, g)
        torch.testing.assert_close(y, y_ref, **tolerance(dtype))
        torch.testing.assert_close(gx, gx_ref, **tolerance(dtype, backward=True))


@pytest.mark.parametrize("backend", BACKENDS)
def test_learnable_parameter_gradients(backend):
    x = torch.randn(5, 7, dtype=torch.float64)
    for fn, ref, values in [
        (F.swish, lambda x, beta: x * torch.sigmoid(beta * x), {"beta": 1.3}),
        (F.star_relu, lambda x, scale, bias: scale * torch.relu(x) ** 2 + bias, {"scale": 0.9, "bias": -0.2}),
    ]:
        grads = []
        for impl, b in ((ref, "torch"), (fn, backend)):
            params = {k: torch.tensor([v], dtype=torch.float64, requires_grad=True) for k, v in values.items()}
            xi = x.clone().requires_grad_()
            with ti.use_backend(b):
                y = impl(xi, **params)
            grads.append(torch.autograd.grad(y.square().sum(), [xi, *params.values()]))
        for a, b in zip(*grads):
            torch.testing.assert_close(b, a)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", INPLACE)
def test_inplace_like_torch(name, backend):
    fn, ref, variants = CASES[name]
    kw = variants[0]
    x = torch.randn(4, 9) * 3
    # writes into its input and returns it
    a = x.clone()
    with ti.use_backend(backend):
        out = fn(a, inplace=True, **kw)
    assert out.data_ptr() == a.data_ptr()
    torch.testing.assert_close(a, ref(x, **kw))
    # gradients through an in-place call on a non-leaf equal torch's
    leaf = x.clone().requires_grad_()
    with ti.use_backend(backend):
        y = fn(leaf * 1.0, inplace=True, **kw)
    (g,) = torch.autograd.grad(y.sum(), leaf)
    leaf_ref = x.clone().requires_grad_()
    (g_ref,) = torch.autograd.grad(ref(leaf_ref * 1.0, **kw).sum(), leaf_ref)
    torch.testing.assert_close(g, g_ref)
    # the same error as torch for in place on a leaf that requires grad
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        with ti.use_backend(backend):
            fn(x.clone().requires_grad_(), inplace=True, **kw)


@pytest.mark.parametrize("name", list(CASES) + ["prelu", "glu"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64], ids=str)
def test_bad_dtype_names_op_and_dtype(name, dtype):
    # non-floating inputs take torch's own path (issue 13; tests/test_integration.py compares every result):
    # where torch refuses the dtype, the error is torch's type, naming the op and the dtype
    fn = getattr(F, name)
    x = torch.zeros(4, 4, dtype=dtype)
    args = (torch.ones(1),) if name == "prelu" else ()
    reference = CASES[name][1] if name in CASES else getattr(TF, name)
    try:
        expected = reference(x, *args)
    except Exception as exc:  # noqa: BLE001 - whichever error torch raises
        with pytest.raises(type(exc), match=rf"torchinit\.{name}: .*{str(dtype)}"):
            fn(x, *args)
    else:
        assert torch.equal(fn(x, *args), expected)


def test_bad_arguments():
    x = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match=r"torchinit\.prelu: .*'weight'.*4 elements.*3 channels"):
        F.prelu(x, torch.ones(4))
    with pytest.raises(ValueError, match=r"torchinit\.gelu: .*'approximate'"):
        F.gelu(x, approximate="fast")
    with pytest.raises(ValueError, match=r"torchinit\.glu: .*even"):
        F.glu(torch.randn(3, 5))
    with pytest.raises(TypeError, match=r"torchinit\.relu: .*torch\.Tensor"):
        F.relu([1.0, 2.0])
    with pytest.raises(ValueError, match=r"torchinit\.softplus: .*'beta'"):
        F.softplus(x, beta=0)
    with pytest.raises(ValueError, match=r"torchinit\.use_backend: expected one of \['auto', 'triton', 'torch'\], "
                                         r"got 'cuda'"):
        with ti.use_backend("cuda"):
            pass


def test_triton_backend_without_interpreter_is_a_clear_error():
    import subprocess
    import sys

    code = (
        "import torch, torchinit as ti\n"
        "try:\n"
        "    with ti.use_backend('triton'): ti.functional.gelu(torch.randn(3))\n"
        "except RuntimeError as e: print('ERR', e)\n"
    )
    env = {**__import__("os").environ, "TRITON_INTERPRET": "0"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)  # a hang guard only: a busy CI machine is slow
    assert "ERR torchinit.gelu: backend 'triton' was requested" in out.stdout, out.stdout + out.stderr
    assert "TRITON_INTERPRET=1" in out.stdout


def test_backend_selection_env_and_context(monkeypatch):
    monkeypatch.setenv("TORCHINIT_BACKEND", "torch")
    ti.backend.set_default_backend()  # re-read the environment (it is read once, at import)
    try:
        assert ti.get_backend() == "torch"
        with ti.use_backend("triton"):
            assert ti.get_backend() == "triton"
            with ti.use_backend("auto"):
                assert ti.get_backend() == "auto"
        assert ti.get_backend() == "torch"
        monkeypatch.setenv("TORCHINIT_BACKEND", "nonsense")
        with pytest.raises(ValueError, match="expected one of"):
            ti.backend.set_default_backend()
        with pytest.raises(ValueError, match="expected one of"):
            ti.backend.set_default_backend("cuda")
    finally:
        monkeypatch.delenv("TORCHINIT_BACKEND")
        ti.backend.set_default_backend()
    assert ti.get_backend() == "auto"


def test_auto_uses_torch_path_on_cpu(monkeypatch):
    """'auto' on a CPU tensor never launches a kernel (the torch path is exact and fastest there)."""
    import torchinit.kernels.elementwise as ew

    monkeypatch.setattr(ew, "launch_unary_forward", lambda *a, **k: pytest.fail("kernel launched"))
    y = F.gelu(torch.randn(10))
    assert y.shape == (10,)


def test_saves_the_least_for_backward():
    """Output-saving activations keep their output (shared with the next layer), others their input."""
    # elu/selu out of place keep their input, as torch does (from the output, y + alpha loses every digit where
    # y rounds to -alpha: x < -17 in fp32); in place they keep the output (test_inplace_elu_saves_its_output)
    for name, expect in [("sigmoid", "output"), ("relu", "output"), ("tanh", "output"), ("elu", "input"),
                         ("selu", "input"), ("gelu", "input"), ("silu", "input")]:
        fn = CASES[name][0]
        x = torch.randn(8, requires_grad=True)
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            with ti.use_backend("triton"):
                y = fn(x * 1.0)
        assert len(saved) == 1, name
        target = y if expect == "output" else None
        if target is not None:
            assert saved[0].data_ptr() == y.data_ptr(), name
        else:
            assert saved[0].data_ptr() != y.data_ptr(), name
    # elu with a negative alpha cannot recover its input from the output: it keeps the input
    x = torch.randn(8, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        with ti.use_backend("triton"):
            y = F.elu(x * 1.0, alpha=-0.5)
    assert saved[0].data_ptr() != y.data_ptr()


def test_large_block_multiple_sizes():
    """Sizes around the interpreter's block size: the masks are right at every boundary."""
    from torchinit.kernels.elementwise import BLOCK_INTERPRETER

    for n in (BLOCK_INTERPRETER - 1, BLOCK_INTERPRETER, BLOCK_INTERPRETER + 1, 2 * BLOCK_INTERPRETER + 3):
        x = torch.randn(n)
        with ti.use_backend("triton"):
            y = F.silu(x)
        torch.testing.assert_close(y, TF.silu(x))
        assert not math.isnan(y.sum().item())


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_cuda_auto_runs_kernels_and_matches_torch(dtype, monkeypatch):
    """On a GPU, 'auto' runs the Triton kernels; every activation matches torch's CUDA op on a multi-block tensor."""
    import torchinit.kernels.elementwise as ew

    launches = []
    real = ew.launch_unary_forward
    monkeypatch.setattr(ew, "launch_unary_forward", lambda *a, **k: launches.append(1) or real(*a, **k))
    for name, (fn, ref, variants) in CASES.items():
        for kw in variants:
            x = _fresh((257, 4099), dtype, "cuda")
            g = _fresh(x.shape, dtype, "cuda", scale=1.0)
            y_ref, gx_ref = _run(ref, x, kw, g)
            y, gx = _run(fn, x, kw, g)
            torch.testing.assert_close(y, y_ref, **tolerance(dtype), msg=lambda m: f"{name} {kw}: {m}")
            torch.testing.assert_close(gx, gx_ref, **tolerance(dtype, backward=True), msg=lambda m: f"{name} {kw}: {m}")
    assert launches, "'auto' on CUDA tensors did not launch a Triton kernel"


@pytest.mark.gpu
def test_cuda_offsets_past_2_31_elements():
    """64-bit offsets: the elements past 2**31 are written and correct."""
    n = 2**31 + 4099
    try:
        x = torch.randn(n, dtype=torch.bfloat16, device="cuda")
        y = F.silu(x)
    except torch.OutOfMemoryError:
        pytest.skip("not enough GPU memory for a 2**31-element tensor")
    tail = slice(n - 10000, n)
    torch.testing.assert_close(y[tail], TF.silu(x[tail]), **tolerance(torch.bfloat16))
    torch.testing.assert_close(y[:10000], TF.silu(x[:10000]), **tolerance(torch.bfloat16))


def test_elu_backward_keeps_the_digits_far_left():
    """Where elu's output rounds to -alpha (x < -17 in fp32, < -5.6 in bf16) the gradient is still alpha*exp(x),
    as fp64 gives (saving the output, it was 0); in place the output is saved, as torch's elu_ does."""
    for dtype, xs in ((torch.float32, [-17.5, -30.0, -80.0]), (torch.bfloat16, [-6.0, -9.0, -20.0])):
        x = torch.tensor(xs, dtype=dtype)
        want = torch.exp(x.double()).to(dtype)  # alpha = 1
        for backend in BACKENDS:
            with ti.use_backend(backend):
                _, gx = _run(F.elu, x, {}, torch.ones_like(x))
            torch.testing.assert_close(gx, want, rtol=tolerance(dtype)["rtol"], atol=0, msg=backend)
    x = torch.randn(8, requires_grad=True)
    h = x * 1.0
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        with ti.use_backend("triton"):
            y = F.elu(h, inplace=True)
    assert len(saved) == 1 and saved[0].data_ptr() == y.data_ptr()
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, torch.where(x > 0, 1.0, torch.exp(x.detach())))
