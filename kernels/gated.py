"""Generic gated-unit kernels: ``out = up * act(gate)`` over any activation of ``math.py``.

One forward and one backward kernel serve torch's ``glu`` (up = first half, gate = second half,
act = sigmoid) and every GLU variant built on the same math. The halves are addressed in place
(no chunk copies): output element ``k`` sits in row ``k // inner`` at column ``k % inner``; the gate
and the up value of that element are at ``row * row_stride + column`` from their own base pointers. Rows and
columns come from a 2-D grid (rows on axis 0, column tiles on axis 1): no division or modulo per element.
For a tensor split along ``dim`` into two halves, ``inner`` is the size of a half times the product
of the sizes after ``dim`` and ``row_stride`` is twice that; for two separate tensors ``inner`` is the
element count and there is one row: a flat 1-D grid, the source offset is the output offset.

Backward recomputes the activation from the saved inputs (nothing else is kept): with ``s`` the
value the math's backward expects (the activation's output where it saves its output, else the gate),
``d_up = g * act(gate)`` and ``d_gate = act_bwd(g * up, s)``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .elementwise import (
    BLOCK_CUDA,
    BLOCK_INTERPRETER,
    block_offsets,
    compute_dtype,
    param_buffer,
    wide_index,
)
from .launch import on_device
from .rounding import round_to, to_dtype


@triton.jit
def _indices(n, inner, row_stride, BLOCK: tl.constexpr, WIDE: tl.constexpr, ONE_ROW: tl.constexpr):
    # (output offsets, source offsets of gate and up, mask) of this program's BLOCK elements
    if ONE_ROW:  # two separate tensors: one flat range, the source offset is the output offset
        offs = block_offsets(BLOCK, WIDE)
        return offs, offs, offs < n
    else:  # a split tensor, grid (rows, column tiles): row and columns from the program ids, no division
        row = tl.program_id(0)
        if WIDE:
            row = row.to(tl.int64)
        col = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        return row * inner + col, row * row_stride + col, col < inner


@triton.jit
def _gated_forward_kernel(
    gate_ptr, up_ptr, out_ptr, n, inner, row_stride, params_ptr,
    FN: tl.constexpr, ROUND_ACT: tl.constexpr, COMPUTE: tl.constexpr, BLOCK: tl.constexpr, WIDE: tl.constexpr,
    ONE_ROW: tl.constexpr,
):
    offs, src, mask = _indices(n, inner, row_stride, BLOCK, WIDE, ONE_ROW)
    gate = tl.load(gate_ptr + src, mask=mask, other=0.0).to(COMPUTE)
    up = tl.load(up_ptr + src, mask=mask, other=0.0).to(COMPUTE)
    p0 = tl.load(params_ptr).to(COMPUTE)
    p1 = tl.load(params_ptr + 1).to(COMPUTE)
    p2 = tl.load(params_ptr + 2).to(COMPUTE)
    act = FN(gate, p0, p1, p2)
    if ROUND_ACT:  # the eager composite act(gate) * up rounds the activation to the storage dtype first
        act = round_to(act, out_ptr.dtype.element_ty, COMPUTE)
    tl.store(out_ptr + offs, to_dtype(up * act, out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _gated_backward_kernel(
    g_ptr, gate_ptr, up_ptr, dgate_ptr, dup_ptr, n, inner, row_stride, params_ptr,
    FWD: tl.constexpr, BWD: tl.constexpr, SAVES_OUTPUT: tl.constexpr, ROUND_ACT: tl.constexpr,
    COMPUTE: tl.constexpr, BLOCK: tl.constexpr, WIDE: tl.constexpr, ONE_ROW: tl.constexpr,
):
    offs, src, mask = _indices(n, inner, row_stride, BLOCK, WIDE, ONE_ROW)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
    gate = tl.load(gate_ptr + src, mask=mask, other=0.0).to(COMPUTE)
    up = tl.load(up_ptr + src, mask=mask, other=0.0).to(COMPUTE)
    p0 = tl.load(params_ptr).to(COMPUTE)
    p1 = tl.load(params_ptr + 1).to(COMPUTE)
    p2 = tl.load(params_ptr + 2).to(COMPUTE)
    act = FWD(gate, p0, p1, p2)
    act_stored = act
    if ROUND_ACT:
        act_stored = round_to(act, dup_ptr.dtype.element_ty, COMPUTE)
    if SAVES_OUTPUT:
        s = act
    else:
        s = gate
    d_gate = BWD(g * up, s, p0, p1, p2)
    tl.store(dup_ptr + src, to_dtype(g * act_stored, dup_ptr.dtype.element_ty), mask=mask)
    tl.store(dgate_ptr + src, to_dtype(d_gate, dgate_ptr.dtype.element_ty), mask=mask)


def _grid(n: int, inner: int, device: torch.device) -> tuple[tuple[int, ...], int, int, bool]:
    """``(grid, BLOCK, num_warps, ONE_ROW)``: one flat range for one row (two separate tensors), else a grid of
    (rows, column tiles) with blocks no longer than a row needs (at least 128 elements; long enough that the
    tiles fit grid axis 1, at most 65,535)."""
    block = BLOCK_INTERPRETER if device.type == "cpu" else BLOCK_CUDA
    if inner >= n:
        return (triton.cdiv(n, block),), block, 4, True
    block = max(min(block, triton.next_power_of_2(inner)), 128, triton.next_power_of_2(triton.cdiv(inner, 65535)))
    warps = max(1, min(32, block // 256)) if device.type != "cpu" else 4
    return (n // inner, triton.cdiv(inner, block)), block, warps, False


def launch_gated_forward(fn, gate: torch.Tensor, up: torch.Tensor, out: torch.Tensor,
                         inner: int, row_stride: int, scalars, round_act: bool = False) -> torch.Tensor:
    """``out[k] = up[src(k)] * fn(gate[src(k)])``; ``gate``/``up`` may be views into one buffer."""
    n = out.numel()
    if n == 0:
        return out
    grid, block, warps, one_row = _grid(n, inner, out.device)
    params = param_buffer(tuple(float(v) for v in scalars), out.device, out.dtype)
    with on_device(out.device):
        _gated_forward_kernel[grid](
            gate, up, out, n, inner, row_stride, params,
            FN=fn, ROUND_ACT=round_act, COMPUTE=compute_dtype(out.dtype), BLOCK=block,
            WIDE=wide_index(max(n, row_stride * triton.cdiv(n, inner)), block), ONE_ROW=one_row, num_warps=warps,
        )
    return out


def launch_gated_backward(fwd, bwd, saves_output: bool, grad: torch.Tensor, gate: torch.Tensor, up: torch.Tensor,
                          d_gate: torch.Tensor, d_up: torch.Tensor, inner: int, row_stride: int, scalars,
                          round_act: bool = False) -> None:
    """Write both input gradients of ``up * act(gate)`` (``d_gate``/``d_up`` may be halves of one buffer)."""
    n = grad.numel()
    if n == 0:
        return
    grid, block, warps, one_row = _grid(n, inner, grad.device)
    params = param_buffer(tuple(float(v) for v in scalars), grad.device, grad.dtype)
    with on_device(grad.device):
        _gated_backward_kernel[grid](
            grad, gate, up, d_gate, d_up, n, inner, row_stride, params,
            FWD=fwd, BWD=bwd, SAVES_OUTPUT=saves_output, ROUND_ACT=round_act, COMPUTE=compute_dtype(grad.dtype),
            BLOCK=block, WIDE=wide_index(max(n, row_stride * triton.cdiv(n, inner)), block), ONE_ROW=one_row,
            num_warps=warps,
        )
