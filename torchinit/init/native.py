"""Loader of the optional C sampler (``csrc/philox_sampler.c``, built by ``setup.py`` as
``torchinit.init._philox_native``), called through ctypes.

The library is optional: when it was not built (no C compiler at install time), cannot be loaded, or
``TORCHINIT_NATIVE=0`` is set in the environment, :func:`available` is False and the samplers in
:mod:`torchinit.init.sampling` run the torch-ops reference path instead. :func:`disabled` forces the
torch path inside a ``with`` block (for tests and comparisons).

Every function here takes contiguous CPU tensors and writes through their data pointers; the calls
release the GIL (ctypes does).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
from collections.abc import Iterator

import torch

__all__ = [
    "DTYPES",
    "ISAS",
    "KINDS",
    "available",
    "convert",
    "disabled",
    "fill",
    "fill_index",
    "isa",
    "library_path",
    "load_error",
    "math_f32",
    "set_isa",
    "supports",
    "words",
]

#: output dtypes the kernel writes, and their codes
DTYPES = {torch.float32: 0, torch.float64: 1, torch.bfloat16: 2, torch.float16: 3}
#: distribution kinds, and their codes
KINDS = {"uniform": 0, "normal": 1, "trunc_normal": 2}
#: the kernel's builds of its pipeline, by code (x86-64 has all three; elsewhere only the portable C)
ISAS = {0: "portable C", 1: "AVX2", 2: "AVX-512F"}
_ABI = 1

_lib: ctypes.CDLL | None = None
_load_error: str | None = None
_loaded = False
_force_off = 0


def library_path() -> str | None:
    """The path of the built library next to this module, or None when it was not built."""
    here = os.path.dirname(os.path.abspath(__file__))
    for pattern in ("_philox_native*.so", "_philox_native*.pyd", "_philox_native*.dylib"):
        hits = sorted(glob.glob(os.path.join(here, pattern)))
        if hits:
            return hits[0]
    return None


def _load() -> ctypes.CDLL | None:
    global _lib, _load_error, _loaded
    if _loaded:
        return _lib
    _loaded = True
    path = library_path()
    if path is None:
        _load_error = "not built (no C compiler at install time?)"
        return None
    try:
        lib = ctypes.CDLL(path)
        if lib.ti_philox_abi() != _ABI:
            raise OSError(f"interface version {lib.ti_philox_abi()}, expected {_ABI}: rebuild with pip install -e .")
    except (OSError, AttributeError) as exc:
        _load_error = f"{path}: {exc}"
        return None
    vp, i64, u64, ci, fp = ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint64, ctypes.c_int, ctypes.c_void_p
    lib.ti_philox_fill.argtypes = [vp, ci, i64, i64, u64, ci, fp]
    lib.ti_philox_fill_index.argtypes = [vp, ci, vp, i64, u64, ci, fp]
    lib.ti_philox_words.argtypes = [vp, u64, i64, u64]
    lib.ti_convert_f32.argtypes = [vp, vp, i64, ci]
    lib.ti_math_f32.argtypes = [vp, i64, vp, vp, vp, vp]
    lib.ti_set_isa.argtypes = [ci]
    lib.ti_get_isa.argtypes = []
    for f in (lib.ti_philox_fill, lib.ti_philox_fill_index, lib.ti_philox_words, lib.ti_convert_f32, lib.ti_math_f32,
              lib.ti_set_isa, lib.ti_get_isa):
        f.restype = ctypes.c_int
    _lib = lib
    return lib


def available() -> bool:
    """Whether the C sampler is built, loads, and is not switched off (``TORCHINIT_NATIVE=0`` or :func:`disabled`)."""
    if _force_off or os.environ.get("TORCHINIT_NATIVE", "1") == "0":
        return False
    return _load() is not None


def load_error() -> str | None:
    """Why the library is not loaded (None when it is, or when loading was not tried yet)."""
    _load()
    return _load_error


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Inside the block the samplers use the torch path even where the C sampler is available."""
    global _force_off
    _force_off += 1
    try:
        yield
    finally:
        _force_off -= 1


def supports(out: torch.Tensor) -> bool:
    """Whether :func:`fill` can write ``out``: the library available, a contiguous CPU tensor of a dtype it writes."""
    return out.device.type == "cpu" and out.dtype in DTYPES and out.is_contiguous() and available()


def _lib_or_raise() -> ctypes.CDLL:
    lib = _load()
    if lib is None:
        raise RuntimeError(f"torchinit native sampler unavailable: {_load_error}")
    return lib


def _params(scalars: tuple[float, ...]) -> ctypes.Array:
    if len(scalars) != 8:
        raise ValueError(f"native sampler: expected 8 fp32 scalars, got {len(scalars)}")
    return (ctypes.c_float * 8)(*scalars)


def _check(rc: int, fn: str) -> None:
    if rc != 0:
        raise ValueError(f"native sampler: {fn} rejected its arguments")


def fill(out: torch.Tensor, kind: str, key: int, start: int, scalars: tuple[float, ...]) -> torch.Tensor:
    """Write elements ``start .. start + out.numel() - 1`` of ``kind`` under ``key`` into ``out`` (contiguous,
    CPU, a dtype in :data:`DTYPES`); ``scalars``: the kernel's 8 fp32 parameters (see ``params`` in the C
    source). Returns ``out``."""
    if not (out.device.type == "cpu" and out.dtype in DTYPES and out.is_contiguous()):
        raise ValueError("native.fill: out must be a contiguous CPU tensor of fp32, fp64, bf16 or fp16")
    if out.numel():
        rc = _lib_or_raise().ti_philox_fill(out.data_ptr(), DTYPES[out.dtype], start, out.numel(), key,
                                            KINDS[kind], _params(scalars))
        _check(rc, "fill")
    return out


def fill_index(out: torch.Tensor, kind: str, key: int, index: torch.Tensor, scalars: tuple[float, ...]) -> torch.Tensor:
    """Write the elements numbered by the int64 ``index`` (one per element of ``out``) into ``out``."""
    idx = index.reshape(-1).to(device="cpu", dtype=torch.int64).contiguous()
    if idx.numel() != out.numel() or not (out.device.type == "cpu" and out.dtype in DTYPES and out.is_contiguous()):
        raise ValueError("native.fill_index: out must be a contiguous CPU tensor with one element per index")
    if out.numel():
        rc = _lib_or_raise().ti_philox_fill_index(out.data_ptr(), DTYPES[out.dtype], idx.data_ptr(), idx.numel(),
                                                  key, KINDS[kind], _params(scalars))
        _check(rc, "fill_index (negative index?)")
    return out


def isa() -> int:
    """The code (see :data:`ISAS`) of the build of the pipeline in use: the best the CPU has unless :func:`set_isa`."""
    return _lib_or_raise().ti_get_isa()


def set_isa(code: int) -> int:
    """Use the build ``code`` of the pipeline (clipped to what the CPU has; -1: the best). Returns the one in use.
    Every build gives the same bits; this is for tests and measurements."""
    return _lib_or_raise().ti_set_isa(code)


def words(key: int, first: int, count: int) -> torch.Tensor:
    """The Philox-4x32-10 words of counters ``first .. first + count - 1``: an int64 (count, 4) tensor of
    32-bit values (column k is word k)."""
    out = torch.empty(count, 4, dtype=torch.int32)
    if count:
        _check(_lib_or_raise().ti_philox_words(out.data_ptr(), first, count, key), "words")
    return out.to(torch.int64) & 0xFFFFFFFF


def convert(src: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The kernel's own fp32 -> ``dtype`` rounding of the fp32 tensor ``src`` (for tests)."""
    src = src.to(torch.float32).contiguous()
    out = torch.empty(src.shape, dtype=dtype)
    if src.numel():
        _check(_lib_or_raise().ti_convert_f32(out.data_ptr(), src.data_ptr(), src.numel(), DTYPES[dtype]), "convert")
    return out


def math_f32(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kernel's fp32 functions of ``x``: ``log`` (truncated normal's, via double), the fast fp32 ``log``
    (Box-Muller's), both for positive normal inputs, ``cos`` and ``sin`` (inputs in [0, 8))."""
    x = x.to(torch.float32).contiguous()
    outs = tuple(torch.empty_like(x) for _ in range(4))
    if x.numel():
        _check(_lib_or_raise().ti_math_f32(x.data_ptr(), x.numel(), *(o.data_ptr() for o in outs)), "math_f32")
    return outs  # type: ignore[return-value]
