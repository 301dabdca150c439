"""Triton kernels of torchinit, installed as ``torchinit.kernels`` (never as a top-level ``kernels``).

``math`` holds each activation's Triton math; ``elementwise``, ``gated``, ``channel_reduce``, ``bits``,
``rational`` and ``softmax`` the generic kernels and launchers built over it; ``sampling`` the init
samplers; ``launch`` what every launcher does around a launch.

This package is torchinit's one loader of its kernels: importing it imports nothing (no Triton), and
a submodule is imported the first time it is named as an attribute (``kernels.gated.launch_gated_forward``,
PEP 562), after which it is an ordinary attribute of the package. torchinit names its kernels only this
way, so Triton is imported when a kernel is about to run and never on the CPU default path.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: the submodules, in the order a reader meets them
SUBMODULES = ("math", "libm", "rounding", "launch", "elementwise", "gated", "channel_reduce", "bits", "rational",
              "softmax", "sampling")


def __getattr__(name: str) -> ModuleType:
    """Import submodule ``name`` on first use (PEP 562)."""
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")  # the import binds it on the package too
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}; its kernels are {list(SUBMODULES)}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(SUBMODULES))
