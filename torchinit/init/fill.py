"""Write an :class:`~torchinit.init.actions.Action` into a tensor: a new one (:func:`materialize`) or a
parameter in place (:func:`fill_into_`). The kinds themselves (``actions.py``) know how; these are the
entry points ``apply``, ``functions`` and ``data`` call, with the :class:`Stream` the randomness comes from.
"""

from __future__ import annotations

import torch

from . import philox
from .actions import Action, Stream

__all__ = ["Stream", "materialize", "writes_in_place", "fill_into_"]


def materialize(action: Action, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
                stream: Stream) -> torch.Tensor:
    """A new tensor of ``shape``/``dtype`` on ``device`` holding ``action``'s values (fp32 math, then cast)."""
    return action.materialize(shape, dtype, torch.device(device), stream)


def writes_in_place(action: Action, out: torch.Tensor, stream: Stream) -> bool:
    """Whether :func:`fill_into_` can write ``action`` straight into ``out``: an elementwise action, a
    contiguous ``out``, and (torch-style sampling) a generator on ``out``'s device."""
    return action.writes_in_place(out, stream)


def fill_into_(action: Action, out: torch.Tensor, stream: Stream, ws: philox.Workspace | None = None) -> torch.Tensor:
    """Write the elementwise ``action`` into ``out`` in place: the values :func:`materialize` returns for
    ``out``'s shape, dtype and device, without a full-size staging tensor (``ws``: a reusable Philox
    workspace on ``out``'s device). Returns ``out``."""
    if not action.writes_in_place(out, stream):
        raise ValueError(f"fill_into_: cannot write a {action.kind!r} action in place into this tensor "
                         f"(contiguous: {out.is_contiguous()})")
    return action.fill_(out, stream, ws)

