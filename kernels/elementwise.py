"""One generic forward and one generic backward Triton kernel, built over the math in ``math.py``.

The activation is passed to the kernel as a ``tl.constexpr`` Triton function, so each activation
gets its own compiled specialisation of the same two kernels.

Layout: the kernels walk the tensor's *storage* as a flat array. Any tensor that is non-overlapping
and dense (contiguous, channels_last, a transposed matrix, any permutation of a contiguous tensor)
is handled with no copy: the caller (``torchinit/ops.py``) allocates the output with the same
strides (``torch.empty_like``), so storage position ``i`` of the output is the activation of storage
position ``i`` of the input. Only a tensor with gaps (a strided slice, an expanded view) is copied
into a dense layout first, by the caller.

Parameters: ``p0..p2`` come from a small cached device buffer (``launch.device_table``: no host-to-device
copy, no recompilation per value). A learnable parameter tensor can take the place of ``p0`` or ``p1``:
``P?_MODE`` is 0 for the buffer, 1 for a one-element tensor, 2 for a per-channel tensor gathered by
the element's channel index ``(i // channel_stride) % channels`` (valid for every dense layout; ``channel_index``:
one integer division per program, none per element).

Offsets are 64-bit for tensors near or past 2**31 elements (``WIDE``), 32-bit below. Math runs in fp32 (fp64 for fp64).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import device_table, on_device
from .rounding import to_dtype

BLOCK_CUDA = 1024
BLOCK_INTERPRETER = 8192  # the interpreter costs ~ms per program instance: few, large blocks
PARAM_BUFFER = 0
PARAM_SCALAR_TENSOR = 1
PARAM_PER_CHANNEL = 2  # per-channel tensor, channel runs at least a program's span
PARAM_PER_CHANNEL_SHORT = 3  # per-channel tensor, shorter runs (channels_last, small H * W)
PARAM_PER_CHANNEL_EXACT = 4  # per-channel tensor, a million channels or more


def per_channel_mode(channel_stride: int, channels: int, span: int) -> int:
    """The ``P?_MODE`` of a per-channel parameter tensor for programs of ``span`` consecutive offsets."""
    if channel_stride >= span:
        return PARAM_PER_CHANNEL
    if channels + 2 * span + 2 < 2**20:
        return PARAM_PER_CHANNEL_SHORT
    return PARAM_PER_CHANNEL_EXACT


def wide_index(n: int, block: int) -> bool:
    """Whether offsets up to ``n`` (rounded up to a block) need 64-bit arithmetic."""
    return n + block >= 2**31


def fast_divisor(d: int) -> tuple[int, int]:
    """``(magic, shift)`` that divide any ``0 <= n < 2**31`` by ``d >= 1`` with one multiply-high
    (Granlund and Montgomery's round-up method): ``n // d == (umulhi(n, magic) + n) >> shift`` in uint32
    arithmetic. ``magic`` is returned as its int32 bit pattern (a kernel argument)."""
    shift = (d - 1).bit_length()
    magic = ((1 << 32) * ((1 << shift) - d)) // d + 1
    return (magic - (1 << 32) if magic >= (1 << 31) else magic), shift


@triton.jit
def fast_div(n, magic, shift):
    """``n // d`` for int32 ``0 <= n < 2**31`` and ``(magic, shift) = fast_divisor(d)``: a multiply-high, an
    add and a shift instead of a division (a runtime 32-bit division costs ~20 instructions on a GPU)."""
    u = n.to(tl.uint32, bitcast=True)
    q = (tl.umulhi(u, magic.to(tl.uint32, bitcast=True)) + u) >> shift.to(tl.uint32, bitcast=True)
    return q.to(tl.int32, bitcast=True)


@triton.jit
def block_start(BLOCK: tl.constexpr, WIDE: tl.constexpr):
    """This program's first flat offset (64-bit only when ``WIDE``)."""
    pid = tl.program_id(0)
    if WIDE:
        pid = pid.to(tl.int64)
    return pid * BLOCK


@triton.jit
def block_offsets(BLOCK: tl.constexpr, WIDE: tl.constexpr):
    """This program's ``BLOCK`` flat offsets: 64-bit only when ``WIDE`` (32-bit index arithmetic, div/mod
    included, is several times cheaper on a GPU)."""
    return block_start(BLOCK, WIDE) + tl.arange(0, BLOCK)


@triton.jit
def _small_quotient(t, d):
    # t // d for 0 <= t < 2**20 and d >= 1 from an fp32 reciprocal: (t + 1/2) / d is at least 1 / (2d) away
    # from an integer and its rounding error is below 2**-21 * t / d, so the floor is exact
    r = 1.0 / d.to(tl.float32)
    return tl.floor(t.to(tl.float32) * r + 0.5 * r).to(t.dtype)


@triton.jit
def channel_index(offs, base, channel_stride, channels, MODE: tl.constexpr, SPAN: tl.constexpr):
    """``(offs // channel_stride) % channels`` for offsets ``base <= offs < base + SPAN`` (one program's).

    ``MODE`` (:func:`per_channel_mode`): ``PARAM_PER_CHANNEL`` when a channel's run is at least the span (NCHW-like
    layouts): the integer divisions once per program, per element a comparison and a wrap;
    ``PARAM_PER_CHANNEL_SHORT`` for shorter runs: quotients from fp32 reciprocals (exact, the operands staying
    below 2**20); ``PARAM_PER_CHANNEL_EXACT`` (a million channels and more): two integer divisions per element."""
    if MODE == 4:
        return (offs // channel_stride) % channels
    q0 = base // channel_stride
    t = (offs - base) + (base - q0 * channel_stride)  # in [0, channel_stride + SPAN)
    c0 = (q0 % channels).to(t.dtype)
    if MODE == 2:  # at most one channel boundary in the span: t < 2 * channel_stride
        u = c0 + (t >= channel_stride).to(t.dtype)  # in [0, channels]
        return tl.where(u >= channels, 0, u)
    else:
        u = c0 + _small_quotient(t, channel_stride)  # in [0, channels + SPAN / channel_stride + 1)
        return u - _small_quotient(u, channels) * channels


@triton.jit
def _param(buffer_value, ptr, offs, base, channel_stride, channels, MODE: tl.constexpr, COMPUTE: tl.constexpr,
           SPAN: tl.constexpr):
    if MODE == 1:
        return tl.load(ptr).to(COMPUTE)
    elif MODE >= 2:
        return tl.load(ptr + channel_index(offs, base, channel_stride, channels, MODE, SPAN)).to(COMPUTE)
    else:
        return buffer_value


@triton.jit
def load_params(params_ptr, w0_ptr, w1_ptr, offs, base, channel_stride, channels, P0_MODE: tl.constexpr,
                P1_MODE: tl.constexpr, COMPUTE: tl.constexpr, SPAN: tl.constexpr):
    """``(p0, p1, p2)`` of offsets ``offs`` (a program of ``SPAN`` from ``base``): p2 from the scalar buffer,
    p0 and p1 from it or from their parameter tensors, as their ``P?_MODE`` says (:func:`_param`)."""
    p0 = _param(tl.load(params_ptr).to(COMPUTE), w0_ptr, offs, base, channel_stride, channels, P0_MODE, COMPUTE, SPAN)
    p1 = _param(tl.load(params_ptr + 1).to(COMPUTE), w1_ptr, offs, base, channel_stride, channels, P1_MODE, COMPUTE,
                SPAN)
    return p0, p1, tl.load(params_ptr + 2).to(COMPUTE)


@triton.jit
def _unary_forward_kernel(
    x_ptr, y_ptr, n, params_ptr, w0_ptr, w1_ptr, channel_stride, channels,
    FN: tl.constexpr, P0_MODE: tl.constexpr, P1_MODE: tl.constexpr,
    COMPUTE: tl.constexpr, BLOCK: tl.constexpr, WIDE: tl.constexpr,
):
    base = block_start(BLOCK, WIDE)
    offs = base + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
    p0, p1, p2 = load_params(params_ptr, w0_ptr, w1_ptr, offs, base, channel_stride, channels, P0_MODE, P1_MODE,
                             COMPUTE, BLOCK)
    y = FN(x, p0, p1, p2)
    tl.store(y_ptr + offs, to_dtype(y, y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _unary_backward_kernel(
    g_ptr, s_ptr, dx_ptr, n, params_ptr, w0_ptr, w1_ptr, channel_stride, channels,
    FN: tl.constexpr, P0_MODE: tl.constexpr, P1_MODE: tl.constexpr,
    COMPUTE: tl.constexpr, BLOCK: tl.constexpr, WIDE: tl.constexpr,
):
    base = block_start(BLOCK, WIDE)
    offs = base + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
    s = tl.load(s_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
    p0, p1, p2 = load_params(params_ptr, w0_ptr, w1_ptr, offs, base, channel_stride, channels, P0_MODE, P1_MODE,
                             COMPUTE, BLOCK)
    dx = FN(g, s, p0, p1, p2)
    tl.store(dx_ptr + offs, to_dtype(dx, dx_ptr.dtype.element_ty), mask=mask)


# ---------------------------------------------------------------------------------------------
# host side
# ---------------------------------------------------------------------------------------------


def compute_dtype(dtype: torch.dtype):
    """The Triton type the math runs in for tensors of ``dtype``: fp64 for fp64, fp32 otherwise."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def param_buffer(values: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The cached device buffer holding ``values`` (fp64 for fp64 math, fp32 otherwise): a
    :func:`~torchinit.kernels.launch.device_table` (filled on the device, never evicted, not cached when made
    during a CUDA-graph capture)."""
    return device_table(tuple(values), device, torch.float64 if dtype == torch.float64 else torch.float32)


def _block(device: torch.device) -> tuple[int, int]:
    return (BLOCK_INTERPRETER, 4) if device.type == "cpu" else (BLOCK_CUDA, 4)


def param_args(weights, x: torch.Tensor, channel_dim: int, span: int):
    """``(pointers, modes, channel_stride, channels)`` of the parameter tensors (None: the scalar buffer's value)
    standing in for p0, p1, ... of ``x``'s math (loaded by :func:`_param`), for programs of ``span`` offsets."""
    ptrs, modes, channels = [], [], 1
    for w in weights:
        if w is None:
            ptrs.append(x)  # dummy pointer, never read
            modes.append(PARAM_BUFFER)
        elif w.numel() == 1:
            ptrs.append(w.detach())
            modes.append(PARAM_SCALAR_TENSOR)
        else:
            ptrs.append(w.detach().contiguous())
            modes.append(PARAM_PER_CHANNEL)
            channels = w.numel()
    channel_stride = x.stride(channel_dim) if x.dim() > channel_dim and channels > 1 else 1
    mode = per_channel_mode(channel_stride, channels, span)
    return ptrs, [mode if m == PARAM_PER_CHANNEL else m for m in modes], channel_stride, channels


def _launch(kernel, fn, tensors: tuple, ref: torch.Tensor, out: torch.Tensor, scalars, weights, channel_dim: int):
    """Launch ``kernel`` over the ``ref.numel()`` storage positions of the dense tensors ``tensors`` -> ``out``."""
    n = ref.numel()
    if n == 0:
        return out
    block, warps = _block(ref.device)
    params = param_buffer(tuple(float(v) for v in scalars), ref.device, ref.dtype)
    (w0, w1), (m0, m1), cstride, channels = param_args(weights, ref, channel_dim, block)
    with on_device(ref.device):
        kernel[(triton.cdiv(n, block),)](
            *tensors, out, n, params, w0, w1, cstride, channels,
            FN=fn, P0_MODE=m0, P1_MODE=m1, COMPUTE=compute_dtype(ref.dtype), BLOCK=block, WIDE=wide_index(n, block),
            num_warps=warps,
        )
    return out


def launch_unary_forward(fn, x: torch.Tensor, out: torch.Tensor, scalars, weights=(None, None), channel_dim: int = 1):
    """Write ``fn_fwd(x)`` into ``out``; both must be dense with identical strides."""
    return _launch(_unary_forward_kernel, fn, (x,), x, out, scalars, weights, channel_dim)


def launch_unary_backward(fn, grad: torch.Tensor, saved: torch.Tensor, out: torch.Tensor, scalars,
                          weights=(None, None), channel_dim: int = 1):
    """Write ``fn_bwd(grad, saved)`` into ``out``; all three dense with identical strides."""
    return _launch(_unary_backward_kernel, fn, (grad, saved), saved, out, scalars, weights, channel_dim)
