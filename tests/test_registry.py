"""The activation name registry: every name's meaning against its source table, errors, listing."""

import os

import torch

if not torch.cuda.is_available():  # Triton's interpreter runs the kernels on CPU tensors
    os.environ.setdefault("TRITON_INTERPRET", "1")

import math  # noqa: E402

import pytest  # noqa: E402

import torchinit  # noqa: E402
from torchinit.backend import triton_can_run  # noqa: E402
from torchinit.registry import ClippedGELU, GELUTanh, QuickGELU, get, names  # noqa: E402

BACKENDS = ["torch", "triton"] if triton_can_run(torch.device("cpu")) else ["torch"]
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))


def _gelu_erf(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


# Each name's meaning, written from its source (timm's create_act, transformers' ACT2CLS, torch), in
# plain torch math independent of torchinit. Module arguments where the default alone is not enough.
EXPECTED = {
    "gelu": _gelu_erf,
    "gelu_python": _gelu_erf,
    "gelu_tanh": _gelu_tanh,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_python_tanh": _gelu_tanh,
    "gelu_accurate": _gelu_tanh,
    "gelu_fast": lambda x: 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x))),
    "gelu_10": lambda x: _gelu_erf(x).clamp(-10.0, 10.0),
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "silu": lambda x: x * torch.sigmoid(x),
    "swish": lambda x: x * torch.sigmoid(x),
    "relu": lambda x: x.clamp_min(0),
    "relu2": lambda x: x.clamp_min(0) ** 2,
    "squared_relu": lambda x: x.clamp_min(0) ** 2,
    "star_relu": lambda x: 0.8944 * x.clamp_min(0) ** 2 - 0.4472,
    "relu6": lambda x: x.clamp(0, 6),
    "leaky_relu": lambda x: torch.where(x > 0, x, 0.01 * x),
    "prelu": lambda x: torch.where(x > 0, x, 0.25 * x),
    "elu": lambda x: torch.where(x > 0, x, torch.expm1(x)),
    "celu": lambda x: torch.where(x > 0, x, torch.expm1(x)),
    "selu": lambda x: 1.0507009873554805 * torch.where(x > 0, x, 1.6732632423543772 * torch.expm1(x)),
    "mish": lambda x: x * torch.tanh(torch.log1p(torch.exp(x))),
    "sigmoid": lambda x: 1.0 / (1.0 + torch.exp(-x)),
    "tanh": lambda x: torch.tanh(x),
    "softplus": lambda x: torch.log1p(torch.exp(x)),
    "hardswish": lambda x: x * (x + 3).clamp(0, 6) / 6,
    "hard_swish": lambda x: x * (x + 3).clamp(0, 6) / 6,
    "hardsigmoid": lambda x: (x + 3).clamp(0, 6) / 6,
    "hard_sigmoid": lambda x: (x + 3).clamp(0, 6) / 6,
    "hardtanh": lambda x: x.clamp(-1, 1),
    "softsign": lambda x: x / (1 + x.abs()),
    "logsigmoid": lambda x: -torch.log1p(torch.exp(-x)),
    "tanhshrink": lambda x: x - torch.tanh(x),
    "glu": lambda x: x[..., :4] * torch.sigmoid(x[..., 4:]),
    "linear": lambda x: x,
    "identity": lambda x: x,
    "softmax": lambda x: torch.exp(x) / torch.exp(x).sum(-1, keepdim=True),
    "log_softmax": lambda x: x - torch.log(torch.exp(x).sum(-1, keepdim=True)),
    "softmin": lambda x: torch.exp(-x) / torch.exp(-x).sum(-1, keepdim=True),
}
ARGS = {"softmax": {"dim": -1}, "log_softmax": {"dim": -1}, "softmin": {"dim": -1}}

# The names the issue lists from timm's and Hugging Face's tables
REQUIRED = ["gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "quick_gelu", "silu", "swish", "relu", "relu2",
            "relu6", "mish", "hard_swish", "hardswish", "hard_sigmoid", "leaky_relu", "elu", "celu", "selu",
            "sigmoid", "tanh", "prelu", "softplus", "glu", "star_relu", "linear", "identity", "gelu_tanh"]


def test_names_cover_the_tables_and_every_name_has_an_expectation():
    assert set(REQUIRED) <= set(names())
    assert names() == sorted(EXPECTED)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_name_computes_its_sources_function_and_gradient(backend):
    torch.manual_seed(0)
    x0 = torch.linspace(-14.0, 14.0, 24, dtype=torch.float64).reshape(3, 8)  # |x| > 10 exercises gelu_10's clip
    x0 = x0 + 0.01 * torch.randn(3, 8, dtype=torch.float64)  # no exact kinks
    g = torch.randn(3, 8, dtype=torch.float64)
    for name in names():
        factory = get(name)
        module = factory(inplace=True, **ARGS.get(name, {})).double()
        expected = EXPECTED[name](x0)
        x = x0.clone().requires_grad_()
        with torchinit.use_backend(backend):
            y = module(x.clone())  # a clone: in-place modules may overwrite their input
        torch.testing.assert_close(y, expected, rtol=1e-9, atol=1e-12, msg=f"{name} forward")
        (dx,) = torch.autograd.grad(y, x, g[..., : y.shape[-1]])
        xr = x0.clone().requires_grad_()
        (dx_ref,) = torch.autograd.grad(EXPECTED[name](xr), xr, g[..., : y.shape[-1]])
        # rtol 1e-7: torch's hardsigmoid/hardswish backward multiplies by 1.0f / 6.0f, an fp32 constant
        torch.testing.assert_close(dx, dx_ref, rtol=1e-7, atol=1e-10, msg=f"{name} gradient")


def test_classes_are_torchs_twins_with_the_sources_defaults():
    assert get("gelu_new") is GELUTanh and issubclass(GELUTanh, torch.nn.GELU)
    assert GELUTanh().approximate == "tanh" and GELUTanh(inplace=True).inplace
    assert get("quick_gelu") is QuickGELU and QuickGELU().beta == pytest.approx(1.702)
    assert get("gelu_10") is ClippedGELU and (ClippedGELU().min_val, ClippedGELU().max_val) == (-10.0, 10.0)
    assert get("hard_swish") is get("hardswish") and issubclass(get("hardswish"), torch.nn.Hardswish)
    assert get("relu2") is get("squared_relu")
    assert get("identity") is torch.nn.Identity and get("linear") is torch.nn.Identity
    for name in ("relu", "silu", "mish", "elu", "leaky_relu", "sigmoid", "tanh", "prelu", "softmax"):
        cls = get(name)
        twin = getattr(torch.nn, cls.__name__)
        assert issubclass(cls, twin) and cls is not twin
        assert cls(inplace=True).inplace is True
    with pytest.raises(ValueError, match="min_val"):
        ClippedGELU(5.0, -5.0)


def test_unknown_name_is_a_key_error_listing_the_known_ones():
    with pytest.raises(KeyError) as info:
        get("gelu_fastest")
    message = str(info.value)
    assert "'gelu_fastest'" in message and "torchinit.nn.get" in message
    assert all(name in message for name in names())
    with pytest.raises(KeyError):
        get("GELU")  # names are exact, as in timm and transformers
    with pytest.raises(TypeError, match="argument 'name' must be a str"):
        get(torch.nn.GELU)
