"""Activation gains: torch's table, and the variance-preserving gain of any other activation.

What the numbers mean
---------------------
A gain ``g`` multiplies the standard deviation ``1/sqrt(fan)``. For a layer ``y = W f(x)`` with ``x`` of
unit second moment, ``E[y^2] = g^2 * E[f(x)^2]``; the *variance-preserving* gain is the ``g`` with
``g^2 * E[f(z)^2] = 1`` for ``z ~ N(0, 1)``. :func:`calculate_gain` returns torch's values for the names
in torch's table (so it is a drop-in replacement) and the variance-preserving gain for everything else:

* ``linear``/``conv*``/``sigmoid``: 1; ``tanh``: 5/3; ``relu``: sqrt(2); ``leaky_relu``:
  sqrt(2 / (1 + a^2)); ``selu``: 3/4.
* Of these only ``linear``, ``relu`` and ``leaky_relu`` are variance-preserving in the sense above.
  ``tanh``'s 5/3 and ``sigmoid``'s 1 are conventions (the variance-preserving values are about 1.593 and
  1.847); ``selu``'s 3/4 was chosen in torch to make Kaiming init close to the LeCun normal init
  self-normalising networks need (gain 1 with ``fan_in``); the variance-preserving value is 1.
  :func:`variance_preserving_gain` gives the variance-preserving value for every activation.

Every other activation (GELU, SiLU, Mish, Hardswish, torchinit's own, a user's callable) gets the
variance-preserving gain, computed by quadrature of ``E[f(z)^2] = int f(z)^2 phi(z) dz`` and cached:
composite Gauss-Legendre in float64 on [-12, 12] (phi(12) ~ 1e-32), panels at most 0.25 wide with 16
nodes each, split at the activation's kinks (ReLU-family and ELU-family 0, Hardswish/Hardsigmoid +-3,
Hardtanh/ReLU6 at their bounds, ...), where a quadrature rule for smooth functions loses its accuracy:
a single Gauss-Hermite rule (160 nodes) was 5e-5 off for Hardswish and gave SELU 0.99998 instead of 1.
Agrees with ``scipy.integrate.quad`` to about 1e-12 (``tests/test_init_jax_semantics.py``).

What a constant gain cannot do
------------------------------
The gain makes ``E[y^2] = 1`` a fixed point of the layer-to-layer map ``q -> g^2 E[f(sqrt(q) z)^2]``.
For positively homogeneous activations (ReLU, leaky ReLU) the map is linear in ``q``, so the fixed point
holds at every depth. For saturating ones (tanh, sigmoid) the map's slope at the fixed point is below
1, so it is stable. For GELU, SiLU and Hardswish the slope at ``q = 1`` is above 1: the fixed point is
unstable and the second moment drifts geometrically with depth in deep plain networks.

Measured (slope of the map at ``q = 1`` by quadrature, with the variance-preserving gain, for which
``q = 1`` is the fixed point; pre-activation second moment of a plain width-256 MLP initialised with
``"auto"``, layer 64 relative to layer 1, one draw):

==========  ==================  ===========================
activation  slope at ``q = 1``  layer 64 / layer 1
==========  ==================  ===========================
ReLU        1.000               ~0.5 - 2 (finite-width noise)
tanh        0.461 (g = 1.593)   ~0.8 (stable fixed point; torch's g = 5/3: slope 0.505)
Mish        1.076               ~100
GELU        1.144               ~5000
SiLU        1.173               ~3e8
Hardswish   1.223               ~4e10
==========  ==================  ===========================

``tests/test_init_gain.py`` checks the slopes. That drift is what :func:`torchinit.init.lsuv` is for.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import torch
from torch import nn
import torch.nn.functional as F

__all__ = [
    "calculate_gain",
    "variance_preserving_gain",
    "second_moment",
    "kinks",
    "activation_name",
    "is_activation",
]

_LINEAR_NAMES = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                 "conv_transpose3d", "identity")
_TABLE_NAMES = _LINEAR_NAMES + ("sigmoid", "tanh", "relu", "leaky_relu", "selu")
_ALIASES = {"swish": "silu", "hard_swish": "hardswish", "hard_sigmoid": "hardsigmoid", "hard_tanh": "hardtanh"}
_QUAD_RANGE = 12.0  # phi(12) ~ 2e-32: the tails beyond are below float64 resolution
_PANEL_WIDTH = 0.25
_PANEL_NODES = 16


def _table_gain(name: str, param: Any) -> float:
    if name in _LINEAR_NAMES:
        return 1.0
    if name == "sigmoid":
        return 1.0
    if name == "tanh":
        return 5.0 / 3
    if name == "relu":
        return math.sqrt(2.0)
    if name == "leaky_relu":
        if param is None:
            slope = 0.01
        elif not isinstance(param, bool) and isinstance(param, (int, float)):
            slope = param
        else:
            raise ValueError(f"calculate_gain: negative_slope {param} is not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if name == "selu":
        return 3.0 / 4
    raise KeyError(name)


@functools.lru_cache(maxsize=4)
def _legendre(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Legendre nodes and weights on [-1, 1] (Golub-Welsch: eigenvalues of the Jacobi matrix with
    off-diagonal ``k / sqrt(4k^2 - 1)``; weights twice the squared first eigenvector components), float64."""
    k = torch.arange(1, n, dtype=torch.float64)
    off = k / torch.sqrt(4 * k * k - 1)
    nodes, vecs = torch.linalg.eigh(torch.diag(off, 1) + torch.diag(off, -1))
    return nodes, 2 * vecs[0] ** 2


@functools.lru_cache(maxsize=64)
def _rule(breaks: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of the composite rule for ``E[g(z)]``, z ~ N(0, 1), with panel edges at ``breaks``."""
    edges = sorted({-_QUAD_RANGE, _QUAD_RANGE, *(b for b in breaks if -_QUAD_RANGE < b < _QUAD_RANGE)})
    x, w = _legendre(_PANEL_NODES)
    nodes, weights = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        panels = max(1, math.ceil((hi - lo) / _PANEL_WIDTH))
        starts = lo + (hi - lo) * torch.arange(panels, dtype=torch.float64) / panels
        half = (hi - lo) / panels / 2
        nodes.append((starts[:, None] + half * (x + 1)).reshape(-1))
        weights.append((half * w).repeat(panels))
    z = torch.cat(nodes)
    density = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return z, torch.cat(weights) * density


def _evaluate(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    try:
        y = f(x.clone())
    except (RuntimeError, TypeError, NotImplementedError):
        y = f(x.to(torch.float32).clone())
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        raise ValueError("calculate_gain: the activation must map a 1-D tensor to a tensor of the same shape")
    return y.to(torch.float64)


def second_moment(f: Callable[[torch.Tensor], torch.Tensor], kinks: tuple[float, ...] = ()) -> float:
    """``E[f(z)^2]`` for ``z ~ N(0, 1)`` by composite Gauss-Legendre quadrature split at ``kinks`` (the points
    where ``f`` is not smooth; see the module docstring), no caching."""
    nodes, weights = _rule(tuple(sorted(float(k) for k in kinks)))
    with torch.no_grad():
        y = _evaluate(f, nodes)
    if not torch.isfinite(y).all():
        raise ValueError("calculate_gain: the activation returned non-finite values on the quadrature nodes")
    return float((weights * y * y).sum())


def _gain_of(f: Callable[[torch.Tensor], torch.Tensor], kinks: tuple[float, ...] = ()) -> float:
    m2 = second_moment(f, kinks)
    if m2 <= 0:
        raise ValueError("calculate_gain: the activation is zero on N(0, 1) (E[f(z)^2] = 0), so no gain exists")
    return 1.0 / math.sqrt(m2)


_GAIN_CACHE: dict[Any, float] = {}


def _cached_gain(key: Any, f: Callable[[torch.Tensor], torch.Tensor], kinks: tuple[float, ...] = ()) -> float:
    if key not in _GAIN_CACHE:
        if len(_GAIN_CACHE) > 4096:
            _GAIN_CACHE.clear()
        _GAIN_CACHE[key] = _gain_of(f, kinks)
    return _GAIN_CACHE[key]


#: where each activation is not smooth (by normalised name); bounds of parametrised ones are read from the
#: module (``min_val``/``max_val``, ``lambd``) or the keyword arguments where given
_KINKS: dict[str, tuple[float, ...]] = {
    "relu": (0.0,), "relu6": (0.0, 6.0), "leakyrelu": (0.0,), "prelu": (0.0,), "rrelu": (0.0,), "elu": (0.0,),
    "selu": (0.0,), "celu": (0.0,), "hardswish": (-3.0, 3.0), "hardsigmoid": (-3.0, 3.0), "hardtanh": (-1.0, 1.0),
    "squaredrelu": (0.0,), "starrelu": (0.0,), "hardmish": (-2.0, 0.0), "softshrink": (-0.5, 0.5),
    "hardshrink": (-0.5, 0.5), "threshold": (0.0,),
}


def kinks(nonlinearity: Any, param: Any = None) -> tuple[float, ...]:
    """The points where the activation is not smooth (empty for smooth or unknown ones)."""
    obj = nonlinearity
    while isinstance(obj, functools.partial):
        obj = obj.func
    if isinstance(obj, str):
        name = obj
    elif isinstance(obj, nn.Module):
        name = type(obj).__name__
    else:
        name = getattr(obj, "__name__", "")
    key = _ALIASES.get(name.lower(), name.lower()).replace("_", "").rstrip()
    key = key[:-1] if key.endswith("_") else key
    points = _KINKS.get(key, ())
    source: dict[str, Any] = dict(param) if isinstance(param, dict) else {}
    if isinstance(obj, nn.Module):
        source.update({k: getattr(obj, k) for k in ("min_val", "max_val", "lambd") if hasattr(obj, k)})
    if "min_val" in source or "max_val" in source:
        points = (float(source.get("min_val", points[0] if points else -1.0)),
                  float(source.get("max_val", points[-1] if points else 1.0)))
    if "lambd" in source:
        points = (-float(source["lambd"]), float(source["lambd"]))
    return points


def _lookup_function(name: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    name = _ALIASES.get(name, name)
    try:  # torchinit's own activations, written alongside; optional
        from torchinit import functional as tif  # type: ignore[attr-defined]

        fn = getattr(tif, name, None)
        if callable(fn):
            return fn
    except Exception:
        pass
    fn = getattr(F, name, None)
    if callable(fn):
        return fn
    if name == "squared_relu":
        return lambda x: F.relu(x) ** 2
    return None


_MODULE_TABLE: dict[type, str] = {
    nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.SELU: "selu", nn.Identity: "linear",
}
_FUNCTION_TABLE: dict[Any, str] = {
    F.relu: "relu", torch.relu: "relu", F.relu_: "relu", torch.relu_: "relu", torch.tanh: "tanh",
    F.tanh: "tanh", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.selu: "selu", torch.selu: "selu",
    F.leaky_relu: "leaky_relu", F.linear: "linear",
}


def activation_name(obj: Any) -> str:
    """A short printable name of an activation given as a name, module, functional or callable."""
    if isinstance(obj, str):
        return obj
    if isinstance(obj, nn.Module):
        return type(obj).__name__
    return getattr(obj, "__name__", type(obj).__name__)


def _resolve(nonlinearity: Any, param: Any) -> tuple[str | None, Any, Callable | None, Any]:
    """(table name or None, table param, callable for quadrature, cache key)."""
    if isinstance(nonlinearity, str):
        name = nonlinearity.lower()
        if name in _TABLE_NAMES:
            return name, param, None, None
        fn = _lookup_function(name)
        if fn is None:
            import difflib

            known = sorted(set(_TABLE_NAMES) | set(_ALIASES) | {n for n in dir(F) if not n.startswith("_")})
            close = difflib.get_close_matches(name, known, n=2)
            hint = (" (did you mean " + " or ".join(repr(c) for c in close) + "?)") if close else ""
            raise ValueError(
                f"calculate_gain: unknown nonlinearity {nonlinearity!r}{hint}: expected one of torch's names "
                f"{list(_TABLE_NAMES)}, a name in torch.nn.functional or torchinit.functional, a module or a callable"
            )
        if param is not None:
            return None, None, functools.partial(fn, param) if not isinstance(param, dict) else functools.partial(fn, **param), ("name", name, repr(param))
        return None, None, fn, ("name", name)
    if isinstance(nonlinearity, nn.LeakyReLU) and type(nonlinearity) is nn.LeakyReLU:
        return "leaky_relu", nonlinearity.negative_slope, None, None
    if isinstance(nonlinearity, nn.Module):
        table = _MODULE_TABLE.get(type(nonlinearity))
        if table is not None:
            return table, param, None, None
        module = nonlinearity
        return None, None, module, ("module", type(module), repr(module), tuple(
            (k, float(v.detach().double().sum())) for k, v in module.named_parameters()))
    if callable(nonlinearity):
        try:
            table = _FUNCTION_TABLE.get(nonlinearity)
        except TypeError:  # unhashable callable
            table = None
        if table is not None:
            return table, param, None, None
        fn = nonlinearity if param is None else functools.partial(nonlinearity, param)
        try:
            hash(nonlinearity)
            key = ("callable", nonlinearity, repr(param))
        except TypeError:
            key = None
        return None, None, fn, key
    raise TypeError(
        f"calculate_gain: nonlinearity must be a name, an nn.Module or a callable, got {type(nonlinearity).__name__}"
    )


def calculate_gain(nonlinearity: Any, param: Any = None) -> float:
    """The recommended gain for ``nonlinearity``: torch's table, else the variance-preserving gain.

    Args:
        nonlinearity: a name (torch's table names, or any function name in ``torch.nn.functional`` /
            ``torchinit.functional``, e.g. ``"gelu"``, ``"silu"``, ``"mish"``), an ``nn.Module`` instance
            (``nn.GELU()``), a functional (``F.gelu``) or any callable mapping a tensor to a tensor.
        param: ``negative_slope`` for ``leaky_relu`` (torch semantics); for other names or callables, an
            extra positional argument (or a dict of keyword arguments) passed to the function.

    Returns:
        torch's value for torch's names (and the matching modules/functionals: ``nn.ReLU``, ``F.relu``,
        ``nn.LeakyReLU(a)``, ...); otherwise ``g`` with ``g^2 E[f(z)^2] = 1``, ``z ~ N(0, 1)``, by
        Gauss-Hermite quadrature, cached per activation.
    """
    table, tparam, fn, key = _resolve(nonlinearity, param)
    if table is not None:
        return _table_gain(table, tparam)
    assert fn is not None
    points = kinks(nonlinearity, param)
    if key is None:
        return _gain_of(fn, points)
    return _cached_gain(key, fn, points)


def variance_preserving_gain(nonlinearity: Any, param: Any = None) -> float:
    """``g`` with ``g^2 E[f(z)^2] = 1`` for every activation, torch's table names included."""
    table, tparam, fn, key = _resolve(nonlinearity, param)
    if table is not None:
        if table in _LINEAR_NAMES:
            return 1.0
        if table == "leaky_relu":
            return _table_gain(table, tparam)
        fn = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "selu": F.selu}[table]
        key = ("vp", table)
        points = kinks(table)
    else:
        points = kinks(nonlinearity, param)
    assert fn is not None
    return _cached_gain(key, fn, points) if key is not None else _gain_of(fn, points)


_ACT_CLASS_NAMES = {
    "relu", "relu6", "leakyrelu", "prelu", "rrelu", "elu", "selu", "celu", "gelu", "silu", "swish", "mish",
    "hardswish", "hardsigmoid", "hardtanh", "tanh", "sigmoid", "softplus", "softsign", "tanhshrink",
    "logsigmoid", "squaredrelu", "starrelu", "quickgelu", "gelutanh", "geluexact", "hardmish", "sinusoid",
}
_NOT_ACTIVATIONS = {"MultiheadAttention", "Softmax", "Softmin", "LogSoftmax", "Softmax2d", "GLU", "Threshold",
                    "AdaptiveLogSoftmaxWithLoss", "Softshrink", "Hardshrink"}


def is_activation(m: nn.Module) -> bool:
    """Whether a module is an elementwise activation (torch's, timm's, torchinit's or named like one)."""
    name = type(m).__name__
    if name in _NOT_ACTIVATIONS:
        return False
    if type(m).__module__ == "torch.nn.modules.activation":
        return True
    if type(m).__module__.startswith("torchinit.nn"):
        return True
    return name.lower().replace("_", "") in _ACT_CLASS_NAMES


def module_gain(m: nn.Module) -> float:
    """:func:`calculate_gain` of an activation module (PReLU as leaky ReLU with its mean slope)."""
    if isinstance(m, nn.PReLU):
        return _table_gain("leaky_relu", float(m.weight.detach().float().mean()))
    return calculate_gain(m)
