"""``primitives``, the transcendental functions of ``math.py``: libdevice when compiled, a numpy stand-in under the interpreter.

Compiled for a GPU, ``exp``, ``expm1``, ``log1p``, ``tanh`` and ``erfc`` are CUDA's libdevice functions
(``__nv_expf``, ``__nv_expm1f``, ``__nv_log1pf``, ``__nv_tanhf``, ``__nv_erfcf`` and their fp64 twins; documented at 1-2 ulp in fp32), which
are both more accurate and cheaper than forms built on ``tl.exp`` (``ex2.approx`` of a rounded argument) and
``tl.log``. Triton 3.8's interpreter cannot run libdevice, so there each primitive is numpy's, evaluated in
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
    primitives = types.SimpleNamespace(**{name: _numpy_primitive(getattr(np, name), name)
                                          for name in ("exp", "expm1", "log1p", "tanh")},
                                       erfc=_numpy_primitive(lambda v: _erfc(v).astype(np.float64), "erfc"))
else:
    # the module itself, not names imported from it: Triton maps this generic module to the target's
    # libdevice (triton.language.extra.cuda.libdevice) only when a kernel reaches it as a module
    from triton.language.extra import libdevice as primitives  # noqa: F401

__all__ = ["primitives"]
