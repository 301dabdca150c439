"""Helpers shared by the fused operators: the torchinit library fragment, argument checks, activation lookup."""

from __future__ import annotations

import torch

from .. import opdef
from ..activations import ACTIVATIONS, Formula, Resolved, cacheable

LIB = opdef.LIB  # the one torchinit library: operators are made with torchinit.opdef.operator


_RESOLVED: dict[tuple, Resolved] = {}  # (op, act, arguments) seen before: numbers only, so the same every call


def resolve_scalar_activation(op: str, act: str, act_kwargs: dict) -> Resolved:
    """The table entry for activation ``act`` with its keyword arguments; learnable tensors are refused.

    Runs on every call of a fused op: a combination seen before (numbers only) is one look-up.
    """
    try:
        key = (op, act, *act_kwargs.items())
        resolved = _RESOLVED.get(key)
    except TypeError:  # an unhashable argument: checked (and refused or resolved) below
        key, resolved = None, None
    if resolved is None:
        resolved = _resolve_scalar_activation(op, act, act_kwargs)
        if (key is not None and len(_RESOLVED) < 4096 and cacheable(act_kwargs.values())
                and not torch.compiler.is_compiling()):  # no side effects on a global while Dynamo traces
            _RESOLVED[key] = resolved
    return resolved


def _resolve_scalar_activation(op: str, act: str, act_kwargs: dict) -> Resolved:
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise ValueError(f"torchinit.{op}: argument 'act' must name an activation of torchinit.functional "
                         f"({', '.join(sorted(ACTIVATIONS))}), got {act!r}")
    spec = ACTIVATIONS[act]
    unknown = set(act_kwargs) - set(spec.defaults)
    if unknown:
        raise TypeError(f"torchinit.{op}: activation {act!r} takes {sorted(spec.defaults) or 'no arguments'}, "
                        f"got unexpected {sorted(unknown)}")
    arguments = {**spec.defaults, **act_kwargs}
    # a tensor argument, or one that must be a tensor (no number default: PReLU's weight), is learnable
    if (any(isinstance(v, torch.Tensor) for v in arguments.values())
            or any(arguments[k] is None for k, d in spec.defaults.items() if d is None)):
        raise ValueError(f"torchinit.{op}: activation {act!r} with tensor (learnable) arguments is not supported "
                         "here; give numbers, or apply the learnable activation separately")
    spec.check(tuple(arguments.values()), op)
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
