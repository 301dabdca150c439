"""Packed codes for backward: a 1-bit mask (exact) or a few-bit derivative code (approximate).

Forward computes the activation and, per element, a ``BITS``-bit code packed ``8 // BITS`` to a
byte (element ``k``'s code sits at bits ``BITS * (k % per_byte)`` of byte ``k // per_byte``, over the
storage order of a dense tensor). Backward reads the incoming gradient and the codes only.

* Exact mode (``BITS = 1``), for activations whose derivative takes two values: the bit says which.
  The bit is computed with the activation's own backward math from ``math.py``:
  ``bit = bwd(1, s) != bwd(1, S_OFF)`` (``s`` the value the formula saves), and backward runs
  ``bwd(g, S_ON if bit else S_OFF)`` -- the same formula on a stand-in value on the same side of
  every branch, so the gradient is bit-for-bit the one the saved tensor would give.
* Few-bit mode (``BITS`` in 1, 2, 4; Novikov et al., "Few-Bit Backward", 2023): the code is the
  index of the interval of ``x`` among ``2**BITS - 1`` sorted boundaries, and backward multiplies
  the gradient by that interval's derivative level (boundaries and levels fitted on the host).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .elementwise import (
    PARAM_BUFFER,
    compute_dtype,
    load_params,
    param_args,
    param_buffer,
)
from .launch import on_device, table_on
from .rounding import round_to, to_dtype

BYTES_CUDA = 256  # bytes of codes per program (x 8 // BITS elements)
BYTES_INTERPRETER = 1024
P1_FROM_BUFFER = tl.constexpr(PARAM_BUFFER)  # the bits kernels take a weight for p0 only


@triton.jit
def _byte_tile(BYTES: tl.constexpr, PER: tl.constexpr):
    """This program's tile: its first element offset, its ``BYTES`` byte rows, the ``PER`` lanes of a byte, and
    the element offsets ``[BYTES, PER]`` (element ``k``'s code sits in lane ``k % PER`` of byte ``k // PER``)."""
    pid = tl.program_id(0).to(tl.int64)
    rows = pid * BYTES + tl.arange(0, BYTES)
    lane = tl.arange(0, PER)
    return pid * (BYTES * PER), rows, lane, rows[:, None] * PER + lane[None, :]


@triton.jit
def _pack_forward_kernel(
    x_ptr, y_ptr, code_ptr, n, n_bytes, params_ptr, w_ptr, channel_stride, channels, surrogate_ptr, bounds_ptr,
    FWD: tl.constexpr, BWD: tl.constexpr, SAVES_OUTPUT: tl.constexpr, W_MODE: tl.constexpr,
    FEWBIT: tl.constexpr, BITS: tl.constexpr, N_BOUNDS: tl.constexpr, COMPUTE: tl.constexpr, BYTES: tl.constexpr,
):
    PER: tl.constexpr = 8 // BITS
    base, rows, lane, offs = _byte_tile(BYTES, PER)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
    p0, p1, p2 = load_params(params_ptr, w_ptr, w_ptr, offs, base, channel_stride, channels, W_MODE,
                             P1_FROM_BUFFER, COMPUTE, BYTES * PER)
    y = FWD(x, p0, p1, p2)
    tl.store(y_ptr + offs, to_dtype(y, y_ptr.dtype.element_ty), mask=mask)
    if FEWBIT:
        code = tl.zeros([BYTES, PER], dtype=tl.int32)
        for k in tl.static_range(N_BOUNDS):
            code += (x > tl.load(bounds_ptr + k).to(COMPUTE)).to(tl.int32)
    else:
        if SAVES_OUTPUT:
            s = round_to(y, y_ptr.dtype.element_ty, COMPUTE)  # the saved output is the rounded one
        else:
            s = x
        one = tl.full([BYTES, PER], 1.0, COMPUTE)
        off = tl.load(surrogate_ptr + 1).to(COMPUTE)
        code = (BWD(one, s, p0, p1, p2) != BWD(one, tl.full([BYTES, PER], 0.0, COMPUTE) + off, p0, p1, p2)).to(tl.int32)
    code = tl.where(mask, code, 0)
    packed = tl.sum(code << (lane[None, :] * BITS), axis=1)
    tl.store(code_ptr + rows, packed.to(tl.uint8), mask=rows < n_bytes)


@triton.jit
def _unpack_backward_kernel(
    g_ptr, code_ptr, dx_ptr, n, params_ptr, w_ptr, channel_stride, channels, surrogate_ptr, levels_ptr,
    BWD: tl.constexpr, W_MODE: tl.constexpr, FEWBIT: tl.constexpr, BITS: tl.constexpr,
    COMPUTE: tl.constexpr, BYTES: tl.constexpr,
):
    PER: tl.constexpr = 8 // BITS
    base, rows, lane, offs = _byte_tile(BYTES, PER)
    mask = offs < n
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
    packed = tl.load(code_ptr + rows, mask=rows * PER < n, other=0).to(tl.int32)
    code = (packed[:, None] >> (lane[None, :] * BITS)) & ((1 << BITS) - 1)
    if FEWBIT:
        dx = g * tl.load(levels_ptr + code, mask=mask, other=0.0).to(COMPUTE)
    else:
        p0, p1, p2 = load_params(params_ptr, w_ptr, w_ptr, offs, base, channel_stride, channels,
                                 W_MODE, P1_FROM_BUFFER, COMPUTE, BYTES * PER)
        on = tl.load(surrogate_ptr).to(COMPUTE)
        off = tl.load(surrogate_ptr + 1).to(COMPUTE)
        dx = BWD(g, tl.where(code != 0, on, off), p0, p1, p2)
    tl.store(dx_ptr + offs, to_dtype(dx, dx_ptr.dtype.element_ty), mask=mask)


def _launch_args(t: torch.Tensor, scalars, weight, channel_dim: int, surrogates, table):
    """``(bytes per program, the weight's W_MODE, the kernel arguments after n)`` for tensor ``t``: the scalar
    and stand-in buffers, the weight's pointer and channel geometry, and the few-bit ``table`` on ``t``'s device
    (:func:`~torchinit.kernels.launch.table_on`: no copy or cast per call; the stand-in buffer, never read,
    when None)."""
    nb = BYTES_INTERPRETER if t.device.type == "cpu" else BYTES_CUDA
    params = param_buffer(tuple(float(v) for v in scalars), t.device, t.dtype)
    sur = param_buffer((float(surrogates[0]), float(surrogates[1]), 0.0), t.device, t.dtype)
    (w,), (mode,), cstride, channels = param_args((weight,), t, channel_dim, nb * 8)
    buf = torch.float64 if t.dtype == torch.float64 else torch.float32
    table_t = table_on(table, t.device, buf) if table is not None else sur
    return nb, mode, (params, w, cstride, channels, sur, table_t)


def launch_pack_forward(fwd, bwd, saves_output: bool, x: torch.Tensor, y: torch.Tensor, codes: torch.Tensor,
                        scalars, weight=None, channel_dim: int = 1, surrogates=(1.0, 0.0), bounds=None,
                        bits: int = 1) -> None:
    """Write ``y = fwd(x)`` and the packed codes (exact mask when ``bounds`` is None, else few-bit).

    ``bounds`` may be on the host or on ``x``'s device, in any floating dtype: no copy or cast per call
    (:func:`~torchinit.kernels.launch.table_on`)."""
    n = x.numel()
    if n == 0:
        return
    nb, mode, args = _launch_args(x, scalars, weight, channel_dim, surrogates, bounds)
    with on_device(x.device):
        _pack_forward_kernel[(triton.cdiv(codes.numel(), nb),)](
            x, y, codes, n, codes.numel(), *args,
            FWD=fwd, BWD=bwd, SAVES_OUTPUT=saves_output, W_MODE=mode, FEWBIT=bounds is not None, BITS=bits,
            N_BOUNDS=bounds.numel() if bounds is not None else 0, COMPUTE=compute_dtype(x.dtype), BYTES=nb,
            num_warps=4,
        )


def launch_unpack_backward(bwd, grad: torch.Tensor, codes: torch.Tensor, dx: torch.Tensor, scalars, weight=None,
                           channel_dim: int = 1, surrogates=(1.0, 0.0), levels=None, bits: int = 1) -> None:
    """Write ``dx`` from ``grad`` and the packed codes (``grad``/``dx`` dense with equal strides); ``levels`` as
    ``bounds`` in :func:`launch_pack_forward`."""
    n = grad.numel()
    if n == 0:
        return
    nb, mode, args = _launch_args(grad, scalars, weight, channel_dim, surrogates, levels)
    with on_device(grad.device):
        _unpack_backward_kernel[(triton.cdiv(codes.numel(), nb),)](
            grad, codes, dx, n, *args,
            BWD=bwd, W_MODE=mode, FEWBIT=levels is not None, BITS=bits, COMPUTE=compute_dtype(grad.dtype),
            BYTES=nb, num_warps=4,
        )
