"""The scheme registry: every scheme turns (shape, fans, gain context, its arguments) into an :class:`Action`.

An action is a value kind (``actions.py``: a draw from a distribution, a constant, an orthogonal matrix,
...) that knows how it is written; ``fill.py`` and ``apply.py`` call it. Planning is pure and cheap, so
:func:`~torchinit.init.apply_init` plans (and so validates) every parameter before it samples any. Every
fan-scaled scheme (xavier, kaiming, lecun, glorot, he, auto) is a row of one mechanism,
:func:`_variance_scaling`, as JAX's ``variance_scaling(scale, mode, distribution)``. Data-dependent
schemes (lsuv, data_init) are registered too (:class:`DataScheme`, :data:`DATA_SCHEMES`).

Names mean what they mean where they come from: ``xavier_*``/``kaiming_*`` follow torch (``*_normal``
untruncated); ``glorot_normal``, ``he_normal``, ``lecun_normal`` and ``variance_scaling`` follow JAX/Keras
(a normal truncated at +-2 sigma with the std corrected so the variance is as asked). ``glorot_uniform`` and
``he_uniform`` are the same distributions in both conventions, so they alias torch's uniform ones.
"""

from __future__ import annotations

import difflib
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .actions import (
    Action, Constant, DeltaOrthogonal, Dirac, Draw, Eye, Function, Orthogonal, Sparse, TorchDefault,
)
from .data import data_init, lsuv
from .gain import calculate_gain
from .roles import norm_identity_weight
from .sampling import Dist

__all__ = ["Action", "Ctx", "SchemeDef", "Scheme", "SCHEMES", "ALIASES", "DataScheme", "DATA_SCHEMES",
           "resolve_scheme", "scheme_names", "canonical_name", "data_scheme_name", "is_scheme_name", "did_you_mean",
           "TRUNC_NORMAL_STD_CORRECTION"]

# std of a standard normal truncated to [-2, 2]: Keras/Flax divide by it so the variance is as asked
TRUNC_NORMAL_STD_CORRECTION = 0.87962566103423978


@dataclass
class Ctx:
    """What a scheme may use to plan one block."""

    fn: str  # the name used in error messages
    shape: tuple[int, ...]
    fan_in: int | None
    fan_out: int | None
    auto_gain: Callable[[str], tuple[float, str | None]] | None = None  # mode -> (gain, activation)
    groups: int = 1
    notes: dict[str, Any] = field(default_factory=dict)  # the planner records gain, activation, scheme_label
    role: str = "weight"  # the parameter's role (fans.ParamInfo.role)
    module: Any = None  # the owning module, where known (norm_reset reads it)

    def fans(self) -> tuple[int, int]:
        if self.fan_in is None or self.fan_out is None:
            raise ValueError(f"{self.fn}: needs the fans of a weight with at least 2 dimensions, got shape {self.shape}")
        if self.fan_in == 0 or self.fan_out == 0:
            raise ValueError(f"{self.fn}: cannot initialise a tensor with a zero fan (shape {self.shape})")
        return self.fan_in, self.fan_out

    def fan(self, mode: str) -> float:
        fi, fo = self.fans()
        if mode == "fan_in":
            return fi
        if mode == "fan_out":
            return fo
        if mode == "fan_avg":
            return (fi + fo) / 2
        if mode == "fan_geo_avg":  # JAX's variance_scaling mode: the geometric mean
            return math.sqrt(fi * fo)
        raise ValueError(f"{self.fn}: mode must be 'fan_in', 'fan_out', 'fan_avg' or 'fan_geo_avg', got {mode!r}"
                         f"{did_you_mean(mode, ('fan_in', 'fan_out', 'fan_avg', 'fan_geo_avg'), n=1)}")

    def gain(self, gain: Any, mode: str = "fan_in") -> float:
        """Resolve a gain argument: a number, ``"auto"``, or an activation for :func:`calculate_gain`."""
        if isinstance(gain, str) and gain == "auto":
            if self.auto_gain is None:
                raise ValueError(f"{self.fn}: gain='auto' needs the model: use apply_init(model, ...)")
            g, act = self.auto_gain(mode)
            self.notes["activation"] = act
        elif isinstance(gain, bool):
            raise TypeError(f"{self.fn}: gain must be a number, 'auto' or an activation, got {gain!r}")
        elif isinstance(gain, (int, float)):
            g = float(gain)
        else:
            g = calculate_gain(gain)
            self.notes["activation"] = gain if isinstance(gain, str) else type(gain).__name__
        if not math.isfinite(g) or g < 0:
            raise ValueError(f"{self.fn}: gain must be finite and non-negative, got {g}")
        self.notes["gain"] = g
        return g


def _num(fn: str, arg: str, v: Any, positive: bool = False, unit: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise TypeError(f"{fn}: {arg} must be a finite number, got {v!r}")
    if positive and v <= 0:
        raise ValueError(f"{fn}: {arg} must be positive, got {v}")
    if unit and not 0 <= v < 1:
        raise ValueError(f"{fn}: {arg} must be in [0, 1), got {v}")
    return float(v)


def _variance_scaling(ctx: Ctx, scale: float | None, mode: str, distribution: str,
                      gain: float | None = None) -> Action:
    """JAX's ``variance_scaling(scale, mode, distribution)``: values of variance ``scale / fan(mode)`` from a
    normal truncated at +-2 sigma (std divided by the truncated normal's, so the variance is kept), an
    untruncated normal or a uniform.

    Every fan-scaled scheme is a row of it. JAX's rows (lecun, glorot_normal, he_normal, variance_scaling)
    give ``scale`` and get JAX's arithmetic: ``var = scale / fan``, ``std = sqrt(var)``, ``bound =
    sqrt(3 var)``. torch.nn.init's rows (xavier, kaiming, auto) give ``gain`` instead (scale = gain**2) and
    get torch's: ``std = gain / sqrt(fan)``, ``bound = sqrt(3) * std``, so their values are torch's bit for bit.
    """
    if gain is None:
        scale = _num(ctx.fn, "scale", scale, positive=True)
        var = scale / ctx.fan(mode)
        ctx.notes.setdefault("gain", math.sqrt(scale))
        std, bound = math.sqrt(var), math.sqrt(3.0 * var)
    else:
        std = gain / math.sqrt(ctx.fan(mode))
        bound = math.sqrt(3.0) * std
    if distribution == "truncated_normal":
        std = std / TRUNC_NORMAL_STD_CORRECTION
        return Draw(Dist("trunc_normal", 0.0, std, -2.0 * std, 2.0 * std))
    if distribution in ("normal", "untruncated_normal"):
        return Draw(Dist("normal", 0.0, std))
    if distribution == "uniform":
        return Draw(Dist("uniform", a=-bound, b=bound))
    raise ValueError(f"{ctx.fn}: distribution must be 'truncated_normal', 'normal' or 'uniform', got {distribution!r}"
                     f"{did_you_mean(str(distribution), ('truncated_normal', 'normal', 'uniform', 'untruncated_normal'), 1)}")


def _p_constant(ctx: Ctx, val: float) -> Action:
    return Constant(_num(ctx.fn, "val", val))


def _p_normal(ctx: Ctx, mean: float, std: float) -> Action:
    return Draw(Dist("normal", _num(ctx.fn, "mean", mean), _num(ctx.fn, "std", std, positive=True)))


def _p_uniform(ctx: Ctx, a: float, b: float) -> Action:
    a, b = _num(ctx.fn, "a", a), _num(ctx.fn, "b", b)
    if not a < b:
        raise ValueError(f"{ctx.fn}: expected a < b, got a={a}, b={b}")
    return Draw(Dist("uniform", a=a, b=b))


def _p_trunc_normal(ctx: Ctx, mean: float, std: float, a: float, b: float, units: str) -> Action:
    mean, std = _num(ctx.fn, "mean", mean), _num(ctx.fn, "std", std, positive=True)
    for nm, v in (("a", a), ("b", b)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            raise TypeError(f"{ctx.fn}: {nm} must be a number (inf allowed), got {v!r}")
    if units == "std":
        a, b = mean + a * std, mean + b * std
    elif units != "abs":
        raise ValueError(f"{ctx.fn}: units must be 'abs' (bounds are values) or 'std' (bounds in std units), got {units!r}"
                         f"{did_you_mean(str(units), ('abs', 'std'), 1)}")
    if not a < b:
        raise ValueError(f"{ctx.fn}: expected a < b, got a={a}, b={b}")
    return Draw(Dist("trunc_normal", mean, std, float(a), float(b)))


# -- the rows of _variance_scaling ---------------------------------------------------------------------------

def _p_xavier(distribution: str) -> Callable[..., Action]:
    """torch's xavier_*: scale gain**2 over fan_avg (torch's arithmetic)."""
    def plan(ctx: Ctx, gain: Any) -> Action:
        return _variance_scaling(ctx, None, "fan_avg", distribution, gain=ctx.gain(gain, "fan_avg"))

    return plan


def _p_kaiming(distribution: str) -> Callable[..., Action]:
    """torch's kaiming_*: scale calculate_gain(nonlinearity, a)**2 (or gain**2) over fan(mode)."""
    def plan(ctx: Ctx, a: float, mode: str, nonlinearity: Any, gain: Any) -> Action:
        ctx.fan(mode)  # the mode is checked before the gain, as torch does
        if gain is None:
            g = calculate_gain(nonlinearity, a) if nonlinearity in ("leaky_relu",) else calculate_gain(nonlinearity)
            ctx.notes["gain"] = g
            ctx.notes["activation"] = nonlinearity if isinstance(nonlinearity, str) else type(nonlinearity).__name__
        else:
            g = ctx.gain(gain, mode)
        return _variance_scaling(ctx, None, mode, distribution, gain=g)

    return plan


def _p_auto(ctx: Ctx, mode: str, distribution: str) -> Action:
    """The activation-aware gain found in the model (torch's arithmetic, as kaiming with that gain)."""
    g = ctx.gain("auto", mode)
    if distribution not in ("normal", "uniform"):
        raise ValueError(f"{ctx.fn}: distribution must be 'normal' or 'uniform', got {distribution!r}"
                         f"{did_you_mean(str(distribution), ('normal', 'uniform'), 1)}")
    return _variance_scaling(ctx, None, mode, distribution, gain=g)


def _p_lecun(distribution: str) -> Callable[..., Action]:
    """Keras/JAX's lecun_*: scale gain**2 over fan_in."""
    def plan(ctx: Ctx, gain: Any) -> Action:
        g = ctx.gain(gain, "fan_in")
        return _variance_scaling(ctx, g * g, "fan_in", distribution)

    return plan


def _p_jax(scale: float, mode: str) -> Callable[..., Action]:
    """JAX's ``glorot_normal`` (scale 1, fan_avg) / ``he_normal`` (scale 2, fan_in): truncated normal."""
    def plan(ctx: Ctx) -> Action:
        return _variance_scaling(ctx, scale, mode, "truncated_normal")

    return plan


def _p_variance_scaling(ctx: Ctx, scale: float, mode: str, distribution: str) -> Action:
    return _variance_scaling(ctx, scale, mode, distribution)


# -- structured values --------------------------------------------------------------------------------------

def _p_orthogonal(ctx: Ctx, gain: Any) -> Action:
    if len(ctx.shape) < 2:
        raise ValueError(f"{ctx.fn}: needs a tensor with at least 2 dimensions, got shape {ctx.shape}")
    return Orthogonal(ctx.gain(gain, "fan_in"))


def _p_delta_orthogonal(ctx: Ctx, gain: Any) -> Action:
    if len(ctx.shape) < 3:
        raise ValueError(f"{ctx.fn}: needs a convolution weight (3 to 5 dimensions), got shape {ctx.shape}")
    return DeltaOrthogonal(ctx.gain(gain, "fan_in"))


def _p_dirac(ctx: Ctx, groups: int | None) -> Action:
    if len(ctx.shape) not in (3, 4, 5):
        raise ValueError(f"{ctx.fn}: needs a 3, 4 or 5-dimensional convolution weight, got shape {ctx.shape}")
    g = ctx.groups if groups is None else groups
    if isinstance(g, bool) or not isinstance(g, int) or g < 1 or ctx.shape[0] % g:
        raise ValueError(f"{ctx.fn}: groups must be a positive int dividing dim 0 ({ctx.shape[0]}), got {g!r}")
    return Dirac(g)


def _p_eye(ctx: Ctx) -> Action:
    if len(ctx.shape) != 2:
        raise ValueError(f"{ctx.fn}: needs a 2-dimensional tensor, got shape {ctx.shape}")
    return Eye()


def _p_identity(ctx: Ctx) -> Action:
    if len(ctx.shape) == 2:
        return Eye()
    return _p_dirac(ctx, None)


def _p_sparse(ctx: Ctx, sparsity: float, std: float) -> Action:
    if len(ctx.shape) != 2:
        raise ValueError(f"{ctx.fn}: needs a 2-dimensional tensor, got shape {ctx.shape}")
    return Sparse(_num(ctx.fn, "sparsity", sparsity, unit=True), _num(ctx.fn, "std", std, positive=True))


def _p_torch_default(ctx: Ctx) -> Action:
    return TorchDefault()


def _p_norm_reset(ctx: Ctx) -> Action:
    if ctx.role == "norm_weight":
        value = norm_identity_weight(ctx.module) if ctx.module is not None else 1.0
        ctx.notes["norm_identity"] = value
    elif ctx.role in ("norm_bias", "bias"):
        value = 0.0
    else:
        raise ValueError(f"{ctx.fn}: norm_reset applies to the weight and bias of normalisation layers, got a "
                         f"parameter of role {ctx.role!r}")
    ctx.notes["scheme_label"] = f"norm_reset ({value:g})"  # the report's scheme column
    return Constant(value)


def _p_prior_prob(ctx: Ctx, prob: float) -> Action:
    p = _num(ctx.fn, "prob", prob)
    if not 0 < p < 1:
        raise ValueError(f"{ctx.fn}: prob must be in (0, 1), got {p}")
    return Constant(-math.log((1 - p) / p))


@dataclass(frozen=True)
class SchemeDef:
    """A registered scheme: its planner, accepted keyword arguments (with defaults) and category.

    ``fan_based`` schemes describe weight matrices: on a bias they give way to the rule's ``bias`` and on
    a normalisation weight to the norm's reset; ``random_matrix`` ones become per-gate orthogonal on
    recurrent weights; ``bias_only`` ones (prior_prob) refuse weights; ``whole_module`` ones (torch_default,
    the layer's own reset) selected through a module cover its biases and norms too; ``auto_gain`` ones
    (auto) always read the activation gains found in the model.
    """

    name: str
    plan: Callable[..., Action]
    params: dict[str, Any]
    fan_based: bool = False
    random_matrix: bool = False
    bias_only: bool = False
    whole_module: bool = False
    auto_gain: bool = False


def _reg(name: str, plan: Callable[..., Action], fan_based: bool = False, random_matrix: bool = False,
         bias_only: bool = False, whole_module: bool = False, auto_gain: bool = False, **params: Any) -> SchemeDef:
    return SchemeDef(name, plan, params, fan_based, random_matrix, bias_only, whole_module, auto_gain)


_REQUIRED = object()

SCHEMES: dict[str, SchemeDef] = {s.name: s for s in [
    _reg("zeros", lambda ctx: Constant(0.0)),
    _reg("ones", lambda ctx: Constant(1.0)),
    _reg("constant", _p_constant, val=_REQUIRED),
    _reg("normal", _p_normal, mean=0.0, std=1.0),
    _reg("uniform", _p_uniform, a=0.0, b=1.0),
    _reg("trunc_normal", _p_trunc_normal, mean=0.0, std=1.0, a=-2.0, b=2.0, units="abs"),
    _reg("xavier_uniform", _p_xavier("uniform"), True, True, gain=1.0),
    _reg("xavier_normal", _p_xavier("normal"), True, True, gain=1.0),
    _reg("kaiming_uniform", _p_kaiming("uniform"), True, True, a=0.0, mode="fan_in", nonlinearity="leaky_relu", gain=None),
    _reg("kaiming_normal", _p_kaiming("normal"), True, True, a=0.0, mode="fan_in", nonlinearity="leaky_relu", gain=None),
    _reg("lecun_uniform", _p_lecun("uniform"), True, True, gain=1.0),
    _reg("lecun_normal", _p_lecun("truncated_normal"), True, True, gain=1.0),
    _reg("glorot_normal", _p_jax(1.0, "fan_avg"), True, True),
    _reg("he_normal", _p_jax(2.0, "fan_in"), True, True),
    _reg("variance_scaling", _p_variance_scaling, True, True, scale=1.0, mode="fan_in", distribution="truncated_normal"),
    _reg("orthogonal", _p_orthogonal, True, False, gain=1.0),
    _reg("delta_orthogonal", _p_delta_orthogonal, True, False, gain=1.0),
    _reg("dirac", _p_dirac, True, False, groups=None),
    _reg("eye", _p_eye, True, False),
    _reg("identity", _p_identity, True, False),
    _reg("sparse", _p_sparse, True, True, sparsity=_REQUIRED, std=0.01),
    _reg("torch_default", _p_torch_default, True, False, whole_module=True),
    _reg("prior_prob", _p_prior_prob, bias_only=True, prob=0.01),
    _reg("norm_reset", _p_norm_reset),
    _reg("auto", _p_auto, True, True, auto_gain=True, mode="fan_in", distribution="normal"),
]}

#: Aliases, looked up case-insensitively and with or without a trailing underscore (``"Kaiming_Normal_"``).
#: The short names pick the distribution their paper (or Keras' default) uses, in their own convention:
#: ``kaiming`` -> ``kaiming_normal`` (torch), ``he`` -> ``he_normal`` (JAX/Keras, truncated), ``xavier`` and
#: ``glorot`` -> ``xavier_uniform`` (the same in both), ``lecun`` -> ``lecun_normal``.
ALIASES: dict[str, str] = {
    "glorot_uniform": "xavier_uniform", "he_uniform": "kaiming_uniform",
    "he": "he_normal", "kaiming": "kaiming_normal", "xavier": "xavier_uniform", "glorot": "xavier_uniform",
    "lecun": "lecun_normal",
    "zero": "zeros", "one": "ones", "truncated_normal": "trunc_normal", "default": "torch_default",
}

#: Data-dependent schemes: they run the model on a batch (``apply_init(model, "lsuv", data=batch)``) and so
#: apply to the whole model, not inside a Rule. Name -> what runs them (see ``data.py``).
@dataclass(frozen=True)
class DataScheme:
    """A registered data-dependent scheme: ``run(model, batch, **options)`` initialises the whole model from
    the outputs it computes on ``batch`` and returns its own report (``.layers`` with ``.name``, and
    ``.skipped``); it gets ``seed`` / ``generator`` where it takes them."""

    name: str
    run: Callable[..., Any]

    @property
    def params(self) -> list[str]:
        """The options it accepts (besides the model, the batch and the randomness)."""
        return [p for p in inspect.signature(self.run).parameters if p not in ("model", "batch", "seed", "generator")]

    def __call__(self, model: Any, batch: Any, seed: int | None, generator: Any, options: dict[str, Any]) -> Any:
        """Run it on ``batch`` with ``options`` (checked against :attr:`params` by the caller)."""
        takes = inspect.signature(self.run).parameters
        rng = {k: v for k, v in (("seed", seed), ("generator", generator)) if k in takes}
        return self.run(model, batch, **rng, **options)


DATA_SCHEMES: dict[str, DataScheme] = {s.name: s for s in [DataScheme("lsuv", lsuv), DataScheme("data_init", data_init)]}


def scheme_names() -> list[str]:
    """All scheme names and aliases (data-dependent ones included), sorted."""
    return sorted(set(SCHEMES) | set(ALIASES) | set(DATA_SCHEMES))


def did_you_mean(name: str, choices: Any, n: int = 3) -> str:
    """``"; did you mean 'a' or 'b'?"`` for the closest ``choices`` to ``name`` (difflib), or ``""``."""
    close = difflib.get_close_matches(str(name).lower(), [str(c) for c in choices], n=n, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


def _normalise(name: str) -> str:
    n = name.strip().lower().replace("-", "_")
    return n[:-1] if n.endswith("_") and len(n) > 1 else n


def canonical_name(name: str) -> str | None:
    """The registered scheme ``name`` refers to (aliases, case and a trailing underscore resolved), or None."""
    n = _normalise(name)
    n = ALIASES.get(n, n)
    return n if n in SCHEMES else None


def data_scheme_name(obj: Any) -> str | None:
    """The data-dependent scheme ``obj`` names (``"lsuv"``, ``"LSUV"``), or None."""
    if isinstance(obj, str):
        n = _normalise(obj)
        return n if n in DATA_SCHEMES else None
    return None


def is_scheme_name(name: str) -> bool:
    """Whether ``name`` names a registered scheme, per parameter or data-dependent (aliases, any case, a
    trailing underscore)."""
    return canonical_name(name) is not None or data_scheme_name(name) is not None


def _function_params(fn: Callable[..., Any]) -> dict[str, Any]:
    """The keyword arguments an init function takes after the tensor (``generator`` excluded)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return {}
    params = list(sig.parameters.values())[1:]
    return {p.name: (p.default if p.default is not inspect.Parameter.empty else _REQUIRED)
            for p in params if p.name != "generator" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _function_name(fn: Callable[..., Any]) -> str:
    mod = getattr(fn, "__module__", "") or ""
    qual = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    return f"{mod}.{qual}" if mod and not mod.startswith("builtins") else qual


def _function_scheme(fn: Callable[..., Any]) -> SchemeDef:
    params = _function_params(fn)

    def plan(ctx: Ctx, **kwargs: Any) -> Action:
        if len(ctx.shape) < 1:
            raise ValueError(f"{ctx.fn}: an init function needs a tensor with at least 1 dimension, got shape {ctx.shape}")
        return Function(fn, tuple(kwargs.items()))

    return SchemeDef(_function_name(fn), plan, params, fan_based=True, random_matrix=False)


@dataclass(frozen=True)
class Scheme:
    """A scheme with bound arguments, usable wherever a scheme name is: ``Scheme("normal", std=0.02)``."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __init__(self, name: str, **kwargs: Any) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "kwargs", dict(kwargs))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.name}({args})"

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted((k, repr(v)) for k, v in self.kwargs.items()))))


def scheme_def(scheme: Any, fn: str) -> SchemeDef:
    """The :class:`SchemeDef` of a scheme name (aliases, any case, trailing ``_``), a :class:`Scheme`, or an
    init function (``torch.nn.init.kaiming_normal_``, ``ti.init.orthogonal_``, any ``f(tensor, ...)``).

    Raises ValueError with the closest names for an unknown name, TypeError for anything else."""
    if isinstance(scheme, Scheme):
        scheme = scheme.name
    if isinstance(scheme, str):
        canonical = canonical_name(scheme)
        if canonical is not None:
            return SCHEMES[canonical]
        if data_scheme_name(scheme) is not None:
            raise ValueError(f"{fn}: {scheme!r} is data-dependent and runs on the whole model: "
                             f"apply_init(model, {data_scheme_name(scheme)!r}, data=batch), not inside a Rule")
        raise ValueError(f"{fn}: unknown scheme {scheme!r}{did_you_mean(_normalise(scheme), scheme_names())} "
                         f"(valid schemes: {', '.join(scheme_names())})")
    if getattr(scheme, "_torchinit_preset", False) is True:
        raise TypeError(f"{fn}: {getattr(scheme, '__name__', scheme)} is a preset, not a scheme: pass it to apply_init "
                        "itself (alone or in the list of rules), e.g. apply_init(model, [..., ti.init.gpt2])")
    own = getattr(scheme, "_torchinit_scheme", None)
    if isinstance(own, str) and own in SCHEMES:
        return SCHEMES[own]
    if callable(scheme) and not isinstance(scheme, type):
        return _function_scheme(scheme)
    raise TypeError(f"{fn}: scheme must be a name, a torchinit.init.Scheme or an init function f(tensor, ...), "
                    f"got {type(scheme).__name__}")


def resolve_scheme(scheme: Any, kwargs: dict[str, Any], fn: str) -> tuple[SchemeDef, dict[str, Any]]:
    """Look ``scheme`` up (see :func:`scheme_def`) and merge ``kwargs`` over its defaults, checking names.

    Raises ValueError naming the closest valid scheme or argument.
    """
    if isinstance(scheme, Scheme):
        kwargs = {**scheme.kwargs, **kwargs}
    sdef = scheme_def(scheme, fn)
    canonical = sdef.name
    unknown = sorted(set(kwargs) - set(sdef.params))
    if unknown:
        valid = ", ".join(sdef.params) or "none"
        hint = did_you_mean(unknown[0], sdef.params, n=1)
        raise ValueError(f"{fn}: scheme {canonical!r} got unexpected argument(s) {unknown}{hint} (it accepts: {valid})")
    merged = {**sdef.params, **kwargs}
    missing = [k for k, v in merged.items() if v is _REQUIRED]
    if missing:
        raise ValueError(f"{fn}: scheme {canonical!r} needs argument(s) {missing}")
    return sdef, merged


def plan_action(sdef: SchemeDef, kwargs: dict[str, Any], ctx: Ctx) -> Action:
    """Run the scheme's planner (validates argument values and the tensor's shape)."""
    return sdef.plan(ctx, **kwargs)
