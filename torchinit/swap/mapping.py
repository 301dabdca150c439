"""Reading a swap mapping: which entry applies to a module or functional call, and what it builds.

Keys (most specific first): a module instance (that module; for a container, the functional calls
in its own ``forward``), an exact name, a glob over names (``fnmatch``; first match in the mapping's
order), a class (exact type: ``nn.ReLU`` does not match a subclass of ``nn.ReLU``; a torch.nn class
also matches its torchinit twin, so ``{nn.ReLU: ...}`` still applies after a default swap turned the
ReLUs into ``torchinit.nn.ReLU``; a key naming the torchinit class itself wins). String keys are
module *names*, never activation names: modules are named by their path (``"layer1.0.relu"``),
functional calls by their owner's path and spelling (``"layer1.0:F.relu"``; the root module's calls
are ``":F.relu"``). A string key that matches nothing is listed in ``SwapReport.unmatched`` (with the
class to use when it is an activation name such as ``"relu"``).

Values: ``None`` (leave it), a class (a torch.nn/torchinit twin of the same activation is converted
keeping every setting, parameter and hook; another class is constructed with the original's settings
where its constructor takes them), a module instance (a template, copied for each distinct module
replaced), the name of a torchinit activation (``"gelu"``), or a factory ``f(name, module)``
returning a module or None (functional calls pass an equivalent torch.nn module).
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from . import table

_GLOB = set("*?[")


class SwapError(ValueError):
    """A mapping ``swap_activations`` refuses (raised before anything is replaced)."""


def _describe(obj: Any) -> str:
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, nn.Module):
        return f"{type(obj).__name__} instance"
    if isinstance(obj, str):
        return repr(obj)
    return getattr(obj, "__qualname__", None) or type(obj).__name__


@dataclass(frozen=True)
class Entry:
    """The mapping entry found for a target: its key (described) and its value."""

    key: str
    value: Any
    origin: str = "type"  # "instance", "name", "glob" or "type"


class Mapping:
    """A validated swap mapping with the lookup order above."""

    def __init__(self, mapping: dict, twins: bool = True) -> None:
        if not isinstance(mapping, dict):
            raise SwapError(f"swap_activations: argument 'mapping' must be a dict or None, got {type(mapping).__name__}")
        self.twins = twins  # a torch.nn class key also matches its torchinit twin
        self.used: set[str] = set()  # name and glob keys that matched something
        self.instances: dict[int, Entry] = {}
        self.names: dict[str, Entry] = {}
        self.globs: list[tuple[str, Entry]] = []
        self.types: dict[type, Entry] = {}
        for key, value in mapping.items():
            _check_value(key, value)
            if isinstance(key, nn.Module):
                self.instances[id(key)] = Entry(_describe(key), value, "instance")
            elif isinstance(key, str):
                if _GLOB & set(key):
                    self.globs.append((key, Entry(_describe(key), value, "glob")))
                else:
                    self.names[key] = Entry(_describe(key), value, "name")
            elif isinstance(key, type):
                if not issubclass(key, nn.Module):
                    raise SwapError(f"swap_activations: mapping key {_describe(key)} is a class but not an nn.Module")
                self.types[key] = Entry(_describe(key), value, "type")
            else:
                raise SwapError(f"swap_activations: mapping key {key!r} must be a class, a module instance or a "
                                f"name/glob string, got {type(key).__name__}")

    def lookup(self, names: tuple[str, ...], cls: type, instance: nn.Module | None = None) -> Entry | None:
        """The entry for a target known by ``names``, of class ``cls`` (and module ``instance``), or None."""
        if instance is not None and id(instance) in self.instances:
            return self.instances[id(instance)]
        for n in names:
            if n in self.names:
                self.used.add(n)
                return self.names[n]
        for pattern, entry in self.globs:
            if any(fnmatch.fnmatchcase(n, pattern) for n in names):
                self.used.add(pattern)
                return entry
        entry = self.types.get(cls)
        if entry is None and self.twins and self.types:
            twin = table.torch_twin_of(cls)
            if twin is not None:
                entry = self.types.get(twin)
        return entry

    def unmatched(self) -> list[str]:
        """Name and glob keys that matched no module and no functional call (so far), in mapping order."""
        return [k for k in list(self.names) + [p for p, _ in self.globs] if k not in self.used]


def _check_value(key: Any, value: Any) -> None:
    if value is None or isinstance(value, nn.Module):
        return
    if isinstance(value, str):
        if value not in table.TI_CLASSES:
            raise SwapError(f"swap_activations: mapping value {value!r} (for key {_describe(key)}) is not a torchinit "
                            f"activation; expected one of {sorted(table.TI_CLASSES)}")
        return
    if isinstance(value, type):
        if not issubclass(value, nn.Module):
            raise SwapError(f"swap_activations: mapping value {_describe(value)} (for key {_describe(key)}) is not an "
                            "nn.Module class")
        return
    if not callable(value):
        raise SwapError(f"swap_activations: mapping value for key {_describe(key)} must be None, a module, a module "
                        f"class, a torchinit activation name or a factory, got {type(value).__name__}")


def _activation_key(key: str) -> str | None:
    """The class to suggest for a string key that is an activation name (``"relu"`` -> ``"nn.ReLU"``), else None."""
    from ..registry import names as registry_names

    name = key.strip().lower()
    if name not in table.TI_CLASSES and name not in registry_names():
        return None
    torch_cls = table.TORCH_CLASSES.get(name)
    if torch_cls is not None:
        return f"nn.{torch_cls.__name__}"
    if name in table.TI_CLASSES:
        return f"ti.nn.{table.TI_CLASSES[name].__name__}"
    return f"the class of ti.nn.get({name!r})"


def unmatched_keys(mapping: Mapping, module_names: list[str], calls_seen: bool = True) -> list:
    """Name and glob keys of ``mapping`` that matched nothing, each with what to write instead.

    ``calls_seen=False`` when some functional calls are only seen at run time (intercepted forwards, or
    ``functional=False``): keys naming a call (``"owner:F.relu"``) are then not judged.
    """
    from .report import Left

    out = []
    for key in mapping.unmatched():
        if ":" in key and not calls_seen:
            continue
        cls = _activation_key(key)
        if cls is not None:
            reason = (f"string keys are module names (paths such as 'layer1.0.{key}'), not activation names, and no "
                      f"module is named {key!r}; to map every such activation use its class as the key: {{{cls}: ...}}")
        else:
            close = difflib.get_close_matches(key, module_names, n=3)
            reason = "no module or functional call has this name" + (
                f"; closest module names: {', '.join(close)}" if close else "")
        out.append(Left(key, "mapping key", reason))
    return out


# ---------------------------------------------------------------------------------------------
# building replacements
# ---------------------------------------------------------------------------------------------


def convert_twin(old: nn.Module, cls: type[nn.Module]) -> nn.Module:
    """``old`` as an instance of ``cls`` (same activation): every setting, parameter, buffer and hook kept.

    The new module shares ``old``'s parameter objects and hook dictionaries, so optimizers and hook
    handles keep working; attributes ``cls`` does not have (torchinit's ``inplace`` on torch's GELU,
    which computes out of place either way) are dropped.
    """
    template = cls()
    new = cls.__new__(cls)
    for k, v in template.__dict__.items():
        new.__dict__[k] = old.__dict__.get(k, v)
    return new


def construct(cls: type[nn.Module], settings_from: nn.Module | None) -> nn.Module:
    """``cls(...)`` with the arguments its constructor shares with ``settings_from``'s attributes."""
    kwargs = {}
    if settings_from is not None:
        try:
            params = inspect.signature(cls.__init__).parameters
        except (TypeError, ValueError):
            params = {}
        for name in params:
            if name != "self" and name in settings_from.__dict__ and not name.startswith("_"):
                kwargs[name] = settings_from.__dict__[name]
    try:
        return cls(**kwargs)
    except Exception as exc:
        raise SwapError(f"swap_activations: could not construct {_describe(cls)}({kwargs}): {exc}") from exc


def is_twin(cls: type, original_cls: type) -> bool:
    """Whether ``cls`` computes the same activation as ``original_cls`` (both derive from one kind's base)."""
    k = table.base_kind(cls)
    return k is not None and k == table.base_kind(original_cls)


@dataclass
class Built:
    """What a mapping value produced for one target: a module, or None with the reason it was left."""

    module: nn.Module | None
    reason: str = ""
    twin: bool = False  # converted keeping settings, parameters and hooks


def build(value: Any, name: str, original: nn.Module) -> Built:
    """Apply a mapping value to one target (``original`` is the module, or a stand-in for a functional call)."""
    if value is None:
        return Built(None, "mapped to None")
    if isinstance(value, str):
        value = table.TI_CLASSES[value]
    if isinstance(value, type):
        if is_twin(value, type(original)):
            return Built(convert_twin(original, value), twin=True)
        return Built(construct(value, original))
    if isinstance(value, nn.Module):
        return Built(copy.deepcopy(value))
    result = value(name, original)
    if result is None:
        return Built(None, f"factory {_describe(value)} returned None")
    if not isinstance(result, nn.Module):
        raise SwapError(f"swap_activations: factory {_describe(value)} returned {type(result).__name__} for "
                        f"{name!r}; expected an nn.Module or None")
    return Built(result)


# ---------------------------------------------------------------------------------------------
# validation: an activation, with the original's output shape
# ---------------------------------------------------------------------------------------------


def _probe_input(original: nn.Module, new: nn.Module) -> torch.Tensor:
    channels = 4
    for m in (original, new):
        for p in m.parameters(recurse=False):
            if p.dim() == 1 and p.numel() > 1:
                channels = p.numel()
    ref = next(iter(new.parameters()), None)
    device = ref.device if ref is not None and ref.device.type != "meta" else torch.device("cpu")
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    return torch.linspace(-3, 3, 2 * channels * 6, device=device, dtype=dtype).reshape(2, channels, 6)


def check_activation(name: str, key: str, original: nn.Module, new: nn.Module) -> None:
    """Refuse ``new`` unless it is an activation giving ``original``'s output shape on a probe input."""
    where = f"swap_activations: the replacement for {name!r} (mapping key {key})"
    if not table.is_known_activation_class(type(new)):
        if any(True for _ in new.children()):
            raise SwapError(f"{where} is {type(new).__name__}, which has submodules; expected an activation module")
        big = [n for n, t in list(new.named_parameters()) + list(new.named_buffers()) if t.dim() > 1]
        if big:
            raise SwapError(f"{where} is {type(new).__name__} with multi-dimensional parameters {big}; expected an "
                            "element-wise activation module")
    x = _probe_input(original, new)
    try:
        with torch.no_grad():
            want = original.forward(x.clone().to(_device_of(original, x.device)))
            got = new.forward(x.clone())
    except Exception as exc:
        raise SwapError(f"{where}, {type(new).__name__}, failed on a probe input of shape {tuple(x.shape)}: "
                        f"{exc}") from exc
    if not isinstance(got, torch.Tensor):
        raise SwapError(f"{where}, {type(new).__name__}, returned {type(got).__name__}; expected a tensor")
    if tuple(got.shape) != tuple(want.shape):
        raise SwapError(f"{where}, {type(new).__name__}, changes the output shape: {tuple(got.shape)} where the "
                        f"original {type(original).__name__} gives {tuple(want.shape)} (probe input "
                        f"{tuple(x.shape)})")


def _device_of(module: nn.Module, default: torch.device) -> torch.device:
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else default


Factory = Callable[[str, nn.Module], "nn.Module | None"]

__all__ = ["Mapping", "Entry", "SwapError", "Built", "build", "convert_twin", "construct", "is_twin",
           "check_activation", "Factory"]
