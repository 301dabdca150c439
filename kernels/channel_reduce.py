"""Element-wise kernels over a ``(outer, channels, inner)`` view with per-channel partial sums.

A dense tensor (any layout without gaps) and one of its dims ``dim`` are seen as a flat storage
array ``offset = (o * C + c) * inner + i`` with ``C = size(dim)`` and ``inner = stride(dim)``: the
same channel index ``(offset // inner) % C`` the generic kernels in ``elementwise.py`` use. One
program owns a ``BLOCK_J x BLOCK_C`` tile (``j = o * inner + i`` along the rows, channels along the
columns) and walks ``ITERS`` tiles down the rows, so each program writes *one* row of partial sums
per channel and quantity; the host sums those rows (a buffer ``programs x C``, tiny next to the
tensor). That is how a backward pass reduces a bias gradient or a learnable parameter's gradient
without a second pass over the tensor.

* :func:`launch_bias_act_forward`: ``y = act(round(x + bias[c]))`` in one pass (a bias along the last dim
  of at least ``ROW_TILE_MIN`` channels, a multiple of 16: a (rows, channel tiles) grid, the channel is the
  column).
* :func:`launch_channel_backward`: ``dx = act_bwd(g, s)`` and the per-channel sums of ``dx`` (bias
  gradient, with the bias re-added to the saved input) or of the activation's per-element parameter
  gradients ``<name>_pgrad`` from ``math.py`` (PReLU's weight, Swish's beta, StarReLU's scale/bias).

Math runs in fp32 (fp64 for fp64 tensors), partial sums too.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .elementwise import (
    block_offsets,
    compute_dtype,
    fast_div,
    fast_divisor,
    param_buffer,
    wide_index,
)
from .launch import on_device
from .rounding import round_to, to_dtype

BLOCK_CUDA = 2048  # elements per tile on a GPU
BLOCK_INTERPRETER = 8192  # the interpreter pays per program: few, large tiles
ROW_TILE_MIN = 128  # bias_act forward: rows (channels along the last dim) this long, multiples of 16, take the
# (rows, channel tiles) grid


@triton.jit
def _bias_act_forward_kernel(
    x_ptr, b_ptr, y_ptr, n, C, inner, params_ptr, inner_magic, inner_shift, c_magic, c_shift,
    FN: tl.constexpr, Z_DTYPE: tl.constexpr, COMPUTE: tl.constexpr, BLOCK: tl.constexpr, WIDE: tl.constexpr,
    INNER_ONE: tl.constexpr,
):
    if INNER_ONE:  # bias along the contiguous last dim: grid (rows, channel tiles), the channel is the column
        row = tl.program_id(0)
        if WIDE:
            row = row.to(tl.int64)
        channel = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        offs = row * C + channel
        mask = channel < C
    else:
        offs = block_offsets(BLOCK, WIDE)
        mask = offs < n
        if WIDE:
            channel = (offs // inner) % C
        else:  # the channel index by multiply-high divisions (fast_div)
            j = fast_div(offs, inner_magic, inner_shift)
            channel = j - fast_div(j, c_magic, c_shift) * C
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
    b = tl.load(b_ptr + channel, mask=mask, other=0.0).to(COMPUTE)
    z = round_to(x + b, Z_DTYPE, COMPUTE)  # eager rounds x + bias to its dtype before the activation
    p0 = tl.load(params_ptr).to(COMPUTE)
    p1 = tl.load(params_ptr + 1).to(COMPUTE)
    p2 = tl.load(params_ptr + 2).to(COMPUTE)
    tl.store(y_ptr + offs, to_dtype(FN(z, p0, p1, p2), y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _weight(buffer_value, ptr, c, cmask, MODE: tl.constexpr, COMPUTE: tl.constexpr):
    if MODE == 1:
        return tl.load(ptr).to(COMPUTE)
    elif MODE == 2:
        return tl.load(ptr + c, mask=cmask, other=0.0).to(COMPUTE)
    else:
        return buffer_value


@triton.jit
def _channel_backward_kernel(
    g_ptr, s_ptr, b_ptr, w0_ptr, w1_ptr, dx_ptr, part_ptr, params_ptr,
    J, C, inner, n_programs_j, ITERS,
    BWD: tl.constexpr, PGRAD: tl.constexpr, BIAS: tl.constexpr, SAVES_OUTPUT: tl.constexpr,
    W0_MODE: tl.constexpr, W1_MODE: tl.constexpr, N_PART: tl.constexpr, Z_DTYPE: tl.constexpr,
    COMPUTE: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_C: tl.constexpr,
):
    pid_c = tl.program_id(0)  # channel tiles on axis 0 (up to 2**31 - 1 programs; axis 1 allows 65,535)
    pid_j = tl.program_id(1).to(tl.int64)
    c1 = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    c = c1[None, :]
    cmask = c < C
    p0 = _weight(tl.load(params_ptr).to(COMPUTE), w0_ptr, c, cmask, W0_MODE, COMPUTE)
    p1 = _weight(tl.load(params_ptr + 1).to(COMPUTE), w1_ptr, c, cmask, W1_MODE, COMPUTE)
    p2 = tl.load(params_ptr + 2).to(COMPUTE)
    if BIAS:
        bias = tl.load(b_ptr + c, mask=cmask, other=0.0).to(COMPUTE)
    acc0 = tl.zeros([BLOCK_C], dtype=COMPUTE)
    acc1 = tl.zeros([BLOCK_C], dtype=COMPUTE)
    for it in range(ITERS):
        j = ((pid_j * ITERS + it) * BLOCK_J + tl.arange(0, BLOCK_J))[:, None]
        mask = (j < J) & cmask
        offs = ((j // inner) * C + c) * inner + j % inner
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
        s = tl.load(s_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
        if BIAS:
            if not SAVES_OUTPUT:
                s = round_to(s + bias, Z_DTYPE, COMPUTE)
        dx = BWD(g, s, p0, p1, p2)
        if BIAS:
            dx = round_to(dx, Z_DTYPE, COMPUTE)  # eager's bias gradient sums the rounded gradient of x + bias
            acc0 += tl.sum(tl.where(mask, dx, 0.0), axis=0)
        tl.store(dx_ptr + offs, to_dtype(dx, dx_ptr.dtype.element_ty), mask=mask)
        if N_PART > 0:
            d0, d1 = PGRAD(g, s, p0, p1, p2)
            acc0 += tl.sum(tl.where(mask, d0, 0.0), axis=0)
            if N_PART > 1:
                acc1 += tl.sum(tl.where(mask, d1, 0.0), axis=0)
    row = pid_j * C + c1
    tl.store(part_ptr + row, acc0, mask=c1 < C)
    if N_PART > 1:
        tl.store(part_ptr + n_programs_j * C + row, acc1, mask=c1 < C)


def geometry(t: torch.Tensor, dim: int | None, channels: int) -> tuple[int, int]:
    """``(C, inner)`` of a dense tensor ``t`` along ``dim`` (``dim=None``: one channel over everything)."""
    if dim is None or channels == 1:
        return 1, max(t.numel(), 1)
    return channels, t.stride(dim)


def _tiles(J: int, C: int, inner: int, device: torch.device) -> tuple[int, int, int, int]:
    """``(BLOCK_J, BLOCK_C, ITERS, programs along j)`` for a backward tile walk."""
    interp = device.type == "cpu"
    block = BLOCK_INTERPRETER if interp else BLOCK_CUDA
    # channels are contiguous only when inner == 1: then tile across them, else down j (contiguous i)
    block_c = min(triton.next_power_of_2(C), 64 if not interp else 256) if inner == 1 else 1
    block_j = max(block // block_c, 1)
    tiles_j = triton.cdiv(max(J, 1), block_j)
    # keep the partial-sum buffer small: at most ~1024 rows on a GPU (one row per program)
    iters = 1 if interp else max(1, triton.cdiv(tiles_j, 1024))
    return block_j, block_c, iters, triton.cdiv(tiles_j, iters)


def launch_bias_act_forward(fn, x: torch.Tensor, bias: torch.Tensor, out: torch.Tensor, C: int, inner: int,
                            scalars, z_dtype: torch.dtype) -> torch.Tensor:
    """``out = fn(round(x + bias[(k // inner) % C]))`` over storage position ``k`` (x, out dense, same strides)."""
    n = x.numel()
    if n == 0:
        return out
    block = BLOCK_INTERPRETER if x.device.type == "cpu" else 1024
    compute = compute_dtype(torch.float64 if torch.float64 in (x.dtype, bias.dtype) else x.dtype)
    params = param_buffer(tuple(float(v) for v in scalars), x.device, torch.float64 if compute == tl.float64
                          else torch.float32)
    # a bias along the contiguous last dim (after a Linear) with rows of at least ROW_TILE_MIN channels, a
    # multiple of 16 (Triton then knows every row aligned and whole vectors inside a row): a grid of (rows,
    # channel tiles), the channel index is the column (no division, the bias loaded as a vector); else one
    # flat range with multiply-high divisions (short rows would leave most of a row tile idle, unaligned rows
    # would load element by element)
    row_tiles = inner == 1 and C >= ROW_TILE_MIN and C % 16 == 0
    if row_tiles:
        block = max(min(block, triton.next_power_of_2(C)), triton.next_power_of_2(triton.cdiv(C, 65535)))
        grid = (n // C, triton.cdiv(C, block))
    else:
        grid = (triton.cdiv(n, block),)
    warps = 4 if x.device.type == "cpu" else max(1, min(32, block // 256))
    with on_device(x.device):
        _bias_act_forward_kernel[grid](
            x, bias, out, n, C, inner, params, *fast_divisor(inner), *fast_divisor(C),
            FN=fn, Z_DTYPE=_tl_dtype(z_dtype), COMPUTE=compute, BLOCK=block, WIDE=wide_index(n, block),
            INNER_ONE=row_tiles, num_warps=warps,
        )
    return out


def _tl_dtype(dtype: torch.dtype):
    return {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32,
            torch.float64: tl.float64}[dtype]


def launch_channel_backward(bwd, grad: torch.Tensor, saved: torch.Tensor, dx: torch.Tensor, C: int, inner: int,
                            scalars, *, bias: torch.Tensor | None = None, saves_output: bool = False,
                            z_dtype: torch.dtype | None = None, pgrad=None, weights=(None, None),
                            n_part: int = 0) -> torch.Tensor | None:
    """Write ``dx = bwd(g, s)`` and return the per-channel sums ``(n_sums, C)`` (fp32; fp64 for fp64).

    With ``bias`` the sum is of ``dx`` (the bias gradient) and the activation's argument is
    ``saved + bias`` (or the saved output when ``saves_output``); with ``pgrad`` the sums are of the
    ``n_part`` per-element parameter gradients. ``grad``, ``saved``, ``dx`` dense with equal strides.
    Returns None when nothing is summed.
    """
    n = saved.numel()
    acc = torch.float64 if torch.float64 in (saved.dtype, grad.dtype) else torch.float32
    n_sums = 1 if bias is not None else n_part
    J = n // C if C else 0
    block_j, block_c, iters, programs_j = _tiles(J, C, inner, saved.device)
    if n == 0:
        return torch.zeros((n_sums, C), dtype=acc, device=saved.device) if n_sums else None
    part = torch.empty((max(n_sums, 1), programs_j, C), dtype=acc, device=saved.device)  # every row is written
    modes, ptrs = [], []
    for w in weights:
        if w is None:
            modes.append(0)
            ptrs.append(saved)
        else:
            modes.append(1 if w.numel() == 1 else 2)
            ptrs.append(w.detach().contiguous())
    params = param_buffer(tuple(float(v) for v in scalars), saved.device, acc)
    grid = backward_grid(programs_j, C, block_c)
    with on_device(saved.device):
        _channel_backward_kernel[grid](
            grad, saved, bias if bias is not None else saved, ptrs[0], ptrs[1], dx, part, params,
            J, C, inner, programs_j, iters,
            BWD=bwd, PGRAD=pgrad if pgrad is not None else bwd, BIAS=bias is not None, SAVES_OUTPUT=saves_output,
            W0_MODE=modes[0], W1_MODE=modes[1], N_PART=0 if bias is not None else n_part,
            Z_DTYPE=_tl_dtype(z_dtype or saved.dtype), COMPUTE=compute_dtype(acc), BLOCK_J=block_j, BLOCK_C=block_c,
            num_warps=4,
        )
    return part.sum(1) if n_sums else None


def backward_grid(programs_j: int, C: int, block_c: int) -> tuple[int, int]:
    """The backward launch grid: channel tiles on axis 0 (limit 2**31 - 1), row programs on axis 1 (limit
    65,535; at most ~1024 on a GPU, see ``_tiles``). Channels on axis 1 failed to launch past 65,535."""
    return (triton.cdiv(C, block_c), programs_j)
