"""Launch hazards the interpreter cannot show (issue 12): the grid-shape arithmetic on CPU, and on a GPU
(``-m gpu``, skipped without CUDA) the launches themselves against torch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as TF

import torchinit as ti
import torchinit.functional as F

CUDA_GRID_Y_LIMIT = 65_535  # grid axes 1 and 2 (axis 0: 2**31 - 1)


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
