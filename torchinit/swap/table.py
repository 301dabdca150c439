"""What ``swap_activations`` recognises: activation kinds, their modules and every functional spelling.

A *kind* is a key of :data:`torchinit.nn.ACTIVATION_MODULES` ("relu", "gelu", "glu", ...). Each kind
has a torchinit module class, usually a torch.nn twin (the torchinit class's base), and functional
spellings in two families: ``"torch"`` (``F.relu``, ``torch.relu``, ``torch.relu_``, ``x.relu()``,
``x.relu_()``...) and ``"ti"`` (``torchinit.functional.relu``). The argument names of every spelling
come from the activation table (:data:`torchinit.activations.ACTIVATIONS`), which mirrors torch's
signatures, so nothing here restates an activation's math or defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as TF
from torch import nn

from .. import functional as tif
from .. import nn as tinn
from ..activations import ACTIVATIONS

# kind -> torchinit module class; kind -> torch.nn twin (None for torchinit-only kinds)
TI_CLASSES: dict[str, type[nn.Module]] = dict(tinn.ACTIVATION_MODULES)
TORCH_CLASSES: dict[str, type[nn.Module] | None] = {
    kind: (cls.__bases__[0] if cls.__bases__[0].__module__.startswith("torch.nn") and cls.__bases__[0] is not nn.Module
           else None)
    for kind, cls in TI_CLASSES.items()
}

# torch.nn activation-like modules with no torchinit twin: left by the default mapping, and reported
NO_TWIN: tuple[type[nn.Module], ...] = (
    nn.RReLU, nn.Threshold, nn.Softshrink, nn.Hardshrink, nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.Softmax2d,
)

# Functional parameters after ``input`` (in positional order) and whether an ``inplace`` argument follows
_SIGNATURES: dict[str, tuple[tuple[str, ...], bool]] = {
    name: (tuple(act.defaults), act.inplace) for name, act in ACTIVATIONS.items()
}
_SIGNATURES["glu"] = (("dim",), False)
_DEFAULTS: dict[str, dict] = {name: dict(act.defaults) for name, act in ACTIVATIONS.items()}
_DEFAULTS["glu"] = {"dim": -1}


@dataclass(frozen=True)
class Spelling:
    """One functional spelling of an activation: its kind, family, argument names and in-place nature."""

    kind: str
    family: str  # "torch" or "ti"
    label: str  # how the report names it, e.g. "F.relu", "torch.relu_", "Tensor.relu"
    args: tuple[str, ...]  # names of the positional arguments after the input
    forced_inplace: bool = False  # the spelling itself works in place (relu_, x.sigmoid_())

    def params(self, args: tuple, kwargs: dict) -> dict:
        """Name the call's arguments after the input: ``{"negative_slope": 0.2, "inplace": True}``."""
        if len(args) > len(self.args):
            raise TypeError(f"{self.label}: {len(args)} positional arguments after the input, expected at most "
                            f"{len(self.args)}")
        named = dict(zip(self.args, args))
        named.update(kwargs)
        if self.forced_inplace:
            named["inplace"] = True
        return named


def _collect() -> tuple[dict, dict]:
    functions: dict = {}  # function object -> Spelling
    methods: dict[str, Spelling] = {}  # Tensor method name -> Spelling
    for kind, (params, has_inplace) in _SIGNATURES.items():
        full = params + (("inplace",) if has_inplace else ())
        torch_name = ACTIVATIONS[kind].torch_name if kind in ACTIVATIONS else kind
        if torch_name is not None:
            f = getattr(TF, torch_name, None)
            if f is not None:
                functions.setdefault(f, Spelling(kind, "torch", f"F.{torch_name}", full))
            for owner, prefix in ((torch, "torch"), (TF, "F")):
                g = getattr(owner, torch_name, None)
                if g is not None and g not in functions:
                    functions[g] = Spelling(kind, "torch", f"{prefix}.{torch_name}", params)
                g_ = getattr(owner, torch_name + "_", None)
                if g_ is not None and g_ not in functions:
                    functions[g_] = Spelling(kind, "torch", f"{prefix}.{torch_name}_", params, True)
            for suffix, forced in (("", False), ("_", True)):
                if hasattr(torch.Tensor, torch_name + suffix):
                    methods[torch_name + suffix] = Spelling(kind, "torch", f"Tensor.{torch_name}{suffix}", params,
                                                            forced)
        ti_fn = getattr(tif, kind, None)
        if ti_fn is not None:
            functions[ti_fn] = Spelling(kind, "ti", f"ti.{kind}", full)
    return functions, methods


FUNCTIONS, METHODS = _collect()
for _m, _s in METHODS.items():
    FUNCTIONS.setdefault(getattr(torch.Tensor, _m), _s)
del _m, _s

# the names a forward must mention for a functional site to be possible (a cheap filter before tracing)
CANDIDATE_NAMES: frozenset[str] = frozenset(
    {getattr(f, "__name__", "") for f in FUNCTIONS} | set(METHODS)
) - {""}


def function_for(kind: str, family: str):
    """The functional form of ``kind`` in ``family`` ("torch": torch.nn.functional, "ti": torchinit.functional)."""
    if family == "ti":
        return getattr(tif, kind)
    torch_name = ACTIVATIONS[kind].torch_name if kind in ACTIVATIONS else kind
    return getattr(TF, torch_name) if torch_name else None


def accepts_inplace(kind: str) -> bool:
    """Whether the functional form of ``kind`` takes an ``inplace`` argument."""
    return _SIGNATURES[kind][1]


def module_kwargs(kind: str, params: dict) -> dict:
    """Constructor arguments of ``kind``'s module for a functional call with ``params`` (prelu's weight dropped)."""
    out = {k: v for k, v in params.items() if k in _DEFAULTS[kind] and k != "weight"}
    if "inplace" in params and accepts_inplace(kind):
        out["inplace"] = bool(params["inplace"])
    return out


def kind_of_class(cls: type) -> str | None:
    """The kind of an exact torchinit or torch.nn activation class, else None."""
    for kind, ti_cls in TI_CLASSES.items():
        if cls is ti_cls or cls is TORCH_CLASSES[kind]:
            return kind
    return None


def family_of_class(cls: type) -> str | None:
    """"ti" for a torchinit activation class, "torch" for its torch.nn twin, else None."""
    if cls in TI_CLASSES.values():
        return "ti"
    if cls in TORCH_CLASSES.values():
        return "torch"
    return None


def base_kind(cls: type) -> str | None:
    """The kind whose torch.nn twin (or torchinit class, for torchinit-only kinds) ``cls`` derives from."""
    for kind, ti_cls in TI_CLASSES.items():
        base = TORCH_CLASSES[kind] or ti_cls
        if issubclass(cls, base):
            return kind
    return None


def is_known_activation_class(cls: type) -> bool:
    """torch.nn activation modules (MultiheadAttention aside), torchinit's, and nn.Identity."""
    if cls is nn.Identity or base_kind(cls) is not None or issubclass(cls, NO_TWIN):
        return True
    return False


__all__ = ["Spelling", "FUNCTIONS", "METHODS", "TI_CLASSES", "TORCH_CLASSES", "NO_TWIN", "CANDIDATE_NAMES",
           "function_for", "accepts_inplace", "module_kwargs", "kind_of_class", "family_of_class", "base_kind",
           "is_known_activation_class"]
