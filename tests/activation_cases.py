"""What the activation tests run: every torchinit.functional activation, its torch reference and arguments."""

from __future__ import annotations

import torch
import torch.nn.functional as TF

import torchinit.functional as F
from torchinit.activations import ACTIVATIONS

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# the backends that must agree with torch: the torch path, and Triton (interpreted on CPU)
BACKENDS = ["torch", "triton"]


def _swish_ref(x, beta=1.0):
    return x * torch.sigmoid(beta * x)


def _star_relu_ref(x, scale=0.8944, bias=-0.4472):
    return scale * torch.relu(x) ** 2 + bias


def _prelu_ref(x, weight):
    return TF.prelu(x, weight)


# name -> (torchinit function, torch reference, list of keyword-argument sets, needs a channel dim)
CASES = {
    "relu": (F.relu, TF.relu, [{}]),
    "relu6": (F.relu6, TF.relu6, [{}]),
    "leaky_relu": (F.leaky_relu, TF.leaky_relu, [{}, {"negative_slope": 0.2}, {"negative_slope": -0.3}]),
    "elu": (F.elu, TF.elu, [{}, {"alpha": 0.5}, {"alpha": -0.5}]),
    "celu": (F.celu, TF.celu, [{}, {"alpha": 2.0}]),
    "selu": (F.selu, TF.selu, [{}]),
    "gelu": (F.gelu, TF.gelu, [{}, {"approximate": "tanh"}]),
    "silu": (F.silu, TF.silu, [{}]),
    "mish": (F.mish, TF.mish, [{}]),
    "sigmoid": (F.sigmoid, torch.sigmoid, [{}]),
    "tanh": (F.tanh, torch.tanh, [{}]),
    "softplus": (F.softplus, TF.softplus, [{}, {"beta": 2.0, "threshold": 5.0}, {"beta": 0.5}]),
    "hardswish": (F.hardswish, TF.hardswish, [{}]),
    "hardsigmoid": (F.hardsigmoid, TF.hardsigmoid, [{}]),
    "hardtanh": (F.hardtanh, TF.hardtanh, [{}, {"min_val": -2.0, "max_val": 0.5}]),
    "softsign": (F.softsign, TF.softsign, [{}]),
    "logsigmoid": (F.logsigmoid, TF.logsigmoid, [{}]),
    "tanhshrink": (F.tanhshrink, TF.tanhshrink, [{}]),
    "swish": (F.swish, _swish_ref, [{}, {"beta": 1.702}]),
    "squared_relu": (F.squared_relu, lambda x: torch.relu(x) ** 2, [{}]),
    "star_relu": (F.star_relu, _star_relu_ref, [{}, {"scale": 1.5, "bias": 0.25}]),
}

# activations whose torch reference is a composite of several ops: in fp16/bf16 each op of the composite
# rounds, so the reference itself is off by up to ~2 ulps; their reference is computed in fp32 and rounded
# once (what "fp32 math inside" promises)
COMPOSITE_REFERENCES = {"swish", "squared_relu", "star_relu"}



def _table_reference(name: str):
    """The reference of a table row written in neither torch nor above: the row's torch form evaluated in
    fp64 and rounded once to the input's dtype (its gradient through the same casts); for other dtypes the
    torch form as it is (its result or its error, what torchinit gives them)."""
    activation = ACTIVATIONS[name]

    def reference(x, **arguments):
        values = tuple(arguments.get(k, d) for k, d in activation.defaults.items())
        resolved = activation.resolve(**activation.arguments(values))
        if not x.is_floating_point():
            return resolved.torch_form(x, False)
        return resolved.torch_form(x.double(), False).to(x.dtype)

    return reference


def _add_table_rows() -> None:
    """Every other row of the activation table (numbers-only arguments) with its default arguments, against
    its torch twin where torch has one, else against its own torch form in fp64 (a check of the Triton pair
    against the torch form, not of the formula itself: a new row's formula wants an independent reference
    written in CASES)."""
    for name, activation in ACTIVATIONS.items():
        if name in CASES or None in activation.defaults.values():  # prelu: a weight tensor, tested on its own
            continue
        twin = {"sigmoid": torch.sigmoid, "tanh": torch.tanh}.get(activation.torch_name) or (
            getattr(TF, activation.torch_name, None) if activation.torch_name else None)
        CASES[name] = (getattr(F, name), twin or _table_reference(name), [{}])
        if twin is None:
            COMPOSITE_REFERENCES.add(name)


_add_table_rows()

# the activations torch lets run in place, from the table
INPLACE = [name for name, activation in ACTIVATIONS.items() if activation.inplace and name in CASES]


def params():
    """(name, kwargs) pairs for parametrize, with readable ids."""
    out = []
    for name, (_, _, variants) in CASES.items():
        for kw in variants:
            out.append((name, kw))
    return out


def ids(p):
    name, kw = p
    return name + ("-" + "-".join(f"{k}={v}" for k, v in kw.items()) if kw else "")


def tolerance(dtype: torch.dtype, backward: bool = False) -> dict:
    """Dtype-resolution tolerances (torch.testing's defaults, fp32 math inside the kernels).

    Backward in half precision gets two ulps more: activations that save their *output* compute the
    gradient from the rounded output, so a one-ulp difference in the forward (two fp32
    implementations rounding differently) moves the gradient by about one ulp of the output.
    """
    tol = {
        torch.float64: dict(rtol=1e-7, atol=1e-7),
        torch.float32: dict(rtol=1.3e-6, atol=1e-5),
        torch.float16: dict(rtol=1e-3, atol=1e-3),
        torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2),
    }[dtype]
    if backward and dtype in (torch.float16, torch.bfloat16):
        tol = {k: 3 * v for k, v in tol.items()}
    return tol
