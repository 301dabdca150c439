"""``fuse=True``: rewrite forwards so that layer + activation and GLU patterns run as torchinit's fused ops.

Patterns, found in each module's shallow torch.fx graph (:func:`torchinit.swap.calls.traced_graph`, the
same tracing and installation as the functional rewrite; a fused forward is an ``"fx"`` forward, so
``swap_activations(model, TORCH, functional=True)`` restores the unfused one):

* GLU: ``act(gate) * up`` (either operand order; ``act`` silu, gelu or relu as a module, a torch or
  torchinit function or a Tensor method) -> ``swiglu`` / ``geglu`` / ``reglu``; when ``gate, up`` are
  the two halves of one ``x.chunk(2, dim)``, the one-tensor form ``swiglu(x, dim=dim)``.
* Layer + activation: an exact ``nn.Linear`` / ``nn.Conv1d/2d/3d`` with a bias whose output goes only to
  an activation with number arguments -> the layer without bias, then ``bias_act`` with the layer's bias
  (:func:`torchinit.swap.fused_calls.layer_bias_act`).

GLU patterns are matched first (a gate Linear with a bias joins the GLU, not a ``bias_act``). Nothing is
fused when it would change what the forward computes; each such near miss is reported with the reason
(the activation's output has other users, the layer's output is used elsewhere, the layer has no bias
or has hooks, the forward could not be traced, ...). Global module hooks
(``torch.nn.modules.module.register_module_forward_hook``) are not run for a fused layer.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn

from ..activations import ACTIVATIONS
from ..fused._common import resolve_scalar_activation
from . import calls, table
from .fused_calls import GLU_FUNCTIONS, LAYERS, gated_halves, gated_product, layer_bias_act
from .modules import walk
from .report import Left, Replaced

# hooks that run when a module is called: a module carrying any of them is not bypassed
_CALL_HOOKS = ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks")
_MULS = (operator.mul, torch.mul)


@dataclass
class _Act:
    """An activation call in a graph: its node, input node, kind, number arguments, and why it cannot fuse."""

    node: fx.Node
    input: object
    kind: str
    params: dict
    inplace: bool
    label: str
    why_not: str = ""
    extra: list = field(default_factory=list)  # helper nodes that die with it (the getter of a hidden module)


def _has_hooks(m: nn.Module) -> bool:
    return any(m.__dict__.get(a) for a in _CALL_HOOKS)


def _check(act: _Act) -> _Act:
    if act.why_not:
        return act
    if act.kind not in ACTIVATIONS:
        act.why_not = f"{act.label} is not an elementwise activation"
    elif any(isinstance(v, (fx.Node, torch.Tensor)) for v in act.params.values()) or act.kind == "prelu":
        act.why_not = f"{act.label} has learnable or run-time arguments"
    elif not isinstance(act.input, fx.Node):
        act.why_not = f"{act.label} is not applied to a tensor of the graph"
    else:
        try:
            resolve_scalar_activation("bias_act", act.kind, act.params)
        except (TypeError, ValueError) as exc:
            act.why_not = str(exc)
    return act


def _from_module(node: fx.Node, module: nn.Module, inp, name: str, extra: list) -> _Act | None:
    kind = table.kind_of_class(type(module))
    if kind is None:
        return None
    defaults = ACTIVATIONS[kind].defaults if kind in ACTIVATIONS else {}
    params = {k: getattr(module, k) for k in defaults if hasattr(module, k)}
    label = f"{name} ({type(module).__name__})"
    act = _Act(node, inp, kind, params, bool(getattr(module, "inplace", False)), label, extra=extra)
    if _has_hooks(module):
        act.why_not = f"the activation module {name} has hooks"
    return _check(act)


def activation_of(node: fx.Node, owner: nn.Module) -> _Act | None:
    """The activation ``node`` calls (module, replacement module, torch/torchinit function or method), else None."""
    if node.op == "call_module":
        inp = node.args[0] if len(node.args) == 1 and not node.kwargs else None
        return _from_module(node, owner.get_submodule(node.target), inp, node.target, [])
    if node.op == "call_function" and node.target is calls._apply:
        getter, inp = node.args
        if not isinstance(getter, fx.Node) or getter.op != "get_attr":
            return None
        module = calls._resolve_attr(owner, getter.target, {})
        extra = [getter] if len(getter.users) == 1 else []
        return _from_module(node, module, inp, getter.target, extra)
    if node.op == "call_function":
        spelling = calls._lookup(node.target)
    elif node.op == "call_method":
        spelling = table.METHODS.get(node.target)
    else:
        return None
    if spelling is None:
        return None
    inp = node.args[0] if node.args else node.kwargs.get("input", node.kwargs.get("self"))
    kwargs = {k: v for k, v in node.kwargs.items() if k not in ("input", "self")}
    try:
        params = spelling.params(tuple(node.args[1:]), kwargs)
    except TypeError:
        return None
    inplace = params.pop("inplace", False)
    act = _Act(node, inp, spelling.kind, params, bool(inplace) if isinstance(inplace, bool) else True,
               calls._fmt(spelling.label, params))
    if not isinstance(inplace, bool):
        act.why_not = f"{act.label}: inplace is computed at run time"
    return _check(act)


def _describe_params(params: dict) -> str:
    return "".join(f", {k}={v!r}" for k, v in params.items())


def _erase_if_unused(graph: fx.Graph, *nodes) -> None:
    for n in nodes:
        if isinstance(n, fx.Node) and not n.users:
            graph.erase_node(n)


# ---------------------------------------------------------------------------------------------
# GLU: act(gate) * up
# ---------------------------------------------------------------------------------------------


def _mul_operands(node: fx.Node) -> tuple | None:
    if node.op == "call_function" and node.target in _MULS and len(node.args) == 2 and not node.kwargs:
        return node.args
    if node.op == "call_method" and node.target == "mul" and len(node.args) == 2 and not node.kwargs:
        return node.args
    return None


def _halves(gate, up) -> tuple | None:
    """``(x, dim)`` when ``gate, up`` are items 0 and 1 of one ``x.chunk(2, dim)``, else None."""
    if not (isinstance(gate, fx.Node) and isinstance(up, fx.Node)):
        return None
    if not (gate.op == up.op == "call_function" and gate.target is operator.getitem is up.target):
        return None
    chunk, idx = gate.args
    if chunk is not up.args[0] or idx != 0 or up.args[1] != 1:
        return None
    is_chunk = (chunk.op == "call_method" and chunk.target == "chunk") or \
        (chunk.op == "call_function" and chunk.target is torch.chunk)
    if not is_chunk:
        return None
    names = ("input", "chunks", "dim")
    bound = dict(zip(names, chunk.args))
    bound.update({("input" if k == "self" else k): v for k, v in chunk.kwargs.items()})
    dim = bound.get("dim", 0)
    if bound.get("chunks") != 2 or not isinstance(dim, int) or isinstance(dim, bool):
        return None
    if any(u.op != "call_function" or u.target is not operator.getitem for u in chunk.users):
        return None
    return bound["input"], dim


def _fuse_glu(graph: fx.Graph, owner: nn.Module, path: str, fused: list, left: list) -> None:
    for node in list(graph.nodes):
        operands = _mul_operands(node)
        if operands is None:
            continue
        for act_node, up in (operands, operands[::-1]):
            if not isinstance(act_node, fx.Node) or not isinstance(up, fx.Node):
                continue
            act = activation_of(act_node, owner)
            if act is None or act.kind not in GLU_FUNCTIONS:
                continue
            where = f"{path}:{act.label} * {getattr(up, 'name', up)}"
            if act.why_not:
                left.append(Left(where, "GLU", act.why_not))
                break
            if up is act_node or len(act_node.users) != 1:
                left.append(Left(where, "GLU", "the activation's output has other users"))
                break
            halves = _halves(act.input, up)
            if act.inplace and (len(act.input.users) != 1 or halves is not None):
                left.append(Left(where, "GLU", "the in-place activation's input is used elsewhere"))
                break
            fn = GLU_FUNCTIONS[act.kind]
            with graph.inserting_before(node):
                if halves is not None:
                    x, dim = halves
                    new = graph.call_function(gated_halves, (x, dim, act.kind), act.params)
                    what = f"torchinit.fused.{fn.__name__}(x, dim={dim}{_describe_params(act.params)})"
                    old = f"chunk(2, dim={dim}) + {act.label} * up"
                else:
                    new = graph.call_function(gated_product, (act.input, up, act.kind), act.params)
                    what = f"torchinit.fused.{fn.__name__}(gate, up{_describe_params(act.params)})"
                    old = f"{act.label} * up"
            node.replace_all_uses_with(new)
            graph.erase_node(node)
            graph.erase_node(act_node)
            _erase_if_unused(graph, *act.extra)
            if halves is not None:
                chunk = act.input.args[0]
                _erase_if_unused(graph, act.input, up)
                _erase_if_unused(graph, chunk)
            fused.append(Replaced((f"{path}:{act.label}",), old, what, "fused"))
            break


# ---------------------------------------------------------------------------------------------
# layer + activation
# ---------------------------------------------------------------------------------------------


def _layer_why_not(layer: nn.Module, layer_node: fx.Node) -> str:
    if layer.bias is None:
        return "the layer has no bias (nothing to fuse)"
    if _has_hooks(layer):
        return "the layer has hooks"
    if getattr(layer, "padding_mode", "zeros") != "zeros":
        return f"the convolution pads with padding_mode={layer.padding_mode!r}"
    if len(layer_node.args) != 1 or layer_node.kwargs:
        return "the layer is called with extra arguments"
    if len(layer_node.users) != 1:
        return "the layer's output is used elsewhere"
    return ""


def _note_norm_between(owner: nn.Module, path: str, act: _Act, norm: nn.Module, left: list) -> None:
    """Report ``layer -> BatchNorm -> activation`` (the common near miss: nothing to fuse while training)."""
    if not isinstance(norm, nn.modules.batchnorm._BatchNorm) or len(act.input.args) != 1:
        return
    src = act.input.args[0]
    if isinstance(src, fx.Node) and src.op == "call_module" and type(owner.get_submodule(src.target)) in LAYERS:
        left.append(Left(f"{path}:{src.target} -> {act.input.target} -> {act.label}", type(norm).__name__,
                         "a BatchNorm sits between the layer and the activation"))


def _fuse_layers(graph: fx.Graph, owner: nn.Module, path: str, fused: list, left: list) -> None:
    for node in list(graph.nodes):
        act = activation_of(node, owner)
        if act is None or not isinstance(act.input, fx.Node) or act.input.op != "call_module":
            continue
        layer_node = act.input
        layer = owner.get_submodule(layer_node.target)
        if type(layer) not in LAYERS:
            _note_norm_between(owner, path, act, layer, left)
            continue
        where = f"{path}:{layer_node.target} -> {act.label}"
        what = type(layer).__name__
        why = act.why_not or _layer_why_not(layer, layer_node)
        if why:
            left.append(Left(where, what, why))
            continue
        dim = LAYERS[type(layer)][1]
        with graph.inserting_before(node):
            getter = graph.get_attr(layer_node.target)
            new = graph.call_function(layer_bias_act, (getter, layer_node.args[0], act.kind, dim), act.params)
        node.replace_all_uses_with(new)
        graph.erase_node(node)
        graph.erase_node(layer_node)
        _erase_if_unused(graph, *act.extra)
        fused.append(Replaced((f"{path}:{layer_node.target}",), f"{layer_node.target} ({layer!r}) -> {act.label}",
                              f"{what} without bias + torchinit.fused.bias_act(act={act.kind!r}, dim={dim}"
                              f"{_describe_params(act.params)})", "fused"))


# ---------------------------------------------------------------------------------------------
# the pass over a model
# ---------------------------------------------------------------------------------------------


def _may_hold_patterns(owner: nn.Module) -> tuple[bool, bool]:
    """(worth tracing, has a Linear/Conv child): a cheap filter before tracing ``owner``."""
    if table.is_known_activation_class(type(owner)) or type(owner) in LAYERS:
        return False, False
    own_code = calls.installed_kind(owner) is not None or type(owner) is nn.Sequential or \
        not (type(owner).forward.__module__ or "").startswith("torch.")
    if not own_code:
        return False, False
    has_layer = any(type(m) in LAYERS for m in owner._modules.values())
    return has_layer or calls.mentions_activation(owner), has_layer


@dataclass
class FusePlan:
    """What :func:`fuse_model` did: fusions made and fusions not made (with reasons)."""

    fused: list[Replaced] = field(default_factory=list)
    left: list[Left] = field(default_factory=list)


def fuse_model(model: nn.Module) -> FusePlan:
    """Rewrite (in place) every forward under ``model`` holding a fusable pattern; see the module docstring."""
    out = FusePlan()
    places, first_path = walk(model)
    for owner in [model] + [p.module for p in places]:
        worth, has_layer = _may_hold_patterns(owner)
        if not worth:
            continue
        path = first_path[id(owner)]
        if calls.installed_kind(owner) == "intercept":
            if has_layer:
                out.left.append(Left(path or "<root>", type(owner).__name__,
                                     "its forward could not be traced (it is intercepted at run time)"))
            continue
        graph, why = calls.traced_graph(owner)
        if graph is None:
            if has_layer:
                out.left.append(Left(path or "<root>", type(owner).__name__, f"not fused: {why}"))
            continue
        fused: list[Replaced] = []
        _fuse_glu(graph, owner, path, fused, out.left)
        _fuse_layers(graph, owner, path, fused, out.left)
        if not fused:
            continue
        graph.lint()
        rw = calls.Rewrite(owner, path, graph)
        calls.install(owner, calls.compile_rewrite(rw), {})
        out.fused.extend(fused)
    return out


__all__ = ["fuse_model", "FusePlan", "activation_of"]
