"""Write an :class:`~torchinit.init.schemes.Action` into a new tensor.

A :class:`Stream` is where randomness comes from: a Philox ``key`` (counter-based: element ``i`` of the
parameter is a function of ``(key, i)``; ``start`` is the global index of the block's first element) or a
torch ``generator`` (``None`` means torch's global RNG), used like torch.nn.init does.

Matrix schemes (orthogonal, delta-orthogonal, sparse) draw their Gaussian matrix from the same stream and
do the QR factorisation in float64 on the CPU, so every device gets the same matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from . import philox
from .sampling import Dist, _f32, derive_key, sample, sample_into_
from .schemes import Action

__all__ = ["Stream", "materialize", "writes_in_place", "fill_into_"]


@dataclass(frozen=True)
class Stream:
    """A source of randomness for one parameter block."""

    key: int | None = None
    generator: torch.Generator | None = None
    start: int = 0

    def sub(self, tag: str) -> "Stream":
        """An independent stream for a second use of the same elements (e.g. sparse's zero pattern)."""
        if self.key is None:
            return self
        return Stream(derive_key(self.key, tag), None, self.start)


def _draw(d: Dist, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, s: Stream) -> torch.Tensor:
    gen_device = s.generator.device if s.generator is not None else device
    if s.key is None and gen_device != device:
        return sample(d, shape, torch.float32, gen_device, None, s.generator).to(device=device, dtype=dtype)
    return sample(d, shape, dtype, device, s.key, s.generator, start=s.start)


def _orthogonal(rows: int, cols: int, gain: float, s: Stream) -> torch.Tensor:
    """A (rows, cols) matrix with orthonormal rows or columns (whichever fits), times ``gain``; float64 CPU."""
    flat = _draw(Dist("normal"), (rows, cols), torch.float32, torch.device("cpu"), s).double()
    if rows < cols:
        flat = flat.t()
    q, r = torch.linalg.qr(flat)
    d = torch.sign(torch.diagonal(r))
    d[d == 0] = 1
    q = q * d.unsqueeze(0)
    if rows < cols:
        q = q.t()
    return q * gain


def materialize(action: Action, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
                stream: Stream) -> torch.Tensor:
    """A new tensor of ``shape``/``dtype`` on ``device`` holding ``action``'s values (fp32 math, then cast)."""
    device = torch.device(device)
    if action.kind == "constant":
        return torch.full(shape, action.value, dtype=torch.float32, device=device).to(dtype)
    if action.kind == "dist":
        assert action.dist is not None
        return _draw(action.dist, shape, dtype, device, stream)
    if action.kind == "eye":
        return torch.eye(shape[0], shape[1], dtype=dtype, device=device)
    if action.kind == "dirac":
        out = torch.zeros(shape, dtype=dtype, device=device)
        per_group = shape[0] // action.groups
        n = min(per_group, shape[1])
        center = tuple(k // 2 for k in shape[2:])
        for g in range(action.groups):
            for d in range(n):
                out[(g * per_group + d, d) + center] = 1
        return out
    if action.kind == "orthogonal":
        rows, cols = shape[0], math.prod(shape[1:])
        q = _orthogonal(rows, cols, action.gain, stream)
        return q.reshape(shape).to(device=device, dtype=dtype)
    if action.kind == "delta_orthogonal":
        q = _orthogonal(shape[0], shape[1], action.gain, stream)
        out = torch.zeros(shape, dtype=torch.float64)
        center = tuple((k - 1) // 2 for k in shape[2:])  # JAX's tap: the identity under padding="same"
        out[(slice(None), slice(None)) + center] = q
        return out.to(device=device, dtype=dtype)
    if action.kind == "sparse":
        rows, cols = shape
        values = _draw(Dist("normal", 0.0, action.std), shape, torch.float32, device, stream)
        zeros = int(math.ceil(action.sparsity * rows))
        if zeros:
            keys = _draw(Dist("uniform", a=0.0, b=1.0), shape, torch.float32, device, stream.sub("sparse-pattern"))
            order = torch.argsort(keys, dim=0, stable=True)[:zeros]
            values.scatter_(0, order, 0.0)
        return values.to(dtype)
    raise ValueError(f"materialize: action {action.kind!r} cannot be written without its module")


def writes_in_place(action: Action, out: torch.Tensor, stream: Stream) -> bool:
    """Whether :func:`fill_into_` can write ``action`` straight into ``out``: an elementwise action, a
    contiguous ``out``, and (torch-style sampling) a generator on ``out``'s device."""
    if action.kind not in ("constant", "dist") or not out.is_contiguous():
        return False
    if action.kind == "dist" and stream.key is None and stream.generator is not None:
        return stream.generator.device == out.device
    return True


def fill_into_(action: Action, out: torch.Tensor, stream: Stream, ws: philox.Workspace | None = None) -> torch.Tensor:
    """Write the elementwise ``action`` into ``out`` in place: the values :func:`materialize` returns for
    ``out``'s shape, dtype and device, without a full-size staging tensor (``ws``: a reusable Philox
    workspace on ``out``'s device). Returns ``out``."""
    if not writes_in_place(action, out, stream):
        raise ValueError(f"fill_into_: cannot write a {action.kind!r} action in place into this tensor "
                         f"(contiguous: {out.is_contiguous()})")
    if action.kind == "constant":
        return out.fill_(_f32(action.value))
    assert action.dist is not None
    return sample_into_(out, action.dist, stream.key, stream.generator, stream.start, ws)


def with_start(stream: Stream, start: int) -> Stream:
    """The same stream with elements numbered from ``start``."""
    return replace(stream, start=start)
