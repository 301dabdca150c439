"""One-pass Triton samplers for weight initialisation: uniform, normal and truncated normal.

Each program takes ``BLOCK`` Philox counters; counter ``g`` yields the four elements ``4g .. 4g + 3`` of
the parameter (``tl.rand4x`` words 0..3; the normal pairs words (0, 1) and (2, 3) by Box-Muller, as
``tl.randn4x``), transformed in fp32 and stored once in the output's dtype (a whole block of an output starting
on a counter, the steady state, with one vector store per thread and counter, no mask). ``start`` is the
global index of the output's first element, so a shard writes only its own elements and they equal the same
elements of the whole tensor. The formulas are those of ``torchinit.init.sampling`` (the torch reference):
uniform is bit for bit equal; normal and truncated normal agree within a few ulps (transcendental functions).
FMA contraction is disabled on GPU so that ``u * span + lo`` rounds exactly as the two torch ops do; the
sin/cos of the Box-Muller angle (:func:`_sincos_turn`, for angles in ``[0, 2 pi)`` only) and erfinv's Horner
steps are explicit FMAs. The seed and the element range are not specialised on (one compiled kernel per
dtype and kind).

Import this module only where Triton is available; ``torchinit.init`` imports it lazily.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .launch import on_device
from .rounding import to_dtype

_KIND = {"uniform": 0, "normal": 1, "trunc_normal": 2}
_BLOCK = 1024
NUM_WARPS_CUDA = 8


@triton.jit
def _erfinv_giles(x, w):
    # Giles' single-precision erfinv, Horner steps as explicit FMAs: the kernel is compiled without FMA
    # contraction (so that u * span + lo rounds as torch's two ops), which split each step into a multiply
    # and an add (a third of the truncated-normal sampler's SASS); one rounding per step instead of two
    ws = w - 2.5
    p = tl.fma(2.81022636e-08, ws, 3.43273939e-07)
    p = tl.fma(p, ws, -3.5233877e-06)
    p = tl.fma(p, ws, -4.39150654e-06)
    p = tl.fma(p, ws, 0.00021858087)
    p = tl.fma(p, ws, -0.00125372503)
    p = tl.fma(p, ws, -0.00417768164)
    p = tl.fma(p, ws, 0.246640727)
    p = tl.fma(p, ws, 1.50140941)
    wb = tl.sqrt(w) - 3.0
    q = tl.fma(-0.000200214257, wb, 0.000100950558)
    q = tl.fma(q, wb, 0.00134934322)
    q = tl.fma(q, wb, -0.00367342844)
    q = tl.fma(q, wb, 0.00573950773)
    q = tl.fma(q, wb, -0.0076224613)
    q = tl.fma(q, wb, 0.00943887047)
    q = tl.fma(q, wb, 1.00167406)
    q = tl.fma(q, wb, 2.83297682)
    return tl.where(w < 5.0, p, q) * x


@triton.jit
def _trunc(u, p_lo, p_span, zlo, zhi):
    p = u * p_span + p_lo
    p = tl.minimum(tl.maximum(p, 1.0e-30), 0.99999994)
    x = p * 2.0 - 1.0
    w = -tl.log((p * 4.0) * (1.0 - p))
    z = _erfinv_giles(x, w) * 1.4142135623730951
    return tl.minimum(tl.maximum(z, zlo), zhi)


@triton.jit
def _sincos_turn(th):
    # (sin th, cos th) for 0 <= th < 2 pi (Box-Muller's angle): the quadrant k = rint(th * 2 / pi) <= 4 and a
    # three-part Cody-Waite reduction (exact products for such k) leave |r| <= pi / 4, where Cephes' sinf and
    # cosf polynomials are good to about 1 ulp. libdevice's sinf/cosf carry, besides, a Payne-Hanek path for
    # huge arguments that this angle never takes (half of the normal sampler's SASS).
    k = tl.floor(th * 0.636619772 + 0.5)  # th >= 0: round half up is rint up to ties, which any k handles
    r = tl.fma(k, -1.57079601e+00, th)
    r = tl.fma(k, -3.13916473e-07, r)
    r = tl.fma(k, -5.39030253e-15, r)
    r2 = r * r
    sin_r = tl.fma(r * r2, tl.fma(r2, tl.fma(r2, -1.9515295891e-4, 8.3321608736e-3), -1.6666654611e-1), r)
    cos_r = tl.fma(r2 * r2, tl.fma(r2, tl.fma(r2, 2.443315711809948e-5, -1.388731625493765e-3),
                                   4.166664568298827e-2), tl.fma(r2, -0.5, 1.0))
    q = k.to(tl.int32) & 3
    sin_t = tl.where((q & 1) == 0, sin_r, cos_r)
    cos_t = tl.where((q & 1) == 0, cos_r, sin_r)
    sin_t = tl.where((q & 2) == 0, sin_t, -sin_t)
    cos_t = tl.where(((q + 1) & 2) == 0, cos_t, -cos_t)
    return sin_t, cos_t


@triton.jit
def _normal_pair(u1, u2):
    # Box-Muller as tl.randn4x's pair_uniform_to_normal (u1 clamped below at 1e-7), with the angle's sin/cos above
    u1 = tl.maximum(1.0e-7, u1)
    th = 6.283185307179586 * u2
    r = tl.sqrt(-2.0 * tl.log(u1))
    s, c = _sincos_turn(th)
    return r * c, r * s


@triton.jit
def _finish(r, s1, s0, lo_clip, hi_clip, KIND: tl.constexpr, DTYPE: tl.constexpr):
    v = r * s1 + s0
    if KIND == 2:
        v = tl.minimum(tl.maximum(v, lo_clip), hi_clip)
    return to_dtype(v, DTYPE)


@triton.jit
def _store_word(out_ptr, v, idx, n):
    tl.store(out_ptr + idx, v, mask=(idx >= 0) & (idx < n))


# The seed and the element range are runtime values: Triton would otherwise specialise each of them on being
# 1 or a multiple of 16 (and type it by value, i32 or i64), so that a warm-up with key=1 compiled a kernel
# no real 63-bit key uses and every new key, start or size parity compiled another one. Typed i64 and not
# specialised, they give one compiled kernel per (dtype, kind) whatever the values.
_RUNTIME_INTS = ("seed", "start", "n", "g_first")


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def _sample_kernel(out_ptr, seed: tl.int64, start: tl.int64, n: tl.int64, g_first: tl.int64, s0, s1, p_lo, p_span,
                   zlo, zhi, lo_clip, hi_clip, KIND: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    g = g_first + pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    r0, r1, r2, r3 = tl.rand4x(seed, g)
    if KIND == 1:  # tl.randn4x's pairing: words (0, 1) and (2, 3)
        r0, r1 = _normal_pair(r0, r1)
        r2, r3 = _normal_pair(r2, r3)
    if KIND == 2:
        r0 = _trunc(r0, p_lo, p_span, zlo, zhi)
        r1 = _trunc(r1, p_lo, p_span, zlo, zhi)
        r2 = _trunc(r2, p_lo, p_span, zlo, zhi)
        r3 = _trunc(r3, p_lo, p_span, zlo, zhi)
    # uniform: v = u * span + lo (s1 = span, s0 = lo); normal/trunc: v = z * std + mean (s1 = std, s0 = mean)
    v0 = _finish(r0, s1, s0, lo_clip, hi_clip, KIND, out_ptr.dtype.element_ty)
    v1 = _finish(r1, s1, s0, lo_clip, hi_clip, KIND, out_ptr.dtype.element_ty)
    v2 = _finish(r2, s1, s0, lo_clip, hi_clip, KIND, out_ptr.dtype.element_ty)
    v3 = _finish(r3, s1, s0, lo_clip, hi_clip, KIND, out_ptr.dtype.element_ty)
    first = pid.to(tl.int64) * (4 * BLOCK)  # this program's first element, relative to element 4 * g_first
    head = start - g_first * 4  # start % 4: elements of the first counter before the output's first element
    if (head == 0) & (first + 4 * BLOCK <= n):
        # a whole block of an output that starts on a counter (every block but the last, for whole tensors):
        # element 4g + k is word k of counter g, so the four words interleaved are contiguous in each thread;
        # no mask, offsets contiguous and aligned: one vector store per thread and counter
        v = tl.reshape(tl.join(tl.join(v0, v2), tl.join(v1, v3)), [4 * BLOCK])
        tl.store(out_ptr + first + tl.arange(0, 4 * BLOCK), v)
    else:
        idx = first - head + tl.arange(0, BLOCK).to(tl.int64) * 4
        _store_word(out_ptr, v0, idx, n)
        _store_word(out_ptr, v1, idx + 1, n)
        _store_word(out_ptr, v2, idx + 2, n)
        _store_word(out_ptr, v3, idx + 3, n)


def launch_args(out, d, key: int, start: int = 0, block: int = _BLOCK) -> tuple[tuple, tuple, dict]:
    """``(grid, args, kwargs)`` of the sampler launch :func:`fill` makes (``out`` a non-empty 1-D tensor).

    ``d`` is a distribution with a ``kind`` ("uniform", "normal", "trunc_normal") and ``kernel_scalars()``
    (the eight fp32 launch scalars: ``torchinit.init.sampling.Dist`` is one), so this package imports
    nothing from the one above it."""
    n = out.numel()
    g_first = start >> 2
    g_last = (start + n - 1) >> 2
    grid = (triton.cdiv(g_last - g_first + 1, block),)
    s0, s1, p_lo, p_span, zlo, zhi, lo_clip, hi_clip = d.kernel_scalars()
    kwargs = {"KIND": _KIND[d.kind], "BLOCK": block}
    if out.device.type == "cuda":
        kwargs["enable_fp_fusion"] = False
        # 8 warps: 4 counters (16 values) per thread; with 4 warps the fp32 normal sampler spilled on sm_90
        kwargs["num_warps"] = NUM_WARPS_CUDA
    return grid, (out, key, start, n, g_first, s0, s1, p_lo, p_span, zlo, zhi, lo_clip, hi_clip), kwargs


def fill(out, d, key: int, start: int = 0, block: int = _BLOCK) -> None:
    """Fill the contiguous 1-D tensor ``out`` (any float dtype) with draws of ``d`` for the global elements
    ``start .. start + out.numel() - 1`` under Philox ``key``, in one pass."""
    if d.kind not in _KIND:
        raise ValueError(f"torchinit.kernels.sampling.fill: unknown distribution kind {d.kind!r}; expected one of {sorted(_KIND)}")
    if out.dim() != 1 or not out.is_contiguous():
        raise ValueError("torchinit.kernels.sampling.fill: out must be a contiguous 1-D tensor")
    if out.numel() == 0:
        return
    grid, args, kwargs = launch_args(out, d, key, start, block)
    with on_device(out.device):
        _sample_kernel[grid](*args, **kwargs)
