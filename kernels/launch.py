"""What every launcher does around a Triton launch: make the tensors' own CUDA device the current one.

Triton launches on the current device and its current stream: a ``cuda:1`` tensor launched while ``cuda:0``
is current would run on the wrong device. CPU tensors (the interpreter) need nothing.
"""

from __future__ import annotations

import contextlib

import torch


def on_device(device: torch.device):
    """A context in which ``device`` is the current CUDA device (a no-op for non-CUDA devices)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
