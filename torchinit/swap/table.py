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
from typing import Callable

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

# torch.nn activation-like modules with no torchinit twin: left by the default mapping, and reported (a row
# of the activation table whose module subclasses one of them makes it a twin: it leaves this list)
NO_TWIN: tuple[type[nn.Module], ...] = tuple(c for c in (
    nn.RReLU, nn.Threshold, nn.Softshrink, nn.Hardshrink, nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.Softmax2d,
) if c not in TORCH_CLASSES.values())

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


def torch_twin_of(cls: type) -> type | None:
    """The torch.nn twin of an exact torchinit activation class (``torchinit.nn.ReLU`` -> ``nn.ReLU``), else None."""
    for kind, ti_cls in TI_CLASSES.items():
        if cls is ti_cls:
            return TORCH_CLASSES[kind]
    return None


def is_known_activation_class(cls: type) -> bool:
    """torch.nn activation modules (MultiheadAttention aside), torchinit's, nn.Identity, and the classes of
    other libraries in :data:`torchinit.swap.foreign.TABLE` (known by qualified name)."""
    if cls is nn.Identity or base_kind(cls) is not None or issubclass(cls, NO_TWIN):
        return True
    return foreign.known(cls) is not None


# ---------------------------------------------------------------------------------------------
# activation modules of other libraries (Hugging Face, timm): recognised by name, verified by a probe
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recognised:
    """A foreign activation module's verified torchinit replacement, or the reason it has none.

    ``build()`` makes a fresh replacement (its own parameters; the caller shares the original's),
    ``what`` describes it, ``kind`` is its activation kind (``"identity"``/``"clipped_gelu"`` for
    ``nn.Identity`` and :class:`torchinit.registry.ClippedGELU`), ``settings`` its constructor arguments.
    """

    kind: str | None
    settings: dict
    what: str = ""
    build: Callable[[], nn.Module] | None = None
    reason: str = ""
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.build is not None


def _factory(kind: str) -> Callable[..., nn.Module]:
    if kind == "identity":
        return lambda **_: nn.Identity()
    if kind == "clipped_gelu":
        from ..registry import ClippedGELU

        return ClippedGELU
    return TI_CLASSES[kind]


def _describe_new(kind: str, settings: dict) -> str:
    if kind == "identity":
        return "torch.nn.Identity()"
    cls = _factory(kind)
    args = ", ".join(f"{k}={v!r}" for k, v in settings.items())
    return f"{cls.__module__}.{cls.__qualname__}({args})"


def recognise(module: nn.Module) -> Recognised | None:
    """For a module of a class in :data:`torchinit.swap.foreign.TABLE`: the torchinit replacement computing
    exactly its function (its settings read from the instance, checked by :mod:`torchinit.swap.probe`),
    or why there is none. None for any other class."""
    entry = foreign.known(type(module))
    if entry is None:
        return None
    if entry.kind is None:
        return Recognised(None, {}, reason=entry.why_not)
    try:
        settings = entry.settings(module)
    except Exception as exc:  # noqa: BLE001 - a library version without the attribute the entry reads
        return Recognised(entry.kind, {}, reason=f"could not read its settings ({type(exc).__name__}: {exc}); its "
                                                 "class may have changed in this library version")
    factory = _factory(entry.kind)
    what = _describe_new(entry.kind, settings)
    verdict = probe.cached_compare(module, tuple(sorted(settings.items())), lambda: factory(**settings), what)
    if not verdict.ok:
        return Recognised(entry.kind, settings, what, reason=f"{verdict.reason}: not the same function in this "
                                                                 "library version, so left as it is (a mapping naming "
                                                                 "its class swaps it anyway)")
    notes = tuple(n for n in (entry.note,) if n) + verdict.notes
    return Recognised(entry.kind, settings, what, lambda: factory(**settings), notes=notes)


def kind_of_module(module: nn.Module) -> tuple[str, dict] | None:
    """``(kind, arguments)`` such that ``torchinit.functional.<kind>(x, **arguments)`` computes ``module(x)``.

    For exact torch.nn and torchinit activation classes, and for the Hugging Face / timm classes of
    :data:`torchinit.swap.foreign.TABLE` that pass the probe (e.g. HF ``GELUTanh`` -> ``("gelu",
    {"approximate": "tanh"})``, ``QuickGELUActivation`` -> ``("swish", {"beta": 1.702})``). The
    arguments are the functional's, after the input, ``inplace`` excluded (read ``module.inplace``);
    a learnable one (PReLU's ``weight``) is the module's own Parameter. None for anything else,
    including identities and clipped GELU (no single kind computes them).
    """
    kind = kind_of_class(type(module))
    source = module
    if kind is None:
        found = recognise(module)
        if found is None or not found.ok or found.kind not in TI_CLASSES:
            return None
        kind, source = found.kind, found.build()
    defaults = ACTIVATIONS[kind].defaults if kind in ACTIVATIONS else _DEFAULTS.get(kind, {})
    args = {}
    for name in defaults:
        if name in module._parameters:
            args[name] = module._parameters[name]
        elif hasattr(source, name):
            args[name] = getattr(source, name)
    return kind, args


__all__ = ["Spelling", "FUNCTIONS", "METHODS", "TI_CLASSES", "TORCH_CLASSES", "NO_TWIN", "CANDIDATE_NAMES",
           "function_for", "accepts_inplace", "module_kwargs", "kind_of_class", "family_of_class", "base_kind",
           "is_known_activation_class", "torch_twin_of", "Recognised", "recognise", "kind_of_module"]

from . import foreign, probe  # noqa: E402  (foreign and probe import nothing from here)
