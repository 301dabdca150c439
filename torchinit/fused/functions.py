"""The public fused functions (re-exported by :mod:`torchinit.fused` and :mod:`torchinit.functional`).

Each picks its path per call like every torchinit activation (:mod:`torchinit.backend`): the
``torchinit`` operators (Triton kernels on CUDA; under Triton's interpreter on CPU with the
"triton" backend) through a ``torch.autograd.Function``, or the plain torch composite (CPU under
"auto", and under ``torch.compile`` so that Inductor can fuse it with its neighbours).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from .. import backend, sharding
from ..activations import ACTIVATIONS
from ..entry import call, call_uncached, check_input, entry_like
from ..entry import needs_grad as _needs_grad
from ._common import canonical_dim, resolve_scalar_activation
from .bias_act import BiasActFunction, bias_view
from .bits import FEWBIT_WIDTHS, BitsFunction, FewBitFunction, fewbit_tables
from .gated import GatedFunction, GatedSplitFunction
from .rational import RationalFunction, torch_rational

Tensor = torch.Tensor
_grad_enabled = torch.is_grad_enabled


def _same_device(a: Tensor, b: Tensor) -> bool:
    """``a.device == b.device``, without building device objects for two CPU tensors (the common case)."""
    return (a.is_cpu and b.is_cpu) or a.device == b.device


# ---------------------------------------------------------------------------------------------
# GLU family
# ---------------------------------------------------------------------------------------------


def gated(gate: Tensor, up: Tensor | None = None, act: str = "silu", dim: int = -1, **act_kwargs) -> Tensor:
    """``act(gate) * up`` for any activation of :mod:`torchinit.functional` with number arguments.

    Two tensors: ``gate`` and ``up`` of one shape, dtype and device. One tensor (``up=None``, or an
    int in its place, read as ``dim``): ``gate, up = input.chunk(2, dim)`` -- the gate is the *first* half (SwiGLU/GEGLU convention;
    ``torchinit.functional.glu``, like torch's, gates the *second* half instead). One pass forward,
    one pass backward, only the inputs saved.
    """
    name = "gated"
    if isinstance(up, int) and not isinstance(up, bool):  # swiglu(x, -1): a second positional int is the dim
        if dim != -1:
            raise TypeError(f"torchinit.{name}: got the dim twice ({up} in place of 'up', and dim={dim})")
        up, dim = None, up
    resolved = resolve_scalar_activation(name, act, act_kwargs)
    formula, (p0, p1, p2) = resolved.formula.name, resolved.scalars
    check_input(name, gate, "gate" if up is not None else "input")
    if up is None:
        d = canonical_dim(name, dim, gate.dim())
        if gate.shape[d] % 2:
            raise ValueError(f"torchinit.{name}: the size of dimension dim={d} must be even to halve it into gate "
                             f"and up, got {gate.shape[d]}")
        if not backend.route(name, gate):
            g, u = gate.chunk(2, d)
            return resolved.torch_form(g, False) * u  # torch_gated: act(gate) * up in torch's own ops
        if not _needs_grad(gate):
            return torch.ops.torchinit.gated_split(gate, d, formula, p0, p1, p2)
        return GatedSplitFunction.apply(gate, d, formula, p0, p1, p2)
    check_input(name, up, "up")
    if up.shape != gate.shape or up.dtype != gate.dtype or not _same_device(gate, up):
        raise ValueError(f"torchinit.{name}: arguments 'gate' and 'up' must have one shape, dtype and device, got "
                         f"{tuple(gate.shape)} {gate.dtype} {gate.device} and {tuple(up.shape)} {up.dtype} {up.device}")
    if not backend.route(name, gate):
        return resolved.torch_form(gate, False) * up  # torch_gated: act(gate) * up in torch's own ops
    if not _needs_grad(gate, up):
        return torch.ops.torchinit.gated(gate, up, formula, p0, p1, p2)
    return GatedFunction.apply(gate, up, formula, p0, p1, p2)


def swiglu(gate: Tensor, up: Tensor | None = None, dim: int = -1) -> Tensor:
    """``silu(gate) * up`` (Shazeer 2020); one-tensor form ``swiglu(x, dim=dim)`` gates the first half."""
    return _named("swiglu", gate, up, "silu", dim)


def geglu(gate: Tensor, up: Tensor | None = None, dim: int = -1, approximate: str = "none") -> Tensor:
    """``gelu(gate, approximate) * up`` (erf or tanh GELU); one-tensor form gates the first half along ``dim``."""
    return _named("geglu", gate, up, "gelu", dim, approximate=approximate)


def reglu(gate: Tensor, up: Tensor | None = None, dim: int = -1) -> Tensor:
    """``relu(gate) * up``; one-tensor form gates the first half along ``dim``."""
    return _named("reglu", gate, up, "relu", dim)


def _named(name: str, gate, up, act: str, dim: int, **act_kwargs) -> Tensor:
    try:
        return gated(gate, up, act, dim, **act_kwargs)
    except (TypeError, ValueError, IndexError) as exc:
        raise type(exc)(str(exc).replace("torchinit.gated:", f"torchinit.{name}:")) from None


# ---------------------------------------------------------------------------------------------
# bias + activation
# ---------------------------------------------------------------------------------------------


def _dim_hint(x: Tensor, bias: Tensor, d: int) -> str:
    """'; for ... pass dim=1' when a 1-D bias fits another dim of ``x`` (channels-first input, default dim=-1)."""
    if bias.dim() != 1:
        return ""
    fits = [k for k in range(x.dim()) if k != d and x.shape[k] == bias.numel()]
    if not fits:
        return ""
    k = 1 if 1 in fits else fits[0]
    what = " (channels-first input such as NCHW after a convolution)" if k == 1 and x.dim() >= 3 else ""
    return f"; the bias matches x.shape[{k}]{what}: pass dim={k}"


def bias_act(x: Tensor, bias: Tensor, act: str, dim: int = -1, **act_kwargs) -> Tensor:
    """``act(x + bias)`` with the 1-D ``bias`` broadcast along ``dim`` (-1 after a Linear, 1 for NCHW).

    ``act`` names any activation of :mod:`torchinit.functional` (``act_kwargs`` its number arguments).
    One pass forward (no ``x + bias`` tensor); backward returns grad_x and grad_bias from one pass,
    the bias sum reduced inside the kernel. Dtypes follow torch's promotion, as ``act(x + bias)``
    does: bf16 ``x`` with an fp32 bias gives fp32 (see :mod:`torchinit.fused.bias_act`).
    """
    check_input("bias_act", x, "x")
    check_input("bias_act", bias, "bias")
    resolved = resolve_scalar_activation("bias_act", act, act_kwargs)
    d = canonical_dim("bias_act", dim, x.dim())
    if bias.dim() != 1 or bias.numel() != x.shape[d]:
        raise ValueError(f"torchinit.bias_act: argument 'bias' must be 1-D with x.shape[{d}] = {x.shape[d]} "
                         f"elements (dim={dim}), got shape {tuple(bias.shape)}{_dim_hint(x, bias, d)}")
    if not _same_device(x, bias):
        raise ValueError(f"torchinit.bias_act: 'x' and 'bias' must be on one device, got {x.device} and {bias.device}")
    formula, (p0, p1, p2) = resolved.formula.name, resolved.scalars
    if not backend.route("bias_act", x):
        return resolved.torch_form(x + bias_view(bias, x.dim(), d), False)  # torch_bias_act, in torch's own ops
    if not _needs_grad(x, bias):
        return torch.ops.torchinit.bias_act(x, bias, d, formula, p0, p1, p2)
    return BiasActFunction.apply(x, bias, d, formula, p0, p1, p2)


# ---------------------------------------------------------------------------------------------
# rational (Padé) unit
# ---------------------------------------------------------------------------------------------


def rational(x: Tensor, numerator: Tensor, denominator: Tensor) -> Tensor:
    """``P(x) / Q(x)``: ``P`` with coefficients ``numerator`` (a_0 first), ``Q = 1 + sum_k |b_k| |x|^k``.

    See :class:`torchinit.nn.Rational` for the learnable module and its initialisation.
    """
    check_input("rational", x, "x")
    for arg, t in (("numerator", numerator), ("denominator", denominator)):
        check_input("rational", t, arg)
        if t.dim() != 1:
            raise ValueError(f"torchinit.rational: argument '{arg}' must be 1-D, got shape {tuple(t.shape)}")
    if numerator.numel() == 0:
        raise ValueError("torchinit.rational: argument 'numerator' needs at least one coefficient")
    if not backend.route("rational", x):
        return torch_rational(x, numerator, denominator)
    if not _needs_grad(x, numerator, denominator):
        return torch.ops.torchinit.rational(x, numerator, denominator)
    return RationalFunction.apply(x, numerator, denominator)


# ---------------------------------------------------------------------------------------------
# memory-lean backward
# ---------------------------------------------------------------------------------------------


def _bits(name: str, act: str, x: Tensor, inplace: bool, values: tuple = ()) -> Tensor:
    """Activation ``act`` of the table with arguments ``values`` (its order), saving a 1-bit mask."""
    check_input(name, x)
    ACTIVATIONS[act].check(values, name, x)
    weight = next((v for v in values if isinstance(v, Tensor)), None)  # a learnable argument (PReLU's weight)
    if not _needs_grad(x, weight) or (weight is not None and weight.requires_grad and torch.is_grad_enabled()):
        # nothing to save, or PReLU with a trainable weight: its gradient needs x itself (see prelu_bits)
        return call(act, x, inplace and weight is None, values)
    if sharding.is_dtensor(x) or sharding.is_dtensor(weight):
        if weight is not None:  # a per-channel weight must follow x's channels: the default mode has the rule
            return call(act, x, inplace, values)
        # the mask is packed per tensor: pack each rank's shard (element-wise, so no communication)
        y = sharding.on_local_shards(lambda t: _bits(name, act, t, False, values), x)
    else:
        activation = ACTIVATIONS[act]
        resolved = activation.resolve(**activation.arguments(values))
        p0, p1, p2 = resolved.scalars
        y, _codes = BitsFunction.apply(x, weight, resolved.formula.name, p0, p1, p2, backend.route(name, x))
    if inplace:
        if x.is_leaf and x.requires_grad:
            raise RuntimeError(f"torchinit.{name}: a leaf Variable that requires grad is being used in an in-place "
                               "operation")
        with torch.no_grad():
            x.copy_(y)
        return _InplaceView.apply(x, y)
    return y


class _InplaceView(torch.autograd.Function):
    """Marks ``x`` (now holding ``y``'s values) as the differentiable output standing for ``y``."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.mark_dirty(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        return None, grad


def _memory_mode(act: str, slow) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """A memory mode of activation ``act`` from its stub (signature and docstring): the hot path of every
    activation call (:func:`torchinit.entry.entry_like`) where there is nothing to save -- a floating input
    with arguments seen before, and no gradient recorded -- and ``slow(name, input, <the stub's
    parameters>)`` otherwise (``name`` the mode's own, for its errors)."""

    def make(stub):
        name = stub.__name__
        params = list(inspect.signature(stub).parameters)[1:]
        bits = "bits not in _WIDTHS or" if "bits" in params else ""
        return entry_like(stub, f"_slow({name!r}, input, {', '.join(params)})", act,
                          slow_when=f"{bits} input.requires_grad and _grad_enabled()",
                          namespace={"_slow": slow, "_WIDTHS": FEWBIT_WIDTHS, "_grad_enabled": _grad_enabled})

    return make


def _bits_mode(act: str):
    """The 1-bit memory mode of ``act``: ``name(input, <arguments>, inplace=False)``."""
    def slow(name, x, *parameters):
        *values, inplace = parameters
        return _bits(name, act, x, inplace, tuple(values))

    return _memory_mode(act, slow)


def _fewbit_mode(act: str):
    """The few-bit memory mode of ``act``: ``name(input, <arguments>, bits=4)``."""
    def slow(name, x, *parameters):
        *values, bits = parameters
        return _fewbit(name, act, x, bits, tuple(values))

    return _memory_mode(act, slow)


@_bits_mode("relu")
def relu_bits(input: Tensor, inplace: bool = False) -> Tensor:
    """``relu`` saving a 1-bit mask for backward (exact gradient); see :mod:`torchinit.fused.bits`."""


@_bits_mode("relu6")
def relu6_bits(input: Tensor, inplace: bool = False) -> Tensor:
    """``relu6`` saving a 1-bit mask for backward (exact gradient)."""


@_bits_mode("leaky_relu")
def leaky_relu_bits(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """``leaky_relu`` saving a 1-bit mask for backward (exact gradient, any slope)."""


@_bits_mode("hardtanh")
def hardtanh_bits(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    """``hardtanh`` saving a 1-bit mask for backward (exact gradient)."""


def _prelu_bits(name: str, x: Tensor, weight: Tensor) -> Tensor:
    """``prelu_bits`` where its hot path does not serve: a gradient to record, or an input torch's prelu
    does not take."""
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"torchinit.{name}: argument 'weight' must be a torch.Tensor, got {type(weight).__name__}")
    if not isinstance(x, Tensor) or not (_grad_enabled() and x.requires_grad) or weight.requires_grad:
        return call_uncached("prelu", x, False, (weight,))  # nothing to save, or x needed: the default path
    check_input(name, x)
    channels = x.shape[1] if x.dim() >= 2 else 1
    if weight.dim() > 1 or weight.numel() not in (1, channels):
        raise ValueError(f"torchinit.{name}: argument 'weight' must be 1-D with 1 or {channels} (dim 1) "
                         f"elements, got shape {tuple(weight.shape)}")
    return _bits(name, "prelu", x, False, (weight,))


@_memory_mode("prelu", _prelu_bits)
def prelu_bits(input: Tensor, weight: Tensor) -> Tensor:
    """``prelu`` saving a 1-bit sign mask for backward when ``weight`` is frozen (exact gradient).

    The weight's own gradient is a sum of ``x * grad`` over the negative inputs: it needs ``x``, so
    with a trainable weight this falls back to the default path (which keeps ``x``) and saves nothing.
    """


def _fewbit(name: str, act: str, x: Tensor, bits: int, values: tuple = ()) -> Tensor:
    """Activation ``act`` of the table with arguments ``values``, saving a ``bits``-bit derivative code."""
    ACTIVATIONS[act].check(values, name)
    check_input(name, x)
    if bits not in FEWBIT_WIDTHS:
        raise ValueError(f"torchinit.{name}: argument 'bits' must be 1, 2 or 4, got {bits!r}")
    if not _needs_grad(x):
        return call(act, x, False, values)
    if sharding.is_dtensor(x):  # the codes are packed per tensor: each rank's shard (element-wise, no communication)
        return sharding.on_local_shards(lambda t: _fewbit(name, act, t, bits, values), x)
    activation = ACTIVATIONS[act]
    formula = activation.resolve(**activation.arguments(values)).formula.name
    bounds, levels = fewbit_tables(formula, bits, x.device)  # on the device, cached: no copy per call
    y, _codes = FewBitFunction.apply(x, bounds, levels, formula, bits, 0.0, 0.0, 0.0, backend.route(name, x))
    return y


@_fewbit_mode("gelu")
def gelu_fewbit(input: Tensor, approximate: str = "none", bits: int = 4) -> Tensor:
    """``gelu`` with an approximate ``bits``-bit backward (Novikov et al. 2023): see :mod:`torchinit.fused`."""


@_fewbit_mode("silu")
def silu_fewbit(input: Tensor, bits: int = 4) -> Tensor:
    """``silu`` with an approximate ``bits``-bit backward (Novikov et al. 2023)."""


@_fewbit_mode("mish")
def mish_fewbit(input: Tensor, bits: int = 4) -> Tensor:
    """``mish`` with an approximate ``bits``-bit backward (Novikov et al. 2023)."""
