"""Drop-in ``torch.nn`` activation modules computed by torchinit.

Each class subclasses its ``torch.nn`` twin: same constructor, defaults, attributes, ``extra_repr``
and ``state_dict`` keys, so ``isinstance(m, torch.nn.GELU)`` still holds and checkpoints load either
way; only ``forward`` changes, to :mod:`torchinit.functional`. Every module also accepts an
``inplace`` keyword (default False), because model factories such as timm's and torchvision's call
``act_layer(inplace=True)``; where torch's twin has no in-place form (GELU, Sigmoid, Tanh,
Softplus, Softsign, LogSigmoid, Tanhshrink, GLU, PReLU, Swish, StarReLU) the flag is stored and
the module computes out of place.

``Swish``, ``SquaredReLU`` and ``StarReLU`` go beyond torch.
"""

from __future__ import annotations

import torch
from torch import nn

from . import functional as F

Tensor = torch.Tensor


class ReLU(nn.ReLU):
    """max(0, x); see :func:`torchinit.functional.relu`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.relu(input, inplace=self.inplace)


class ReLU6(nn.ReLU6):
    """min(max(0, x), 6); see :func:`torchinit.functional.relu6`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.relu6(input, inplace=self.inplace)


class LeakyReLU(nn.LeakyReLU):
    """x for x > 0 else negative_slope * x; see :func:`torchinit.functional.leaky_relu`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.leaky_relu(input, self.negative_slope, self.inplace)


class PReLU(nn.PReLU):
    """x for x > 0 else weight * x, with learnable weight(s); ``inplace`` is accepted and computes out of place."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device=None, dtype=None,
                 inplace: bool = False) -> None:
        super().__init__(num_parameters, init, device=device, dtype=dtype)
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.prelu(input, self.weight)


class ELU(nn.ELU):
    """x for x > 0 else alpha * (exp(x) - 1); see :func:`torchinit.functional.elu`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.elu(input, self.alpha, self.inplace)


class CELU(nn.CELU):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1)); see :func:`torchinit.functional.celu`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.celu(input, self.alpha, self.inplace)


class SELU(nn.SELU):
    """Self-normalising ELU; see :func:`torchinit.functional.selu`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.selu(input, self.inplace)


class GELU(nn.GELU):
    """x * Phi(x), or its tanh approximation; ``inplace`` is accepted and computes out of place."""

    def __init__(self, approximate: str = "none", inplace: bool = False) -> None:
        super().__init__(approximate=approximate)
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.gelu(input, approximate=self.approximate)


class SiLU(nn.SiLU):
    """x * sigmoid(x); see :func:`torchinit.functional.silu`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.silu(input, inplace=self.inplace)


class Mish(nn.Mish):
    """x * tanh(softplus(x)); see :func:`torchinit.functional.mish`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.mish(input, inplace=self.inplace)


class Sigmoid(nn.Sigmoid):
    """1 / (1 + exp(-x)); ``inplace`` is accepted and computes out of place."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.sigmoid(input)


class Tanh(nn.Tanh):
    """tanh(x); ``inplace`` is accepted and computes out of place."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.tanh(input)


class Softplus(nn.Softplus):
    """log(1 + exp(beta * x)) / beta; ``inplace`` is accepted and computes out of place."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0, inplace: bool = False) -> None:
        super().__init__(beta, threshold)
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.softplus(input, self.beta, self.threshold)


class Hardswish(nn.Hardswish):
    """x * relu6(x + 3) / 6; see :func:`torchinit.functional.hardswish`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.hardswish(input, self.inplace)


class Hardsigmoid(nn.Hardsigmoid):
    """relu6(x + 3) / 6; see :func:`torchinit.functional.hardsigmoid`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.hardsigmoid(input, self.inplace)


class Hardtanh(nn.Hardtanh):
    """x clamped to [min_val, max_val]; see :func:`torchinit.functional.hardtanh`."""

    def forward(self, input: Tensor) -> Tensor:
        return F.hardtanh(input, self.min_val, self.max_val, self.inplace)


class Softsign(nn.Softsign):
    """x / (1 + |x|); ``inplace`` is accepted and computes out of place."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.softsign(input)


class LogSigmoid(nn.LogSigmoid):
    """log(sigmoid(x)); ``inplace`` is accepted and computes out of place."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.logsigmoid(input)


class Tanhshrink(nn.Tanhshrink):
    """x - tanh(x); ``inplace`` is accepted and computes out of place."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.tanhshrink(input)


class GLU(nn.GLU):
    """First half * sigmoid(second half) along ``dim``; ``inplace`` is accepted and computes out of place."""

    def __init__(self, dim: int = -1, inplace: bool = False) -> None:
        super().__init__(dim)
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.glu(input, self.dim)


class Swish(nn.Module):
    """x * sigmoid(beta * x), with a fixed or learnable ``beta`` (Ramachandran et al. 2017).

    ``Swish(beta=1.0)`` equals ``SiLU``. With ``learnable=True``, ``beta`` is a one-element
    parameter (state_dict key ``beta``) initialised to the given value.
    """

    def __init__(self, beta: float = 1.0, learnable: bool = False, inplace: bool = False,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.learnable = learnable
        self.inplace = inplace
        if learnable:
            self.beta = nn.Parameter(torch.full((1,), float(beta), device=device, dtype=dtype))
        else:
            self.beta = float(beta)

    def forward(self, input: Tensor) -> Tensor:
        return F.swish(input, self.beta)

    def extra_repr(self) -> str:
        beta = float(self.beta.detach()) if self.learnable else self.beta
        return f"beta={beta}, learnable={self.learnable}"


class SquaredReLU(nn.Module):
    """relu(x) ** 2 (So et al. 2021, "Primer: Searching for Efficient Transformers")."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.squared_relu(input, self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class StarReLU(nn.Module):
    """scale * relu(x) ** 2 + bias with learnable one-element ``scale`` and ``bias`` (Yu et al. 2022).

    Defaults 0.8944 and -0.4472 (the paper's values: unit mean-zero output for N(0, 1) input).
    """

    def __init__(self, scale_value: float = 0.8944, bias_value: float = -0.4472, scale_learnable: bool = True,
                 bias_learnable: bool = True, inplace: bool = False, device=None, dtype=None) -> None:
        super().__init__()
        self.inplace = inplace
        self.scale = nn.Parameter(torch.full((1,), float(scale_value), device=device, dtype=dtype),
                                  requires_grad=scale_learnable)
        self.bias = nn.Parameter(torch.full((1,), float(bias_value), device=device, dtype=dtype),
                                 requires_grad=bias_learnable)

    def forward(self, input: Tensor) -> Tensor:
        return F.star_relu(input, self.scale, self.bias)

    def extra_repr(self) -> str:
        return f"scale_learnable={self.scale.requires_grad}, bias_learnable={self.bias.requires_grad}"


ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": ReLU, "relu6": ReLU6, "leaky_relu": LeakyReLU, "prelu": PReLU, "elu": ELU, "celu": CELU,
    "selu": SELU, "gelu": GELU, "silu": SiLU, "mish": Mish, "sigmoid": Sigmoid, "tanh": Tanh,
    "softplus": Softplus, "hardswish": Hardswish, "hardsigmoid": Hardsigmoid, "hardtanh": Hardtanh,
    "softsign": Softsign, "logsigmoid": LogSigmoid, "tanhshrink": Tanhshrink, "glu": GLU, "swish": Swish,
    "squared_relu": SquaredReLU, "star_relu": StarReLU,
}

__all__ = [cls.__name__ for cls in ACTIVATION_MODULES.values()] + ["ACTIVATION_MODULES"]
