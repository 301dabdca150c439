"""The activation table: every activation's math in torch form, and how the public functions map onto it.

Two layers:

* :class:`Formula` -- one formula with parameters ``p0, p1, p2``: its torch-form forward (plain torch
  ops, differentiable by torch's autograd: this *is* the pure-torch path), its torch-form backward
  (the reference the operators fall back to), which tensor backward needs (``saves``), and the name
  of its Triton pair ``kernels/math.py:<kernel>_fwd/_bwd``. A ``p0``/``p1`` may be a learnable tensor
  (PReLU's weight, Swish's beta, StarReLU's scale and bias); ``param_grads`` gives its per-element
  gradient.
* :class:`Activation` -- a public function (``torchinit.functional.<name>``) with torch's signature:
  its arguments, whether torch lets it run in place, and ``resolve`` mapping the arguments to a
  formula and its parameters (``selu`` and ``celu`` are ``elu`` with other constants, ``relu6`` is
  ``hardtanh(0, 6)``, ``gelu(approximate="tanh")`` is ``gelu_tanh``).

Each row also carries the capabilities the rest of the package reads: ``Formula.direct`` (the
torch form as one torch function, for the cheap eager path), ``stand_ins``/``pass_bit`` (bits mode) and ``fewbit``
(few-bit mode), ``param_grads`` (learnable parameters); ``Activation.learnable`` (which arguments may
be learnable tensors) and ``Activation.checks`` (the argument checks every public function runs).

Adding an activation: a ``_fwd``/``_bwd`` pair in ``kernels/math.py`` and one row here: a :class:`Formula`
(torch-form forward/backward, ``saves``, capabilities) and an :class:`Activation` (arguments and defaults,
``inplace``, ``resolve``, ``torch_name``, ``checks``). The rest follows from the row:
``torchinit.functional.<name>`` (:func:`torchinit.functional.from_table`: generated from the row, or from a
stub there that holds only torch's signature and docstring, checked against the row), its
module (:func:`torchinit.nn.module_from_table`, a subclass of the ``torch.nn`` twin where there is one), its
registry name and swap spellings, its benchmark case (against the torch twin, else its torch form), its test
cases in ``tests/activation_cases.py`` (against the torch twin, else its torch form in fp64), and the
operators with their autograd, vmap and sharding rules (:mod:`torchinit.activation_ops`). By hand: its
expectation in ``tests/test_registry.py`` (written from the source, independent of torchinit) and, for a row
without a torch twin, optionally an independent reference in ``tests/activation_cases.py``'s ``CASES``. Tried with ``snake``
(x + sin(a x)**2 / a) and ``hardshrink``: 3 files, 16-17 lines each (hardshrink: the Triton pair 11 lines with
its blank ones, the two rows 5, the registry expectation 1; 40 test cases and a benchmark case followed). Give
``Formula.direct`` torch's own function with the numbers at their default left out (``_bind``): a
``functools.partial`` with keywords made hardshrink's 16-element call 1.86x torch's, ``_bind`` 1.45x.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

aten = torch.ops.aten
_nn = torch._C._nn  # torch's own functions behind torch.nn.functional (F.gelu calls _nn.gelu, ...)

Param = Any  # a float, or a tensor for learnable parameters

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


@dataclass(frozen=True)
class Formula:
    """One activation formula: torch-form forward/backward, what backward keeps, its Triton pair."""

    name: str
    saves: str  # "input" or "output"
    forward: Callable[..., torch.Tensor]  # (x, p0, p1, p2, inplace) -> y
    backward: Callable[..., torch.Tensor]  # (grad, saved, p0, p1, p2) -> grad_x
    kernel: str = ""  # the kernels/math.py pair; defaults to ``name``
    param_grads: Callable[..., tuple] | None = None  # (grad, x, p0, p1, p2) -> per-element (d p0, d p1)
    #: the out-of-place torch form as one torch function of ``x``, bound to number parameters:
    #: (p0, p1, p2) -> (x -> y), the same op as ``forward`` reached without a Python frame in between
    direct: Callable[..., Callable[[torch.Tensor], torch.Tensor]] | None = None
    #: bits mode (``memory="bits"``, :mod:`torchinit.fused.bits`), for a derivative that takes one of two values
    #: decided by a comparison: ``(p0, p1) -> (on, off)``, stand-in saved values on the pass-through side and on
    #: the other side of every branch (backward feeds ``backward`` the one each element's bit selects)
    stand_ins: Callable[[float, float], tuple[float, float]] | None = None
    #: bits mode: the bit (True: the pass-through side) as one comparison of the saved value, exactly what
    #: ``backward`` decides, NaN included; None: the bit is ``backward(1, s) != backward(1, off)``
    pass_bit: Callable[[torch.Tensor], torch.Tensor] | None = None
    #: eligible for the approximate few-bit backward (``memory="fewbit"``: a smooth unit of one input)
    fewbit: bool = False

    @property
    def two_valued(self) -> bool:
        """Whether the derivative takes one of two values (bits mode): the formula has :attr:`stand_ins`."""
        return self.stand_ins is not None

    @property
    def kernel_name(self) -> str:
        """Name of the ``<kernel>_fwd`` / ``<kernel>_bwd`` pair in ``kernels/math.py``."""
        return self.kernel or self.name


def _out_of_place(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """A torch form for an op torch has no in-place variant of: in place means copy the result back."""

    def forward(x, p0, p1, p2, inplace):
        y = fn(x, p0, p1, p2)
        return x.copy_(y) if inplace else y

    return forward


_HALF = (torch.float16, torch.bfloat16)


def _fp32_math(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """A composite torch form computed in fp32 for fp16/bf16 tensors and rounded once, as the kernels do
    ("fp32 math inside"): in the half dtype each op of the composite rounds (star_relu's three roundings
    were measured 2 fp16 ulps off the once-rounded value)."""

    def wrapped(*args):
        like = args[0]  # x (forward) or the incoming gradient (backward): a tensor of the activation's dtype
        if like.dtype not in _HALF:
            return fn(*args)
        up = [a.float() if isinstance(a, torch.Tensor) and a.dtype in _HALF else a for a in args]
        return fn(*up).to(like.dtype)

    return wrapped


def channel_view(w: Param, x: torch.Tensor) -> Param:
    """A per-channel parameter shaped to broadcast against ``x`` along dim 1 (dim 0 for 1-D ``x``)."""
    if not isinstance(w, torch.Tensor) or w.numel() == 1 or x.dim() < 2:
        return w
    return w.reshape((1, -1) + (1,) * (x.dim() - 2))


def _sign(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x)


def _softsign_backward(g, x, p0, p1, p2):
    d = 1 + x.abs()
    return g / d + (-g * x / (d * d)) * _sign(x)


def _tanhshrink_backward(g, x, p0, p1, p2):
    t = torch.tanh(x)
    return g + (-g) * (1 - t * t)


def _logsigmoid_backward(g, x, p0, p1, p2):
    neg = x < 0
    max_deriv = neg.to(x.dtype)
    sign = torch.where(neg, 1.0, -1.0).to(x.dtype)
    z = torch.exp(-x.abs())
    return g * (max_deriv - sign * (z / (1 + z)))


def _swish_backward(g, x, p0, p1, p2):
    s = torch.sigmoid(p0 * x)
    return g * (s + p0 * x * s * (1 - s))


def _swish_param_grads(g, x, p0, p1, p2):
    s = torch.sigmoid(p0 * x)
    return (g * x * x * s * (1 - s), None)


def _elu(x, alpha, scale, input_scale, inplace):
    # torch's own elu kernel with all three constants (F.elu, F.selu and F.celu are this kernel), called
    # through its C binding: torch.ops.aten.elu costs microseconds of Python dispatch per call
    return (torch._C._nn.elu_ if inplace else torch._C._nn.elu)(x, alpha, scale, input_scale)


def _same(a: Param, b: float) -> bool:
    """``a`` is the number ``b`` exactly (the sign of a zero included)."""
    return isinstance(a, (int, float)) and a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def _bind(fn: Callable[..., torch.Tensor], **params: tuple[Param, float]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn`` with the keyword parameters ``name=(value, default)`` bound, those at their default left out
    (torch's bindings take about a microsecond to convert each number passed)."""
    given = {k: v for k, (v, default) in params.items() if not _same(v, default)}
    return functools.partial(fn, **given) if given else fn


def _elu_direct(p0, p1, p2):
    if _same(p0, SELU_ALPHA) and _same(p1, SELU_SCALE) and _same(p2, 1.0):
        return torch.selu  # ATen's selu is elu with these constants
    if _same(p1, 1.0) and not _same(p0, 1.0) and p2 == 1.0 / p0:
        return functools.partial(torch.celu, alpha=p0)  # ATen's celu: elu(x, alpha, 1, 1 / alpha)
    return _bind(_nn.elu, alpha=(p0, 1.0), scale=(p1, 1.0), input_scale=(p2, 1.0))


def _hardtanh_direct(p0, p1, p2):
    if _same(p0, 0.0) and _same(p1, 6.0):
        return _nn.relu6  # ATen's relu6 is hardtanh(0, 6)
    return _bind(_nn.hardtanh, min_val=(p0, -1.0), max_val=(p1, 1.0))


def _leaky_direct(p0, p1, p2):
    return _bind(_nn.leaky_relu, negative_slope=(p0, 0.01))


def _gelu_tanh_direct(x: torch.Tensor) -> torch.Tensor:
    # a def, not functools.partial(_nn.gelu, approximate="tanh"): the partial's keyword merge costs twice a frame
    return _nn.gelu(x, approximate="tanh")


def _squared_relu_backward(g, x, p0, p1, p2):
    r = torch.relu(x)
    return torch.where(r <= 0, 0.0, 2 * r * g).to(g.dtype)


def _star_relu_backward(g, x, p0, p1, p2):
    r = torch.relu(x)
    return torch.where(r <= 0, 0.0, p0 * (2 * r * g)).to(g.dtype)


def _star_relu_param_grads(g, x, p0, p1, p2):
    r = torch.relu(x)
    return (g * (r * r), g)


def _prelu(x, p0, p1, p2, inplace):
    # torch has no in-place prelu: in place copies the result back (written out, not _out_of_place: one frame
    # less on a call that runs every time, its weight being a tensor)
    # torch.prelu is what F.prelu calls after its __torch_function__ test, which the builtin makes itself
    return x.copy_(torch.prelu(x, p0)) if inplace else torch.prelu(x, p0)


def _prelu_backward(g, x, p0, p1, p2):
    w = channel_view(p0, x)
    return torch.where(x > 0, g, w * g).to(g.dtype)


def _sign_stand_ins(p0: float, p1: float) -> tuple[float, float]:
    """Bits-mode stand-ins of a formula whose branch is the sign of the saved value (relu, leaky_relu, prelu)."""
    return 1.0, -1.0


def _hardtanh_stand_ins(lo: float, hi: float) -> tuple[float, float]:
    """Bits-mode stand-ins of hardtanh: a value strictly inside ``(lo, hi)``, and ``lo`` (never inside)."""
    if math.isfinite(lo) and math.isfinite(hi):
        on = lo + (hi - lo) / 2
    elif math.isfinite(lo):
        on = lo + 1.0
    elif math.isfinite(hi):
        on = hi - 1.0
    else:
        on = 0.0
    return on, lo


def _prelu_param_grads(g, x, p0, p1, p2):
    return (torch.where(x > 0, 0.0, x * g).to(g.dtype), None)


FORMULAS: dict[str, Formula] = {
    f.name: f
    for f in [
        Formula("relu", "output", lambda x, p0, p1, p2, inplace: F.relu(x, inplace=inplace),
                lambda g, y, p0, p1, p2: aten.threshold_backward(g, y, 0), direct=lambda p0, p1, p2: torch.relu,
                stand_ins=lambda p0, p1: (1.0, 0.0), pass_bit=lambda y: ~(y <= 0)),  # NaN passes, as threshold_backward
        Formula("hardtanh", "output", lambda x, p0, p1, p2, inplace: F.hardtanh(x, p0, p1, inplace=inplace),
                lambda g, s, p0, p1, p2: aten.hardtanh_backward(g, s, p0, p1),
                direct=_hardtanh_direct, stand_ins=_hardtanh_stand_ins),
        Formula("leaky_relu", "output", lambda x, p0, p1, p2, inplace: F.leaky_relu(x, p0, inplace=inplace),
                lambda g, s, p0, p1, p2: aten.leaky_relu_backward(g, s, p0, True), direct=_leaky_direct,
                stand_ins=_sign_stand_ins, pass_bit=lambda s: s > 0),
        Formula("leaky_relu_from_input", "input",
                lambda x, p0, p1, p2, inplace: F.leaky_relu(x, p0, inplace=inplace),
                lambda g, s, p0, p1, p2: aten.leaky_relu_backward(g, s, p0, False), kernel="leaky_relu",
                direct=_leaky_direct, stand_ins=_sign_stand_ins, pass_bit=lambda s: s > 0),
        Formula("prelu", "input", _prelu, _prelu_backward,
                param_grads=_prelu_param_grads, stand_ins=_sign_stand_ins, pass_bit=lambda s: s > 0),
        Formula("elu", "output", lambda x, p0, p1, p2, inplace: _elu(x, p0, p1, p2, inplace),
                lambda g, y, p0, p1, p2: aten.elu_backward(g, p0, p1, p2, True, y), direct=_elu_direct),
        Formula("elu_from_input", "input",
                lambda x, p0, p1, p2, inplace: _elu(x, p0, p1, p2, inplace),
                lambda g, x, p0, p1, p2: aten.elu_backward(g, p0, p1, p2, False, x), direct=_elu_direct),
        Formula("softplus", "input", _out_of_place(lambda x, p0, p1, p2: F.softplus(x, p0, p1)),
                lambda g, x, p0, p1, p2: aten.softplus_backward(g, x, p0, p1),
                direct=lambda p0, p1, p2: _bind(_nn.softplus, beta=(p0, 1.0), threshold=(p1, 20.0))),
        Formula("logsigmoid", "input", _out_of_place(lambda x, p0, p1, p2: F.logsigmoid(x)), _logsigmoid_backward,
                direct=lambda p0, p1, p2: _nn.log_sigmoid),
        Formula("sigmoid", "output", lambda x, p0, p1, p2, inplace: x.sigmoid_() if inplace else torch.sigmoid(x),
                lambda g, y, p0, p1, p2: aten.sigmoid_backward(g, y), direct=lambda p0, p1, p2: torch.sigmoid),
        Formula("tanh", "output", lambda x, p0, p1, p2, inplace: x.tanh_() if inplace else torch.tanh(x),
                lambda g, y, p0, p1, p2: aten.tanh_backward(g, y), direct=lambda p0, p1, p2: torch.tanh),
        Formula("silu", "input", lambda x, p0, p1, p2, inplace: F.silu(x, inplace=inplace),
                lambda g, x, p0, p1, p2: aten.silu_backward(g, x), direct=lambda p0, p1, p2: _nn.silu, fewbit=True),
        Formula("swish", "input", _out_of_place(_fp32_math(lambda x, p0, p1, p2: x * torch.sigmoid(p0 * x))),
                _fp32_math(_swish_backward),
                param_grads=_swish_param_grads),
        Formula("mish", "input", lambda x, p0, p1, p2, inplace: F.mish(x, inplace=inplace),
                lambda g, x, p0, p1, p2: aten.mish_backward(g, x), direct=lambda p0, p1, p2: _nn.mish, fewbit=True),
        Formula("gelu", "input", _out_of_place(lambda x, p0, p1, p2: F.gelu(x)),
                lambda g, x, p0, p1, p2: aten.gelu_backward(g, x), direct=lambda p0, p1, p2: _nn.gelu, fewbit=True),
        Formula("gelu_tanh", "input", _out_of_place(lambda x, p0, p1, p2: F.gelu(x, approximate="tanh")),
                lambda g, x, p0, p1, p2: aten.gelu_backward(g, x, approximate="tanh"),
                direct=lambda p0, p1, p2: _gelu_tanh_direct, fewbit=True),
        Formula("hardswish", "input", lambda x, p0, p1, p2, inplace: F.hardswish(x, inplace=inplace),
                lambda g, x, p0, p1, p2: aten.hardswish_backward(g, x), direct=lambda p0, p1, p2: _nn.hardswish),
        Formula("hardsigmoid", "input", lambda x, p0, p1, p2, inplace: F.hardsigmoid(x, inplace=inplace),
                lambda g, x, p0, p1, p2: aten.hardsigmoid_backward(g, x),
                direct=lambda p0, p1, p2: _nn.hardsigmoid),
        Formula("softsign", "input", _out_of_place(lambda x, p0, p1, p2: F.softsign(x)), _softsign_backward),
        Formula("tanhshrink", "input", _out_of_place(lambda x, p0, p1, p2: F.tanhshrink(x)), _tanhshrink_backward),
        Formula("squared_relu", "input", _out_of_place(_fp32_math(lambda x, p0, p1, p2: torch.relu(x).square())),
                _fp32_math(_squared_relu_backward)),
        Formula("star_relu", "input",
                _out_of_place(_fp32_math(lambda x, p0, p1, p2: p0 * torch.relu(x).square() + p1)),
                _fp32_math(_star_relu_backward), param_grads=_star_relu_param_grads),
    ]
}


def cacheable(values) -> bool:
    """Whether a resolution may be cached under these argument values: hashable, no tensors, no number equal
    to zero (0, False, 0.0 and -0.0 are one dictionary key but not one activation) and no NaN (never equal to
    itself: each call would add a key)."""
    try:
        hash(values)
    except TypeError:
        return False
    return not any(isinstance(v, torch.Tensor) or (isinstance(v, numbers.Number) and (v == 0 or v != v))
                   for v in values)


#: the formulas whose derivative is two-valued (``memory="bits"``) and those few-bit eligible, from the table
BIT_FORMULAS: tuple[str, ...] = tuple(name for name, f in FORMULAS.items() if f.two_valued)
FEWBIT_FORMULAS: tuple[str, ...] = tuple(name for name, f in FORMULAS.items() if f.fewbit)


@dataclass(frozen=True)
class Resolved:
    """A call resolved to a formula: the formula, learnable tensors (for p0, p1) and scalar parameters."""

    formula: Formula
    weights: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
    scalars: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: the formula an in-place call runs instead, where it differs: an output-saving twin of an input-saving
    #: formula (in place the input is overwritten; out of place saving the input is exact, as in torch)
    inplace_formula: Formula | None = None

    def __post_init__(self) -> None:
        w0, w1 = self.weights
        s0, s1, s2 = self.scalars
        # built once (resolved calls are cached and reused per call): the torch forms' (p0, p1, p2), and the
        # out-of-place torch form as one torch function of x (``direct``, None where the formula has none)
        args = (s0 if w0 is None else w0, s1 if w1 is None else w1, s2)
        object.__setattr__(self, "args", args)
        f = self.formula
        object.__setattr__(self, "direct", f.direct(*args) if f.direct is not None and w0 is None and w1 is None
                           else None)

    def torch_form(self, x: torch.Tensor, inplace: bool) -> torch.Tensor:
        """The activation of ``x`` in torch's own ops (the in-place formula in place)."""
        if inplace:
            return (self.formula if self.inplace_formula is None else self.inplace_formula).forward(x, *self.args, True)
        direct = self.direct
        return direct(x) if direct is not None else self.formula.forward(x, *self.args, False)

    def params(self) -> tuple[Param, Param, float]:
        """``(p0, p1, p2)`` for the torch forms: a weight where one is given, else the scalar."""
        return self.args


@dataclass(frozen=True)
class Activation:
    """A public activation: torch's functional signature and its mapping onto a :class:`Formula`."""

    name: str
    defaults: dict[str, Any] = field(default_factory=dict)  # arguments after ``input``, in order (None: required)
    inplace: bool = False  # torch's functional takes ``inplace``
    resolve: Callable[..., Resolved] = None  # (**arguments) -> Resolved
    torch_name: str | None = None  # the torch.nn.functional twin, where there is one
    #: the formula whose p0, p1 are this activation's arguments themselves, each a number or a learnable
    #: tensor (PReLU's weight, Swish's beta, StarReLU's scale and bias); None: numbers only
    learnable: str | None = None
    #: the argument check: ``(op, x, *values)`` raises a clear error naming ``op`` for arguments the
    #: activation does not take (``x`` is the input, where a check needs it); None: any numbers
    checks: Callable[..., None] | None = None
    #: its torch form (torch's own function) rejects every argument :attr:`checks` rejects, so on the torch
    #: route the check runs only to name the error torch raised (PReLU: its weight checks cost more than
    #: torch's op on a small tensor); tests/test_call_path.py holds torch to that
    torch_checks: bool = False

    def __post_init__(self) -> None:
        if self.torch_checks and self.learnable is None:
            raise ValueError(f"activation {self.name!r}: torch_checks is for a learnable formula's torch form")

    @property
    def takes_tensors(self) -> bool:
        """Whether an argument is required, which marks a tensor one (PReLU's weight): such a call has nothing
        to cache, fuse or benchmark with numbers alone."""
        return None in self.defaults.values()

    def arguments(self, values: tuple) -> dict[str, Any]:
        """``values`` (this activation's arguments in the order of :attr:`defaults`) as keyword arguments."""
        return dict(zip(self.defaults, values))

    def check(self, values: tuple, op: str | None = None, x: Any = None) -> None:
        """Raise the table's error for arguments ``values`` (in the order of :attr:`defaults`) that this
        activation does not take; ``op`` names the public function in the message (default: this one)."""
        if self.checks is not None:
            self.checks(op or self.name, x, *values)


def _fixed(formula: str, *scalars: float) -> Callable[..., Resolved]:
    padded = tuple(float(s) for s in scalars) + (0.0,) * (3 - len(scalars))
    return lambda **_: Resolved(FORMULAS[formula], scalars=padded)


def _leaky(negative_slope: float = 0.01, **_) -> Resolved:
    name = "leaky_relu" if negative_slope >= 0 else "leaky_relu_from_input"
    return Resolved(FORMULAS[name], scalars=(float(negative_slope), 0.0, 0.0))


def _elu_like(alpha: float, scale: float, input_scale: float) -> Resolved:
    # out of place the input is saved, as torch's elu does: the derivative from the output, y + alpha*scale,
    # loses every digit where y rounds to -alpha*scale (x < -17 in fp32, x < -5.6 in bf16); in place (alpha >= 0
    # only, where the output determines the input) the output is saved, as torch's elu_ does
    return Resolved(FORMULAS["elu_from_input"], scalars=(float(alpha), float(scale), float(input_scale)),
                    inplace_formula=FORMULAS["elu"] if alpha >= 0 else None)


def _gelu(approximate: str = "none", **_) -> Resolved:
    return Resolved(FORMULAS["gelu_tanh" if approximate == "tanh" else "gelu"])


def _weight_or_scalar(formula: str, *values: Param) -> Resolved:
    weights = tuple(v if isinstance(v, torch.Tensor) else None for v in values) + (None,) * (2 - len(values))
    scalars = tuple(0.0 if isinstance(v, torch.Tensor) else float(v) for v in values)
    scalars = scalars + (0.0,) * (3 - len(scalars))
    return Resolved(FORMULAS[formula], weights=weights[:2], scalars=scalars)


# ---------------------------------------------------------------------------------------------
# argument checks (run by every public function that takes an activation's arguments)
# ---------------------------------------------------------------------------------------------


def _check_approximate(op: str, x: Any, approximate: Any = "none") -> None:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"torchinit.{op}: argument 'approximate' must be 'none' or 'tanh', got {approximate!r}")


def _check_nonzero(arg: str) -> Callable[..., None]:
    def check(op: str, x: Any, value: Any, *_: Any) -> None:
        if value == 0:
            raise ValueError(f"torchinit.{op}: argument '{arg}' must not be 0 (the function divides by it)")

    return check


def _check_range(op: str, x: Any, min_val: Any, max_val: Any) -> None:
    if min_val > max_val:
        raise ValueError(f"torchinit.{op}: 'min_val' ({min_val}) must not exceed 'max_val' ({max_val})")


def _check_one_element(*args: str) -> Callable[..., None]:
    """Learnable arguments given as tensors must have one element."""

    def check(op: str, x: Any, *values: Any) -> None:
        for arg, value in zip(args, values):
            if isinstance(value, torch.Tensor) and value.numel() != 1:
                raise ValueError(f"torchinit.{op}: argument '{arg}' must have one element, got shape "
                                 f"{tuple(value.shape)}")

    return check


def _check_prelu_weight(op: str, x: Any, weight: Any) -> None:
    """PReLU's weight: a tensor with one element, or a 1-D one per channel (dim 1) of ``x``."""
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"torchinit.{op}: argument 'weight' must be a torch.Tensor, got {type(weight).__name__}")
    if weight.numel() == 1:
        return
    if weight.dim() != 1:
        raise ValueError(f"torchinit.{op}: argument 'weight' must be 1-D, got shape {tuple(weight.shape)}")
    channels = x.shape[1] if isinstance(x, torch.Tensor) and x.dim() >= 2 else None
    if channels is None:
        raise ValueError(f"torchinit.{op}: a per-channel 'weight' needs an input with a channel dim (dim 1), "
                         f"got an input of {x.dim()} dims; use a single weight")
    if weight.numel() != channels:
        raise ValueError(f"torchinit.{op}: argument 'weight' has {weight.numel()} elements but the input has "
                         f"{channels} channels (dim 1); expected 1 or {channels}")


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation("relu", {}, True, _fixed("relu"), "relu"),
        Activation("relu6", {}, True, _fixed("hardtanh", 0.0, 6.0), "relu6"),
        Activation("leaky_relu", {"negative_slope": 0.01}, True, _leaky, "leaky_relu"),
        Activation("prelu", {"weight": None}, False, lambda weight, **_: _weight_or_scalar("prelu", weight), "prelu",
                   learnable="prelu", checks=_check_prelu_weight, torch_checks=True),
        Activation("elu", {"alpha": 1.0}, True, lambda alpha=1.0, **_: _elu_like(alpha, 1.0, 1.0), "elu"),
        Activation("celu", {"alpha": 1.0}, True, lambda alpha=1.0, **_: _elu_like(alpha, 1.0, 1.0 / alpha), "celu",
                   checks=_check_nonzero("alpha")),
        Activation("selu", {}, True, lambda **_: _elu_like(SELU_ALPHA, SELU_SCALE, 1.0), "selu"),
        Activation("gelu", {"approximate": "none"}, False, _gelu, "gelu", checks=_check_approximate),
        Activation("silu", {}, True, _fixed("silu"), "silu"),
        Activation("mish", {}, True, _fixed("mish"), "mish"),
        Activation("sigmoid", {}, False, _fixed("sigmoid"), "sigmoid"),
        Activation("tanh", {}, False, _fixed("tanh"), "tanh"),
        Activation("softplus", {"beta": 1.0, "threshold": 20.0}, False,
                   lambda beta=1.0, threshold=20.0, **_: _fixed("softplus", beta, threshold)(), "softplus",
                   checks=_check_nonzero("beta")),
        Activation("hardswish", {}, True, _fixed("hardswish"), "hardswish"),
        Activation("hardsigmoid", {}, True, _fixed("hardsigmoid"), "hardsigmoid"),
        Activation("hardtanh", {"min_val": -1.0, "max_val": 1.0}, True,
                   lambda min_val=-1.0, max_val=1.0, **_: _fixed("hardtanh", min_val, max_val)(), "hardtanh",
                   checks=_check_range),
        Activation("softsign", {}, False, _fixed("softsign"), "softsign"),
        Activation("logsigmoid", {}, False, _fixed("logsigmoid"), "logsigmoid"),
        Activation("tanhshrink", {}, False, _fixed("tanhshrink"), "tanhshrink"),
        Activation("swish", {"beta": 1.0}, False, lambda beta=1.0, **_: _weight_or_scalar("swish", beta),
                   learnable="swish", checks=_check_one_element("beta")),
        Activation("squared_relu", {}, True, _fixed("squared_relu")),
        Activation("star_relu", {"scale": 0.8944, "bias": -0.4472}, False,
                   lambda scale=0.8944, bias=-0.4472, **_: _weight_or_scalar("star_relu", scale, bias),
                   learnable="star_relu", checks=_check_one_element("scale", "bias")),
    ]
}
