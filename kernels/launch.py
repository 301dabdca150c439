"""What every launcher does around a Triton launch: make the tensors' own CUDA device the current one, and give
the kernels their small constant tables (activation parameters, few-bit bounds and levels) on the device.

Triton launches on the current device and its current stream: a ``cuda:1`` tensor launched while ``cuda:0``
is current would run on the wrong device. CPU tensors (the interpreter) need nothing.
"""

from __future__ import annotations

import contextlib
import struct

import torch

# (bit pattern of the values, device, dtype) -> table; never evicted: a captured CUDA graph keeps the address
_TABLES: dict[tuple[bytes, torch.device, torch.dtype], torch.Tensor] = {}


def on_device(device: torch.device):
    """A context in which ``device`` is the current CUDA device (a no-op for non-CUDA devices)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _capturing(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def device_table(values: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A 1-D ``dtype`` tensor on ``device`` holding ``values``, filled on the device (one fill per value): no
    host-to-device copy, which CUDA-graph capture forbids.

    Cached by the values' bit patterns (so ``-0.0`` and NaN payloads are kept apart, unlike ``==``) and never
    evicted, so a captured graph keeps pointing at a live buffer. A table first asked for during a capture is
    not cached: its fills are captured (they run at each replay, before the kernels that read it) and do not
    run eagerly, so an eager caller later gets a table of its own.
    """
    device = torch.device(device)
    key = (struct.pack(f"<{len(values)}d", *values), device, dtype)
    table = _TABLES.get(key)
    if table is None:
        table = torch.empty(len(values), dtype=dtype, device=device)
        for i, v in enumerate(values):
            table[i].fill_(v)
        if not (torch.compiler.is_compiling() or _capturing(device)):
            _TABLES[key] = table
    return table


def table_on(table: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``table`` (a small 1-D tensor of constants) as a kernel argument on ``device``: itself when it is there
    already (any floating dtype: the kernels convert what they load), else :func:`device_table` of its values
    (a CPU table is read on the host, no device synchronisation, and never copied host-to-device per call)."""
    if table.device == torch.device(device):
        return table
    return device_table(tuple(float(v) for v in table.tolist()), device, dtype)
