"""Launch hazards the interpreter cannot show (issue 12): the grid-shape arithmetic on CPU, and on a GPU
(``-m gpu``, skipped without CUDA) the launches themselves against torch."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as TF

import torchinit as ti
import torchinit.functional as F

CUDA_GRID_Y_LIMIT = 65_535  # grid axes 1 and 2 (axis 0: 2**31 - 1)
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _nvidia_tools_present() -> bool:
    try:
        import triton
    except ImportError:
        return False
    bin_dir = pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    return (bin_dir / "ptxas").exists() and (bin_dir / "cuobjdump").exists()


needs_nvidia_tools = pytest.mark.skipif(not _nvidia_tools_present(), reason="no Triton NVIDIA backend to compile with")


@pytest.mark.parametrize("shape, dim", [((131072, 64), 0), ((64, 131072), 1), ((2, 70000, 3, 3), 1),
                                        ((1 << 20, 3), 0), ((5, 7), 1)])
def test_channel_backward_grid_fits_cuda_limits(shape, dim):
    """bias_act's backward grid for a CUDA tensor: channels on axis 0, row programs on axis 1 within 65,535
    (C on axis 1 made bias_act(dim=0) on (131072, 64) fail to launch)."""
    triton = pytest.importorskip("triton")
    from torchinit.kernels.channel_reduce import _tiles, backward_grid

    x = torch.empty(shape, device="meta")
    C, inner = shape[dim], x.stride(dim)
    J = x.numel() // C
    block_j, block_c, iters, programs_j = _tiles(J, C, inner, torch.device("cuda"))
    grid = backward_grid(programs_j, C, block_c)
    assert grid[0] * block_c >= C and grid[0] < 2**31
    assert grid[1] <= CUDA_GRID_Y_LIMIT and grid[1] * iters * block_j >= J
    assert triton.cdiv(C, block_c) == grid[0]


def _act_and_grads(fn, x, g):
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    (gx,) = torch.autograd.grad(y, x, g)
    return y, gx


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_device_guard_second_gpu():
    """A cuda:1 tensor while cuda:0 is current: the kernel runs on cuda:1 and matches torch there."""
    x = torch.randn(4096, device="cuda:1")
    g = torch.randn_like(x)
    torch.cuda.set_device(0)
    with ti.use_backend("triton"):
        y, gx = _act_and_grads(F.gelu, x, g)
    y_ref, gx_ref = _act_and_grads(TF.gelu, x, g)
    assert y.device == x.device
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(gx, gx_ref)


@pytest.mark.gpu
def test_bias_act_more_than_65535_channels():
    """bias_act along dim 0 of (131072, 64): 131,072 channels, forward and both gradients against torch."""
    x = torch.randn(131072, 64, device="cuda", requires_grad=True)
    b = torch.randn(131072, device="cuda", requires_grad=True)
    g = torch.randn(131072, 64, device="cuda")
    y = ti.bias_act(x, b, "gelu", dim=0)
    gx, gb = torch.autograd.grad(y, (x, b), g)
    x2, b2 = x.detach().clone().requires_grad_(True), b.detach().clone().requires_grad_(True)
    y2 = TF.gelu(x2 + b2[:, None])
    gx2, gb2 = torch.autograd.grad(y2, (x2, b2), g)
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(gx, gx2)
    torch.testing.assert_close(gb, gb2, rtol=1e-4, atol=1e-3)  # 64-term sums in another order


@pytest.mark.gpu
def test_cuda_graph_capture_and_replay_forward_backward():
    """Forward + backward captured in a CUDA graph (after a warm-up on a side stream, as torch prescribes)
    and replayed on new data give what eager torch gives."""
    x = torch.randn(1 << 16, device="cuda", requires_grad=True)
    g = torch.randn_like(x)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), ti.use_backend("triton"):
        for _ in range(2):
            (F.silu(x) * 1.0).backward(g)
    torch.cuda.current_stream().wait_stream(stream)
    x.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), ti.use_backend("triton"):
        y = F.silu(x)
        y.backward(g)
    with torch.no_grad():
        x.copy_(torch.randn_like(x))
    graph.replay()
    y_ref, gx_ref = _act_and_grads(TF.silu, x, g)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(x.grad, gx_ref)


@pytest.mark.gpu
@pytest.mark.parametrize("n", [32768, 131072])
def test_softmax_long_rows(n):
    """Softmax rows of 32k and 131k elements (one-pass and online kernels), forward and backward."""
    x = torch.randn(8, n, device="cuda")
    g = torch.randn_like(x)
    with ti.use_backend("triton"):
        y, gx = _act_and_grads(lambda t: F.softmax(t, -1), x, g)
    y_ref, gx_ref = _act_and_grads(lambda t: TF.softmax(t, -1), x, g)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(gx, gx_ref)


@pytest.mark.parametrize("d", [1, 2, 3, 7, 64, 768, 1000, 65535, 65536, 131072, 2**20 + 1, 2**30, 2**31 - 1])
def test_fast_divisor_divides_every_int32_like_python(d):
    """bias_act's channel index divides with (magic, shift) from fast_divisor: n // d for 0 <= n < 2**31."""
    pytest.importorskip("triton")
    from torchinit.kernels.elementwise import fast_divisor

    magic, shift = fast_divisor(d)
    assert -2**31 <= magic < 2**31 and 0 <= shift <= 31
    m = magic % 2**32
    g = torch.Generator().manual_seed(d)
    multiples = torch.arange(0, min(2**31 // d, 4000) + 1) * d  # around every multiple of d (up to 4000 of them)
    edges = torch.cat([multiples - 1, multiples, multiples + 1]).clamp(0, 2**31 - 1)
    n = torch.cat([torch.randint(0, 2**31, (20000,), generator=g), edges, 2**31 - 1 - torch.arange(0, 1000)])
    q = (((n * m) >> 32) + n) >> shift  # uint32 arithmetic, exact in int64 (n * m < 2**63)
    assert torch.equal(q, n // d)


@pytest.mark.gpu
def test_sampler_warm_up_and_real_keys_share_one_compiled_kernel():
    """apply_init warms the sampler up with key=1 on 7 elements; real 63-bit keys, starts and sizes then run
    the kernel that warm-up compiled (one cache entry per dtype and kind), and the draws equal the torch
    sampler's (uniform bit for bit)."""
    from torchinit.kernels import sampling as ks

    from torchinit.init.sampling import Dist, counter_sample

    d = Dist("uniform", a=-0.5, b=0.5)
    device = torch.cuda.current_device()
    ks.fill(torch.empty(7, device="cuda"), d, key=1, start=3)
    cache = ks._sample_kernel.device_caches[device][0]
    before = len(cache)
    for key, start, n in [((1 << 62) + 16, 0, 1 << 20), (0x5DEECE66D1234567, 1 << 33, 4099), (2**63 - 1, 5, 77)]:
        out = torch.empty(n, device="cuda")
        ks.fill(out, d, key, start)
        assert torch.equal(out.cpu(), counter_sample(d, key, n, start)), (key, start, n)
    assert len(cache) == before


# The launches a host function makes, recorded on meta tensors (their data_ptr() is the storage offset times the
# item size, so alignment comes out as for a fresh CUDA allocation) and compiled for sm_90 with the specialisation
# Triton's own binder gives them (ints equal to 1 become constants, multiples of 16 get the divisibility hint).
COMPILE_HELPERS = textwrap.dedent(
    """
    import json, re, torch, triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import CUDABackend
    from triton.compiler import ASTSource
    from triton.runtime.jit import create_function_from_signature

    def record(kernels, fn):
        launches = []
        for k in kernels:
            k.run = lambda *args, grid, warmup, _k=k, **kw: launches.append((_k, grid, args, kw))
        try:
            fn()
        finally:
            for k in kernels:
                del k.run
        return launches

    def compile_launch(k, args, kwargs, arch=90):
        options = {o: kwargs.pop(o) for o in list(kwargs) if o in ("num_warps", "enable_fp_fusion")}
        spec = create_function_from_signature(k.signature, k.params, CUDABackend)(*args, **kwargs)[1]
        sig, const, attrs = {}, {}, {}
        for i, (name, (ty, sp)) in enumerate(zip(k.arg_names, spec)):
            sig[name] = ty
            if ty == "constexpr":
                const[name] = sp
            elif sp == "D":
                attrs[(i,)] = [["tt.divisibility", 16]]
        src = ASTSource(fn=k, signature=sig, constexprs=const, attrs=attrs)
        return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)

    def ttir_counts(calls, pattern):
        # (kernel, grid, matches of `pattern` in its TTIR) of each recorded launch, compiled as launched
        return [(k, grid, len(re.findall(pattern, compile_launch(k, args, dict(kw)).asm["ttir"])))
                for k, grid, args, kw in calls]

    def load_layouts(compiled):
        # (threadsPerWarp, order) of each global load's blocked layout in the TTGIR
        ttgir = compiled.asm["ttgir"]
        blocked = dict(re.findall(r"^(#\\w+) = #ttg\\.blocked<\\{(.*?)\\}>$", ttgir, re.M))
        out = []
        for line in ttgir.splitlines():
            if "tt.load" in line and "tt.ptr" in line:
                (enc,) = set(re.findall(r"#blocked\\d*", line))
                fields = dict(re.findall(r"(\\w+) = \\[([\\d, ]*)\\]", blocked[enc]))
                out.append(([int(v) for v in fields["threadsPerWarp"].split(",")],
                            [int(v) for v in fields["order"].split(",")]))
        return out
    """
)

SOFTMAX_COALESCING_SCRIPT = COMPILE_HELPERS + textwrap.dedent(
    """
    from torchinit.kernels import softmax as sm

    kernels = [getattr(sm, n) for n in dir(sm) if n.startswith("_softmax_") and hasattr(getattr(sm, n), "run")]
    res = []
    from benchmarks.static_cost import ptxas_spills

    for shape, dim, dtype in [((32, 64, 14, 14), 1, torch.float32), ((8, 512, 7, 7), 1, torch.bfloat16),
                              ((64, 1000), 0, torch.float16), ((16, 3, 28, 28), 0, torch.float32),
                              ((16, 1000, 64), 1, torch.float32), ((8, 5000, 64), 1, torch.bfloat16)]:
        x = torch.empty(shape, device="meta", dtype=dtype)
        y = torch.empty_like(x)
        calls = record(kernels, lambda: sm.softmax_forward(x, dim, y))
        calls += record(kernels, lambda: sm.softmax_backward(x, y, dim, torch.empty_like(x)))
        for k, grid, args, kw in calls:
            names = dict(zip(k.arg_names, args))
            stride_of = next(v for a, v in names.items() if a.endswith("sn"))  # the reduced dim's stride
            compiled = compile_launch(k, args, dict(kw))
            spills = ptxas_spills(compiled.asm["ptx"])
            res.append({"case": f"{shape} dim={dim} {dtype} {k.__name__}",
                        "spill_bytes": spills["spill_store_bytes"] + spills["spill_load_bytes"]})
            for tpw, order in load_layouts(compiled):
                fast = order[0]  # the axis a warp's threads run along first
                # the column kernels hold the reduced dim on axis 0, the row kernels on axis 1
                reduced_axis = 0 if k.__name__.endswith("_columns") else 1
                res.append({"case": f"{shape} dim={dim} {dtype} {k.__name__}", "threads_along_fast_axis": tpw[fast],
                            "fast_axis_is_reduced": fast == reduced_axis, "reduced_stride": stride_of})
    print("RESULT" + json.dumps(res))
    """
)


def _run_compile_script(script: str):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", script], check=False, env=env, capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1][len("RESULT"):])


@needs_nvidia_tools
def test_softmax_over_a_strided_dim_reads_coalesced_without_spills():
    """Softmax forward and backward over C of NCHW tensors (H*W not a multiple of 16 too) and over dim 0,
    compiled for sm_90 as launched: every global load's warp runs along a unit-stride axis, never along the
    strided reduced dim (the row kernels put the 32 threads of a warp on C, 4*H*W bytes apart: one sector per
    thread, a quarter to an eighth of each sector used)."""
    res = _run_compile_script(SOFTMAX_COALESCING_SCRIPT)
    loads = [r for r in res if "reduced_stride" in r]
    assert loads
    for r in loads:
        assert r["reduced_stride"] != 1, r  # these cases reduce over a strided dim
        assert not (r["fast_axis_is_reduced"] and r["threads_along_fast_axis"] > 1), r
    for r in res:  # and no register spills, one pass (C up to 1000) or chunked (5000), forward and backward
        assert r.get("spill_bytes", 0) == 0, r


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_softmax_over_every_dim_of_nchw(dtype, memory_format):
    """Column kernels (C or N of NCHW, C of channels_last) and row kernels, forward and backward, one pass
    (C = 64) and online (N = 40000 > the one-pass limit), against torch in fp64 rounded once."""
    torch.manual_seed(0)
    for shape in [(8, 64, 14, 14), (40000, 3, 2, 2)]:
        x = (3 * torch.randn(shape, device="cuda")).to(dtype).contiguous(memory_format=memory_format)
        g = torch.randn(shape, device="cuda").to(dtype)
        for dim in (0, 1, -1):
            with ti.use_backend("triton"):
                y, gx = _act_and_grads(lambda t, d=dim: F.softmax(t, d), x, g)
            y_ref, gx_ref = _act_and_grads(lambda t, d=dim: TF.softmax(t.double(), d), x, g.double())
            torch.testing.assert_close(y, y_ref.to(dtype))
            tol = torch.finfo(dtype).eps * gx_ref.abs().max().item()
            torch.testing.assert_close(gx.double(), gx_ref, rtol=4 * torch.finfo(dtype).eps, atol=8 * tol)


@pytest.mark.gpu
def test_fewbit_tables_first_made_during_graph_capture():
    """The few-bit operators captured in a CUDA graph with their device tables made during the capture (the
    kernels compiled before, the table cache emptied): no host-to-device copy is attempted (capture would
    fail), the captured fills run at replay, nothing made during capture is cached, and replay on new data
    equals eager."""
    from torchinit.kernels import launch

    from torchinit.fused.bits import fewbit_quantizer

    bounds, levels = fewbit_quantizer("gelu", 4)  # host tensors, as the operators accept them
    x = torch.randn(1 << 16, device="cuda")
    g = torch.randn_like(x)
    ops = torch.ops.torchinit

    def step():
        y, codes = ops.fewbit_forward(x, bounds, "gelu", 4, 0.0, 0.0, 0.0)
        return y, ops.fewbit_backward(g, codes, levels, 4)

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), ti.use_backend("triton"):
        step()  # compiles the kernels
    torch.cuda.current_stream().wait_stream(stream)
    launch._TABLES.clear()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), ti.use_backend("triton"):
        y, dx = step()
    assert not launch._TABLES
    with torch.no_grad():
        x.copy_(torch.randn_like(x))
    graph.replay()
    with ti.use_backend("triton"):
        y_ref, dx_ref = step()
    assert torch.equal(y, y_ref) and torch.equal(dx, dx_ref)


GATED_DIVISION_SCRIPT = COMPILE_HELPERS + textwrap.dedent(
    """
    from torchinit.kernels import gated
    from torchinit.kernels.math import silu_bwd, silu_fwd

    res = []
    for rows, inner, dtype in [(8, 11008, torch.bfloat16), (4096, 100, torch.float32), (40000, 60000, torch.bfloat16)]:
        x = torch.empty(rows, 2 * inner, device="meta", dtype=dtype)
        flat, out, g = x.view(-1), torch.empty(rows, inner, device="meta", dtype=dtype), None
        g = torch.empty_like(out)
        calls = record([gated._gated_forward_kernel, gated._gated_backward_kernel], lambda: (
            gated.launch_gated_forward(silu_fwd, flat, flat[inner:], out, inner, 2 * inner, (0.0, 0.0, 0.0)),
            gated.launch_gated_backward(silu_fwd, silu_bwd, False, g, flat, flat[inner:], flat, flat[inner:],
                                        inner, 2 * inner, (0.0, 0.0, 0.0))))
        for k, grid, n in ttir_counts(calls, r"arith\\.(?:div|rem)[su]i"):
            res.append({"case": f"{rows}x{inner} {dtype} {k.__name__} grid={grid}", "divisions": n})
    print("RESULT" + json.dumps(res))
    """
)


@needs_nvidia_tools
def test_gated_split_has_no_division_per_element():
    """The gated kernels on a split tensor (GLU over the last dim; rows of 11008, of 100, and 64-bit offsets
    past 2**31 elements), compiled as launched: no integer division or modulo at all (the old kernels took
    (k // inner, k % inner) per element, 64-bit past 2**31 elements)."""
    res = _run_compile_script(GATED_DIVISION_SCRIPT)
    assert len(res) == 6
    for r in res:
        assert r["divisions"] == 0, r


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(4096, 2 * 11008), (1000, 2 * 130), (7, 2 * 3), (3, 2 * (1 << 26) + 2)])
def test_gated_split_rows_against_torch(shape):
    """swiglu over the last dim (2-D grid of rows and column tiles; the last shape needs blocks of 2048 to keep
    its tiles within grid axis 1), forward and backward against torch's composite."""
    torch.manual_seed(0)
    x = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    g = torch.randn(shape[0], shape[1] // 2, device="cuda", dtype=torch.bfloat16)

    def ref(t):
        a, b = t.chunk(2, -1)
        return TF.silu(a) * b

    with ti.use_backend("triton"):
        y, gx = _act_and_grads(lambda t: ti.fused.swiglu(t, dim=-1), x, g)
    y_ref, gx_ref = _act_and_grads(ref, x, g)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(gx, gx_ref)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(8, 64, 56, 56), (4, 512, 7, 7), (3, 5, 2, 2)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_prelu_per_channel_weight_gather(shape, memory_format, dtype):
    """Per-channel PReLU (the weight gathered by kernels.elementwise.channel_index: channel runs longer and
    shorter than a block, channels_last's runs of 1), forward and input gradient against torch."""
    torch.manual_seed(0)
    x = torch.randn(shape, device="cuda").to(dtype).contiguous(memory_format=memory_format)
    w = torch.rand(shape[1], device="cuda").to(dtype)
    g = torch.randn_like(x)
    with ti.use_backend("triton"):
        y, gx = _act_and_grads(lambda t: F.prelu(t, w), x, g)
    y_ref, gx_ref = _act_and_grads(lambda t: TF.prelu(t, w), x, g)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(gx, gx_ref)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["normal", "trunc_normal"])
def test_sampler_normal_and_truncated_on_the_gpu(kind):
    """The normal sampler's own sin/cos of the Box-Muller angle and the truncated normal's FMA Horner steps,
    compiled: within 8 ulps (relative, floored at 1e-3) of the torch sampler over 2**20 draws, as the
    interpreter tests hold them."""
    from torchinit.kernels import sampling as ks

    from torchinit.init.sampling import Dist, counter_sample

    d = Dist("normal", 0.0, 1.0) if kind == "normal" else Dist("trunc_normal", 0.0, 1.0, -2.0, 2.0)
    n, key = 1 << 20, 0x1234_5678_9ABC_DEF
    out = torch.empty(n, device="cuda")
    ks.fill(out, d, key, 0)
    want = counter_sample(d, key, n, 0)
    ulps = (out.cpu() - want).abs() / torch.finfo(torch.float32).eps / want.abs().clamp(min=1e-3)
    assert ulps.max().item() <= 8


BIAS_ACT_INDEX_SCRIPT = COMPILE_HELPERS + textwrap.dedent(
    """
    from torchinit.kernels import channel_reduce as cr
    from torchinit.kernels.math import gelu_fwd

    res = []
    for rows, C, dtype in [(4096, 768, torch.bfloat16), (64, 11008, torch.float32), (1 << 16, 40000, torch.bfloat16)]:
        x = torch.empty(rows, C, device="meta", dtype=dtype)
        b = torch.empty(C, device="meta", dtype=dtype)
        calls = record([cr._bias_act_forward_kernel], lambda: cr.launch_bias_act_forward(
            gelu_fwd, x, b, torch.empty_like(x), C, 1, (0.0, 0.0, 0.0), dtype))
        for _, grid, n in ttir_counts(calls, r"arith\\.(?:div|rem)[su]i|tt\\.mulhiui"):
            res.append({"case": f"{rows}x{C} {dtype} grid={grid}", "index_ops": n})
    print("RESULT" + json.dumps(res))
    """
)


@needs_nvidia_tools
def test_bias_act_forward_along_the_last_dim_computes_no_channel_index():
    """bias_act forward with the bias along a last dim of 768, 11008 and 40000 channels (past 2**31 elements for
    the last), compiled as launched: no division, modulo or multiply-high at all, the channel is the column
    of a (rows, channel tiles) grid (the old kernel took two multiply-high divisions per element)."""
    res = _run_compile_script(BIAS_ACT_INDEX_SCRIPT)
    assert len(res) == 3
    for r in res:
        assert r["index_ops"] == 0, r


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(4096, 768), (7, 3008), (7, 3000), (1000, 100), (3, 5, 144)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_bias_act_last_dim_against_torch(shape, dtype):
    """bias_act along the last dim (row-tile grid from 128 channels, multiples of 16; the flat path else) against
    torch."""
    torch.manual_seed(0)
    x = torch.randn(shape, device="cuda").to(dtype)
    b = torch.randn(shape[-1], device="cuda").to(dtype)
    y = ti.bias_act(x, b, "gelu", dim=-1)
    torch.testing.assert_close(y, TF.gelu(x + b))
