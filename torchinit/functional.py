"""``torch.nn.functional``-shaped activation functions backed by torchinit's kernels.

Each function has the signature, defaults and results of its ``torch.nn.functional`` twin; which
implementation runs (Triton kernels or the pure-torch path) is chosen per call by
:mod:`torchinit.backend`. ``swish``, ``squared_relu`` and ``star_relu`` go beyond torch.

Every row of the activation table (:data:`torchinit.activations.ACTIVATIONS`) has its function here,
made from the row by :func:`from_table`: ``(input, <the row's arguments with its defaults>[,
inplace=False])``. The ones written below are stubs that hold only torch's exact signature and a
docstring (checked against the row); the body of every function is the one hot path of
:func:`torchinit.entry.call`, generated, so a call costs one Python frame before torch's own function.
"""

from __future__ import annotations

import inspect

import torch

from .activations import ACTIVATIONS
from .entry import call_uncached, entry_like, run_glu

Tensor = torch.Tensor


def from_table(row):
    """The functional form of an activation table row: ``name(input, <arguments>[, inplace=False])`` with the
    row's argument names and defaults in order (positional or keyword, as torch's functions take them),
    running the hot path of every activation call (:func:`torchinit.entry.make_entry`; one Python frame
    before torch's own function).

    ``row`` is the row's name, or (as a decorator) a function of that name holding only the signature and
    docstring that torch's twin has: the generated function takes them (:func:`torchinit.entry.entry_like`),
    and the stub's parameters must be the row's (checked here, so the two cannot drift apart)."""
    stub = None if isinstance(row, str) else row
    name = row if stub is None else stub.__name__
    activation = ACTIVATIONS[name]
    if not name.isidentifier() or not all(a.isidentifier() for a in activation.defaults):
        raise ValueError(f"torchinit.functional.from_table: {name!r} and its arguments must be identifiers")
    # a default of None in the row marks a required argument (PReLU's weight: Activation.takes_tensors)
    expected = {a: inspect.Parameter.empty if d is None else d for a, d in activation.defaults.items()}
    expected.update({"inplace": False} if activation.inplace else {})
    if stub is None:
        params = "".join(f", {a}" if d is inspect.Parameter.empty else f", {a}=_defaults[{a!r}]"
                         for a, d in expected.items())
        source = f"def {name}(input{params}):\n    pass\n"
        scope = {"_defaults": expected}
        exec(source, scope)  # noqa: S102 - a signature from the table's names (checked identifiers above)
        stub = scope[name]
        stub.__module__ = __name__
        stub.__doc__ = (f"Activation ``{name}`` of the activation table (:data:`torchinit.activations.ACTIVATIONS`), "
                        "made from its row: " + (f"arguments {', '.join(activation.defaults)}." if activation.defaults
                                                 else "no arguments."))
    got = {p.name: p.default for p in list(inspect.signature(stub).parameters.values())[1:]}
    if list(got.items()) != list(expected.items()):  # names, order and defaults
        raise TypeError(f"torchinit.functional.{name}: the signature {got} is not the table row's {expected}")
    inplace = "inplace" if activation.inplace else "False"
    values = "(" + "".join(f"{a}, " for a in activation.defaults) + ")"
    return entry_like(stub, f"_call_uncached({name!r}, input, {inplace}, {values})", name,
                      namespace={"_call_uncached": call_uncached})


@from_table
def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(0, x), as ``torch.nn.functional.relu``."""


@from_table
def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """min(max(0, x), 6), as ``torch.nn.functional.relu6``."""


@from_table
def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x for x > 0, negative_slope * x otherwise, as ``torch.nn.functional.leaky_relu``."""


@from_table
def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """x for x > 0, weight * x otherwise, with one weight or one per channel (dim 1), as ``F.prelu``."""


@from_table
def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x for x > 0, alpha * (exp(x) - 1) otherwise, as ``torch.nn.functional.elu``."""


@from_table
def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1)), as ``torch.nn.functional.celu``."""


@from_table
def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """scale * elu(x, alpha) with the self-normalising constants, as ``torch.nn.functional.selu``."""


@from_table
def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x) (``approximate="tanh"``: the tanh approximation), as ``torch.nn.functional.gelu``."""


@from_table
def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """x * sigmoid(x), as ``torch.nn.functional.silu``."""


@from_table
def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * tanh(softplus(x)), as ``torch.nn.functional.mish``."""


@from_table
def sigmoid(input: Tensor) -> Tensor:
    """1 / (1 + exp(-x)), as ``torch.sigmoid``."""


@from_table
def tanh(input: Tensor) -> Tensor:
    """The hyperbolic tangent, as ``torch.tanh``."""


@from_table
def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta * x)) / beta, linear above ``threshold``, as ``torch.nn.functional.softplus``."""


@from_table
def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * relu6(x + 3) / 6, as ``torch.nn.functional.hardswish``."""


@from_table
def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """relu6(x + 3) / 6, as ``torch.nn.functional.hardsigmoid``."""


@from_table
def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    """x clamped to [min_val, max_val], as ``torch.nn.functional.hardtanh``."""


@from_table
def softsign(input: Tensor) -> Tensor:
    """x / (1 + |x|), as ``torch.nn.functional.softsign``."""


@from_table
def logsigmoid(input: Tensor) -> Tensor:
    """log(sigmoid(x)), computed without overflow, as ``torch.nn.functional.logsigmoid``."""


@from_table
def tanhshrink(input: Tensor) -> Tensor:
    """x - tanh(x), as ``torch.nn.functional.tanhshrink``."""


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """a * sigmoid(b) where a, b are the first and second halves of ``input`` along ``dim``, as ``F.glu``.

    Note the convention: torch's GLU gates the *second* half and passes the first.
    """
    return run_glu(input, dim)


@from_table
def swish(input: Tensor, beta: float | Tensor = 1.0) -> Tensor:
    """x * sigmoid(beta * x) (Ramachandran et al. 2017); ``beta`` a number or a learnable one-element tensor."""


@from_table
def squared_relu(input: Tensor, inplace: bool = False) -> Tensor:
    """relu(x) ** 2 (So et al. 2021, "Primer")."""


@from_table
def star_relu(input: Tensor, scale: float | Tensor = 0.8944, bias: float | Tensor = -0.4472) -> Tensor:
    """scale * relu(x) ** 2 + bias (Yu et al. 2022, "MetaFormer Baselines"); scale, bias numbers or 1-element tensors."""


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
