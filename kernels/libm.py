"""``primitives``, the transcendental functions of ``math.py``: libdevice when compiled, a numpy stand-in under the interpreter.

Compiled for a GPU, ``exp``, ``expm1``, ``log1p``, ``tanh`` and ``erfc`` are CUDA's libdevice functions
(``__nv_expf``, ``__nv_expm1f``, ``__nv_log1pf``, ``__nv_tanhf``, ``__nv_erfcf`` and their fp64 twins; documented at 1-2 ulp in fp32), which
are both more accurate and cheaper than forms built on ``tl.exp`` (``ex2.approx`` of a rounded argument) and
``tl.log``. ``fast_dividef`` is ``__nv_fast_fdividef`` (``div.approx.f32``: one MUFU.RCP and a multiply, at most
2 ulp for divisors of magnitude in [2**-126, 2**126]; fp32 only), against about 8 instructions for ``/``
(``div.full.f32``, whose range fix-ups the formulas that call it do not need). ``fast_expf`` and ``fast_logf`` (``ex2.approx``/``lg2.approx`` of a
scaled argument, two instructions each, fp32 only; relative error up to |x| 2**-24 for exp, absolute ~2**-22 for
log, subnormal results flushed) serve only the ``_half`` entry points, whose outputs are fp16/bf16; their
stand-ins are numpy's exp and log. ``fma`` is the fused multiply-add
(one FFMA); it is here, and not ``tl.fma``, because Triton 3.8's interpreter evaluates ``tl.fma`` as a rounded
product plus a rounded sum, which breaks the exact error terms (``fma(a, b, -a * b)``) the formulas rely on. Triton 3.8's interpreter cannot run libdevice, so there each primitive is numpy's, evaluated in
fp64 and rounded once to the argument's dtype (correctly rounded, bar double-rounding ties, for fp32): an
interpreted kernel runs the same formula as the compiled one with primitives at least as accurate, so the
interpreter measures each activation's *formula* error, and the GPU adds at most libdevice's own.

Every activation's math stays in ``math.py``; this module only says which primitive implementation runs.
"""

from __future__ import annotations

from .rounding import INTERPRETED

if INTERPRETED:
    import types

    import numpy as np
    import triton.language as tl
    from triton.runtime.interpreter import TensorHandle

    def _numpy_primitive(np_fn, name: str):
        def primitive(x):
            data = x.handle.data
            with np.errstate(all="ignore"):
                out = np_fn(data.astype(np.float64)).astype(data.dtype)
            return tl.core.tensor(TensorHandle(out, x.handle.dtype), x.type)

        primitive.__name__ = name
        primitive.__doc__ = f"Interpreter stand-in for libdevice's {name}: numpy's, in fp64, rounded once."
        return primitive

    import math

    _erfc = np.frompyfunc(math.erfc, 1, 1)  # numpy has no erfc: Python's, element by element
    def fast_dividef(a, b):
        """Interpreter stand-in for libdevice's fast_dividef: IEEE division in the divisor's dtype."""
        data = b.handle.data
        num = a.handle.data if hasattr(a, "handle") else np.asarray(a, dtype=data.dtype)
        with np.errstate(all="ignore"):
            out = (num / data).astype(data.dtype)
        return tl.core.tensor(TensorHandle(out, b.handle.dtype), b.type)

    def _operands(*args):
        like = next(a for a in args if hasattr(a, "handle"))
        dtype = like.handle.data.dtype
        data = [a.handle.data if hasattr(a, "handle") else np.asarray(a, dtype=dtype) for a in args]
        return like, dtype, data

    def _split(v):
        # Veltkamp's split of fp64 values into two 26-bit halves (v = hi + lo exactly)
        c = v * 134217729.0
        hi = c - (c - v)
        return hi, v - hi

    def fma(a, b, c):
        """Interpreter stand-in for libdevice's fma: a * b + c rounded once (fp32 through fp64, where a * b is
        exact; fp64 through Dekker's exact product and a compensated sum)."""
        like, dtype, (x, y, z) = _operands(a, b, c)
        with np.errstate(all="ignore"):
            if dtype == np.float32:
                out = (x.astype(np.float64) * y.astype(np.float64) + z.astype(np.float64)).astype(np.float32)
            else:
                p = x * y
                (xh, xl), (yh, yl) = _split(x), _split(y)
                pe = ((xh * yh - p) + xh * yl + xl * yh) + xl * yl  # a * b - p exactly (Dekker)
                s = p + z
                bb = s - p
                se = (p - (s - bb)) + (z - bb)  # p + z - s exactly (Knuth's two-sum)
                out = s + (se + pe)
                out = np.where(np.isfinite(out), out, x * y + z)
            out = np.broadcast_to(out, np.broadcast(x, y, z).shape).astype(dtype)
        return tl.core.tensor(TensorHandle(np.ascontiguousarray(out), like.handle.dtype), like.type)

    primitives = types.SimpleNamespace(**{name: _numpy_primitive(getattr(np, name), name)
                                          for name in ("exp", "expm1", "log1p", "tanh")},
                                       fast_expf=_numpy_primitive(np.exp, "fast_expf"),
                                       fast_logf=_numpy_primitive(np.log, "fast_logf"),
                                       erfc=_numpy_primitive(lambda v: _erfc(v).astype(np.float64), "erfc"),
                                       fast_dividef=fast_dividef, fma=fma)
else:
    import triton
    import triton.language as tl

    # the module itself, not names imported from it: Triton maps this generic module to the target's
    # libdevice (triton.language.extra.cuda.libdevice) only when a kernel reaches it as a module
    from triton.language.extra import libdevice as primitives  # noqa: F401

    @triton.jit
    def _typed(v, dtype: tl.constexpr):
        # a Python number as a constant of ``dtype`` (its own digits, not fp32's), a tensor converted (no-op
        # where it already has that dtype)
        if isinstance(v, tl.tensor):
            return v.to(dtype)
        else:
            return tl.full([], v, dtype)

    @triton.jit
    def fma(a, b, c):
        """``a * b + c`` rounded once (libdevice's fma) for operands of mixed dtypes and Python numbers.

        libdevice's fma is typed (``__nv_fmaf`` or ``__nv_fma``, all three operands alike): a literal
        (fp32 to Triton) or an fp32 operand in fp64 math would not compile. Each operand is made a value of
        the promoted dtype at compile time (a literal a constant of that dtype, with its fp64 digits where
        the math is fp64): no instruction is added."""
        dtype: tl.constexpr = (a * b + c).dtype  # only the type is read: the product is never emitted
        return primitives.fma(_typed(a, dtype), _typed(b, dtype), _typed(c, dtype))

__all__ = ["primitives", "fma"]
