"""``fuse=True``: rewrite forwards so that layer + activation and GLU patterns run as torchinit's fused ops.

Patterns, found in each module's shallow torch.fx graph (:func:`torchinit.swap.calls.traced_graph`, the
same tracing and installation as the functional rewrite; a fused forward is an ``"fx"`` forward, so
``swap_activations(model, TORCH, functional=True)`` restores the unfused one). Tracing one module at a
time (its submodules stay leaves) is what makes this work on whole Hugging Face and timm models, whose
top-level forwards do not trace: the MLP modules do.

* GLU: ``act(gate) * up`` (either operand order) -> ``swiglu`` / ``geglu`` / ``reglu`` for silu, gelu
  (erf or tanh) and relu gates, ``torchinit.fused.gated(act=...)`` for any other activation with number
  arguments; when ``gate, up`` are the two halves of one ``x.chunk(2, dim)``, the one-tensor form
  ``swiglu(x, dim=dim)``. This covers ``down(act(gate(x)) * up(x))`` (Llama, Mistral, Qwen2/3, Gemma,
  timm's ``SwiGLU``), a packed ``gate_up_proj`` + chunk (Phi-3, timm's ``GluMlp``) and T5's
  ``act(wi_0(x)) * wi_1(x)``. silu/gelu/relu gates fuse whatever the other operand is (a broadcasting
  one falls back to the composite at run time); other gates only when both operands are projections
  (outputs of a layer, or the two chunk halves), which is what makes a product a GLU.
* Layer + activation: a layer with a bias (:func:`torchinit.swap.fused_calls.layer_form`: ``nn.Linear``,
  ``nn.Conv1d/2d/3d`` or a subclass keeping their forward, Hugging Face's ``Conv1D`` as in GPT-2) whose
  output goes only to an activation with number arguments -> the layer without bias, then ``bias_act``
  with the layer's bias (:func:`torchinit.swap.fused_calls.layer_bias_act`).

Activations are recognised by what they compute (:func:`module_activation`): torch.nn and torchinit
classes, their subclasses that keep the base's forward (``ti.nn.get("gelu_new")``), and other libraries'
classes that the swap step recognises (:func:`torchinit.swap.table.kind_of_module`: Hugging Face's and
timm's, known by qualified name and checked on a probe). A module that looks like an activation and
computes no single torchinit activation is reported.

GLU patterns are matched first (a gate Linear with a bias joins the GLU, not a ``bias_act``). Nothing is
fused when it would change what the forward computes; each such near miss is reported with the reason
(the activation's output has other users, the layer's output is used elsewhere, the layer has no bias
or has hooks or is lazy and uninitialised, the activation is not recognised, the forward of a module
holding weights and an activation could not be traced (MoE experts kept as 3-D tensors), ...). Global module
hooks (``torch.nn.modules.module.register_module_forward_hook``) are not run for a fused layer.

A forward that reads one of its parameters in Python without computing with it (T5's
``if isinstance(self.wo.weight, torch.Tensor) and hidden_states.dtype != self.wo.weight.dtype``) has
that branch frozen by the trace; its fused forward runs only while every floating tensor argument has
that parameter's dtype and device (where such checks cast nothing) and calls the original forward
otherwise (:func:`torchinit.swap.calls.guarded_forward`); the report notes it.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn

from ..activations import ACTIVATIONS
from ..fused._common import resolve_scalar_activation
from . import calls, foreign, table
from .fused_calls import BIAS_DIM, GLU_FUNCTIONS, gated_halves, gated_product, glu_name, layer_bias_act, layer_form
from .fused_calls import layer_without_bias
from .modules import walk
from .report import Left, Replaced

# hooks that run when a module is called: a module carrying any of them is not bypassed
_CALL_HOOKS = ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks")
_MULS = (operator.mul, torch.mul)
FUSE_GUARD = "fuse"  # the kind calls.guarded_forward records on a guarded fused forward


# ---------------------------------------------------------------------------------------------
# recognising activations by what they compute
# ---------------------------------------------------------------------------------------------

def _inherited_kind(cls: type) -> str | None:
    """The kind of a torch.nn/torchinit activation class ``cls`` is, or derives from without a new forward."""
    for base in cls.__mro__:
        kind = table.kind_of_class(base)
        if kind is not None:
            return kind if cls.forward is base.forward else None
    return None


def looks_like_activation(module: nn.Module) -> bool:
    """A known activation class (nn.Identity aside), or a parameter-free leaf the swap step says looks like one."""
    if table.is_known_activation_class(type(module)):
        return type(module) is not nn.Identity
    return foreign.looks_like_activation(module)  # the swap step's test for other libraries' look-alikes


def module_activation(module: nn.Module) -> tuple[str, dict] | str | None:
    """What activation module ``module`` computes: ``(kind, arguments)``, a reason string when it looks like
    an activation but computes no single torchinit activation, or None when it does not look like one.

    torch.nn and torchinit classes, and their subclasses that keep the base's forward, are read from their
    attributes (``ti.nn.get("gelu_new")()`` is gelu with approximate='tanh'); other libraries' classes
    (Hugging Face, timm) through the swap step's recognition (:func:`torchinit.swap.table.kind_of_module`:
    known by qualified name, verified on a probe).
    """
    kind = _inherited_kind(type(module))
    if kind is not None:
        defaults = ACTIVATIONS[kind].defaults if kind in ACTIVATIONS else {}
        return kind, {k: getattr(module, k) for k in defaults if hasattr(module, k)}
    found = table.kind_of_module(module)
    if found is not None:
        kind, args = found
        return kind, {k: v for k, v in args.items() if k != "inplace"}
    if looks_like_activation(module):
        return _why_unrecognised(module)
    return None


def _why_unrecognised(module: nn.Module) -> str:
    name = type(module).__qualname__
    verdict = table.recognise(module)  # the swap step's verdict on another library's class
    if verdict is not None and verdict.reason:
        return f"{name}: {verdict.reason} (no fused kernel for it)"
    for base in type(module).__mro__[1:]:
        if table.kind_of_class(base) is not None:
            return f"{name} has a forward of its own (not {base.__name__}'s): no fused kernel is known to compute it"
    return f"{name} is not an activation torchinit recognises (no fused kernel for it)"


# ---------------------------------------------------------------------------------------------
# activation calls in a graph
# ---------------------------------------------------------------------------------------------


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
    elif (any(isinstance(v, (fx.Node, torch.Tensor)) for v in act.params.values())
          or ACTIVATIONS[act.kind].takes_tensors):
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
    found = module_activation(module)
    if found is None:
        return None
    label = f"{name} ({type(module).__name__})"
    if isinstance(found, str):
        return _Act(node, inp, "", {}, False, label, why_not=found, extra=extra)
    kind, params = found
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


def _layer_of(node, owner: nn.Module) -> nn.Module | None:
    """The layer (:func:`layer_form`) a ``call_module`` node calls, else None."""
    if isinstance(node, fx.Node) and node.op == "call_module":
        m = owner.get_submodule(node.target)
        if layer_form(m) is not None:
            return m
    return None


# ---------------------------------------------------------------------------------------------
# GLU: act(gate) * up
# ---------------------------------------------------------------------------------------------


def _mul_operands(node: fx.Node) -> tuple | None:
    if node.op == "call_function" and node.target in _MULS and len(node.args) == 2 and not node.kwargs:
        return node.args
    if node.op == "call_method" and node.target == "mul" and len(node.args) == 2 and not node.kwargs:
        return node.args
    return None


def _chunk_of(node) -> tuple | None:
    """``(x, dim, index)`` when ``node`` is item 0 or 1 of ``x.chunk(2, dim)`` (an int dim), else None."""
    if not (isinstance(node, fx.Node) and node.op == "call_function" and node.target is operator.getitem):
        return None
    chunk, idx = node.args
    if not isinstance(chunk, fx.Node) or idx not in (0, 1):
        return None
    is_chunk = (chunk.op == "call_method" and chunk.target == "chunk") or \
        (chunk.op == "call_function" and chunk.target is torch.chunk)
    if not is_chunk:
        return None
    bound = dict(zip(("input", "chunks", "dim"), chunk.args))
    bound.update({("input" if k == "self" else k): v for k, v in chunk.kwargs.items()})
    dim = bound.get("dim", 0)
    if bound.get("chunks") != 2 or not isinstance(dim, int) or isinstance(dim, bool):
        return None
    return bound["input"], dim, idx


def _halves(gate, up) -> tuple | None:
    """``(x, dim)`` when ``gate, up`` are items 0 and 1 of one ``x.chunk(2, dim)``, else None."""
    g, u = _chunk_of(gate), _chunk_of(up)
    if g is None or u is None or g[2] != 0 or u[2] != 1 or gate.args[0] is not up.args[0]:
        return None
    chunk = gate.args[0]
    if any(u.op != "call_function" or u.target is not operator.getitem for u in chunk.users):
        return None
    return g[0], g[1]


def _is_projection(node, owner: nn.Module) -> bool:
    """The output of a layer, or one half of a chunked tensor (a packed ``gate_up_proj``)."""
    return _layer_of(node, owner) is not None or _chunk_of(node) is not None


def _glu_candidate(act_node, up, owner: nn.Module) -> _Act | None:
    """The activation of a GLU candidate ``act(gate) * up``, else None (see the module docstring)."""
    if not isinstance(act_node, fx.Node) or not isinstance(up, fx.Node):
        return None
    act = activation_of(act_node, owner)
    if act is None:
        return None
    if act.kind in GLU_FUNCTIONS:
        return act
    return act if _is_projection(act.input, owner) and _is_projection(up, owner) else None


def _fuse_glu(graph: fx.Graph, owner: nn.Module, path: str, fused: list, left: list) -> None:
    for node in list(graph.nodes):
        operands = _mul_operands(node)
        if operands is None:
            continue
        for act_node, up in (operands, operands[::-1]):
            act = _glu_candidate(act_node, up, owner)
            if act is None:
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
            name = glu_name(act.kind)
            shown = _describe_params(act.params) if name != "gated" else f", act={act.kind!r}" + \
                _describe_params(act.params)
            with graph.inserting_before(node):
                if halves is not None:
                    x, dim = halves
                    new = graph.call_function(gated_halves, (x, dim, act.kind), act.params)
                    what = f"torchinit.fused.{name}(x, dim={dim}{shown})"
                    old = f"chunk(2, dim={dim}) + {act.label} * up"
                else:
                    new = graph.call_function(gated_product, (act.input, up, act.kind), act.params)
                    what = f"torchinit.fused.{name}(gate, up{shown})"
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


def _computes_addmm(layer: nn.Module) -> bool:
    """Whether a ``Conv1D``-shaped layer computes ``x @ weight + bias``, checked on one probe row to within the
    rounding error a dot product of its length may have in its dtype (either summation order)."""
    w = layer.weight
    if w.device.type == "meta":
        return True  # nothing to run on: the structure (is_hf_conv1d) is all there is to check
    nx = w.shape[0]
    x = torch.linspace(-1.0, 1.0, nx, dtype=w.dtype, device=w.device).reshape(1, 1, nx)
    with torch.no_grad():
        got = layer(x)
        want = layer_without_bias(layer, x, "addmm") + layer.bias
        if not (isinstance(got, torch.Tensor) and got.shape == want.shape and got.dtype == want.dtype):
            return False
        eps = torch.finfo(w.dtype).eps
        bound = 2 * (nx + 1) * eps * ((x.abs().float() @ w.abs().float()) + layer.bias.abs().float())
        return bool(((got.float() - want.float()).abs() <= bound + eps).all())


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
    if layer_form(layer) == "addmm" and not _computes_addmm(layer):
        return f"{type(layer).__qualname__} looks like Hugging Face's Conv1D but does not compute x @ weight + bias"
    return ""


def _is_matrix(t) -> bool:
    """A weight of two or more dims (an uninitialised lazy parameter is none: it has no dims yet)."""
    return isinstance(t, torch.Tensor) and not isinstance(t, nn.parameter.UninitializedTensorMixin) and t.dim() >= 2


def _note_other_layer(owner: nn.Module, path: str, act: _Act, module: nn.Module, left: list) -> None:
    """Report the near misses between a module and an activation: ``layer -> BatchNorm -> activation`` (nothing
    to fuse while training), and a layer with a bias whose forward is not one fuse can split from its bias."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if len(act.input.args) != 1:
            return
        src = act.input.args[0]
        if _layer_of(src, owner) is not None:
            left.append(Left(f"{path}:{src.target} -> {act.input.target} -> {act.label}", type(module).__name__,
                             "a BatchNorm sits between the layer and the activation"))
        return
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    if not act.why_not and isinstance(weight, nn.parameter.UninitializedTensorMixin):
        left.append(Left(f"{path}:{act.input.target} -> {act.label}", type(module).__name__,
                         "the lazy layer is not initialised yet: run one batch through the model, then fuse"))
        return
    if act.why_not or module._modules or not _is_matrix(weight):
        return  # not a layer (a norm, a container): nothing was there to fuse
    why = ("the layer has no bias (nothing to fuse)" if not isinstance(bias, torch.Tensor) else
           f"{type(module).__qualname__} is not a layer fuse can split from its bias (nn.Linear, nn.ConvNd or "
           "Hugging Face's Conv1D, with their own forward)")
    left.append(Left(f"{path}:{act.input.target} -> {act.label}", type(module).__name__, why))


def _fuse_layers(graph: fx.Graph, owner: nn.Module, path: str, fused: list, left: list) -> None:
    for node in list(graph.nodes):
        act = activation_of(node, owner)
        if act is None or not isinstance(act.input, fx.Node) or act.input.op != "call_module":
            continue
        layer_node = act.input
        layer = owner.get_submodule(layer_node.target)
        form = layer_form(layer)
        if form is None:
            _note_other_layer(owner, path, act, layer, left)
            continue
        where = f"{path}:{layer_node.target} -> {act.label}"
        what = type(layer).__name__
        why = act.why_not or _layer_why_not(layer, layer_node)
        if why:
            left.append(Left(where, what, why))
            continue
        dim = BIAS_DIM[form]
        with graph.inserting_before(node):
            getter = graph.get_attr(layer_node.target)
            new = graph.call_function(layer_bias_act, (getter, layer_node.args[0], form, act.kind, dim), act.params)
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


def _layer_like(m: nn.Module) -> bool:
    """A layer fuse handles, or a leaf with a weight matrix (a Linear subclass with a forward of its own...)."""
    if layer_form(m) is not None:
        return True
    w = m._parameters.get("weight")
    return not m._modules and (_is_matrix(w) or isinstance(w, nn.parameter.UninitializedTensorMixin))


def _may_hold_patterns(owner: nn.Module) -> tuple[bool, bool]:
    """(worth tracing, worth reporting when it cannot be traced): a cheap filter before tracing ``owner``."""
    if table.is_known_activation_class(type(owner)) or layer_form(owner) is not None:
        return False, False
    own_code = calls.installed_kind(owner) is not None or type(owner) is nn.Sequential or \
        not (type(owner).forward.__module__ or "").startswith("torch.")
    if not own_code:
        return False, False
    children = [m for m in owner._modules.values() if m is not None]
    has_layer = any(_layer_like(m) for m in children)
    mentions = calls.mentions_activation(owner)
    has_act = mentions or any(looks_like_activation(m) for m in children)
    # weights of its own (MoE experts stored as 3-D tensors) with an activation: an MLP in other clothes
    own_weights = any(_is_matrix(p) for p in owner._parameters.values())
    return has_layer or mentions or (own_weights and has_act), (has_layer or own_weights) and has_act


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
        forward = owner.__dict__.get("forward")
        if calls.guard_kind(forward) == FUSE_GUARD:
            continue  # fused by an earlier call (a guarded forward)
        worth, report_failure = _may_hold_patterns(owner)
        if not worth:
            continue
        path = first_path[id(owner)]
        if calls.installed_kind(owner) == "intercept":
            if report_failure:
                out.left.append(Left(path or "<root>", type(owner).__name__,
                                     "its forward could not be traced (it is intercepted at run time)"))
            continue
        graph, why = calls.traced_graph(owner)
        if graph is None:
            if report_failure:
                out.left.append(Left(path or "<root>", type(owner).__name__, f"not fused: {why}"))
            continue
        fused: list[Replaced] = []
        _fuse_glu(graph, owner, path, fused, out.left)
        _fuse_layers(graph, owner, path, fused, out.left)
        if not fused:
            continue
        graph.lint()
        fn = calls.compile_rewrite(calls.Rewrite(owner, path, graph))
        inspected = calls.inspected_tensors(graph, owner)
        if inspected:
            current = calls.current_forward(owner)
            fn = calls.guarded_forward(fn, getattr(current, "__func__", current), inspected, FUSE_GUARD)
            note = (f"the forward reads {', '.join(inspected)} in Python (a dtype check, say): the fused path runs "
                    "while the inputs have its dtype and device, the original forward otherwise")
            for r in fused:
                r.notes.append(note)
        calls.install(owner, fn, {})
        out.fused.extend(fused)
    return out


__all__ = ["fuse_model", "FusePlan", "activation_of", "module_activation", "looks_like_activation"]
