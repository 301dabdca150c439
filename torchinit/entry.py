"""The entry points of :mod:`torchinit.functional`: argument checks, the backend decision, the call itself.

:func:`call` runs one activation of the table: a floating-point input with arguments seen before is
one dictionary look-up, then one backend decision (:func:`torchinit.backend.route`); on CPU under
"auto" that is the table's torch form, torch's own ops differentiated by torch's autograd. Otherwise
the call goes through torchinit's operators (:func:`run_operator`), differentiated by
:class:`~torchinit.activation_autograd.ActivationFunction` when a gradient is wanted. Other dtypes
take torch's own function (:func:`torch_twin`).
"""

from __future__ import annotations

import inspect
import linecache
import typing
from collections import defaultdict
from types import MappingProxyType
from typing import Any

import torch

from . import backend
from .activation_autograd import ActivationFunction
from .activations import ACTIVATIONS, FORMULAS, Resolved, cacheable

FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
FLOATING_SET = frozenset(FLOATING)  # for the hot paths' membership tests
_FLOATING_SET = FLOATING_SET
_is_compiling = torch.compiler.is_compiling
_Tensor = torch.Tensor
_route = backend.route  # the one backend decision of a call


def check_tensor(op: str, x, arg: str = "input") -> None:
    """Raise a clear error unless ``x`` is a tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"torchinit.{op}: argument '{arg}' must be a torch.Tensor, got {type(x).__name__}")


def check_input(op: str, x, arg: str = "input") -> None:
    """Raise a clear error unless ``x`` is a floating-point tensor torchinit supports."""
    check_tensor(op, x, arg)
    if x.dtype not in FLOATING:
        raise TypeError(
            f"torchinit.{op}: argument '{arg}' must be a floating-point tensor "
            f"(float16, bfloat16, float32 or float64), got dtype {x.dtype}"
        )


def needs_grad(*tensors) -> bool:
    """Whether autograd records this call: grad mode on and some tensor (None allowed) requiring grad."""
    if not torch.is_grad_enabled():
        return False
    for t in tensors:
        if t is not None and t.requires_grad:
            return True
    return False


#: per activation, the resolutions of its calls without tensor arguments, keyed by the input's dtype and the
#: argument values (:func:`cache_key`) for every floating dtype: the key is the hot path's floating-point test
_RESOLVED: defaultdict[str, dict[Any, Resolved]] = defaultdict(dict)  # rows added later get theirs too
_CACHE_LIMIT = 1024  # keys per activation (4 dtypes per argument tuple)
_NONE_CACHED = MappingProxyType({})  # the generic call's look-up for a name without a cache (nothing is added)


def cache_key(dtype: torch.dtype, values: tuple) -> Any:
    """The key of a resolution in its activation's cache: ``dtype`` alone without arguments (one attribute
    read and a hash on the hot path), else ``(dtype, *values)``."""
    return (dtype, *values) if values else dtype


def _resolve(name: str, arguments: dict) -> Resolved:
    """The table's resolution of activation ``name`` with keyword ``arguments`` (cached without tensors)."""
    return _resolve_values(ACTIVATIONS[name], tuple(arguments.get(k, d) for k, d in ACTIVATIONS[name].defaults.items()))


def _resolve_values(activation, values: tuple) -> Resolved:
    if not cacheable(values) or _is_compiling():  # no side effects on a global while Dynamo traces
        return activation.resolve(**activation.arguments(values))
    cache = _RESOLVED[activation.name]
    resolved = cache.get(cache_key(torch.float32, values))
    if resolved is None:
        resolved = activation.resolve(**activation.arguments(values))
        if len(cache) < _CACHE_LIMIT:
            for dtype in FLOATING:
                cache[cache_key(dtype, values)] = resolved
    return resolved


def torch_errors_named(op: str, call, *args, **kwargs):
    """``call(*args, **kwargs)``; an error torch raises is re-raised, same type, with the op's name in front."""
    try:
        return call(*args, **kwargs)
    except (RuntimeError, TypeError, NotImplementedError) as exc:
        try:
            named = type(exc)(f"torchinit.{op}: {exc} (torch's own path, taken for a {args[0].dtype} input)")
        except Exception:  # an exception type that does not take one message
            raise exc from None
        raise named from exc


def torch_twin(name: str, x: torch.Tensor, inplace: bool, arguments: dict) -> torch.Tensor:
    """Activation ``name`` computed by torch's own function, for the dtypes torchinit's kernels do not take.

    Integer, bool and complex inputs get exactly what torch gives them (a result where torch accepts
    the dtype, torch's error where it does not); the activations torch has no twin for (swish,
    squared_relu, star_relu) run their torch form, made of torch ops, with the same effect.
    """
    activation = ACTIVATIONS[name]
    if activation.torch_name is None:
        resolved = _resolve(name, arguments)
        return torch_errors_named(name, resolved.formula.forward, x, *resolved.params(), inplace)
    kwargs = dict(arguments, inplace=inplace) if activation.inplace else arguments
    return torch_errors_named(name, getattr(torch.nn.functional, activation.torch_name), x, **kwargs)


def run_activation(name: str, x: torch.Tensor, inplace: bool = False, **arguments) -> torch.Tensor:
    """Compute activation ``name`` of ``x`` on the path the backend chooses (see :mod:`torchinit.backend`).

    ``arguments`` are the activation's keyword arguments (as its ``torchinit.functional`` function
    takes them); :func:`call` is the same with the arguments in the table's order.
    """
    activation = ACTIVATIONS[name]
    return call(name, x, inplace, tuple(arguments.get(k, d) for k, d in activation.defaults.items()))


_PADDING = {1: (0.0, 0.0), 2: (0.0,), 3: ()}  # (p0, p1, p2) from one, two or three arguments


def _learnable_args(values: tuple) -> tuple:
    """``(p0, p1, p2)`` of a learnable formula from its arguments (tensors kept, numbers as floats)."""
    if len(values) == 1:
        (v,) = values
        return (v if isinstance(v, _Tensor) else float(v), 0.0, 0.0)
    args = tuple(v if isinstance(v, _Tensor) else float(v) for v in values)
    return args + (0.0,) * (3 - len(args))


# The hot path of every activation call, written once. :func:`make_entry` fills it in as :func:`call`
# (the name and arguments are parameters) and as each function of torchinit.functional (the name and the
# argument tuple written in), so that a call costs one Python frame before torch's own function: a floating
# input with arguments seen before is one dictionary look-up, then the one backend decision (``_route``).
_HOT_PATH = """
def {function}({signature}):
    try:
        resolved = {cache}.get({key}) if isinstance({x}, _Tensor) else None
    except TypeError:  # an unhashable argument: the slow path checks it
        resolved = None
    if resolved is None{slow_when}:
        return {slow}
    if _route({name}, {x}):
        return _run_operator(resolved, {x}, {inplace})
    direct = resolved.direct
    return direct({x}) if direct is not None and not {inplace} else resolved.torch_form({x}, {inplace})
"""

# The same for an activation whose arguments are tensors that torch's own function checks (Activation.torch_checks:
# PReLU's weight): nothing to cache; on the torch route the table's check runs only to name the error torch raised.
_TORCH_CHECKED_PATH = """
def {function}({signature}):
    if not isinstance({x}, _Tensor) or {x}.dtype not in _FLOATING_SET{slow_when}:
        return {slow}
    if _route({name}, {x}):
        return _decided({name}, {x}, {inplace}, {values}, True)
    try:
        return _torch_forward({x}, {arguments}{padding}{inplace})
    except Exception:
        _activation.check({values}, {op!r}, {x})
        raise
"""


def make_entry(function: str, signature: str, slow: str, activation: str | None = None,
               arguments: tuple[str, ...] = (), inplace: str = "False", slow_when: str = "",
               namespace: dict | None = None, x: str = "input", module: str = __name__):
    """A function ``function(<signature>)`` running the hot path of an activation call (:data:`_HOT_PATH`, or
    :data:`_TORCH_CHECKED_PATH` for a row whose torch form checks its tensor arguments itself).

    With ``activation`` (a table row's name) the function is that activation's: ``arguments`` names the
    signature's parameters holding its arguments (in the order of the row's defaults), its cache is bound
    and the key written out (:func:`cache_key`). Without, it is the generic :func:`call`, whose parameters
    ``name`` and ``values`` hold them. ``inplace`` and ``x`` (the input) are source expressions over the
    signature's parameters; ``slow`` is the expression that handles every other case (other dtypes, tensor
    or new arguments), and ``slow_when`` a further condition under which it does (a memory mode with
    something to save). ``namespace`` holds the names these expressions use besides the hot path's own.
    The function is generated (``exec`` of its ``def``, as :mod:`dataclasses` makes ``__init__``), so it
    costs what a hand-written one of this body would.
    """
    scope = {"_RESOLVED": _RESOLVED, "_Tensor": _Tensor, "_route": _route, "_run_operator": run_operator,
             "_FLOATING_SET": _FLOATING_SET, "_decided": call_decided, "_NONE_CACHED": _NONE_CACHED,
             **(namespace or {})}
    fields = {"function": function, "signature": signature, "slow": slow, "x": x, "inplace": inplace,
              "slow_when": f" or ({slow_when})" if slow_when else ""}
    template = _HOT_PATH
    if activation is None:
        fields.update(name="name", values="values", cache="_RESOLVED.get(name, _NONE_CACHED)",
                      key=f"({x}.dtype, *values) if values else {x}.dtype")
    else:
        row = ACTIVATIONS[activation]
        fields.update(name=repr(activation), values="(" + "".join(f"{a}, " for a in arguments) + ")", cache="_cache",
                      key=f"({x}.dtype, {', '.join(arguments)})" if arguments else f"{x}.dtype")
        scope["_cache"] = _RESOLVED[activation]
        if row.torch_checks:
            template = _TORCH_CHECKED_PATH
            fields.update(op=function, arguments="".join(f"{a}, " for a in arguments),
                          padding="".join("0.0, " for _ in _PADDING[len(arguments)]),
                          inplace=inplace)
            scope.update(_torch_forward=FORMULAS[row.learnable].forward, _activation=row)
    source = template.format(**fields)
    filename = f"<torchinit hot path of {module}.{function}>"  # tracebacks show its lines (linecache)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), scope)  # noqa: S102 - the hot path with the caller's own expressions
    fn = scope[function]
    fn.__module__ = module
    return fn


def entry_like(stub, slow: str, activation: str, slow_when: str = "", namespace: dict | None = None):
    """:func:`make_entry` for a function written as a stub: a ``def`` holding only the signature and docstring
    (torch's twin's, or a memory mode's). The generated function takes the stub's parameters (``input``
    first, then positional-or-keyword ones with their defaults), docstring and annotations; the parameters
    named like the row ``activation``'s defaults are its arguments, ``inplace`` (where there is one) its
    in-place flag. ``slow`` and ``slow_when`` are as for :func:`make_entry`, over the stub's parameter names."""
    parameters = list(inspect.signature(stub).parameters.values())
    if not parameters or parameters[0].name != "input" or any(p.kind != p.POSITIONAL_OR_KEYWORD for p in parameters):
        raise TypeError(f"torchinit.entry.entry_like: {stub.__name__} must take (input, <arguments>), positional or "
                        "keyword")
    defaults = {p.name: p.default for p in parameters[1:]}
    signature = ", ".join(["input", *(p if defaults[p] is inspect.Parameter.empty else f"{p}=_defaults[{p!r}]"
                                      for p in defaults)])
    fn = make_entry(stub.__name__, signature, slow, activation=activation,
                    arguments=tuple(a for a in ACTIVATIONS[activation].defaults if a in defaults),
                    inplace="inplace" if "inplace" in defaults else "False", slow_when=slow_when,
                    namespace={"_defaults": defaults, **(namespace or {})}, module=stub.__module__)
    fn.__doc__, fn.__qualname__ = stub.__doc__, stub.__qualname__
    try:  # resolved against the stub's module: the generated function's globals are the hot path's own
        fn.__annotations__ = typing.get_type_hints(stub)
    except Exception:  # noqa: BLE001 - a hint that does not resolve stays as written
        fn.__annotations__ = dict(stub.__annotations__)
    return fn


def call_uncached(name: str, x: torch.Tensor, inplace: bool, values: tuple) -> torch.Tensor:
    """:func:`call` for other dtypes, tensor (learnable) arguments and arguments not seen before: the
    arguments are checked, then the one backend decision (:func:`call_decided`)."""
    activation = ACTIVATIONS[name]
    if activation.torch_checks and isinstance(x, _Tensor) and x.dtype in _FLOATING_SET:
        return call_decided(name, x, inplace, values, _route(name, x))  # torch checks on its route (see there)
    activation.check(values, x=x)
    if not isinstance(x, _Tensor):
        check_tensor(name, x)
    if x.dtype not in _FLOATING_SET:
        return torch_twin(name, x, inplace, activation.arguments(values))
    return call_decided(name, x, inplace, values, _route(name, x))


def call_decided(name: str, x: torch.Tensor, inplace: bool, values: tuple, kernels: bool) -> torch.Tensor:
    """Activation ``name`` of the floating tensor ``x`` once the backend decided: torchinit's operators
    (``kernels``) or the torch form. The caller has checked the arguments, except for a row with
    ``torch_checks``: checked here on the kernels' route, and on the torch route only when torch's own
    function raised (to name the error)."""
    activation = ACTIVATIONS[name]
    if activation.torch_checks:
        if kernels:
            activation.check(values, x=x)
        else:  # torch rejects what is not a tensor or a number: the arguments go as they are
            try:
                return FORMULAS[activation.learnable].forward(x, *values, *_PADDING[len(values)], inplace)
            except Exception:  # noqa: BLE001 - re-raised unless the table's check names it first
                activation.check(values, x=x)
                raise
    if not kernels and activation.learnable is not None:
        # p0, p1 are the arguments themselves (numbers or tensors): no resolution needed
        return FORMULAS[activation.learnable].forward(x, *_learnable_args(values), inplace)
    resolved = _resolve_values(activation, values)
    if not kernels:
        return resolved.torch_form(x, inplace)
    return run_operator(resolved, x, inplace)


def run_operator(resolved: Resolved, x: torch.Tensor, inplace: bool) -> torch.Tensor:
    """One activation call through torchinit's operators."""
    formula = resolved.inplace_formula if inplace and resolved.inplace_formula is not None else resolved.formula
    w0, w1 = resolved.weights
    p0, p1, p2 = resolved.scalars
    if not needs_grad(x, w0, w1):
        if inplace:
            getattr(torch.ops.torchinit, formula.name + "_")(x, w0, w1, p0, p1, p2)
            return x
        return getattr(torch.ops.torchinit, formula.name)(x, w0, w1, p0, p1, p2)
    if inplace and formula.saves == "input":
        # like torch's in-place ops whose derivative needs the input: keep a copy of the original
        y = ActivationFunction.apply(x.clone(), w0, w1, p0, p1, p2, formula.name, False)
        return x.copy_(y)
    return ActivationFunction.apply(x, w0, w1, p0, p1, p2, formula.name, inplace)


call = make_entry("call", "name, x, inplace=False, values=()", "_call_uncached(name, x, inplace, values)",
                  inplace="inplace", x="x", namespace={"_call_uncached": call_uncached})
call.__annotations__ = {"name": str, "x": torch.Tensor, "inplace": bool, "values": tuple, "return": torch.Tensor}
call.__doc__ = """Activation ``name`` of ``x`` with its arguments ``values`` (in the order of the table's defaults).

    Floating-point inputs (fp16, bf16, fp32, fp64) take torchinit's path; any other dtype takes
    torch's (:func:`torch_twin`), so torchinit accepts exactly the dtypes torch accepts. One backend
    decision (:func:`torchinit.backend.route`): where it picks the torch form (CPU under "auto"),
    the call goes straight to the table's torch form -- torch's own ops, differentiated by torch's
    autograd; else through torchinit's operators (:func:`run_operator`). Generated from the hot path
    (:func:`make_entry`), as every function of :mod:`torchinit.functional` is.
    """


def run_glu(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``glu`` on the path the backend chooses: first half times sigmoid of the second half along ``dim``.

    Non-floating inputs take torch's own ``glu`` (its result or its error), as in :func:`run_activation`.
    """
    check_tensor("glu", x)
    if x.dtype not in FLOATING:
        return torch_errors_named("glu", torch.nn.functional.glu, x, dim)
    if x.dim() == 0:
        raise ValueError("torchinit.glu: argument 'input' must have at least one dimension, got a 0-d tensor")
    if not -x.dim() <= dim < x.dim():
        raise IndexError(f"torchinit.glu: argument 'dim' must be in [{-x.dim()}, {x.dim() - 1}], got {dim}")
    dim = dim % x.dim()
    if x.shape[dim] % 2:
        raise ValueError(
            f"torchinit.glu: the size of dimension dim={dim} must be even to halve it, got {x.shape[dim]}"
        )
    if not backend.route("glu", x):
        return torch.nn.functional.glu(x, dim)
    if not needs_grad(x):
        return torch.ops.torchinit.glu(x, dim)
    from .fused.gated import GluFunction  # GLU is the gated-split operator with the gate in the second half

    return GluFunction.apply(x, dim)


__all__ = ["FLOATING", "FLOATING_SET", "cache_key", "entry_like", "make_entry", "call", "call_decided", "call_uncached", "check_input",
           "check_tensor", "needs_grad", "run_activation", "run_glu",
           "run_operator", "torch_errors_named", "torch_twin"]
