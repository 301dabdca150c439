"""The one downcast every kernel uses: a value rounded to a storage dtype as torch rounds it.

torch converts to fp16/bf16 by rounding to nearest, ties to even, and from fp64 by way of fp32
(c10's ``Half`` and ``BFloat16`` are built from a ``float``). A GPU's ``cvt.rn`` does the former
natively. Triton 3.8's interpreter does not: its fp32 -> bf16 cast truncates, with or without
``fp_downcast_rounding="rtne"`` (RTNE is the default mode, so the argument selects the same
truncating path), and mishandles bf16 subnormals. So under the interpreter the bf16 rounding is
done here in integer arithmetic; compiled kernels keep the native conversion (one instruction).
fp32 -> fp16 is numpy's (correctly rounded) conversion in the interpreter.

``INTERPRETED`` is read the way ``@triton.jit`` reads it, when this module is imported.
"""

from __future__ import annotations

import triton
import triton.language as tl
from triton import knobs

INTERPRETED = tl.constexpr(bool(knobs.runtime.interpret))


@triton.jit
def _bf16_rtne_bits(x):
    # fp32 -> bf16 by integer rounding: add 0x7FFF plus the lowest kept bit, drop the low 16 bits;
    # correct for normals, subnormals, overflow to inf and inf; a NaN stays a (quiet) NaN
    u = x.to(tl.uint32, bitcast=True)
    r = u + 0x7FFF + ((u >> 16) & 1)
    r = tl.where(x != x, u | 0x400000, r)
    return (r >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def to_dtype(v, ty: tl.constexpr):
    """``v`` rounded to the dtype ``ty`` as torch rounds it (nearest even; fp64 by way of fp32 to half types)."""
    if ty == tl.bfloat16:
        v32 = v.to(tl.float32)
        if INTERPRETED:
            return _bf16_rtne_bits(v32)
        else:
            return v32.to(tl.bfloat16)
    elif ty == tl.float16:
        return v.to(tl.float32).to(tl.float16)
    else:
        return v.to(ty)


@triton.jit
def round_to(v, ty: tl.constexpr, COMPUTE: tl.constexpr):
    """``v`` rounded to the dtype ``ty`` and brought back to the math dtype ``COMPUTE``."""
    return to_dtype(v, ty).to(COMPUTE)
