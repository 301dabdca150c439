"""``apply_init``: resolve every parameter to one scheme, validate the whole plan, sample, then commit.

All-or-nothing: rules are checked (scheme names, argument names and values, shapes) for every parameter
before any is sampled. Then everything that can fail is done before the first write: values that need
user code or whole-matrix work (``torch_default``, orthogonal, sparse, dirac, DTensor shards, a generator
on another device) are staged in fresh tensors; every in-place sampling path (device, dtype,
distribution) is run once on a scratch tensor, which also compiles the Triton kernel on GPU; the Philox
workspaces are allocated. Only then are the parameters written: staged values copied, elementwise
schemes (the bulk of any model) sampled straight into the parameter, block by block, with no full-size
temporary. An error before the writes leaves the model exactly as it was. The write phase runs no user
code; it allocates only truncated normal's per-block temporaries and, for torch-style draws that are not
plain fp32 uniform/normal, one fp32 tensor the size of the parameter, so what is left to fail there is an
interrupt or running out of memory mid-way.

With ``seed=`` sampling is counter-based (``value = f(seed, parameter name, element index)``), so it
does not depend on module order, device or sharding. With ``generator=`` (or neither) parameters are
drawn from torch's RNG in module order, as a loop of torch.nn.init calls would.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .autogain import LayerGains, find_gains
from .fans import Block, ParamInfo, param_info
from . import philox
from .fill import Stream, fill_into_, materialize, writes_in_place
from .report import InitReport, ReportRow
from .rules import Resolved, Rule, normalize_rules
from .sampling import Dist, derive_key, sample_into_, use_triton_for
from .schemes import Action, Ctx, plan_action

__all__ = ["apply_init", "InitError"]


class InitError(ValueError):
    """Raised by apply_init when the plan is invalid; lists every problem found."""


@dataclass
class _Entry:
    info: ParamInfo
    param: torch.Tensor
    rule_index: int
    resolved: Resolved
    actions: list[tuple[Block | None, Action]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


def _is_dtensor(t: torch.Tensor) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except Exception:  # pragma: no cover - torch without distributed
        return False
    return isinstance(t, DTensor)


def _collect(model: nn.Module, fn: str) -> list[tuple[ParamInfo, torch.Tensor]]:
    seen: set[int] = set()
    out = []
    lazy = []
    for mname, m in model.named_modules():
        for pname, p in m.named_parameters(recurse=False):
            if p is None or id(p) in seen:
                continue
            seen.add(id(p))
            if isinstance(p, nn.parameter.UninitializedParameter):
                lazy.append(f"{mname}.{pname}" if mname else pname)
                continue
            out.append((param_info(m, mname, pname, p), p))
    if lazy:
        raise InitError(f"{fn}: {', '.join(lazy)} uninitialised (a lazy module): run a forward pass first")
    return out


def _plan_entry(e: _Entry, gains: dict[str, LayerGains] | None, fn: str) -> None:
    info, shape = e.info, tuple(e.param.shape)
    auto = None
    if gains is not None:
        lg = gains.get(info.module_name, LayerGains())
        auto = lg.gain
    blocks: list[Block | None] = list(info.blocks) if (info.blocks and e.resolved.how != "explicit") else [None]
    if e.resolved.how == "explicit" and info.blocks and len(info.blocks) > 1 and e.resolved.scheme.fan_based:
        blocks = list(info.blocks)  # matrix schemes named explicitly still see q, k, v / gates as matrices
    for b in blocks:
        if b is None:
            bshape = shape
            fi, fo = (info.fan_in, info.fan_out) if info.blocks else (None, None)
        else:
            bshape = (b.rows.stop - b.rows.start,) + shape[1:]
            fi, fo = b.fan_in, b.fan_out
        ctx = Ctx(f"{fn}: {info.name} ({e.resolved.scheme.name})", bshape, fi, fo, auto, info.groups)
        e.actions.append((b, plan_action(e.resolved.scheme, e.resolved.kwargs, ctx)))
        e.notes = ctx.notes


def _stream(seed: int | None, generator: torch.Generator | None, name: str) -> Stream:
    if seed is not None:
        return Stream(derive_key(seed, name))
    return Stream(None, generator)


def _torch_default(e: _Entry, seed: int | None, generator: torch.Generator | None) -> torch.Tensor:
    """Run the owning module's ``reset_parameters`` on a seeded RNG and return this parameter's new value;
    every parameter of the module is restored afterwards."""
    m = e.info.module
    reset = getattr(m, "reset_parameters", None) or getattr(m, "_reset_parameters", None)
    if reset is None:
        raise InitError(f"apply_init: {e.info.name}: torch_default needs {type(m).__name__}.reset_parameters()")
    saved = {n: p.detach().clone() for n, p in m.named_parameters(recurse=False)}
    devices = [p.device for p in saved.values() if p.device.type == "cuda"]
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            if seed is not None:
                torch.manual_seed(derive_key(seed, e.info.module_name, "torch_default"))
            elif generator is not None:
                torch.manual_seed(int(torch.randint(0, 2**62, (), generator=generator, device=generator.device)))
            reset()
            new = getattr(m, e.info.local_name).detach().clone()
    finally:
        with torch.no_grad():
            for n, p in m.named_parameters(recurse=False):
                p.copy_(saved[n])
    return new


def _local_region(p: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...], tuple[int, ...]]:
    """(local tensor, local shape, global offset) of a DTensor parameter."""
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    local = p.to_local()
    shape, offset = compute_local_shape_and_global_offset(p.shape, p.device_mesh, p.placements)
    return local, tuple(shape), tuple(offset)


def _global_index(gshape: tuple[int, ...], lshape: tuple[int, ...], offset: tuple[int, ...], device: torch.device) -> tuple[int | None, torch.Tensor | None]:
    """Global flat indices of a local region: (start, None) when contiguous, else (None, index tensor)."""
    strides = [math.prod(gshape[i + 1 :]) for i in range(len(gshape))]
    if all(l == g for l, g in zip(lshape[1:], gshape[1:])):
        return (offset[0] * strides[0] if gshape else 0), None
    idx = torch.zeros((), dtype=torch.int64, device=device)
    for d, (o, n, s) in enumerate(zip(offset, lshape, strides)):
        shape = [1] * len(lshape)
        shape[d] = n
        idx = idx + ((torch.arange(n, dtype=torch.int64, device=device) + o) * s).view(shape)
    return None, idx.reshape(-1)


def _sample_full(e: _Entry, device: torch.device, dtype: torch.dtype, shape: tuple[int, ...], seed: int | None,
                 generator: torch.Generator | None) -> torch.Tensor:
    base = _stream(seed, generator, e.info.name)
    row = math.prod(shape[1:]) if len(shape) > 1 else 1
    if len(e.actions) == 1 and e.actions[0][0] is None:
        return materialize(e.actions[0][1], shape, dtype, device, base)
    out = torch.empty(shape, dtype=dtype, device=device)
    for b, action in e.actions:
        assert b is not None
        bshape = (b.rows.stop - b.rows.start,) + shape[1:]
        s = Stream(base.key, base.generator, b.rows.start * row)
        out[b.rows] = materialize(action, bshape, dtype, device, s)
    return out


def _sample_dtensor(e: _Entry, seed: int | None) -> torch.Tensor:
    p = e.param
    if seed is None:
        raise InitError(f"apply_init: {e.info.name} is a DTensor: pass seed= so every rank draws the same tensor")
    local, lshape, offset = _local_region(p)
    gshape = tuple(p.shape)
    actions = {a for _, a in e.actions}
    if len(actions) == 1 and next(iter(actions)).elementwise:
        action = next(iter(actions))
        start, index = _global_index(gshape, lshape, offset, local.device)
        if action.kind == "constant":
            return torch.full(lshape, action.value, dtype=torch.float32, device=local.device).to(local.dtype)
        from .sampling import sample

        return sample(action.dist, lshape, local.dtype, local.device, derive_key(seed, e.info.name), None,
                      start=start or 0, index=index)
    full = _sample_full(e, local.device, local.dtype, gshape, seed, None)
    region = tuple(slice(o, o + n) for o, n in zip(offset, lshape))
    return full[region].contiguous()


def _block_targets(e: _Entry, base: Stream) -> list[tuple[torch.Tensor, Any, Stream]]:
    """(destination view, action, stream) for each block of an entry written in place."""
    p = e.param.detach()  # shares storage: writes land in the parameter, autograd never sees them
    if len(e.actions) == 1 and e.actions[0][0] is None:
        return [(p, e.actions[0][1], base)]
    shape = tuple(p.shape)
    row = math.prod(shape[1:]) if len(shape) > 1 else 1
    flat = p.view(-1)
    out = []
    for b, action in e.actions:
        assert b is not None
        view = flat[b.rows.start * row : b.rows.stop * row].view((b.rows.stop - b.rows.start,) + shape[1:])
        out.append((view, action, Stream(base.key, base.generator, b.rows.start * row)))
    return out


def _in_place_targets(e: _Entry, seed: int | None, generator: torch.Generator | None) -> list | None:
    """The in-place writes of an entry, or None when its value must be staged."""
    p = e.param
    if _is_dtensor(p) or not p.is_contiguous() or any(a.kind == "torch_default" for _, a in e.actions):
        return None
    targets = _block_targets(e, _stream(seed, generator, e.info.name))
    if all(writes_in_place(a, view, s) for view, a, s in targets):
        return targets
    return None


def _prepare_in_place(writes: list, seed: int | None) -> dict[torch.device, philox.Workspace]:
    """Run each in-place sampling path once on a scratch tensor (errors surface before any write; Triton
    compiles here) and allocate one Philox workspace per device that samples with torch ops."""
    if seed is None:
        return {}  # torch's own uniform_/normal_ on a float tensor; a dry run would consume the generator
    counters: dict[torch.device, int] = {}
    paths = set()
    for view, action, _ in writes:
        if action.kind == "dist":
            paths.add((view.device, view.dtype, action.dist.kind))
            counters[view.device] = max(counters.get(view.device, 0), view.numel() // 4 + 2)
    workspaces = {dev: philox.Workspace(min(n, philox.BLOCK_COUNTERS), dev)
                  for dev, n in counters.items() if not use_triton_for(dev)}
    for dev, dtype, kind in sorted(paths, key=str):
        d = {"uniform": Dist("uniform", a=-1.0, b=1.0), "normal": Dist("normal"),
             "trunc_normal": Dist("trunc_normal", 0.0, 1.0, -2.0, 2.0)}[kind]
        sample_into_(torch.empty(7, dtype=dtype, device=dev), d, key=1, start=3, ws=workspaces.get(dev))
    return workspaces


def _staged_value(e: _Entry, seed: int | None, generator: torch.Generator | None) -> torch.Tensor:
    """A parameter's new value in a fresh tensor (for the paths that cannot write in place)."""
    p = e.param
    if _is_dtensor(p):
        return _sample_dtensor(e, seed)
    if e.actions[0][1].kind == "torch_default":
        return _torch_default(e, seed, generator)
    return _sample_full(e, p.device, p.dtype, tuple(p.shape), seed, generator)


def apply_init(model: nn.Module, scheme_or_rules: Any, seed: int | None = None,
               generator: torch.Generator | None = None, strict: bool = False, **scheme_kwargs: Any) -> InitReport:
    """Initialise ``model``'s parameters by a scheme or a list of :class:`Rule` (later rules win).

    Args:
        model: the module to initialise (also a model on the meta device: the plan is recorded, nothing is
            sampled; after ``to_empty()`` call again).
        scheme_or_rules: a scheme name (``"kaiming_normal"``, ``"auto"``, ...), a :class:`Scheme`, a
            :class:`Rule`, or a list of these (presets return such lists).
        seed: counter-based sampling: each element is a function of (seed, parameter name, index).
        generator: torch-style sampling from this generator in module order (ignored when ``seed`` is set).
        strict: raise if any parameter is covered by no rule.
        **scheme_kwargs: arguments of a single scheme given by name (e.g. ``mode="fan_out"``).

    Returns:
        An :class:`InitReport`; ``print(report)`` shows a table of every parameter.

    Raises:
        InitError (a ValueError) listing every invalid rule/parameter, before anything is changed.
    """
    fn = "apply_init"
    if not isinstance(model, nn.Module):
        raise TypeError(f"{fn}: model must be an nn.Module, got {type(model).__name__}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"{fn}: seed must be an int, got {seed!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{fn}: generator must be a torch.Generator, got {type(generator).__name__}")
    rules = normalize_rules(scheme_or_rules, scheme_kwargs, fn)
    errors: list[str] = []
    validated: list[Any] = []
    for r in rules:
        try:
            validated.append(r.validate(fn))
        except (ValueError, TypeError) as exc:
            errors.append(str(exc))
            validated.append(None)
    if errors:
        raise InitError("\n".join(errors))

    params = _collect(model, fn)
    entries: list[_Entry] = []
    untouched: list[tuple[ParamInfo, torch.Tensor]] = []
    used = [False] * len(rules)
    for info, p in params:
        chosen = None
        for i, (r, v) in enumerate(zip(rules, validated)):
            res = r.resolve(info, *v)
            if res is not None:
                chosen = (i, res)
                used[i] = True
        if chosen is None:
            untouched.append((info, p))
        else:
            entries.append(_Entry(info, p, chosen[0], chosen[1]))

    needs_auto = any(
        e.resolved.kwargs.get("gain") == "auto" or e.resolved.scheme.name == "auto" for e in entries)
    gains = find_gains(model) if needs_auto else None
    for e in entries:
        try:
            _plan_entry(e, gains, fn)
        except (ValueError, TypeError) as exc:
            errors.append(str(exc))
    if strict and untouched:
        errors.append(f"{fn}: strict=True and no rule covers: {', '.join(i.name for i, _ in untouched)}")
    if errors:
        raise InitError("\n".join(errors))
    for i, u in enumerate(used):
        if not u:
            warnings.warn(f"{fn}: rule {rules[i]!r} matches no parameter", UserWarning, stacklevel=2)

    # stage what cannot be written in place (nothing is written yet), prove the in-place paths, then write
    live = [e for e in entries
            if not (e.param.device.type == "meta" or (_is_dtensor(e.param) and e.param.to_local().device.type == "meta"))]
    targets = {id(e): _in_place_targets(e, seed, generator) for e in live}
    if seed is None and any(t is None for t in targets.values()):
        targets = dict.fromkeys(targets)  # torch-style draws keep module order: stage every parameter
    staged: dict[int, torch.Tensor] = {}
    for e in live:
        if targets[id(e)] is None:
            staged[id(e)] = _staged_value(e, seed, generator)
    workspaces = _prepare_in_place([w for t in targets.values() if t for w in t], seed)
    with torch.no_grad():
        for e in live:
            if targets[id(e)] is None:
                target = e.param.to_local() if _is_dtensor(e.param) else e.param
                target.copy_(staged.pop(id(e)))
            else:
                for view, action, s in targets[id(e)]:
                    fill_into_(action, view, s, workspaces.get(view.device))
    sampled = {id(e) for e in live}

    rows = []
    for e in entries:
        action = e.actions[0][1]
        b = e.actions[0][0]
        shape = tuple(e.param.shape) if b is None else (b.rows.stop - b.rows.start,) + tuple(e.param.shape[1:])
        scheme = e.resolved.scheme.name
        if e.resolved.how == "recurrent":
            scheme = "orthogonal (per gate)"
        elif len(e.actions) > 1:
            scheme += f" (x{len(e.actions)} blocks)"
        rows.append(ReportRow(
            name=e.info.name, shape=tuple(e.param.shape), layer=e.info.layer, rule=rules[e.rule_index].label(e.rule_index),
            scheme=scheme, fan_in=e.info.fan_in, fan_out=e.info.fan_out, gain=e.notes.get("gain"),
            activation=e.notes.get("activation"), std=action.report_std(shape), sampled=id(e) in sampled))
    return InitReport(rows, [(u.name, tuple(t.shape), u.layer) for u, t in untouched], seed=seed)
