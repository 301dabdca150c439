"""Helpers shared by the fused operators: the torchinit library fragment, argument checks, activation lookup."""

from __future__ import annotations

import torch

from ..activations import ACTIVATIONS, Formula, Resolved

LIB = torch.library.Library("torchinit", "FRAGMENT")  # noqa: TOR901 - the project's own namespace
FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def resolve_scalar_activation(op: str, act: str, act_kwargs: dict) -> Resolved:
    """The table entry for activation ``act`` with its keyword arguments; learnable tensors are refused."""
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise ValueError(f"torchinit.{op}: argument 'act' must name an activation of torchinit.functional "
                         f"({', '.join(sorted(ACTIVATIONS))}), got {act!r}")
    spec = ACTIVATIONS[act]
    unknown = set(act_kwargs) - set(spec.defaults)
    if unknown:
        raise TypeError(f"torchinit.{op}: activation {act!r} takes {sorted(spec.defaults) or 'no arguments'}, "
                        f"got unexpected {sorted(unknown)}")
    arguments = {**spec.defaults, **act_kwargs}
    if any(isinstance(v, torch.Tensor) for v in arguments.values()) or act == "prelu":
        raise ValueError(f"torchinit.{op}: activation {act!r} with tensor (learnable) arguments is not supported "
                         "here; give numbers, or apply the learnable activation separately")
    if act == "gelu" and arguments.get("approximate") not in ("none", "tanh"):
        raise ValueError(f"torchinit.{op}: argument 'approximate' must be 'none' or 'tanh', "
                         f"got {arguments.get('approximate')!r}")
    return spec.resolve(**arguments)


def formula_of(name: str) -> Formula:
    """The formula registered under ``name`` (operators receive formula names as strings)."""
    from ..activations import FORMULAS

    if name not in FORMULAS:
        raise ValueError(f"torchinit: unknown activation formula {name!r}; expected one of {sorted(FORMULAS)}")
    return FORMULAS[name]


def canonical_dim(op: str, dim: int, ndim: int) -> int:
    """``dim`` as a non-negative index for a tensor of ``ndim`` >= 1 dims, with a clear error."""
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"torchinit.{op}: argument 'dim' must be an int, got {type(dim).__name__}")
    if ndim == 0:
        raise ValueError(f"torchinit.{op}: argument 'input' must have at least one dimension, got a 0-d tensor")
    if not -ndim <= dim < ndim:
        raise IndexError(f"torchinit.{op}: argument 'dim' must be in [{-ndim}, {ndim - 1}], got {dim}")
    return dim % ndim
