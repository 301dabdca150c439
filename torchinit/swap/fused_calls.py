"""The functions a fused forward calls (``swap_activations(..., fuse=True)`` puts them in torch.fx graphs).

Each computes exactly what the unfused code did, through torchinit's fused ops, and reads the layer's
parameters from the layer at call time (the same Parameter objects: ``state_dict`` keys, optimizers,
later re-initialisation all keep working). Where a call's tensors do not fit the fused op (an ``up``
that only broadcasts against the gate, an odd-sized halving), it falls back to the unfused composite,
so a rewrite never changes what a forward computes.

Layers are recognised by what their forward computes (:func:`layer_form`): ``nn.Linear`` and
``nn.Conv1d/2d/3d`` and subclasses that keep their forward, and Hugging Face's ``Conv1D`` (GPT-2's
projections: ``addmm(bias, x, weight)`` with an ``(in, out)`` weight), found by its structure with no
import of ``transformers``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as TF
from torch import nn

from .. import functional as tif
from ..fused import bias_act, gated, geglu, reglu, swiglu
from ..layers import is_hf_conv1d

Tensor = torch.Tensor

#: layer form -> the dim its bias lies along in the layer's output, counted from the end
BIAS_DIM: dict[str, int] = {"linear": -1, "conv1d": -2, "conv2d": -3, "conv3d": -4, "addmm": -1}

_TORCH_LAYERS: dict[type[nn.Module], str] = {
    nn.Linear: "linear", nn.Conv1d: "conv1d", nn.Conv2d: "conv2d", nn.Conv3d: "conv3d",
}
_CONV_FUNCTIONS = {"conv1d": TF.conv1d, "conv2d": TF.conv2d, "conv3d": TF.conv3d}

#: gate activation kind -> the named fused GLU function (other kinds run as ``torchinit.fused.gated``)
GLU_FUNCTIONS = {"silu": swiglu, "gelu": geglu, "relu": reglu}


def _torch_form(cls: type) -> str | None:
    """The form of a torch.nn Linear/ConvNd class or of a subclass that keeps its forward, else None."""
    for base, form in _TORCH_LAYERS.items():
        if issubclass(cls, base):
            same = cls.forward is base.forward and getattr(cls, "_conv_forward", None) is getattr(base, "_conv_forward", None)
            return form if same else None
    return None


def layer_form(module: nn.Module) -> str | None:
    """How ``module`` computes ``y = x W (+ b)``: a key of :data:`BIAS_DIM`, or None for any other module."""
    form = _torch_form(type(module))
    if form is not None:
        return None if isinstance(module.weight, nn.parameter.UninitializedParameter) else form
    return "addmm" if is_hf_conv1d(module) else None


def layer_without_bias(layer: nn.Module, x: Tensor, form: str) -> Tensor:
    """What ``layer(x)`` computes, without adding its bias (``form`` from :func:`layer_form`)."""
    if form == "linear":
        return TF.linear(x, layer.weight, None)
    if form == "addmm":
        w = layer.weight
        return x.reshape(-1, x.shape[-1]).mm(w).view(*x.shape[:-1], w.shape[1])
    return _CONV_FUNCTIONS[form](x, layer.weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)


def has_hooks(module: nn.Module) -> bool:
    """Whether calling ``module`` runs hooks besides its forward: its own forward (pre-)hooks or backward
    hooks, or global module hooks (tensor parallelism's input/output redistribution, FSDP's unsharding,
    a user's hook)."""
    from torch.nn.modules import module as _m

    return bool(module._forward_pre_hooks or module._forward_hooks or module._backward_pre_hooks
                or module._backward_hooks or _m._global_forward_pre_hooks or _m._global_forward_hooks
                or _m._global_backward_pre_hooks or _m._global_backward_hooks)


def layer_bias_act(layer: nn.Module, x: Tensor, form: str, act: str, dim: int, **act_kwargs) -> Tensor:
    """``act(layer(x))`` for a layer with a bias: the layer without its bias, then
    :func:`torchinit.fused.bias_act` with the layer's own bias along ``dim`` (-1 after a Linear or
    ``Conv1D``, the channel dim after a convolution, counted from the end so unbatched inputs work too).

    The bias is cast to the layer output's dtype, as the layer itself does under autocast. A layer that has
    hooks (added after the fuse, e.g. by ``parallelize_module`` or ``fully_shard``) is called as a module,
    so they run, and its output goes through torchinit's activation unfused.
    """
    if has_hooks(layer):
        return getattr(tif, act)(layer(x), **act_kwargs)
    h = layer_without_bias(layer, x, form)
    bias = layer.bias
    if bias.dtype != h.dtype:
        bias = bias.to(h.dtype)
    return bias_act(h, bias, act, dim, **act_kwargs)


def glu_name(act: str) -> str:
    """The fused function a GLU with gate activation ``act`` runs: swiglu/geglu/reglu, else ``gated``."""
    fn = GLU_FUNCTIONS.get(act)
    return fn.__name__ if fn is not None else "gated"


def _glu(act: str, *args, **act_kwargs) -> Tensor:
    fn = GLU_FUNCTIONS.get(act)
    if fn is not None:
        return fn(*args, **act_kwargs)
    return gated(*args, act=act, **act_kwargs)


def gated_product(gate: Tensor, up: Tensor, act: str, **act_kwargs) -> Tensor:
    """``act(gate) * up`` through the fused GLU (:func:`glu_name`) when both are tensors of one shape, dtype
    and device; otherwise (broadcasting, a number) the composite with torchinit's activation."""
    if (isinstance(up, Tensor) and up.shape == gate.shape and up.dtype == gate.dtype and up.device == gate.device
            and gate.dim() > 0):
        return _glu(act, gate, up, **act_kwargs)
    return getattr(tif, act)(gate, **act_kwargs) * up


def gated_halves(x: Tensor, dim: int, act: str, **act_kwargs) -> Tensor:
    """``a, b = x.chunk(2, dim); act(a) * b`` through the one-tensor form of the fused GLU (the gate is the
    first half) when ``x.shape[dim]`` is even; otherwise the composite, which fails as the original did."""
    if x.dim() > 0 and -x.dim() <= dim < x.dim() and x.shape[dim] % 2 == 0 and x.shape[dim] > 0:
        return _glu(act, x, dim=dim, **act_kwargs)
    a, b = x.chunk(2, dim)
    return getattr(tif, act)(a, **act_kwargs) * b


#: functions a shallow trace keeps as single calls (a re-traced fused forward stays fused)
LEAF_FUNCTIONS = (layer_bias_act, gated_product, gated_halves)

__all__ = ["BIAS_DIM", "GLU_FUNCTIONS", "has_hooks", "layer_form", "layer_without_bias", "layer_bias_act",
           "glu_name", "gated_product", "gated_halves", "LEAF_FUNCTIONS"]
