"""The functions a fused forward calls (``swap_activations(..., fuse=True)`` puts them in torch.fx graphs).

Each computes exactly what the unfused code did, through torchinit's fused ops, and reads the layer's
parameters from the layer at call time (the same Parameter objects: ``state_dict`` keys, optimizers,
later re-initialisation all keep working). Where a call's tensors do not fit the fused op (an ``up``
that only broadcasts against the gate, an odd-sized halving), it falls back to the unfused composite,
so a rewrite never changes what a forward computes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as TF
from torch import nn

from .. import functional as tif
from ..fused import bias_act, geglu, reglu, swiglu

Tensor = torch.Tensor

#: exact layer type -> (functional form, the dim its bias lies along, counted from the end)
LAYERS: dict[type[nn.Module], tuple] = {
    nn.Linear: (TF.linear, -1),
    nn.Conv1d: (TF.conv1d, -2),
    nn.Conv2d: (TF.conv2d, -3),
    nn.Conv3d: (TF.conv3d, -4),
}

#: gate activation kind -> the fused GLU function
GLU_FUNCTIONS = {"silu": swiglu, "gelu": geglu, "relu": reglu}


def layer_bias_act(layer: nn.Module, x: Tensor, act: str, dim: int, **act_kwargs) -> Tensor:
    """``act(layer(x))`` for an exact ``nn.Linear``/``nn.ConvNd`` with a bias: the layer without its bias,
    then :func:`torchinit.fused.bias_act` with the layer's own bias along ``dim`` (-1 after a Linear, the
    channel dim after a convolution, counted from the end so unbatched inputs work too).

    The bias is cast to the layer output's dtype, as the layer itself does under autocast.
    """
    fn, _ = LAYERS[type(layer)]
    if type(layer) is nn.Linear:
        h = fn(x, layer.weight, None)
    else:
        h = fn(x, layer.weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)
    bias = layer.bias
    if bias.dtype != h.dtype:
        bias = bias.to(h.dtype)
    return bias_act(h, bias, act, dim, **act_kwargs)


def gated_product(gate: Tensor, up: Tensor, act: str, **act_kwargs) -> Tensor:
    """``act(gate) * up`` through :data:`GLU_FUNCTIONS` when both are tensors of one shape, dtype and device;
    otherwise (broadcasting, a number) the composite with torchinit's activation."""
    if (isinstance(up, Tensor) and up.shape == gate.shape and up.dtype == gate.dtype and up.device == gate.device
            and gate.dim() > 0):
        return GLU_FUNCTIONS[act](gate, up, **act_kwargs)
    return getattr(tif, act)(gate, **act_kwargs) * up


def gated_halves(x: Tensor, dim: int, act: str, **act_kwargs) -> Tensor:
    """``a, b = x.chunk(2, dim); act(a) * b`` through the one-tensor form of :data:`GLU_FUNCTIONS` (the gate
    is the first half) when ``x.shape[dim]`` is even; otherwise the composite, which fails as the original did."""
    if x.dim() > 0 and -x.dim() <= dim < x.dim() and x.shape[dim] % 2 == 0 and x.shape[dim] > 0:
        return GLU_FUNCTIONS[act](x, dim=dim, **act_kwargs)
    a, b = x.chunk(2, dim)
    return getattr(tif, act)(a, **act_kwargs) * b


#: functions a shallow trace keeps as single calls (a re-traced fused forward stays fused)
LEAF_FUNCTIONS = (layer_bias_act, gated_product, gated_halves)

__all__ = ["LAYERS", "GLU_FUNCTIONS", "layer_bias_act", "gated_product", "gated_halves", "LEAF_FUNCTIONS"]
