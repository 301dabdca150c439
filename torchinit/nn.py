"""Drop-in ``torch.nn`` activation modules computed by torchinit.

Each class subclasses its ``torch.nn`` twin: same constructor, defaults, attributes, ``extra_repr``
and ``state_dict`` keys, so ``isinstance(m, torch.nn.GELU)`` still holds and checkpoints load either
way; only ``forward`` changes, to :mod:`torchinit.functional`. Every module also accepts an
``inplace`` keyword (default False), because model factories such as timm's and torchvision's call
``act_layer(inplace=True)``; where torch's twin has no in-place form (GELU, Sigmoid, Tanh,
Softplus, Softsign, LogSigmoid, Tanhshrink, GLU, PReLU, Swish, StarReLU) the flag is stored and
the module computes out of place.

``Swish``, ``SquaredReLU`` and ``StarReLU`` go beyond torch. Every row of the activation table has its
module in :data:`ACTIVATION_MODULES`: the classes written here, and for a row without one a class made
from the row (:func:`module_from_table`). The name registry (:func:`get`, :func:`names`; documented in
:mod:`torchinit.registry`) is defined at the end, from that dict and the aliases of timm and Hugging Face.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

from . import functional as F
from .activations import ACTIVATIONS
from .fused import functions as _fused
from .fused.modules import GEGLU, BiasAct, Rational, ReGLU, SwiGLU
from .softmax import LogSoftmax, Softmax, Softmin

Tensor = torch.Tensor

_MEMORY_DOC = """

    ``memory="bits"`` saves a 1-bit packed mask for backward instead of a tensor (the gradient is
    exactly the default's). Where it saves memory: where the default keeps a full tensor nothing else
    keeps -- torch's own ``leaky_relu``, ``hardtanh``/``relu6`` and ``prelu`` keep their *input*, which
    after a Linear or convolution is otherwise freed -- and whenever the output is later modified in
    place (a saved output would be invalidated; the mask is not). Where it cannot: ReLU saves its
    *output*, and the next Linear or convolution saves that same tensor as its input, so the storage
    is shared and the mask *adds* N/8 bytes; the same holds for this package's default ReLU6,
    Hardtanh and LeakyReLU (slope >= 0), which also save their output. With ``inplace=True`` the
    result is written into the input and only the mask is kept. PReLU: only with a frozen weight (a
    trainable weight's gradient needs the input itself, so then the default path runs).
    """

_FEW = """

    ``memory="fewbit"`` (opt-in, approximate): backward keeps a ``memory_bits``-bit code (1, 2 or 4)
    of a step approximation of the derivative instead of the input (Novikov et al., "Few-Bit
    Backward", ICML 2023). The forward is unchanged; the gradient is *not* the exact one: its
    measured error is ``FEWBIT_ERROR`` in :mod:`torchinit.fused.bits`.
    """


def _check_memory(cls: str, memory: str, allowed: tuple) -> str:
    if memory not in allowed:
        raise ValueError(f"torchinit.nn.{cls}: argument 'memory' must be one of {list(allowed)}, got {memory!r}")
    return memory


class _FewBit:
    """Shared by GELU, SiLU and Mish: the ``memory`` / ``memory_bits`` settings (``_activation``: the table's name)."""

    _activation = ""

    def _set_memory(self, cls: str, memory: str, memory_bits: int) -> None:
        self.memory = _check_memory(cls, memory, ("default", "fewbit"))
        if memory_bits not in (1, 2, 4):
            raise ValueError(f"torchinit.nn.{cls}: argument 'memory_bits' must be 1, 2 or 4, got {memory_bits!r}")
        self.memory_bits = memory_bits
        if memory == "fewbit":  # fit the quantiser now, outside any torch.compile region
            from .fused.bits import fewbit_quantizer

            activation = ACTIVATIONS[self._activation]
            arguments = {k: getattr(self, k) for k in activation.defaults}  # the module's own (approximate)
            fewbit_quantizer(activation.resolve(**arguments).formula.name, memory_bits)

    def _fewbit(self) -> bool:
        return getattr(self, "memory", "default") == "fewbit"


def _bits(module) -> bool:
    return getattr(module, "memory", "default") == "bits"


def _floating(input) -> bool:
    """The memory modes apply to floating-point inputs; any other dtype takes the default path (torch's own)."""
    return not isinstance(input, torch.Tensor) or input.is_floating_point()


def _no_arguments(twin: type[nn.Module], activation: str, doc: str) -> type[nn.Module]:
    """The module of an activation of the table without arguments whose torch twin has no in-place form:
    a subclass of ``twin`` that accepts ``inplace`` (stored; it computes out of place) and calls the
    functional ``activation`` (which torch.fx records as one node)."""

    def __init__(self, inplace: bool = False) -> None:
        twin.__init__(self)
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return getattr(F, activation)(input)

    name = twin.__name__
    return type(name, (twin,), {"__doc__": doc, "__init__": __init__, "forward": forward, "__module__": __name__,
                                "__qualname__": name})


class ReLU(nn.ReLU):
    __doc__ = """max(0, x); see :func:`torchinit.functional.relu`.""" + _MEMORY_DOC

    def __init__(self, inplace: bool = False, memory: str = "default") -> None:
        super().__init__(inplace)
        self.memory = _check_memory("ReLU", memory, ("default", "bits"))

    def forward(self, input: Tensor) -> Tensor:
        if _bits(self) and _floating(input):
            return _fused.relu_bits(input, inplace=self.inplace)
        return F.relu(input, inplace=self.inplace)


class ReLU6(nn.ReLU6):
    __doc__ = """min(max(0, x), 6); see :func:`torchinit.functional.relu6`.""" + _MEMORY_DOC

    def __init__(self, inplace: bool = False, memory: str = "default") -> None:
        super().__init__(inplace)
        self.memory = _check_memory("ReLU6", memory, ("default", "bits"))

    def forward(self, input: Tensor) -> Tensor:
        if _bits(self) and _floating(input):
            return _fused.relu6_bits(input, inplace=self.inplace)
        return F.relu6(input, inplace=self.inplace)


class LeakyReLU(nn.LeakyReLU):
    __doc__ = """x for x > 0 else negative_slope * x; see :func:`torchinit.functional.leaky_relu`.""" + _MEMORY_DOC

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False, memory: str = "default") -> None:
        super().__init__(negative_slope, inplace)
        self.memory = _check_memory("LeakyReLU", memory, ("default", "bits"))

    def forward(self, input: Tensor) -> Tensor:
        if _bits(self) and _floating(input):
            return _fused.leaky_relu_bits(input, self.negative_slope, self.inplace)
        return F.leaky_relu(input, self.negative_slope, self.inplace)


class PReLU(nn.PReLU):
    __doc__ = ("""x for x > 0 else weight * x, with learnable weight(s); ``inplace`` is accepted and computes out
    of place. The weight gradient is reduced inside the backward kernel (grad_x and grad_weight in one pass).""" +
               _MEMORY_DOC)

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device=None, dtype=None,
                 inplace: bool = False, memory: str = "default") -> None:
        super().__init__(num_parameters, init, device=device, dtype=dtype)
        self.inplace = inplace
        self.memory = _check_memory("PReLU", memory, ("default", "bits"))

    def forward(self, input: Tensor) -> Tensor:
        if _bits(self) and _floating(input):
            return _fused.prelu_bits(input, self.weight)
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


class GELU(nn.GELU, _FewBit):
    __doc__ = """x * Phi(x), or its tanh approximation; ``inplace`` is accepted and computes out of place.""" + _FEW
    _activation = "gelu"

    def __init__(self, approximate: str = "none", inplace: bool = False, memory: str = "default",
                 memory_bits: int = 4) -> None:
        super().__init__(approximate=approximate)
        self.inplace = inplace
        self._set_memory("GELU", memory, memory_bits)

    def forward(self, input: Tensor) -> Tensor:
        if self._fewbit() and _floating(input):
            return _fused.gelu_fewbit(input, self.approximate, self.memory_bits)
        return F.gelu(input, approximate=self.approximate)


class SiLU(nn.SiLU, _FewBit):
    __doc__ = """x * sigmoid(x); see :func:`torchinit.functional.silu`.""" + _FEW
    _activation = "silu"

    def __init__(self, inplace: bool = False, memory: str = "default", memory_bits: int = 4) -> None:
        super().__init__(inplace)
        self._set_memory("SiLU", memory, memory_bits)

    def forward(self, input: Tensor) -> Tensor:
        if self._fewbit() and _floating(input):
            return _fused.silu_fewbit(input, self.memory_bits)
        return F.silu(input, inplace=self.inplace)


class Mish(nn.Mish, _FewBit):
    __doc__ = """x * tanh(softplus(x)); see :func:`torchinit.functional.mish`.""" + _FEW
    _activation = "mish"

    def __init__(self, inplace: bool = False, memory: str = "default", memory_bits: int = 4) -> None:
        super().__init__(inplace)
        self._set_memory("Mish", memory, memory_bits)

    def forward(self, input: Tensor) -> Tensor:
        if self._fewbit() and _floating(input):
            return _fused.mish_fewbit(input, self.memory_bits)
        return F.mish(input, inplace=self.inplace)


Sigmoid = _no_arguments(nn.Sigmoid, "sigmoid", """1 / (1 + exp(-x)); ``inplace`` is accepted and computes out of place.""")


Tanh = _no_arguments(nn.Tanh, "tanh", """tanh(x); ``inplace`` is accepted and computes out of place.""")


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
    __doc__ = """x clamped to [min_val, max_val]; see :func:`torchinit.functional.hardtanh`.""" + _MEMORY_DOC

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False,
                 min_value: float | None = None, max_value: float | None = None, memory: str = "default") -> None:
        super().__init__(min_val, max_val, inplace, min_value, max_value)
        self.memory = _check_memory("Hardtanh", memory, ("default", "bits"))

    def forward(self, input: Tensor) -> Tensor:
        if _bits(self) and _floating(input):
            return _fused.hardtanh_bits(input, self.min_val, self.max_val, self.inplace)
        return F.hardtanh(input, self.min_val, self.max_val, self.inplace)


Softsign = _no_arguments(nn.Softsign, "softsign", """x / (1 + |x|); ``inplace`` is accepted and computes out of place.""")


LogSigmoid = _no_arguments(nn.LogSigmoid, "logsigmoid", """log(sigmoid(x)); ``inplace`` is accepted and computes out of place.""")


Tanhshrink = _no_arguments(nn.Tanhshrink, "tanhshrink", """x - tanh(x); ``inplace`` is accepted and computes out of place.""")


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


def _class_name(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _torch_twin_class(torch_name: str | None) -> type[nn.Module] | None:
    """torch.nn's activation module for the functional twin ``torch_name`` (``leaky_relu`` -> ``nn.LeakyReLU``)."""
    if torch_name is None:
        return None
    key = torch_name.replace("_", "").lower()
    for attr, obj in vars(torch.nn.modules.activation).items():
        if attr.lower() == key and isinstance(obj, type) and issubclass(obj, nn.Module):
            return obj
    return None


def module_from_table(name: str) -> type[nn.Module]:
    """The module class of activation table row ``name`` (for a row without one written here).

    Constructed with the row's arguments and defaults (positional or keyword) and ``inplace`` (default
    False; stored, and passed on where the row computes in place), each an attribute of the same name;
    ``forward`` calls ``torchinit.functional.<name>``. A row with a torch twin in ``torch.nn`` (its
    ``torch_name`` as a module: ``leaky_relu`` -> ``nn.LeakyReLU``) gets a subclass of it, of the same
    name, built by its constructor (same attributes, ``extra_repr`` and ``state_dict``; swap maps the twin
    onto it); any other row a module named in CamelCase (``hard_tanh_shrink`` -> ``HardTanhShrink``).
    Numbers only: a row with a learnable tensor argument gets its module written here.
    """
    activation = ACTIVATIONS[name]
    arguments = tuple(activation.defaults)
    twin = _torch_twin_class(activation.torch_name)
    twin_takes = set(inspect.signature(twin.__init__).parameters) - {"self"} if twin is not None else set()
    signature = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(a, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=d)
           for a, d in activation.defaults.items()]
        + [inspect.Parameter("inplace", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=False)])
    cls_name = twin.__name__ if twin is not None else _class_name(name)

    def __init__(self, *args, **kwargs) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        given = dict(list(bound.arguments.items())[1:])
        activation.check(tuple(given[a] for a in arguments), f"nn.{cls_name}")
        if twin is None:
            nn.Module.__init__(self)
        else:
            twin.__init__(self, **{k: v for k, v in given.items() if k in twin_takes})
        for key, value in given.items():
            if key not in twin_takes:
                setattr(self, key, value)

    def forward(self, input: Tensor) -> Tensor:
        values = tuple(getattr(self, a) for a in arguments)
        fn = getattr(F, name)
        return fn(input, *values, inplace=self.inplace) if activation.inplace else fn(input, *values)

    def extra_repr(self) -> str:
        shown = [f"{a}={getattr(self, a)!r}" for a in arguments] + (["inplace=True"] if self.inplace else [])
        return ", ".join(shown)

    __init__.__signature__ = signature
    doc = (f"Module of activation ``{name}`` (:func:`torchinit.functional.{name}`), made from its row of the "
           "activation table" + (" (in place where ``inplace=True``)." if activation.inplace
                                 else "; ``inplace`` is accepted and computes out of place."))
    namespace = {"__doc__": doc, "__init__": __init__, "forward": forward, "__module__": __name__,
                 "__qualname__": cls_name}
    if twin is None:
        namespace["extra_repr"] = extra_repr
    return type(cls_name, (twin or nn.Module,), namespace)


ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": ReLU, "relu6": ReLU6, "leaky_relu": LeakyReLU, "prelu": PReLU, "elu": ELU, "celu": CELU,
    "selu": SELU, "gelu": GELU, "silu": SiLU, "mish": Mish, "sigmoid": Sigmoid, "tanh": Tanh,
    "softplus": Softplus, "hardswish": Hardswish, "hardsigmoid": Hardsigmoid, "hardtanh": Hardtanh,
    "softsign": Softsign, "logsigmoid": LogSigmoid, "tanhshrink": Tanhshrink, "glu": GLU, "swish": Swish,
    "squared_relu": SquaredReLU, "star_relu": StarReLU,
}
# the rows without a module written above
for _name in ACTIVATIONS:
    if _name not in ACTIVATION_MODULES:
        ACTIVATION_MODULES[_name] = module_from_table(_name)
        globals()[ACTIVATION_MODULES[_name].__name__] = ACTIVATION_MODULES[_name]
del _name

# ---------------------------------------------------------------------------------------------
# the name registry (timm / Hugging Face activation names; documented in torchinit.registry, which
# re-exports it): defined here, beside the classes it names, so neither module imports the other back
# ---------------------------------------------------------------------------------------------

QUICK_GELU_BETA = 1.702


class GELUTanh(GELU):
    """GELU's tanh approximation (``"gelu_tanh"``, ``"gelu_new"``, ``"gelu_pytorch_tanh"``, ...).

    A :class:`torchinit.nn.GELU` whose ``approximate`` defaults to ``"tanh"``.
    """

    __module__ = "torchinit.registry"  # its public home (re-exported there): reports and pickles name it

    def __init__(self, approximate: str = "tanh", inplace: bool = False) -> None:
        super().__init__(approximate=approximate, inplace=inplace)


class QuickGELU(Swish):
    """``x * sigmoid(1.702 x)`` (``"quick_gelu"``): a :class:`torchinit.nn.Swish` with beta fixed at 1.702."""

    __module__ = "torchinit.registry"

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(beta=QUICK_GELU_BETA, inplace=inplace)


class ClippedGELU(GELU):
    """Exact GELU clamped to ``[min_val, max_val]`` (``"gelu_10"``: [-10, 10]); ``inplace`` computes out of place."""

    __module__ = "torchinit.registry"

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


__all__ = [cls.__name__ for cls in ACTIVATION_MODULES.values()] + [
    "ACTIVATION_MODULES", "SwiGLU", "GEGLU", "ReGLU", "BiasAct", "Rational", "Softmax", "LogSoftmax", "Softmin",
    "get", "names",
]
