"""Activation names from model configs mapped to torchinit modules: ``get("gelu_new")`` -> a module class.

The table covers the names of timm's activation factory (``timm.layers.create_act``), of Hugging
Face's ``ACT2CLS`` (``transformers.activations``) and this project's own module names, each with its
source's meaning:

* ``"gelu"``, ``"gelu_python"``: exact GELU (erf).
* ``"gelu_tanh"`` (timm), ``"gelu_new"``, ``"gelu_pytorch_tanh"``, ``"gelu_python_tanh"``,
  ``"gelu_fast"``, ``"gelu_accurate"`` (Hugging Face): GELU's tanh approximation
  ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``. Hugging Face writes it several ways
  (``gelu_fast`` rounds sqrt(2/pi) to 0.7978845608); they agree to well below fp32 resolution.
* ``"gelu_10"``: exact GELU clipped to [-10, 10] (Hugging Face's ``ClippedGELUActivation``).
* ``"quick_gelu"``: ``x * sigmoid(1.702 x)``, i.e. :class:`~torchinit.nn.Swish` with beta = 1.702.
* ``"silu"``, ``"swish"``: ``x * sigmoid(x)`` (``"swish"`` gives :class:`~torchinit.nn.Swish`, whose
  default beta = 1 is SiLU and which also takes other betas).
* ``"relu2"`` (Hugging Face), ``"squared_relu"``: ``relu(x) ** 2``; ``"star_relu"``: StarReLU.
* ``"hard_swish"``/``"hardswish"``, ``"hard_sigmoid"``/``"hardsigmoid"``: torch's hard variants.
* ``"linear"``, ``"identity"``: ``torch.nn.Identity`` (which accepts and ignores any arguments).
* ``"softmax"``, ``"log_softmax"``, ``"softmin"``: the output activations of :mod:`torchinit.softmax`.
* the rest (``"relu"``, ``"relu6"``, ``"leaky_relu"``, ``"prelu"``, ``"elu"``, ``"celu"``, ``"selu"``,
  ``"mish"``, ``"sigmoid"``, ``"tanh"``, ``"softplus"``, ``"glu"``, ...): the module of the same name.

Every class accepts ``inplace`` (timm and torchvision call ``act_layer(inplace=True)``), and takes
its source's default arguments when called with none. Names with no torchinit formula (timm's
``hard_mish``; Hugging Face's ``laplace``, ``xielu``, ``sqrtsoftplus``) are not in the table.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from . import functional as F
from .activations import ACTIVATIONS
from .nn import ACTIVATION_MODULES, GELU, Swish
from .softmax import LogSoftmax, Softmax, Softmin

Tensor = torch.Tensor
QUICK_GELU_BETA = 1.702


class GELUTanh(GELU):
    """GELU's tanh approximation (``"gelu_tanh"``, ``"gelu_new"``, ``"gelu_pytorch_tanh"``, ...).

    A :class:`torchinit.nn.GELU` whose ``approximate`` defaults to ``"tanh"``.
    """

    def __init__(self, approximate: str = "tanh", inplace: bool = False) -> None:
        super().__init__(approximate=approximate, inplace=inplace)


class QuickGELU(Swish):
    """``x * sigmoid(1.702 x)`` (``"quick_gelu"``): a :class:`torchinit.nn.Swish` with beta fixed at 1.702."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(beta=QUICK_GELU_BETA, inplace=inplace)


class ClippedGELU(GELU):
    """Exact GELU clamped to ``[min_val, max_val]`` (``"gelu_10"``: [-10, 10]); ``inplace`` computes out of place."""

    def __init__(self, min_val: float = -10.0, max_val: float = 10.0, inplace: bool = False) -> None:
        ACTIVATIONS["hardtanh"].check((min_val, max_val), "registry.ClippedGELU")  # the clamp's range
        super().__init__(inplace=inplace)
        self.min_val = float(min_val)
        self.max_val = float(max_val)

    def forward(self, input: Tensor) -> Tensor:
        return F.hardtanh(F.gelu(input), self.min_val, self.max_val, inplace=True)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}"


Factory = Callable[..., nn.Module]

_ALIASES: dict[str, Factory] = {
    # timm's create_act and Hugging Face's ACT2CLS
    "gelu_python": ACTIVATION_MODULES["gelu"],
    "gelu_tanh": GELUTanh,
    "gelu_new": GELUTanh,
    "gelu_pytorch_tanh": GELUTanh,
    "gelu_python_tanh": GELUTanh,
    "gelu_fast": GELUTanh,
    "gelu_accurate": GELUTanh,
    "gelu_10": ClippedGELU,
    "quick_gelu": QuickGELU,
    "relu2": ACTIVATION_MODULES["squared_relu"],
    "hard_swish": ACTIVATION_MODULES["hardswish"],
    "hard_sigmoid": ACTIVATION_MODULES["hardsigmoid"],
    "linear": nn.Identity,
    "identity": nn.Identity,
    # the output activations
    "softmax": Softmax,
    "log_softmax": LogSoftmax,
    "softmin": Softmin,
}

_TABLE: dict[str, Factory] = {**ACTIVATION_MODULES, **_ALIASES}


def names() -> list[str]:
    """Every name :func:`get` knows, sorted."""
    return sorted(_TABLE)


def get(name: str) -> Factory:
    """The module class (or factory) for activation ``name``, e.g. ``get("gelu_new")(inplace=True)``.

    Names follow timm's and Hugging Face's activation tables (see this module's docstring for each
    name's meaning). An unknown name raises ``KeyError`` listing the known ones.
    """
    if not isinstance(name, str):
        raise TypeError(f"torchinit.nn.get: argument 'name' must be a str, got {type(name).__name__}")
    try:
        return _TABLE[name]
    except KeyError:
        raise KeyError(f"torchinit.nn.get: unknown activation name {name!r}; known names: "
                       f"{', '.join(names())}") from None


__all__ = ["get", "names", "GELUTanh", "QuickGELU", "ClippedGELU"]
