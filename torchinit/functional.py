"""``torch.nn.functional``-shaped activation functions backed by torchinit's kernels.

Each function has the signature, defaults and results of its ``torch.nn.functional`` twin; which
implementation runs (Triton kernels or the pure-torch path) is chosen per call by
:mod:`torchinit.backend`. ``swish``, ``squared_relu`` and ``star_relu`` go beyond torch.
"""

from __future__ import annotations

import torch

from .ops import run_activation, run_glu

Tensor = torch.Tensor


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(0, x), as ``torch.nn.functional.relu``."""
    return run_activation("relu", input, inplace)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """min(max(0, x), 6), as ``torch.nn.functional.relu6``."""
    return run_activation("relu6", input, inplace)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x for x > 0, negative_slope * x otherwise, as ``torch.nn.functional.leaky_relu``."""
    return run_activation("leaky_relu", input, inplace, negative_slope=negative_slope)


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """x for x > 0, weight * x otherwise, with one weight or one per channel (dim 1), as ``F.prelu``."""
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"torchinit.prelu: argument 'weight' must be a torch.Tensor, got {type(weight).__name__}")
    channels = input.shape[1] if isinstance(input, torch.Tensor) and input.dim() >= 2 else None
    if weight.numel() != 1:
        if weight.dim() != 1:
            raise ValueError(f"torchinit.prelu: argument 'weight' must be 1-D, got shape {tuple(weight.shape)}")
        if channels is None:
            raise ValueError("torchinit.prelu: a per-channel 'weight' needs an input with a channel dim (dim 1), "
                             f"got an input of {input.dim()} dims; use a single weight")
        if weight.numel() != channels:
            raise ValueError(f"torchinit.prelu: argument 'weight' has {weight.numel()} elements but the input has "
                             f"{channels} channels (dim 1); expected 1 or {channels}")
    return run_activation("prelu", input, False, weight=weight)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x for x > 0, alpha * (exp(x) - 1) otherwise, as ``torch.nn.functional.elu``."""
    return run_activation("elu", input, inplace, alpha=alpha)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1)), as ``torch.nn.functional.celu``."""
    if alpha == 0:
        raise ValueError("torchinit.celu: argument 'alpha' must not be 0 (the function divides by it)")
    return run_activation("celu", input, inplace, alpha=alpha)


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """scale * elu(x, alpha) with the self-normalising constants, as ``torch.nn.functional.selu``."""
    return run_activation("selu", input, inplace)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x) (``approximate="tanh"``: the tanh approximation), as ``torch.nn.functional.gelu``."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"torchinit.gelu: argument 'approximate' must be 'none' or 'tanh', got {approximate!r}")
    return run_activation("gelu", input, False, approximate=approximate)


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """x * sigmoid(x), as ``torch.nn.functional.silu``."""
    return run_activation("silu", input, inplace)


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * tanh(softplus(x)), as ``torch.nn.functional.mish``."""
    return run_activation("mish", input, inplace)


def sigmoid(input: Tensor) -> Tensor:
    """1 / (1 + exp(-x)), as ``torch.sigmoid``."""
    return run_activation("sigmoid", input)


def tanh(input: Tensor) -> Tensor:
    """The hyperbolic tangent, as ``torch.tanh``."""
    return run_activation("tanh", input)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta * x)) / beta, linear above ``threshold``, as ``torch.nn.functional.softplus``."""
    if beta == 0:
        raise ValueError("torchinit.softplus: argument 'beta' must not be 0 (the function divides by it)")
    return run_activation("softplus", input, False, beta=beta, threshold=threshold)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * relu6(x + 3) / 6, as ``torch.nn.functional.hardswish``."""
    return run_activation("hardswish", input, inplace)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """relu6(x + 3) / 6, as ``torch.nn.functional.hardsigmoid``."""
    return run_activation("hardsigmoid", input, inplace)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    """x clamped to [min_val, max_val], as ``torch.nn.functional.hardtanh``."""
    if min_val > max_val:
        raise ValueError(f"torchinit.hardtanh: 'min_val' ({min_val}) must not exceed 'max_val' ({max_val})")
    return run_activation("hardtanh", input, inplace, min_val=min_val, max_val=max_val)


def softsign(input: Tensor) -> Tensor:
    """x / (1 + |x|), as ``torch.nn.functional.softsign``."""
    return run_activation("softsign", input)


def logsigmoid(input: Tensor) -> Tensor:
    """log(sigmoid(x)), computed without overflow, as ``torch.nn.functional.logsigmoid``."""
    return run_activation("logsigmoid", input)


def tanhshrink(input: Tensor) -> Tensor:
    """x - tanh(x), as ``torch.nn.functional.tanhshrink``."""
    return run_activation("tanhshrink", input)


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """a * sigmoid(b) where a, b are the first and second halves of ``input`` along ``dim``, as ``F.glu``.

    Note the convention: torch's GLU gates the *second* half and passes the first.
    """
    return run_glu(input, dim)


def swish(input: Tensor, beta: float | Tensor = 1.0) -> Tensor:
    """x * sigmoid(beta * x) (Ramachandran et al. 2017); ``beta`` a number or a learnable one-element tensor."""
    if isinstance(beta, torch.Tensor) and beta.numel() != 1:
        raise ValueError(f"torchinit.swish: argument 'beta' must have one element, got shape {tuple(beta.shape)}")
    return run_activation("swish", input, False, beta=beta)


def squared_relu(input: Tensor, inplace: bool = False) -> Tensor:
    """relu(x) ** 2 (So et al. 2021, "Primer")."""
    return run_activation("squared_relu", input, inplace)


def star_relu(input: Tensor, scale: float | Tensor = 0.8944, bias: float | Tensor = -0.4472) -> Tensor:
    """scale * relu(x) ** 2 + bias (Yu et al. 2022, "MetaFormer Baselines"); scale, bias numbers or 1-element tensors."""
    for arg, value in (("scale", scale), ("bias", bias)):
        if isinstance(value, torch.Tensor) and value.numel() != 1:
            raise ValueError(f"torchinit.star_relu: argument '{arg}' must have one element, got shape "
                             f"{tuple(value.shape)}")
    return run_activation("star_relu", input, False, scale=scale, bias=bias)


__all__ = [
    "relu", "relu6", "leaky_relu", "prelu", "elu", "celu", "selu", "gelu", "silu", "mish", "sigmoid", "tanh",
    "softplus", "hardswish", "hardsigmoid", "hardtanh", "softsign", "logsigmoid", "tanhshrink", "glu", "swish",
    "squared_relu", "star_relu",
]

from .fused.functions import (bias_act, geglu, gated, gelu_fewbit, hardtanh_bits, leaky_relu_bits,  # noqa: E402
                              mish_fewbit, prelu_bits, rational, reglu, relu6_bits, relu_bits, silu_fewbit, swiglu)

from .softmax import log_softmax, softmax, softmin  # noqa: E402

__all__ += ["swiglu", "geglu", "reglu", "gated", "bias_act", "rational", "relu_bits", "relu6_bits",
            "leaky_relu_bits", "hardtanh_bits", "prelu_bits", "gelu_fewbit", "silu_fewbit", "mish_fewbit",
            "softmax", "log_softmax", "softmin"]

# torch.fx: record calls of these functions as single nodes instead of tracing into them
for _name in __all__:
    torch.fx.wrap(_name)
del _name
