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
does not depend on module order, device or sharding. The name is the parameter's name as a checkpoint of
the unwrapped model stores it: wrappers' segments (``torch.compile``'s ``_orig_mod``, DDP's ``module``,
``checkpoint_wrapper``'s ``_checkpoint_wrapped_module``, FSDP1's ``_fsdp_wrapped_module``) are left out,
so wrapping or compiling a model never changes its init; rules match these names too. A parameter shared
by several modules (tied embeddings) is one parameter, under its first name. With ``generator=`` (or
neither) parameters are drawn from torch's RNG in module order, as a loop of torch.nn.init calls would.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import philox
from .actions import Action, Empty, Whole
from .autogain import LayerGains, find_gains
from .errors import InitError
from .fans import Block, ParamInfo, param_info
from .fill import Stream, fill_into_, materialize, writes_in_place
from .normalize import normalize_rules
from .presets import PresetError
from .report import InitReport, ReportRow
from .roles import checkpoint_named_modules
from .rules import Resolved, Rule
from .sampling import Dist, derive_key, sample_into_, use_triton_for
from .schemes import DATA_SCHEMES, Ctx, data_scheme_name, did_you_mean, plan_action

__all__ = ["apply_init", "apply_init_with_batch", "InitError"]


@dataclass
class _Entry:
    info: ParamInfo  # the occurrence (module, name) the winning rule selected
    param: torch.Tensor
    rule_index: int
    resolved: Resolved
    name: str = ""  # the parameter's checkpoint name (its first occurrence): the seed key and report name
    tied: tuple[str, ...] = ()  # its other names (tied/shared parameters)
    actions: list[tuple[Block | None, Action]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


def _is_dtensor(t: torch.Tensor) -> bool:
    # the shared check: importing torch.distributed.tensor here cost the first apply_init about 1 s
    from ..sharding import is_dtensor

    return is_dtensor(t)


def _collect(model: nn.Module, fn: str) -> list[tuple[list[ParamInfo], torch.Tensor]]:
    """Each parameter once: (its occurrences, first = checkpoint name, the tensor)."""
    groups: dict[int, tuple[list[ParamInfo], torch.Tensor]] = {}
    lazy = []
    seen_names: set[str] = set()
    for mname, m in checkpoint_named_modules(model, every_path=True):
        for pname, p in m._parameters.items():
            if p is None:
                continue
            full = f"{mname}.{pname}" if mname else pname
            if isinstance(p, nn.parameter.UninitializedParameter):
                if full not in lazy:
                    lazy.append(full)
                continue
            if full in seen_names:
                continue
            seen_names.add(full)
            info = param_info(m, mname, pname, p)
            if id(p) in groups:
                groups[id(p)][0].append(info)
            else:
                groups[id(p)] = ([info], p)
    if lazy:
        raise InitError(f"{fn}: {', '.join(lazy)} uninitialised (a lazy module): run a forward pass first")
    return list(groups.values())


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
        ctx = Ctx(f"{fn}: {e.name} ({e.resolved.scheme.name})", bshape, fi, fo, auto, info.groups,
                  role=info.role, module=info.module)
        if e.param.numel() == 0:
            e.actions = [(None, Empty())]
            e.notes = {"empty": True}
            return
        action = plan_action(e.resolved.scheme, e.resolved.kwargs, ctx)
        if action.random and not (e.param.is_floating_point() or e.param.is_complex()):
            raise TypeError(f"{fn}: {e.name} has dtype {e.param.dtype}; {e.resolved.scheme.name} draws random values "
                            "and needs a floating-point parameter (torch.nn.init raises too)")
        e.actions.append((b, action))
        e.notes = ctx.notes


def _stream(seed: int | None, generator: torch.Generator | None, name: str) -> Stream:
    if seed is not None:
        return Stream(derive_key(seed, name))
    return Stream(None, generator)


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
    base = _stream(seed, generator, e.name)
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
        raise InitError(f"apply_init: {e.name} is a DTensor: pass seed= so every rank draws the same tensor")
    local, lshape, offset = _local_region(p)
    gshape = tuple(p.shape)
    actions = {a for _, a in e.actions}
    if len(actions) == 1 and next(iter(actions)).elementwise:
        action = next(iter(actions))
        start, index = _global_index(gshape, lshape, offset, local.device)
        return action.materialize(lshape, local.dtype, local.device, Stream(derive_key(seed, e.name), None, start or 0),
                                  index=index)
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


def _local_shard_targets(e: _Entry, seed: int | None) -> list | None:
    """The in-place write of a DTensor parameter's local shard: one elementwise action over a shard that is a
    run of consecutive global elements (Shard(0), Replicate), written where it lives with the global
    numbering (the same values :func:`_sample_dtensor` stages, without a fresh tensor and a copy); else None."""
    actions = {a for _, a in e.actions}  # blocks of one action number their elements globally: one draw
    if seed is None or len(actions) != 1:
        return None
    action = next(iter(actions))
    local, lshape, offset = _local_region(e.param)
    if not action.elementwise or tuple(local.shape) != lshape or not local.is_contiguous():
        return None
    start, index = _global_index(tuple(e.param.shape), lshape, offset, local.device)
    if index is not None:
        return None
    target = local.detach()
    stream = Stream(derive_key(seed, e.name), None, start or 0)
    return [(target, action, stream)] if writes_in_place(action, target, stream) else None


def _in_place_targets(e: _Entry, seed: int | None, generator: torch.Generator | None) -> list | None:
    """The in-place writes of an entry, or None when its value must be staged."""
    p = e.param
    if _is_dtensor(p):
        return _local_shard_targets(e, seed)
    if not p.is_contiguous():
        return None
    targets = _block_targets(e, _stream(seed, generator, e.name))
    if all(writes_in_place(a, view, s) for view, a, s in targets):
        return targets
    return None


#: the distribution each sampling path (a Dist family) is run with once before the first write
_WARM_UP = {"uniform": Dist("uniform", a=-1.0, b=1.0), "normal": Dist("normal"),
            "trunc_normal": Dist("trunc_normal", 0.0, 1.0, -2.0, 2.0)}


def _prepare_in_place(writes: list, seed: int | None) -> dict[torch.device, philox.Workspace]:
    """Run each in-place sampling path once on a scratch tensor (errors surface before any write; Triton
    compiles here) and allocate one Philox workspace per device that samples with torch ops."""
    if seed is None:
        return {}  # torch's own uniform_/normal_ on a float tensor; a dry run would consume the generator
    counters: dict[torch.device, int] = {}
    paths = set()
    for view, action, _ in writes:
        d = action.sampled()
        if d is not None:
            paths.add((view.device, view.dtype, d.kind))
            counters[view.device] = max(counters.get(view.device, 0), view.numel() // 4 + 2)
    workspaces = {dev: philox.Workspace(min(n, philox.BLOCK_COUNTERS), dev)
                  for dev, n in counters.items() if not use_triton_for(dev)}
    for dev, dtype, family in sorted(paths, key=str):
        sample_into_(torch.empty(7, dtype=dtype, device=dev), _WARM_UP[family], key=1, start=3, ws=workspaces.get(dev))
    return workspaces


def _staged_value(e: _Entry, seed: int | None, generator: torch.Generator | None) -> torch.Tensor:
    """A parameter's new value in a fresh tensor (for the paths that cannot write in place)."""
    p = e.param
    if _is_dtensor(p):
        return _sample_dtensor(e, seed)
    action = e.actions[0][1]
    if action.whole:  # the module's reset or user code makes the whole parameter, blocks or not
        return action.stage(Whole(p, e.info, e.name, e.resolved.scheme.name, seed, generator, e.notes))
    return _sample_full(e, p.device, p.dtype, tuple(p.shape), seed, generator)


def _unwrapped(model: nn.Module) -> nn.Module:
    """The model inside torch.compile / DDP wrappers (what an FX trace should see)."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if inner is None and type(model).__name__ in ("DistributedDataParallel", "DataParallel"):
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _clean_keys(model: nn.Module, gains: dict[str, LayerGains]) -> dict[str, LayerGains]:
    """Gains keyed by the unwrapped model's names, re-keyed by checkpoint names (the names rules see)."""
    inner = _unwrapped(model)
    by_id = {id(m): name for name, m in checkpoint_named_modules(model)}
    out = {}
    for name, g in gains.items():
        try:
            m = inner.get_submodule(name) if name else inner
        except AttributeError:
            out[name] = g
            continue
        out[by_id.get(id(m), name)] = g
    return out


def _padding_row(e: _Entry) -> int | None:
    """An embedding's ``padding_idx`` row, zeroed after a scheme selected through the module (as
    ``nn.Embedding.reset_parameters`` and Hugging Face's ``_init_weights`` do); None otherwise."""
    m = e.info.module
    if (isinstance(m, nn.Embedding) and e.info.local_name == "weight" and m.padding_idx is not None
            and e.resolved.how == "weight"):
        return int(m.padding_idx)
    return None


def _plan_all(entries: list[_Entry], losers: list[_Entry], gains: dict[str, LayerGains] | None, fn: str) -> list[str]:
    """Plan (and so validate) every parameter under its winning rule and under every rule it overrides."""
    errors: list[str] = []
    loser_ids = {id(e) for e in losers}
    for e in entries + losers:
        try:
            _plan_entry(e, gains, fn)
            for _, a in e.actions:
                a.check(fn, e.name)
        except (ValueError, TypeError) as exc:
            msg = str(exc)
            if id(e) in loser_ids:
                msg += f" (rule {e.rule_index}, overridden by a later rule, is still invalid)"
            if msg not in errors:
                errors.append(msg)
    return errors


def _class_hint(rule: Rule, model: nn.Module) -> str:
    """For a rule naming layer classes by string: the closest class names the model has."""
    classes = {c.__name__ for m in model.modules() for c in type(m).__mro__}
    missing = [t for t in rule.layers if isinstance(t, str) and t not in classes]
    return "".join(f" (no {t!r} in the model{did_you_mean(t, sorted(classes), n=1)})" for t in missing)


def _unmatched_summary(rules: list[Rule], used: list[bool], fn: str, model: nn.Module) -> list[str]:
    """Labels of the rules that matched nothing; one warning for those the user wrote (not a preset's)."""
    unmatched = [rules[i].label(i) for i, u in enumerate(used) if not u]
    mine = [rules[i].label(i) + _class_hint(rules[i], model) for i, u in enumerate(used)
            if not u and rules[i].origin is None]
    if mine:
        warnings.warn(f"{fn}: {len(mine)} rule(s) matched no parameter: {'; '.join(mine)}", UserWarning, stacklevel=3)
    return unmatched


def _data_scheme(model: nn.Module, name: str, data: Any, seed: int | None, generator: torch.Generator | None,
                 kwargs: dict[str, Any], fn: str) -> InitReport:
    """Run a registered data-dependent scheme (``lsuv``, ``data_init``) and report it like any scheme."""
    scheme = DATA_SCHEMES[name]
    if data is None:
        raise InitError(f"{fn}: {name!r} is data-dependent: pass a batch, apply_init(model, {name!r}, data=batch)")
    accepted = scheme.params
    for k in kwargs:
        if k not in accepted:
            raise InitError(f"{fn}: {name!r} got unexpected argument {k!r}{did_you_mean(k, accepted, n=1)} "
                            f"(it accepts: {', '.join(accepted)})")
    sub = scheme(model, data, seed, generator, kwargs)
    names = {n: p for n, p in model.named_parameters()}

    def owner(n: str) -> str:
        return type(model.get_submodule(n.rsplit(".", 1)[0])).__name__ if "." in n else type(model).__name__

    done = {}
    for layer in sub.layers:
        for local in ("weight", "bias"):
            full = f"{layer.name}.{local}" if layer.name else local
            if full in names:
                done[full] = layer
    rows = [ReportRow(name=n, shape=tuple(names[n].shape), layer=owner(n), rule=f"#0 {name}", scheme=name, fan_in=None,
                      fan_out=None, gain=None, activation=None, std=float(names[n].detach().double().std())
                      if names[n].numel() > 1 else None, sampled=True) for n in done]
    untouched = [(n, tuple(p.shape), owner(n)) for n, p in names.items() if n not in done]
    notes = [f"{name}: " + line for line in str(sub).splitlines()[:1]]
    notes += [f"{name}: skipped {n} ({why})" for n, why in getattr(sub, "skipped", [])]
    report = InitReport(rows, untouched, seed=seed, notes=notes)
    report.data_report = sub
    return report


def apply_init(model: nn.Module, scheme_or_rules: Any, seed: int | None = None,
               generator: torch.Generator | None = None, strict: bool = False, data: Any = None,
               **scheme_kwargs: Any) -> InitReport:
    """Initialise ``model``'s parameters by a scheme, a list of :class:`Rule`, or a preset (later rules win).

    Args:
        model: the module to initialise (also a model on the meta device: the plan is recorded, nothing is
            sampled; after ``to_empty()`` call again).
        scheme_or_rules: a scheme name (``"kaiming_normal"``, ``"he"``, ``"auto"``, ..., any case, trailing
            ``_`` allowed), a :class:`Scheme`, an init function (``torch.nn.init.orthogonal_``: called on each
            weight; biases get zeros, norms their reset), a :class:`Rule`, a preset (``ti.init.gpt2`` or
            ``ti.init.gpt2(std=0.01)``), a data-dependent scheme (``"lsuv"``, ``"data_init"``: with ``data=``),
            or a list of these.
        seed: counter-based sampling: each element is a function of (seed, parameter name, index).
        generator: torch-style sampling from this generator in module order (ignored when ``seed`` is set).
        strict: raise if any parameter is covered by no rule.
        data: the batch a data-dependent scheme runs the model on (a tensor, a tuple of positional or a dict
            of keyword arguments).
        **scheme_kwargs: arguments of a single scheme given by name (e.g. ``mode="fan_out"``).

    Returns:
        An :class:`InitReport`; ``print(report)`` shows a table of every parameter, the rules that matched
        nothing and the presets' notes (e.g. the blocks ``zero_init_residual`` skipped and why).

    Raises:
        InitError (a ValueError) listing every invalid rule/parameter, before anything is changed;
        PresetError (a ValueError) for a preset given a model it does not cover.
    """
    fn = "apply_init"
    if not isinstance(model, nn.Module):
        raise TypeError(f"{fn}: model must be an nn.Module, got {type(model).__name__}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"{fn}: seed must be an int, got {seed!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{fn}: generator must be a torch.Generator, got {type(generator).__name__}")
    data_name = data_scheme_name(scheme_or_rules)
    if data_name is not None:
        return _data_scheme(model, data_name, data, seed, generator, scheme_kwargs, fn)
    if data is not None:
        raise InitError(f"{fn}: data= is for data-dependent schemes ({', '.join(DATA_SCHEMES)}); "
                        f"{scheme_or_rules!r} does not use it")
    try:
        rules, notes = normalize_rules(scheme_or_rules, scheme_kwargs, fn, model)
    except PresetError:
        raise
    except ValueError as exc:
        raise InitError(str(exc)) from None
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
    losers: list[_Entry] = []
    untouched: list[tuple[ParamInfo, torch.Tensor]] = []
    used = [False] * len(rules)
    for occurrences, p in params:
        canonical = occurrences[0]
        covering = []
        for i, (r, v) in enumerate(zip(rules, validated)):
            for occ in occurrences:
                try:
                    res = r.resolve(occ, *v)
                except ValueError as exc:
                    errors.append(f"{fn}: {exc}")
                    res = None
                if res is not None:
                    covering.append((i, res, occ))
                    used[i] = True
                    break
        if not covering:
            untouched.append((canonical, p))
            continue
        aliases = tuple(o.name for o in occurrences[1:])
        i, res, occ = covering[-1]
        entries.append(_Entry(occ, p, i, res, name=canonical.name, tied=aliases))
        losers.extend(_Entry(o, p, j, rr, name=canonical.name) for j, rr, o in covering[:-1])
    if errors:
        raise InitError("\n".join(dict.fromkeys(errors)))

    needs_auto = any(
        e.resolved.kwargs.get("gain") == "auto" or e.resolved.scheme.auto_gain for e in entries + losers)
    gains = _clean_keys(model, find_gains(_unwrapped(model))) if needs_auto else None
    errors.extend(_plan_all(entries, losers, gains, fn))
    if strict and untouched:
        errors.append(f"{fn}: strict=True and no rule covers: {', '.join(i.name for i, _ in untouched)}")
    if errors:
        raise InitError("\n".join(errors))
    unmatched = _unmatched_summary(rules, used, fn, model)
    for i, (r, v) in enumerate(zip(rules, validated)):
        if v[0].bias_only and used[i] and any(e.rule_index == i and e.resolved.how == "bias" for e in entries):
            notes.append(f"{fn}: rule {r.label(i)}: {v[0].name} is a bias-only scheme, applied to the biases of the "
                         "layers it selects (their weights are left to other rules)")

    # stage what cannot be written in place (nothing is written yet), prove the in-place paths, then write
    live = [e for e in entries
            if e.actions[0][1].writes
            and not (e.param.device.type == "meta" or (_is_dtensor(e.param) and e.param.to_local().device.type == "meta"))]
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
            pad = _padding_row(e)
            if pad is not None and not _is_dtensor(e.param):
                e.param[pad].zero_()
    sampled = {id(e) for e in live}

    rows = []
    padded = [f"{e.name}[{_padding_row(e)}]" for e in live if _padding_row(e) is not None and not _is_dtensor(e.param)]
    if padded:
        notes.append(f"{fn}: embedding padding rows zeroed (as nn.Embedding resets them): {', '.join(padded)}")
    empty = [e.name for e in entries if not e.actions[0][1].writes]
    if empty:
        warnings.warn(f"{fn}: Initializing zero-element tensors is a no-op ({', '.join(empty)})", UserWarning,
                      stacklevel=2)
        notes.append(f"{fn}: zero-element parameters left as they are: {', '.join(empty)}")
    for e in entries:
        action = e.actions[0][1]
        b = e.actions[0][0]
        shape = tuple(e.param.shape) if b is None else (b.rows.stop - b.rows.start,) + tuple(e.param.shape[1:])
        scheme = e.resolved.scheme.name
        if e.resolved.how == "recurrent":
            scheme = "orthogonal (per gate)"
        elif len(e.actions) > 1:
            scheme += f" (x{len(e.actions)} blocks)"
        elif "scheme_label" in e.notes:
            scheme = e.notes["scheme_label"]
        std = e.notes["measured_std"] if "measured_std" in e.notes else action.report_std(shape)
        rows.append(ReportRow(
            name=e.name, shape=tuple(e.param.shape), layer=e.info.layer, rule=rules[e.rule_index].label(e.rule_index),
            scheme=scheme, fan_in=e.info.fan_in, fan_out=e.info.fan_out, gain=e.notes.get("gain"),
            activation=e.notes.get("activation"), std=std, sampled=id(e) in sampled, tied=e.tied))
    return InitReport(rows, [(u.name, tuple(t.shape), u.layer) for u, t in untouched], seed=seed, notes=notes,
                      unmatched=unmatched)


def apply_init_with_batch(model: nn.Module, scheme_or_rules: Any, batch: Any, seed: int | None = None) -> InitReport:
    """:func:`apply_init` for a caller that holds a batch (the CLI, ``compare_inits``): a data-dependent scheme
    runs on it (``data=batch``), any other scheme is applied without it."""
    data = {"data": batch} if data_scheme_name(scheme_or_rules) is not None else {}
    return apply_init(model, scheme_or_rules, seed=seed, **data)
