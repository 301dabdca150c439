"""Build of torchinit's optional C sampler; everything else is in pyproject.toml.

``torchinit.init._philox_native`` is a plain C library (no Python or torch API; torchinit/init/native.py
loads it with ctypes). It is optional: without a working C compiler the install still succeeds and the
samplers use their torch path.
"""

import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    _FLAGS = ["/O2", "/fp:precise"]
else:
    # -ffp-contract=off: no fused multiply-add, so a * b + c rounds twice as the torch reference does;
    # -fno-math-errno / -fno-trapping-math let the loops over sqrt and selects vectorise (values unchanged)
    _FLAGS = ["-O3", "-std=c99", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math",
              "-fvisibility=hidden"]

setup(
    ext_modules=[
        Extension(
            "torchinit.init._philox_native",
            sources=["torchinit/init/csrc/philox_sampler.c"],
            extra_compile_args=_FLAGS,
            optional=True,
        )
    ],
)
