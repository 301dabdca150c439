"""Other libraries' layers that torchinit recognises by structure, with no import of those libraries."""

from __future__ import annotations

import torch
from torch import nn


def is_hf_conv1d(module: nn.Module) -> bool:
    """Hugging Face's ``Conv1D`` (GPT-2's linear layer) by structure: class ``Conv1D``, no submodules, ``nf``
    outputs, an ``(nx, nf)`` weight (transposed against ``nn.Linear``'s) and a 1-D bias or none.

    Its forward is ``addmm(bias, x.view(-1, nx), weight).view(..., nf)``; code that relies on that (fusing)
    checks it on a probe, so a class of that name computing something else is reported, not trusted.
    """
    if type(module).__name__ != "Conv1D" or module._modules:
        return False
    w, b = module._parameters.get("weight"), module._parameters.get("bias")
    nf = module.__dict__.get("nf")
    return (isinstance(w, torch.Tensor) and w.dim() == 2 and isinstance(nf, int) and w.shape[1] == nf
            and (b is None or (isinstance(b, torch.Tensor) and b.dim() == 1 and b.numel() == nf)))


__all__ = ["is_hf_conv1d"]
