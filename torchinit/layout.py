"""Tensor layout helpers shared by every operator: dense layouts, output allocation, the channel dim, vmap's front.

Importing this module does not import Triton.
"""

from __future__ import annotations

import torch

POISON_OUTPUTS = False  # tests set this: kernel outputs start as NaN, so an unwritten element shows


def is_dense(t: torch.Tensor) -> bool:
    """Whether ``t`` covers its storage without gaps (any order of strides), so a kernel can walk it flat."""
    if t.is_contiguous():
        return True
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda p: p[1]):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


def dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when dense, else a dense copy with its strides' order."""
    return t if is_dense(t) else torch.empty_like(t).copy_(t)


def empty_like(t: torch.Tensor, shape: list[int] | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Allocate a kernel's output like ``t`` (with another ``shape`` or ``dtype`` if given); NaN-filled when
    poisoning."""
    if shape is None:
        out = torch.empty_like(t) if dtype is None else torch.empty_like(t, dtype=dtype)
    else:
        out = t.new_empty(shape) if dtype is None else t.new_empty(shape, dtype=dtype)
    return out.fill_(float("nan")) if POISON_OUTPUTS else out


def same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` have the same strides on every dim of more than one element."""
    return all(sa == sb for n, sa, sb in zip(a.shape, a.stride(), b.stride()) if n > 1)


def layout_like(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``t`` laid out exactly like ``ref`` (copied only when a stride that matters differs)."""
    return t if same_layout(t, ref) else torch.empty_like(ref).copy_(t)


def layout_ref(t: torch.Tensor) -> torch.Tensor:
    """The layout an operator's output takes for input ``t``: ``t``'s own when dense, else torch's default for it."""
    return t if is_dense(t) else torch.empty_like(t)


def channel_dim(x: torch.Tensor) -> int:
    """torch's channel dim (PReLU's): 1, or 0 for a 1-D tensor."""
    return 1 if x.dim() >= 2 else 0


def to_front(t: torch.Tensor | None, bdim: int | None, batch: int) -> torch.Tensor | None:
    """A vmap argument with its batch dim ``bdim`` moved to the front (expanded there when it has none)."""
    if t is None:
        return None
    if bdim is None:
        return t.unsqueeze(0).expand((batch,) + tuple(t.shape))
    return t.movedim(bdim, 0)


__all__ = ["POISON_OUTPUTS", "is_dense", "dense", "empty_like", "same_layout", "layout_like", "layout_ref",
           "channel_dim", "to_front"]
