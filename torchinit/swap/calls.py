"""Switching functional activation calls (``F.relu(x)``, ``torch.relu(x)``, ``x.relu_()``...) inside forwards.

Each module whose own forward (or a helper it calls) mentions an activation function is traced
*shallowly* with torch.fx: its submodules stay leaves, so only its own code becomes a graph. The
activation nodes are switched and the module gets an instance-level ``forward`` compiled from the
edited graph (its class and ``state_dict`` are untouched; deleting the attribute restores the
original). A forward is not rewritten when its graph differs between training and eval mode (a
rewrite would freeze one branch), when its signature has defaults or ``*args``/``**kwargs`` (a traced
``if mask is None`` would freeze too), or when tracing fails (data-dependent control flow...). Such a
module is *intercepted* instead: its forward runs under a ``TorchFunctionMode`` that switches the
activation calls made by code running on the module's behalf (the nearest module method on the call
stack is this module's), so neither its children nor the replacement modules are touched.

Function-valued attributes (``self.activation = F.relu``, as in ``nn.TransformerEncoderLayer``) are
switched to their twin function.

Under ``torch.compile`` a rewritten forward is ordinary Python and compiles like the original
(``fullgraph=True`` included); an intercepted one compiles with graph breaks, because the ownership
check reads the Python call stack, so ``fullgraph=True`` fails on it.
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.fx as fx
from torch import nn
from torch.overrides import TorchFunctionMode

from .. import functional as tif
from . import table
from .fused_calls import LEAF_FUNCTIONS
from .mapping import Built, Mapping, SwapError, build, check_activation

MARK = "_torchinit_swap"  # attribute set on installed forward functions: "fx" or "intercept"
HIDDEN = "_torchinit_swap_fn_"  # prefix of instance attributes holding replacement modules for calls


def _write_back(input: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Keep an in-place call in place: copy a replacement's result into the input unless it already is it."""
    if out is input:
        return input
    return input.copy_(out)


def _apply(module: nn.Module, input: torch.Tensor) -> torch.Tensor:
    """Call a replacement module on a functional call's input."""
    return module(input)


# ---------------------------------------------------------------------------------------------
# resolving one call site
# ---------------------------------------------------------------------------------------------


@dataclass
class Action:
    """What to do with one functional call: call ``function`` with ``params``, call ``module``, or leave it."""

    function: Callable | None = None
    params: dict = field(default_factory=dict)
    module: nn.Module | None = None
    write_back: bool = False
    reason: str = ""  # why it is left (when neither function nor module)
    new: str = ""  # description for the report

    @property
    def leaves(self) -> bool:
        return self.function is None and self.module is None


def _stand_in(spelling: table.Spelling, params: dict) -> nn.Module:
    """A torch.nn module (torchinit's for torchinit-only kinds) computing what the call computes."""
    cls = (table.TORCH_CLASSES[spelling.kind] if spelling.family == "torch" else None) or table.TI_CLASSES[spelling.kind]
    kwargs = {k: v for k, v in table.module_kwargs(spelling.kind, params).items() if _is_constant(v)}
    if "inplace" in kwargs and "inplace" not in inspect.signature(cls.__init__).parameters:
        kwargs.pop("inplace")
    return cls(**kwargs)


def _is_constant(v: Any) -> bool:
    return isinstance(v, (bool, int, float, str)) or v is None


def _fmt(label: str, params: dict) -> str:
    shown = ", ".join(f"{k}={v!r}" for k, v in params.items() if _is_constant(v))
    return f"{label}({shown})"


def resolve(mapping: Mapping | None, spelling: table.Spelling, params: dict, name: str, owner: nn.Module,
            forced_inplace_input: bool = True) -> Action:
    """Decide what a functional call becomes. ``mapping=None`` is the default (torch -> torchinit twin)."""
    site_cls = (table.TORCH_CLASSES[spelling.kind] if spelling.family == "torch" else None) or \
        table.TI_CLASSES[spelling.kind]
    if mapping is None:
        if spelling.family == "ti":
            return Action(reason="already torchinit")
        return _twin_function(spelling, params, "ti")
    entry = mapping.lookup((name,), site_cls, owner)
    if entry is None:
        return Action(reason="no mapping entry")
    value = entry.value
    if value is None:
        return Action(reason="mapped to None")
    if isinstance(value, str):
        value = table.TI_CLASSES[value]
    if isinstance(value, type):
        fam = table.family_of_class(value)
        if fam is not None and table.kind_of_class(value) == spelling.kind:
            if fam == spelling.family:
                return Action(reason=f"already {fam} (mapped to {value.__name__})")
            return _twin_function(spelling, params, fam)
    if isinstance(value, nn.Module) or isinstance(value, type) or callable(value):
        stand_in = _stand_in(spelling, params)
        built: Built = build(value, name, stand_in)
        if built.module is None:
            return Action(reason=built.reason)
        module = built.module
        if any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
            return Action(reason=f"the replacement {type(module).__name__} has parameters or buffers, which a "
                                 "functional call has nowhere to keep (map the module type instead)")
        check_activation(name, entry.key, stand_in, module)
        return Action(module=module, write_back=bool(params.get("inplace")),
                      new=f"{type(module).__module__}.{type(module).__name__}")
    raise SwapError(f"swap_activations: cannot use mapping value {value!r} for {name!r}")


def _twin_function(spelling: table.Spelling, params: dict, family: str) -> Action:
    fn = table.function_for(spelling.kind, family)
    if fn is None:
        return Action(reason=f"no {family} function for {spelling.kind}")
    out = dict(params)
    inplace = bool(out.get("inplace", False))
    if not table.accepts_inplace(spelling.kind):
        out.pop("inplace", None)
    write_back = inplace and not table.accepts_inplace(spelling.kind)
    prefix = "torchinit.functional" if family == "ti" else "torch.nn.functional"
    return Action(function=fn, params=out, write_back=write_back, new=_fmt(f"{prefix}.{fn.__name__}", out))


# ---------------------------------------------------------------------------------------------
# which modules to look at
# ---------------------------------------------------------------------------------------------


def current_forward(module: nn.Module) -> Callable:
    """The forward the module runs: an installed instance forward, else the class's."""
    inst = module.__dict__.get("forward")
    return inst if inst is not None else type(module).forward


def installed_kind(module: nn.Module) -> str | None:
    """"fx" or "intercept" when swap_activations installed the module's forward, else None."""
    inst = module.__dict__.get("forward")
    fn = getattr(inst, "__func__", inst)
    return getattr(fn, MARK, None)


def mentions_activation(module: nn.Module, depth: int = 4) -> bool:
    """Cheap filter: does the module's forward, or a method/function it names, mention an activation name?"""
    fn = current_forward(module)
    fn = getattr(fn, "__func__", fn)
    seen: set[int] = set()
    todo = [(getattr(fn, "__code__", None), getattr(fn, "__globals__", {}), 0)]
    cls = type(module)
    while todo:
        code, glb, d = todo.pop()
        if code is None or id(code) in seen:
            continue
        seen.add(id(code))
        names = set(code.co_names) | set(code.co_varnames)
        if names & table.CANDIDATE_NAMES:
            return True
        if d >= depth:
            continue
        for c in code.co_consts:
            if isinstance(c, types.CodeType):
                todo.append((c, glb, d + 1))
        for n in code.co_names:
            target = getattr(cls, n, None) if not n.startswith("__") else None
            if target is None:
                target = glb.get(n)
            target = getattr(target, "__func__", target)
            if isinstance(target, types.FunctionType) and not (target.__module__ or "").startswith("torch"):
                todo.append((target.__code__, target.__globals__, d + 1))
    return False


def is_candidate_owner(module: nn.Module) -> bool:
    """Modules whose forward may hold functional activation calls worth switching."""
    if table.is_known_activation_class(type(module)):
        return False
    if installed_kind(module) is None and (type(module).forward.__module__ or "").startswith("torch."):
        return False  # torch's own modules (Sequential, Conv2d, ...): their activations are modules or aten
    return mentions_activation(module)


# ---------------------------------------------------------------------------------------------
# torch.fx rewrite
# ---------------------------------------------------------------------------------------------


class _ShallowTracer(fx.Tracer):
    """Traces one module's own forward: every submodule is a leaf."""

    def __init__(self, owner: nn.Module) -> None:
        super().__init__(autowrap_modules=(math, tif), autowrap_functions=(_write_back, _apply) + LEAF_FUNCTIONS)
        self.owner = owner

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return m is not self.owner


def _simple_signature(fn: Callable) -> str | None:
    """None when every argument after ``self`` is positional without a default; else why not."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            return f"forward takes *{p.name}"
        if p.default is not p.empty:
            return f"forward argument {p.name!r} has a default (a trace would freeze one branch)"
    return None


def _trace(owner: nn.Module, forward: Callable) -> fx.Graph:
    cls = type(owner)
    installed = owner.__dict__.get("forward")
    swapped_cls = None
    if installed is not None:  # trace the installed forward: temporarily a subclass whose forward it is
        swapped_cls = type(cls.__name__, (cls,), {"forward": getattr(installed, "__func__", installed)})
        del owner.__dict__["forward"]
        owner.__class__ = swapped_cls
    try:
        return _ShallowTracer(owner).trace(owner)
    finally:
        if swapped_cls is not None:
            owner.__class__ = cls
            owner.__dict__["forward"] = installed


@dataclass
class Rewrite:
    """A planned forward rewrite of one module (or why it could not be planned)."""

    owner: nn.Module
    path: str
    graph: fx.Graph | None = None
    sites: list = field(default_factory=list)  # (label, old description, Action)
    why_not: str = ""  # set when tracing was impossible: intercept instead
    hidden: dict = field(default_factory=dict)  # attribute name -> replacement module

    @property
    def changes(self) -> bool:
        return any(not a.leaves for _, _, a in self.sites)


_SIMPLE = (bool, int, float, str, type(None))


def _config_key(owner: nn.Module, forward: Callable) -> tuple | None:
    """What a shallow trace can depend on: class, forward, plain settings, children's names and types.

    None when the instance holds anything else (then it is traced on its own).
    """
    settings = []
    for k, v in owner.__dict__.items():
        if k in ("_parameters", "_buffers", "_modules", "training") or (k.startswith("_") and isinstance(v, (dict, set))):
            continue
        if isinstance(v, _SIMPLE) or (isinstance(v, tuple) and all(isinstance(e, _SIMPLE) for e in v)):
            settings.append((k, v))
        else:
            return None
    children = tuple((k, type(m)) for k, m in owner._modules.items())
    tensors = tuple(owner._parameters) + tuple(owner._buffers)
    return (type(owner), getattr(forward, "__func__", forward), tuple(settings), children, tensors)


_TRACED: dict = {}  # config key -> (graph text, or the reason it cannot be rewritten)


def _trace_both_modes(owner: nn.Module, forward: Callable) -> tuple[fx.Graph | None, str | None]:
    was = owner.training
    try:
        graphs = []
        for mode in (True, False):
            owner.training = mode
            graphs.append(_trace(owner, forward))
    except Exception as exc:  # noqa: BLE001 - any tracing failure means: intercept instead
        return None, f"torch.fx could not trace it: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    finally:
        owner.training = was
    if str(graphs[0]) != str(graphs[1]):
        return None, "forward differs between training and eval mode"
    return graphs[0], None


def _copy_graph(g: fx.Graph) -> fx.Graph:
    new = fx.Graph()
    new.output(new.graph_copy(g, {}))
    return new


def traced_graph(owner: nn.Module) -> tuple[fx.Graph | None, str | None]:
    """A fresh copy of ``owner``'s shallow graph (its current forward), or None and why it cannot be rewritten.

    Traces are cached by :func:`_config_key`, so identical instances are traced once; the copy may be edited.
    """
    forward = current_forward(owner)
    why = _simple_signature(getattr(forward, "__func__", forward))
    if why is not None:
        return None, why
    key = _config_key(owner, forward) if installed_kind(owner) is None else None
    cached = _TRACED.get(key) if key is not None else None
    if cached is None:
        cached = _trace_both_modes(owner, forward)
        if key is not None and len(_TRACED) < 4096:
            _TRACED[key] = cached
    pristine, why = cached
    return (_copy_graph(pristine) if pristine is not None else None), why


def plan_rewrite(owner: nn.Module, path: str, mapping: Mapping | None) -> Rewrite:
    """Trace ``owner`` shallowly, decide every functional activation call in it, edit the graph (not the module)."""
    rw = Rewrite(owner, path)
    graph, why = traced_graph(owner)
    if why is not None:
        rw.why_not = why
        return rw
    counter = 0
    for node in list(graph.nodes):
        if node.op == "call_function":
            spelling = _lookup(node.target)
        elif node.op == "call_method":
            spelling = table.METHODS.get(node.target)
        else:
            continue
        if spelling is None:
            continue
        inp = node.args[0] if node.args else node.kwargs.get("input", node.kwargs.get("self"))
        if inp is None:
            continue
        rest = tuple(node.args[1:])
        kwargs = {k: v for k, v in node.kwargs.items() if k not in ("input", "self")}
        params = spelling.params(rest, kwargs)
        label = f"{path}:{spelling.label}"
        action = resolve(mapping, spelling, params, label, owner)
        rw.sites.append((label, _fmt(spelling.label, params), action))
        if action.leaves:
            continue
        with graph.inserting_after(node):
            if action.function is not None:
                new = graph.call_function(action.function, (inp,), action.params)
            else:
                attr = f"{HIDDEN}{counter}"
                while hasattr(owner, attr):
                    counter += 1
                    attr = f"{HIDDEN}{counter}"
                counter += 1
                rw.hidden[attr] = action.module
                with graph.inserting_after(node):
                    getter = graph.get_attr(attr)
                with graph.inserting_after(getter):
                    new = graph.call_function(_apply, (getter, inp))
            last = new
            if action.write_back:
                with graph.inserting_after(new):
                    last = graph.call_function(_write_back, (inp, new))
        node.replace_all_uses_with(last)
        graph.erase_node(node)
    rw.graph = graph
    return rw


def _lookup(target: Any) -> table.Spelling | None:
    try:
        return table.FUNCTIONS.get(target)
    except TypeError:
        return None


def _resolve_attr(owner: nn.Module, target: str, hidden: dict) -> Any:
    if target in hidden:
        return hidden[target]
    obj = owner
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


_COMPILED: dict = {}  # (class, graph text) -> compiled forward, shared by identical instances (one code object)


def compile_rewrite(rw: Rewrite) -> Callable:
    """The forward function compiled from the edited graph (not yet installed)."""
    key = (type(rw.owner), str(rw.graph))
    fn = _COMPILED.get(key)
    if fn is not None:
        return fn
    attrs = {}
    for node in rw.graph.nodes:
        if node.op in ("get_attr", "call_module"):
            attrs[node.target] = _resolve_attr(rw.owner, node.target, rw.hidden)
    gm = fx.GraphModule(attrs, rw.graph)
    fn = type(gm).forward
    setattr(fn, MARK, "fx")
    if len(_COMPILED) < 4096:
        _COMPILED[key] = fn
    return fn


def install(owner: nn.Module, fn: Callable, hidden: dict) -> None:
    """Give ``owner`` the forward ``fn`` (an instance attribute) and the replacement modules it calls."""
    for attr, module in hidden.items():
        owner.__dict__[attr] = module  # not registered: no state_dict keys, not in named_modules()
    owner.__dict__["forward"] = types.MethodType(fn, owner)


def restore(owner: nn.Module) -> bool:
    """Undo an installed forward (and its replacement modules); True if there was one."""
    if installed_kind(owner) is None:
        return False
    del owner.__dict__["forward"]
    for attr in [a for a in owner.__dict__ if a.startswith(HIDDEN)]:
        del owner.__dict__[attr]
    return True


# ---------------------------------------------------------------------------------------------
# parameters read in Python: a trace freezes the decision (T5's ``if hidden.dtype != self.wo.weight.dtype``)
# ---------------------------------------------------------------------------------------------

GUARD = "_torchinit_guard"  # attribute of a guarded forward: (its kind, the tensor paths it checks)


def inspected_tensors(graph: fx.Graph, owner: nn.Module) -> tuple[str, ...]:
    """Parameters/buffers a traced forward reads without computing with them (a trace proxy went into Python
    code, so the traced graph holds one branch of a decision that depends on them)."""
    out = []
    for n in graph.nodes:
        if n.op == "get_attr" and not n.users and isinstance(_resolve_attr(owner, n.target, {}), torch.Tensor):
            out.append(n.target)
    return tuple(out)


def guarded_forward(rewritten: Callable, fallback: Callable, inspected: tuple[str, ...], kind: str) -> Callable:
    """A forward running ``rewritten`` while every floating tensor argument has the dtype and device of each
    tensor at the paths ``inspected`` (what the trace saw), else ``fallback`` (both unbound functions of the
    module). ``kind`` ("fx" for switched functional calls, "fuse" for fusions) is recorded for :func:`guard_kind`."""

    def forward(self, *args, **kwargs):
        for p in inspected:
            ref = _resolve_attr(self, p, {})
            for a in (*args, *kwargs.values()):
                if isinstance(a, torch.Tensor) and a.is_floating_point() and (a.dtype != ref.dtype or
                                                                               a.device != ref.device):
                    return fallback(self, *args, **kwargs)
        return rewritten(self, *args, **kwargs)

    setattr(forward, MARK, "fx")
    setattr(forward, GUARD, (kind, inspected))
    return forward


def guard_kind(forward: Callable | None) -> str | None:
    """The kind a :func:`guarded_forward` recorded, else None."""
    guard = getattr(getattr(forward, "__func__", forward), GUARD, None)
    return guard[0] if guard is not None else None


# ---------------------------------------------------------------------------------------------
# run-time interception
# ---------------------------------------------------------------------------------------------


def _acting_module() -> nn.Module | None:
    """The nearest module whose method is running on the Python call stack (above this handler)."""
    frame = sys._getframe(2)
    for _ in range(64):
        if frame is None:
            return None
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, nn.Module):
            return candidate
        frame = frame.f_back
    return None


class Interceptor(TorchFunctionMode):
    """Switches functional activation calls made on behalf of one module while its forward runs."""

    def __init__(self, owner: nn.Module, path: str, mapping: Mapping | None) -> None:
        super().__init__()
        self.owner = owner
        self.path = path
        self.mapping = mapping
        self.cache: dict = {}

    def _action(self, spelling: table.Spelling, params: dict) -> Action:
        key = (spelling, tuple(sorted((k, v) for k, v in params.items() if _is_constant(v))))
        action = self.cache.get(key)
        if action is None:
            action = resolve(self.mapping, spelling, params, f"{self.path}:{spelling.label}", self.owner)
            self.cache[key] = action
        return action

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        spelling = _lookup(func)
        if spelling is None or not args or _acting_module() is not self.owner:
            return func(*args, **kwargs)
        params = spelling.params(tuple(args[1:]), dict(kwargs))
        action = self._action(spelling, params)
        if action.leaves:
            return func(*args, **kwargs)
        x = args[0]
        out = action.function(x, **action.params) if action.function is not None else action.module(x)
        return _write_back(x, out) if action.write_back else out


def make_intercepting_forward(owner: nn.Module, path: str, mapping: Mapping | None) -> Callable:
    """A forward for ``owner`` that runs its current forward under an :class:`Interceptor`."""
    inner = current_forward(owner)
    inner_fn = getattr(inner, "__func__", inner)
    mode = Interceptor(owner, path, mapping)

    def forward(self, *args, **kwargs):
        with mode:
            return inner_fn(self, *args, **kwargs)

    setattr(forward, MARK, "intercept")
    return forward


# ---------------------------------------------------------------------------------------------
# function-valued attributes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttributeSite:
    """An instance attribute holding an activation function, possibly with bound arguments (a partial)."""

    attr: str
    spelling: table.Spelling
    params: dict  # arguments bound by functools.partial, named
    label: str  # for the report: "F.relu" or "functools.partial(F.gelu, approximate='tanh')"

    def replacement(self, action: Action) -> Callable:
        """The value to store instead: the twin function, re-bound to the action's arguments for a partial."""
        if not self.params:
            return action.function
        return functools.partial(action.function, **action.params)


def attribute_sites(module: nn.Module) -> list[AttributeSite]:
    """Instance attributes holding an activation function: ``self.activation = F.relu``, or a
    ``functools.partial`` of one binding constant keyword arguments (``self.act = partial(F.gelu,
    approximate="tanh")``, as in Hugging Face's ``GELUTanh``)."""
    out = []
    for attr, value in module.__dict__.items():
        if attr == "forward" or isinstance(value, (nn.Module, torch.Tensor)) or not callable(value):
            continue
        if isinstance(value, functools.partial):
            spelling = _lookup(value.func)
            if spelling is None or value.args:  # bound positional arguments would come before the input
                continue
            try:
                params = spelling.params((), dict(value.keywords))
            except TypeError:
                continue
            if not all(_is_constant(v) for v in params.values()):
                continue
            shown = ", ".join([f"{k}={v!r}" for k, v in params.items()])
            out.append(AttributeSite(attr, spelling, params, f"functools.partial({spelling.label}, {shown})"))
            continue
        spelling = _lookup(value)
        if spelling is not None:
            out.append(AttributeSite(attr, spelling, {}, spelling.label))
    return out


__all__ = ["Action", "Rewrite", "Interceptor", "resolve", "traced_graph", "plan_rewrite", "compile_rewrite", "install",
           "restore", "make_intercepting_forward", "attribute_sites", "AttributeSite", "is_candidate_owner",
           "installed_kind", "MARK", "GUARD", "inspected_tensors", "guarded_forward", "guard_kind"]
