"""Modules of the fused ops (re-exported by :mod:`torchinit.nn`): SwiGLU, GEGLU, ReGLU, BiasAct, Rational."""

from __future__ import annotations

import torch
from torch import nn

from ..activations import ACTIVATIONS
from .functions import bias_act, geglu, rational, reglu, swiglu
from .rational import rational_init

Tensor = torch.Tensor


class _Gated(nn.Module):
    def __init__(self, dim: int = -1, inplace: bool = False) -> None:
        super().__init__()
        self.dim = dim
        self.inplace = inplace  # accepted for act_layer(inplace=True) factories; the unit is out of place

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class SwiGLU(_Gated):
    """``silu(gate) * up``: ``forward(x)`` halves ``x`` along ``dim`` (gate = first half), ``forward(gate, up)``."""

    def forward(self, input: Tensor, up: Tensor | None = None) -> Tensor:
        return swiglu(input, up, self.dim)


class ReGLU(_Gated):
    """``relu(gate) * up``; one tensor is halved along ``dim`` (gate = first half)."""

    def forward(self, input: Tensor, up: Tensor | None = None) -> Tensor:
        return reglu(input, up, self.dim)


class GEGLU(_Gated):
    """``gelu(gate, approximate) * up``; one tensor is halved along ``dim`` (gate = first half)."""

    def __init__(self, dim: int = -1, approximate: str = "none", inplace: bool = False) -> None:
        super().__init__(dim, inplace)
        ACTIVATIONS["gelu"].check((approximate,), "nn.GEGLU")
        self.approximate = approximate

    def forward(self, input: Tensor, up: Tensor | None = None) -> Tensor:
        return geglu(input, up, self.dim, self.approximate)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, approximate={self.approximate!r}"


class BiasAct(nn.Module):
    """A learnable bias plus an activation, ``act(x + bias)``, for a matmul or convolution built without bias.

    ``BiasAct(num_features, "gelu", dim=-1)`` after ``nn.Linear(..., bias=False)``; ``dim=1`` after a
    convolution (NCHW or channels_last). The bias starts at zero.
    """

    def __init__(self, num_features: int, act: str = "relu", dim: int = -1, device=None, dtype=None,
                 **act_kwargs) -> None:
        super().__init__()
        self.act = act
        self.dim = dim
        self.act_kwargs = act_kwargs
        self.bias = nn.Parameter(torch.zeros(num_features, device=device, dtype=dtype))

    def forward(self, input: Tensor) -> Tensor:
        return bias_act(input, self.bias, self.act, self.dim, **self.act_kwargs)

    def extra_repr(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.act_kwargs.items())
        return f"{self.bias.numel()}, act={self.act!r}, dim={self.dim}{extra}"


class Rational(nn.Module):
    """A rational (Padé) activation ``P(x) / Q(x)`` with learnable coefficients (Molina et al., ICLR 2020).

    ``P`` has degree ``degrees[0]`` (coefficients ``numerator``, a_0 first) and
    ``Q(x) = 1 + |b_1| |x| + ... + |b_n| |x|^n`` (``n = degrees[1]``; ``Q >= 1``, so no poles). The
    coefficients start as a least-squares fit of the activation named by ``approximate`` on
    [-4, 4] (:func:`torchinit.fused.rational.rational_init`; ``fit_error`` holds its max abs error).
    One set of coefficients is shared by all elements.
    """

    def __init__(self, approximate: str = "gelu", degrees: tuple[int, int] = (5, 4), device=None, dtype=None,
                 inplace: bool = False) -> None:
        super().__init__()
        num, den, err = rational_init(approximate, tuple(degrees))
        self.approximate = approximate
        self.degrees = tuple(degrees)
        self.inplace = inplace
        self.fit_error = err
        kw = dict(device=device, dtype=dtype if dtype is not None else torch.get_default_dtype())
        self.numerator = nn.Parameter(num.to(**kw))
        self.denominator = nn.Parameter(den.to(**kw))

    def forward(self, input: Tensor) -> Tensor:
        return rational(input, self.numerator, self.denominator)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}, degrees={self.degrees}"


__all__ = ["SwiGLU", "GEGLU", "ReGLU", "BiasAct", "Rational"]
