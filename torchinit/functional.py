"""``torch.nn.functional``-shaped activation functions backed by torchinit's kernels.

Each function has the signature, defaults and results of its ``torch.nn.functional`` twin; which
implementation runs (Triton kernels or the pure-torch path) is chosen per call by
:mod:`torchinit.backend`. ``swish``, ``squared_relu`` and ``star_relu`` go beyond torch.

Every row of the activation table (:data:`torchinit.activations.ACTIVATIONS`) has its function here:
the ones written below (torch's exact signature and a docstring), and, for a row without one, a
function made from the row (:func:`from_table`): ``(input, <the row's arguments with its
defaults>[, inplace=False])``, calling :func:`torchinit.entry.call`.
"""

from __future__ import annotations

import torch

from .activations import ACTIVATIONS
from .entry import call, call_uncached, run_glu

Tensor = torch.Tensor


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(0, x), as ``torch.nn.functional.relu``."""
    return call("relu", input, inplace)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """min(max(0, x), 6), as ``torch.nn.functional.relu6``."""
    return call("relu6", input, inplace)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x for x > 0, negative_slope * x otherwise, as ``torch.nn.functional.leaky_relu``."""
    return call("leaky_relu", input, inplace, (negative_slope,))


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """x for x > 0, weight * x otherwise, with one weight or one per channel (dim 1), as ``F.prelu``."""
    return call_uncached("prelu", input, False, (weight,))  # a tensor argument: nothing to look up


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x for x > 0, alpha * (exp(x) - 1) otherwise, as ``torch.nn.functional.elu``."""
    return call("elu", input, inplace, (alpha,))


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1)), as ``torch.nn.functional.celu``."""
    return call("celu", input, inplace, (alpha,))


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """scale * elu(x, alpha) with the self-normalising constants, as ``torch.nn.functional.selu``."""
    return call("selu", input, inplace)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x) (``approximate="tanh"``: the tanh approximation), as ``torch.nn.functional.gelu``."""
    return call("gelu", input, False, (approximate,))


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """x * sigmoid(x), as ``torch.nn.functional.silu``."""
    return call("silu", input, inplace)


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * tanh(softplus(x)), as ``torch.nn.functional.mish``."""
    return call("mish", input, inplace)


def sigmoid(input: Tensor) -> Tensor:
    """1 / (1 + exp(-x)), as ``torch.sigmoid``."""
    return call("sigmoid", input)


def tanh(input: Tensor) -> Tensor:
    """The hyperbolic tangent, as ``torch.tanh``."""
    return call("tanh", input)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta * x)) / beta, linear above ``threshold``, as ``torch.nn.functional.softplus``."""
    return call("softplus", input, False, (beta, threshold))


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * relu6(x + 3) / 6, as ``torch.nn.functional.hardswish``."""
    return call("hardswish", input, inplace)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """relu6(x + 3) / 6, as ``torch.nn.functional.hardsigmoid``."""
    return call("hardsigmoid", input, inplace)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    """x clamped to [min_val, max_val], as ``torch.nn.functional.hardtanh``."""
    return call("hardtanh", input, inplace, (min_val, max_val))


def softsign(input: Tensor) -> Tensor:
    """x / (1 + |x|), as ``torch.nn.functional.softsign``."""
    return call("softsign", input)


def logsigmoid(input: Tensor) -> Tensor:
    """log(sigmoid(x)), computed without overflow, as ``torch.nn.functional.logsigmoid``."""
    return call("logsigmoid", input)


def tanhshrink(input: Tensor) -> Tensor:
    """x - tanh(x), as ``torch.nn.functional.tanhshrink``."""
    return call("tanhshrink", input)


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """a * sigmoid(b) where a, b are the first and second halves of ``input`` along ``dim``, as ``F.glu``.

    Note the convention: torch's GLU gates the *second* half and passes the first.
    """
    return run_glu(input, dim)


def swish(input: Tensor, beta: float | Tensor = 1.0) -> Tensor:
    """x * sigmoid(beta * x) (Ramachandran et al. 2017); ``beta`` a number or a learnable one-element tensor."""
    return call("swish", input, False, (beta,))


def squared_relu(input: Tensor, inplace: bool = False) -> Tensor:
    """relu(x) ** 2 (So et al. 2021, "Primer")."""
    return call("squared_relu", input, inplace)


def star_relu(input: Tensor, scale: float | Tensor = 0.8944, bias: float | Tensor = -0.4472) -> Tensor:
    """scale * relu(x) ** 2 + bias (Yu et al. 2022, "MetaFormer Baselines"); scale, bias numbers or 1-element tensors."""
    return call("star_relu", input, False, (scale, bias))


def from_table(name: str):
    """The functional form of activation table row ``name``: ``name(input, <arguments>[, inplace=False])``
    with the row's argument names and defaults in order (positional or keyword, as torch's functions take
    them), returning ``call(name, input, inplace, (<arguments>,))``. A generated signature (``exec`` of
    the ``def``, as :mod:`dataclasses` makes ``__init__``), so a call costs what a hand-written one does."""
    activation = ACTIVATIONS[name]
    if not name.isidentifier() or not all(a.isidentifier() for a in activation.defaults):
        raise ValueError(f"torchinit.functional.from_table: {name!r} and its arguments must be identifiers")
    params = [f"{a}=_defaults[{a!r}]" for a in activation.defaults] + (["inplace=False"] if activation.inplace else [])
    values = "".join(f"{a}, " for a in activation.defaults)
    source = (f"def {name}(input{''.join(', ' + p for p in params)}):\n"
              f"    return _call({name!r}, input, {'inplace' if activation.inplace else 'False'}, ({values}))\n")
    namespace = {"_call": call, "_defaults": activation.defaults}
    exec(source, namespace)  # noqa: S102 - a def built from the table's names (checked identifiers above)
    fn = namespace[name]
    fn.__module__ = __name__
    fn.__doc__ = (f"Activation ``{name}`` of the activation table (:data:`torchinit.activations.ACTIVATIONS`), "
                  "made from its row: " + (f"arguments {', '.join(activation.defaults)}." if activation.defaults
                                           else "no arguments."))
    return fn


__all__ = [
    "relu", "relu6", "leaky_relu", "prelu", "elu", "celu", "selu", "gelu", "silu", "mish", "sigmoid", "tanh",
    "softplus", "hardswish", "hardsigmoid", "hardtanh", "softsign", "logsigmoid", "tanhshrink", "glu", "swish",
    "squared_relu", "star_relu",
]

# the rows without a hand-written function above (each hand-written one is in __all__)
for _name in ACTIVATIONS:
    if _name not in __all__:
        globals()[_name] = from_table(_name)
        __all__.append(_name)

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
