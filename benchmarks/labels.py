"""Names shared by the benchmark report, its plots and the runner: implementations, passes, dtype sizes.

A module of its own (no torch, no matplotlib) so that ``report`` and ``plots`` both read it without
importing each other.
"""

from __future__ import annotations

#: implementations in the order tables and plots show them
IMPL_ORDER: tuple[str, ...] = ("torchinit", "torchinit_torch", "eager", "compile")
#: pass key -> its name in tables
PASS_NAMES: dict[str, str] = {"fwd": "forward", "bwd": "backward", "fwdbwd": "forward+backward"}
#: dtype name -> bytes per element
DTYPE_BYTES: dict[str, int] = {"float32": 4, "bfloat16": 2, "float16": 2, "float64": 8}
