"""Fans and roles of parameters, per layer type.

``fan_in`` is the number of terms summed into one output element (what forward variance scales with);
``fan_out`` the number of output elements one input element reaches (what backward variance scales
with). torch's ``_calculate_fan_in_and_fan_out`` assumes an ``(out, in, *kernel)`` layout; this module
knows the layouts that differ:

======================  ===================  ====================================  ==================================
layer                   weight layout        fan_in                                fan_out
======================  ===================  ====================================  ==================================
Linear                  (out, in)            in                                    out
Bilinear                (out, in1, in2)      in1 * in2                             out * in2 (gradient to x1)
ConvNd (groups g)       (out, in/g, *k)      in/g * prod(k)                        out/g * prod(k) (torch: out*prod(k))
ConvTransposeNd         (in, out/g, *k)      in/g * prod(k) (torch: out/g*prod(k)) out/g * prod(k) (torch: in*prod(k))
HF Conv1D (GPT-2)       (in, out)            in                                    out
Embedding(Bag)          (num, dim)           1 (a lookup: one weight per output)   1
MultiheadAttention      in_proj (3E, E)      E, for each of q, k, v                E
RNN / LSTM / GRU        (gates*H, in or H)   in or H, per gate block               H, per gate block
======================  ===================  ====================================  ==================================

ConvTranspose fans are the stride-1 counts; with stride ``s`` an output element receives on average
``prod(k/s)`` kernel taps instead of ``prod(k)``. Embeddings are lookups, so a variance-preserving scheme
gives them unit variance (torch's own default is N(0, 1)); a tied output head wants ``std = dim**-0.5``,
which a rule on that parameter can say. Recurrent weight blocks are flagged so that random-matrix schemes
initialise them orthogonally, gate by gate.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from ..layers import is_hf_conv1d
from .roles import is_norm_layer

__all__ = ["Block", "ParamInfo", "param_info", "tensor_fans", "is_norm_layer", "is_weight_layer"]

_RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


@dataclass(frozen=True)
class Block:
    """A slice ``rows`` (along dim 0) of a parameter initialised as its own matrix, with its fans."""

    rows: slice
    fan_in: int
    fan_out: int
    recurrent: bool = False


@dataclass(frozen=True)
class ParamInfo:
    """What :func:`param_info` knows about one parameter."""

    name: str
    module_name: str
    local_name: str
    module: nn.Module = field(repr=False, compare=False)
    role: str  # "weight", "bias", "norm_weight", "norm_bias", "other"
    blocks: tuple[Block, ...]
    layer: str  # the layer kind, e.g. "Linear", "Conv2d", "ConvTranspose2d", "LSTM"
    known: bool  # covered by rules that select the module (not only explicit parameter rules)
    groups: int = 1

    @property
    def fan_in(self) -> int | None:
        return self.blocks[0].fan_in if self.blocks else None

    @property
    def fan_out(self) -> int | None:
        return self.blocks[0].fan_out if self.blocks else None

    @property
    def recurrent(self) -> bool:
        return bool(self.blocks) and self.blocks[0].recurrent


def tensor_fans(shape: tuple[int, ...] | torch.Size, fn: str = "tensor_fans") -> tuple[int, int]:
    """torch's fan formula on a bare shape ``(out, in, *receptive)``: ``(in * r, out * r)``."""
    if len(shape) < 2:
        raise ValueError(f"{fn}: fans need a tensor with at least 2 dimensions, got shape {tuple(shape)}")
    r = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * r, shape[0] * r


def is_weight_layer(m: nn.Module) -> bool:
    """Layers whose weights scale the signal: Linear, HF Conv1D, Bilinear, convolutions, embeddings, RNNs, attention."""
    return isinstance(m, (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, nn.Embedding, nn.EmbeddingBag,
                          nn.RNNBase, nn.MultiheadAttention)) or is_hf_conv1d(m)


def _whole(shape: torch.Size, fan_in: int, fan_out: int, recurrent: bool = False) -> tuple[Block, ...]:
    return (Block(slice(0, shape[0] if len(shape) else 0), fan_in, fan_out, recurrent),)


def _conv_info(m: nn.modules.conv._ConvNd, shape: torch.Size) -> tuple[tuple[Block, ...], int]:
    g = m.groups
    k = math.prod(shape[2:])
    if m.transposed:  # (in, out/groups, *k)
        fan_in = (shape[0] // g) * k
        fan_out = shape[1] * k
    else:  # (out, in/groups, *k)
        fan_in = shape[1] * k
        fan_out = (shape[0] // g) * k
    return _whole(shape, fan_in, fan_out), g


def _rnn_blocks(m: nn.RNNBase, local: str, shape: torch.Size) -> tuple[str, tuple[Block, ...]]:
    gates = _RNN_GATES.get(m.mode.split("_")[0] if m.mode.startswith("RNN") else m.mode, 1)
    h = m.hidden_size
    if local.startswith("weight_ih"):
        return "weight", tuple(Block(slice(i * h, (i + 1) * h), shape[1], h) for i in range(gates))
    if local.startswith("weight_hh"):
        return "weight", tuple(Block(slice(i * h, (i + 1) * h), shape[1], h, recurrent=True) for i in range(gates))
    if local.startswith("weight_hr"):  # LSTM projection (proj, H)
        return "weight", _whole(shape, shape[1], shape[0])
    return "bias", ()


def param_info(module: nn.Module, module_name: str, local_name: str, tensor: torch.Tensor) -> ParamInfo:
    """Role, fans and packed blocks of ``module``'s parameter ``local_name``."""
    shape = tensor.shape
    full = f"{module_name}.{local_name}" if module_name else local_name
    layer = type(module).__name__

    def make(role: str, blocks: tuple[Block, ...] = (), known: bool = True, groups: int = 1) -> ParamInfo:
        return ParamInfo(full, module_name, local_name, module, role, blocks, layer, known, groups)

    is_bias = local_name == "bias" or local_name.startswith("bias") or local_name.endswith("_bias")
    if is_norm_layer(module) and tensor.dim() <= 1 and local_name in ("weight", "bias"):
        return make("norm_weight" if local_name == "weight" else "norm_bias")
    if isinstance(module, nn.modules.conv._ConvNd):
        if local_name == "weight":
            blocks, g = _conv_info(module, shape)
            kind = ("ConvTranspose" if module.transposed else "Conv") + f"{tensor.dim() - 2}d"
            return ParamInfo(full, module_name, local_name, module, "weight", blocks, kind, True, g)
        return make("bias" if is_bias else "other", known=is_bias)
    if isinstance(module, nn.Linear) and local_name == "weight":
        return make("weight", _whole(shape, shape[1], shape[0]))
    if local_name == "weight" and is_hf_conv1d(module):
        return make("weight", _whole(shape, shape[0], shape[1]))
    if isinstance(module, nn.Bilinear) and local_name == "weight":
        return make("weight", _whole(shape, shape[1] * shape[2], shape[0] * shape[2]))
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and local_name == "weight":
        return make("weight", _whole(shape, 1, 1))
    if isinstance(module, nn.MultiheadAttention):
        if local_name == "in_proj_weight":
            e = shape[1]
            blocks = tuple(Block(slice(i * e, (i + 1) * e), e, e) for i in range(3))
            return make("weight", blocks)
        if local_name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
            return make("weight", _whole(shape, shape[1], shape[0]))
        if is_bias:
            return make("bias")
    if isinstance(module, nn.RNNBase) and re.match(r"(weight|bias)_(ih|hh|hr)_l\d+(_reverse)?$", local_name):
        role, blocks = _rnn_blocks(module, local_name, shape)
        return make(role, blocks)
    if is_bias:
        return make("bias")
    if local_name == "weight" and tensor.dim() >= 2:
        fi, fo = tensor_fans(shape)
        return make("weight", _whole(shape, fi, fo))
    if tensor.dim() >= 2:
        fi, fo = tensor_fans(shape)
        return make("other", _whole(shape, fi, fo), known=False)
    return make("other", (), known=False)
