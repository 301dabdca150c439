"""Planning and committing module replacements: walk ``_modules`` (shared instances once), build, carry, validate."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn

from . import foreign, table
from .mapping import Mapping, SwapError, build, check_activation
from .report import Left, Replaced

# hook dictionaries (and flags) of nn.Module that travel with a replaced module
_HOOK_ATTRS = (
    "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks", "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called", "_backward_pre_hooks", "_backward_hooks", "_state_dict_hooks",
    "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
)


@dataclass
class Place:
    """Every place one module object sits: (parent, attribute name, path)."""

    module: nn.Module
    spots: list = field(default_factory=list)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(path for _, _, path in self.spots)


def walk(root: nn.Module) -> tuple[list[Place], dict[int, str]]:
    """All modules under ``root`` (each object once, with every place it sits) and each object's first path."""
    places: dict[int, Place] = {}
    first_path: dict[int, str] = {id(root): ""}
    stack = [(root, "")]
    while stack:
        parent, prefix = stack.pop()
        for attr, child in list(parent._modules.items()):
            if child is None:
                continue
            path = f"{prefix}.{attr}" if prefix else attr
            place = places.get(id(child))
            if place is None:
                place = places[id(child)] = Place(child)
                first_path[id(child)] = path
                stack.append((child, path))
            place.spots.append((parent, attr, path))
    ordered = sorted(places.values(), key=lambda p: p.names[0])
    return ordered, first_path


def _describe_module(m: nn.Module) -> str:
    extra = m.extra_repr()
    mod = type(m).__module__
    prefix = "torchinit.nn." if mod.startswith("torchinit.nn") else ("" if mod.startswith("torch.nn") else mod + ".")
    return f"{prefix}{type(m).__name__}({extra})"


def _is_custom_activation(m: nn.Module) -> bool:
    """A module class named by type in a mapping: a leaf from outside torch.nn with at most 1-D tensors."""
    if (type(m).__module__ or "").startswith("torch.nn") or any(True for _ in m.children()):
        return False
    return all(t.dim() <= 1 for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)))


def _home(old: nn.Module, parent: nn.Module) -> torch.Tensor | None:
    for src in (old, parent):
        for t in list(src.parameters()) + list(src.buffers()):
            if t.is_floating_point():
                return t
    return None


def carry(old: nn.Module, new: nn.Module, parent: nn.Module, notes: list[str]) -> None:
    """Give a non-twin replacement the original's training mode, hooks, device and dtype."""
    new.train(old.training)
    ref = _home(old, parent)
    tensors = list(new.parameters()) + list(new.buffers())
    if ref is not None and tensors and any(t.device != ref.device or t.dtype != ref.dtype for t in tensors):
        new.to(device=ref.device, dtype=ref.dtype)
        notes.append(f"moved to {ref.device}/{ref.dtype}")
    carried = []
    for attr in _HOOK_ATTRS:
        hooks = old.__dict__.get(attr)
        if not hooks:
            continue
        mine = new.__dict__.get(attr)
        if not mine:
            new.__dict__[attr] = hooks  # the same dict: handles from register_*_hook still remove them
        else:
            merged = OrderedDict(mine)
            merged.update(hooks)
            new.__dict__[attr] = merged
            notes.append(f"{attr} merged with the replacement's own; old handles no longer remove them")
        carried.append(f"{attr.strip('_')}={len(hooks)}")
    if old.__dict__.get("_is_full_backward_hook") is not None and old.__dict__.get("_backward_hooks"):
        new._is_full_backward_hook = old._is_full_backward_hook
    if carried:
        notes.append("hooks carried: " + ", ".join(carried))


@dataclass
class ModulePlan:
    """Replacements decided (not yet made) and what was left."""

    swaps: list = field(default_factory=list)  # (Place, new module, Replaced)
    left: list[Left] = field(default_factory=list)

    gone: set[str] = field(default_factory=set)  # every path of a replaced module

    def covers(self, place: Place) -> bool:
        """Whether ``place``'s module is replaced, or sits only inside replaced modules."""
        return bool(self.gone) and (all(n in self.gone for n in place.names) or _inside(place.names, self.gone))


def _inside(names: tuple[str, ...], gone: set[str]) -> bool:
    """Whether a module sits only inside modules already planned for replacement (it goes with them)."""
    def under(name: str) -> bool:
        parts = name.split(".")
        return any(".".join(parts[:i]) in gone for i in range(1, len(parts)))
    return bool(gone) and all(under(n) for n in names)


def _foreign_swap(place: Place, found: table.Recognised) -> tuple:
    """The planned replacement of a recognised Hugging Face / timm module: its parameters, hooks and mode kept."""
    old, names = place.module, place.names
    new = found.build()
    for name, p in old._parameters.items():  # the same Parameter objects (the probe checked names and shapes)
        new._parameters[name] = p
    notes = list(found.notes)
    carry(old, new, place.spots[0][0], notes)
    if len(names) > 1:
        notes.append(f"shared by {len(names)} places, still shared")
    return place, new, Replaced(names, _describe_module(old), _describe_module(new), "module", notes)


def plan_modules(places: list[Place], mapping: Mapping | None, default: Mapping, root: nn.Module) -> ModulePlan:
    """Decide every module replacement, building and validating the new modules; nothing is changed yet.

    With the default mapping (``mapping=None``), torch.nn activations become their torchinit twins and the
    Hugging Face / timm classes of :mod:`torchinit.swap.foreign` the torchinit module the probe confirmed;
    every other module that is or looks like an activation is reported in ``left`` with the reason.
    """
    plan = ModulePlan()
    active = mapping if mapping is not None else default
    gone = plan.gone  # paths being replaced: their submodules are replaced with them
    for place in places:
        old = place.module
        names = place.names
        if _inside(names, gone):
            continue
        entry = active.lookup(names, type(old), old)
        known = table.is_known_activation_class(type(old))
        if entry is not None and not known:
            if entry.origin != "type":
                continue  # a name, glob or instance key on a non-activation module scopes functional calls only
            if not _is_custom_activation(old):
                raise SwapError(f"swap_activations: mapping key {entry.key} matches {names[0]!r}, a "
                                f"{type(old).__name__}, which is not an activation module")
        if entry is None:
            found = table.recognise(old) if mapping is None else None
            if found is not None and found.ok:
                plan.swaps.append(_foreign_swap(place, found))
                gone.update(names)
            elif found is not None:
                plan.left.append(Left(names[0], _describe_module(old), found.reason))
            elif known and type(old) is not nn.Identity:
                plan.left.append(Left(names[0], _describe_module(old), _why_left(old, mapping)))
            elif not known and foreign.looks_like_activation(old):
                plan.left.append(Left(names[0], _describe_module(old), _why_unknown(old, mapping)))
            continue
        parent = place.spots[0][0]
        built = build(entry.value, names[0], old)
        if built.module is None:
            plan.left.append(Left(names[0], _describe_module(old), built.reason))
            continue
        new = built.module
        if built.twin and type(new) is type(old):
            plan.left.append(Left(names[0], _describe_module(old),
                                  f"already {type(old).__name__} (mapped to its own class)"))
            continue
        notes: list[str] = []
        if built.twin:
            kept = [n for n, _ in old.named_parameters(recurse=False)]
            if kept:
                notes.append("parameters kept: " + ", ".join(kept))
            hooks = [a.strip("_") for a in _HOOK_ATTRS if old.__dict__.get(a)]
            if hooks:
                notes.append("hooks kept: " + ", ".join(hooks))
        else:
            carry(old, new, parent, notes)
            check_activation(names[0], entry.key, old, new)
            before, after = set(old.state_dict()), set(new.state_dict())
            if before != after:
                notes.append(f"state_dict keys change: removed {sorted(before - after)}, added {sorted(after - before)}")
        if len(names) > 1:
            notes.append(f"shared by {len(names)} places, still shared")
        plan.swaps.append((place, new, Replaced(names, _describe_module(old), _describe_module(new), "module", notes)))
        gone.update(names)
    return plan


def _has_own_exact_key(mapping: Mapping, names: tuple[str, ...], module: nn.Module) -> bool:
    return id(module) in mapping.instances or any(n in mapping.names for n in names)


def _why_left(old: nn.Module, mapping: Mapping | None) -> str:
    if mapping is not None:
        return "no mapping entry"
    if table.family_of_class(type(old)) == "ti" or (type(old).__module__ or "").startswith("torchinit."):
        return "already torchinit"
    if isinstance(old, table.NO_TWIN):
        return "no torchinit twin"
    kind = table.base_kind(type(old))
    base = table.TORCH_CLASSES[kind] or table.TI_CLASSES[kind]
    return (f"a subclass of {base.__module__}.{base.__name__} (exact types only: name its class in the mapping to "
            "swap it)")


def _why_unknown(old: nn.Module, mapping: Mapping | None) -> str:
    if mapping is not None:
        return "no mapping entry (it looks like an activation: a parameter-free leaf named like one)"
    return (f"looks like an activation, but {foreign.qualified_name(type(old))} is not a class torchinit knows "
            "(name its class in a mapping to swap it)")


def commit_modules(plan: ModulePlan) -> list[Replaced]:
    """Put every planned module in every place its original sat."""
    out = []
    for place, new, record in plan.swaps:
        for parent, attr, _ in place.spots:
            parent._modules[attr] = new
        out.append(record)
    return out


__all__ = ["Place", "ModulePlan", "walk", "plan_modules", "commit_modules", "carry"]
