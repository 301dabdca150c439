"""torch.library operators and autograd for every formula of the activation table.

For each :class:`~torchinit.activations.Formula` ``f`` three operators are registered:

* ``torchinit::<f>(Tensor x, Tensor? w0, Tensor? w1, float p0, float p1, float p2) -> Tensor``
* ``torchinit::<f>_(Tensor(a!) x, ...) -> ()`` (in place)
* ``torchinit::<f>_backward(Tensor grad, Tensor saved, Tensor? w0, Tensor? w1, float p0, float p1, float p2) -> Tensor``

plus ``torchinit::glu`` / ``glu_backward``, and for the learnable formulas (PReLU, Swish, StarReLU)
``torchinit::<f>_backward_params(...) -> (Tensor grad_x, Tensor grad_w0, Tensor grad_w1)``: the input
and parameter gradients from one kernel pass, the per-channel (or whole-tensor) parameter sums reduced
inside the kernel (``kernels/channel_reduce.py``); a missing weight gets an empty placeholder.
Every operator has one implementation for all devices
(CompositeExplicitAutograd) that runs the Triton kernel where one can run (CUDA; CPU under Triton's
interpreter with the "triton" backend) and the formula's torch form otherwise; a fake (meta)
implementation with exactly the real strides; a vmap rule; a DTensor sharding rule where
``torch.distributed`` is available; and, on the forward operators, an autograd formula
(``register_autograd``) so that the bare operators in an exported program stay differentiable.

The functional API does not differentiate through ``register_autograd``: it wraps the operators in
:class:`ActivationFunction`, a new-style ``torch.autograd.Function`` with ``setup_context`` and a
generated vmap rule, which also works under ``torch.func.grad``/``vmap`` (``register_autograd``
does not, up to at least torch 2.14). Double backward is not supported.
"""

from __future__ import annotations

import functools

import torch

from . import backend, sharding
from .activations import ACTIVATIONS, FORMULAS, Formula, Resolved, cacheable, channel_view

_LIB = torch.library.Library("torchinit", "DEF")  # noqa: TOR901 - the project's own namespace
_ARGS = "Tensor? w0, Tensor? w1, float p0, float p1, float p2"
_FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_FLOATING_SET = frozenset(_FLOATING)
_is_compiling = torch.compiler.is_compiling
_Tensor = torch.Tensor
_route = backend.route  # the one backend decision of a call


# ---------------------------------------------------------------------------------------------
# layout helpers (shared with the kernels; importing them does not import triton)
# ---------------------------------------------------------------------------------------------


def _is_dense(t: torch.Tensor) -> bool:
    if t.is_contiguous():
        return True
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda p: p[1]):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


def _dense(t: torch.Tensor) -> torch.Tensor:
    return t if _is_dense(t) else torch.empty_like(t).copy_(t)


POISON_OUTPUTS = False  # tests set this: kernel outputs start as NaN, so an unwritten element shows


def empty_like(t: torch.Tensor, shape: list[int] | None = None) -> torch.Tensor:
    """Allocate a kernel's output like ``t`` (with another ``shape`` if given); NaN-filled when poisoning."""
    out = torch.empty_like(t) if shape is None else t.new_empty(shape)
    return out.fill_(float("nan")) if POISON_OUTPUTS else out


def _same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    return all(sa == sb for n, sa, sb in zip(a.shape, a.stride(), b.stride()) if n > 1)


def _layout_like(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``t`` laid out exactly like ``ref`` (copied only when a stride that matters differs)."""
    return t if _same_layout(t, ref) else torch.empty_like(ref).copy_(t)


def _params(w0, w1, p0, p1, p2):
    return (p0 if w0 is None else w0, p1 if w1 is None else w1, p2)


def _channel_dim(x: torch.Tensor) -> int:
    return 1 if x.dim() >= 2 else 0


@functools.lru_cache(maxsize=None)
def _kernel_pair(formula: Formula):
    from torchinit.kernels import math as kmath

    return getattr(kmath, formula.kernel_name + "_fwd"), getattr(kmath, formula.kernel_name + "_bwd")


# ---------------------------------------------------------------------------------------------
# operator implementations
# ---------------------------------------------------------------------------------------------


def _forward_into(formula: Formula, x: torch.Tensor, out: torch.Tensor, w0, w1, p0, p1, p2) -> torch.Tensor:
    from torchinit.kernels.elementwise import launch_unary_forward

    fwd, _ = _kernel_pair(formula)
    return launch_unary_forward(fwd, x, out, (p0, p1, p2), (w0, w1), _channel_dim(x))


def _make_forward(formula: Formula):
    def forward(x, w0, w1, p0, p1, p2):
        if backend.kernel_runs_on(x.device):
            xd = _dense(x)
            return _forward_into(formula, xd, empty_like(xd), w0, w1, p0, p1, p2)
        y = formula.forward(x, *_params(w0, w1, p0, p1, p2), False)
        return _layout_like(y, x if _is_dense(x) else torch.empty_like(x))

    return forward


def _make_forward_inplace(formula: Formula):
    def forward_(x, w0, w1, p0, p1, p2):
        if backend.kernel_runs_on(x.device):
            if _is_dense(x):
                _forward_into(formula, x, x, w0, w1, p0, p1, p2)
            else:
                xd = _dense(x)
                x.copy_(_forward_into(formula, xd, xd, w0, w1, p0, p1, p2))
            return
        formula.forward(x, *_params(w0, w1, p0, p1, p2), True)

    return forward_


def _make_backward(formula: Formula):
    def backward(grad, saved, w0, w1, p0, p1, p2):
        if backend.kernel_runs_on(saved.device):
            from torchinit.kernels.elementwise import launch_unary_backward

            sd = _dense(saved)
            g = _layout_like(grad, sd)
            _, bwd = _kernel_pair(formula)
            out = empty_like(sd)
            return launch_unary_backward(bwd, g, sd, out, (p0, p1, p2), (w0, w1), _channel_dim(sd))
        dx = formula.backward(grad, saved, *_params(w0, w1, p0, p1, p2))
        return _layout_like(dx, saved if _is_dense(saved) else torch.empty_like(saved))

    return backward


def _fake_like_first(x, *args):
    return torch.empty_like(x)


def _fake_backward(grad, saved, *args):
    return torch.empty_like(saved)


# ---------------------------------------------------------------------------------------------
# vmap rules: element-wise ops ignore the batch dimension, except for per-channel weights
# ---------------------------------------------------------------------------------------------


def _to_front(t, bdim, batch):
    if t is None:
        return None
    if bdim is None:
        return t.unsqueeze(0).expand((batch,) + tuple(t.shape))
    return t.movedim(bdim, 0)


def _per_channel(w0, w1) -> bool:
    return any(w is not None and w.numel() > 1 for w in (w0, w1))


def _vmap_forward(op_name):
    def rule(info, in_dims, x, w0, w1, p0, p1, p2):
        if in_dims[1] is not None or in_dims[2] is not None:
            raise NotImplementedError(f"torchinit.{op_name}: vmap over the parameter tensors is not supported")
        op = getattr(torch.ops.torchinit, op_name)
        xb = _to_front(x, in_dims[0], info.batch_size)
        if _per_channel(w0, w1) and xb.dim() >= 3:
            # the channel dim of the logical tensor is 1: fold the batch into dim 0 to keep it there
            y = op(xb.reshape((-1,) + tuple(xb.shape[2:])), w0, w1, p0, p1, p2)
            return y.reshape(xb.shape), 0
        return op(xb, w0, w1, p0, p1, p2), 0

    return rule


def _vmap_backward(op_name):
    def rule(info, in_dims, grad, saved, w0, w1, p0, p1, p2):
        if in_dims[2] is not None or in_dims[3] is not None:
            raise NotImplementedError(f"torchinit.{op_name}: vmap over the parameter tensors is not supported")
        op = getattr(torch.ops.torchinit, op_name)
        g = _to_front(grad, in_dims[0], info.batch_size)
        s = _to_front(saved, in_dims[1], info.batch_size)
        if _per_channel(w0, w1) and s.dim() >= 3:
            flat = (-1,) + tuple(s.shape[2:])
            return op(g.reshape(flat), s.reshape(flat), w0, w1, p0, p1, p2).reshape(s.shape), 0
        return op(g, s, w0, w1, p0, p1, p2), 0

    return rule


# ---------------------------------------------------------------------------------------------
# autograd of the bare operators (exported programs); the functional API uses ActivationFunction
# ---------------------------------------------------------------------------------------------


def _reduce_param_grad(pg: torch.Tensor, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sum a per-element parameter gradient down to the parameter's shape (per channel or scalar)."""
    acc = torch.float64 if pg.dtype == torch.float64 else torch.float32
    if w.numel() == 1:
        return pg.sum(dtype=acc).to(w.dtype).reshape(w.shape)
    dim = _channel_dim(x)
    others = [d for d in range(pg.dim()) if d != dim]
    return pg.sum(dim=others, dtype=acc).to(w.dtype).reshape(w.shape)


def _param_grads(formula: Formula, grad, x, w0, w1, p0, p1, p2, needs: tuple[bool, bool]):
    if formula.param_grads is None or not any(needs):
        return None, None
    per_element = formula.param_grads(grad, x, *_params(w0, w1, p0, p1, p2))
    out = []
    for pg, w, need in zip(per_element, (w0, w1), needs):
        out.append(_reduce_param_grad(pg, w, x) if (need and w is not None and pg is not None) else None)
    return tuple(out)


def _register_operator_autograd(formula: Formula):
    name = formula.name

    def setup_context(ctx, inputs, output):
        x, w0, w1, p0, p1, p2 = inputs
        ctx.scalars = (p0, p1, p2)
        ctx.save_for_backward(output if formula.saves == "output" else x, w0, w1)

    def backward(ctx, grad):
        saved, w0, w1 = ctx.saved_tensors
        dx, gw0, gw1 = activation_backward(formula, grad, saved, w0, w1, ctx.scalars,
                                           (True,) + tuple(ctx.needs_input_grad[1:3]))
        return dx, gw0, gw1, None, None, None

    torch.library.register_autograd(f"torchinit::{name}", backward, setup_context=setup_context)


# ---------------------------------------------------------------------------------------------
# DTensor: element-wise ops keep any sharding that does not split a per-channel weight's channels
# (the rules and when they are registered: torchinit/sharding.py)
# ---------------------------------------------------------------------------------------------


def _register_sharding(op, elementwise: int, outputs: tuple[str, ...] = ("elementwise",)) -> None:
    """The DTensor rule of an element-wise operator with the optional (w0, w1) parameters."""
    sharding.pointwise(op, elementwise, ("auto", "auto"), outputs)


# ---------------------------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------------------------


def _register(formula: Formula) -> None:
    name = formula.name
    _LIB.define(f"{name}(Tensor x, {_ARGS}) -> Tensor")
    _LIB.define(f"{name}_(Tensor(a!) x, {_ARGS}) -> ()")
    _LIB.define(f"{name}_backward(Tensor grad, Tensor saved, {_ARGS}) -> Tensor")
    _LIB.impl(name, _make_forward(formula), "CompositeExplicitAutograd")
    _LIB.impl(name + "_", _make_forward_inplace(formula), "CompositeExplicitAutograd")
    _LIB.impl(name + "_backward", _make_backward(formula), "CompositeExplicitAutograd")
    torch.library.register_fake(f"torchinit::{name}", _fake_like_first, lib=_LIB)
    torch.library.register_fake(f"torchinit::{name}_", lambda *a: None, lib=_LIB)
    torch.library.register_fake(f"torchinit::{name}_backward", _fake_backward, lib=_LIB)
    torch.library.register_vmap(f"torchinit::{name}", _vmap_forward(name), lib=_LIB)
    torch.library.register_vmap(f"torchinit::{name}_backward", _vmap_backward(name + "_backward"), lib=_LIB)
    _register_operator_autograd(formula)
    _register_sharding(getattr(torch.ops.torchinit, name).default, elementwise=1)  # (x, w0, w1, ...)
    _register_sharding(getattr(torch.ops.torchinit, name + "_backward").default, elementwise=2)  # (grad, saved, ...)


for _formula in FORMULAS.values():
    _register(_formula)


# ---------------------------------------------------------------------------------------------
# learnable formulas: input and parameter gradients in one pass (the sums reduced in the kernel)
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _pgrad(formula: Formula):
    from torchinit.kernels import math as kmath

    return getattr(kmath, formula.kernel_name + "_pgrad")


def _no_grad_placeholder(t: torch.Tensor) -> torch.Tensor:
    return t.new_empty((0,))


def _sum_to_weight(sums: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if w.numel() == 1:
        return sums.sum().to(w.dtype).reshape(w.shape)
    return sums.to(w.dtype).reshape(w.shape).clone()  # its own storage: outputs must not alias


def _make_backward_params(formula: Formula):
    def backward_params(grad, saved, w0, w1, p0, p1, p2):
        if backend.kernel_runs_on(saved.device):
            from torchinit.kernels.channel_reduce import geometry, launch_channel_backward

            sd = _dense(saved)
            g = _layout_like(grad, sd)
            wide = next((w for w in (w0, w1) if w is not None and w.numel() > 1), None)
            C, inner = geometry(sd, _channel_dim(sd) if wide is not None else None,
                                wide.numel() if wide is not None else 1)
            _, bwd = _kernel_pair(formula)
            dx = empty_like(sd)
            sums = launch_channel_backward(bwd, g, sd, dx, C, inner, (p0, p1, p2), pgrad=_pgrad(formula),
                                           weights=(w0, w1), n_part=2 if w1 is not None else 1)
            grads = [_sum_to_weight(sums[k], w) if w is not None else _no_grad_placeholder(sd)
                     for k, w in enumerate((w0, w1))]
            return dx, grads[0], grads[1]
        dx = formula.backward(grad, saved, *_params(w0, w1, p0, p1, p2))
        dx = _layout_like(dx, saved if _is_dense(saved) else torch.empty_like(saved))
        gw0, gw1 = _param_grads(formula, grad, saved, w0, w1, p0, p1, p2, needs=(w0 is not None, w1 is not None))
        return (dx, gw0 if gw0 is not None else _no_grad_placeholder(saved),
                gw1 if gw1 is not None else _no_grad_placeholder(saved))

    return backward_params


def _fake_backward_params(grad, saved, w0, w1, *args):
    return (torch.empty_like(saved), *(torch.empty_like(w) if w is not None else saved.new_empty((0,))
                                       for w in (w0, w1)))


def _vmap_backward_params(op_name):
    def rule(info, in_dims, grad, saved, w0, w1, p0, p1, p2):
        # per-sample parameter gradients: one call per sample (each reduces over its own sample only)
        if in_dims[2] is not None or in_dims[3] is not None:
            raise NotImplementedError(f"torchinit.{op_name}: vmap over the parameter tensors is not supported")
        op = getattr(torch.ops.torchinit, op_name)
        g = _to_front(grad, in_dims[0], info.batch_size)
        s = _to_front(saved, in_dims[1], info.batch_size)
        outs = [op(g[b], s[b], w0, w1, p0, p1, p2) for b in range(info.batch_size)]
        return tuple(torch.stack(parts) for parts in zip(*outs)), (0, 0, 0)

    return rule


PARAM_FORMULAS = tuple(f.name for f in FORMULAS.values() if f.param_grads is not None)

for _name in PARAM_FORMULAS:
    _LIB.define(f"{_name}_backward_params(Tensor grad, Tensor saved, {_ARGS}) -> (Tensor, Tensor, Tensor)")
    _LIB.impl(_name + "_backward_params", _make_backward_params(FORMULAS[_name]), "CompositeExplicitAutograd")
    torch.library.register_fake(f"torchinit::{_name}_backward_params", _fake_backward_params, lib=_LIB)
    torch.library.register_vmap(f"torchinit::{_name}_backward_params",
                                _vmap_backward_params(_name + "_backward_params"), lib=_LIB)
    _register_sharding(getattr(torch.ops.torchinit, _name + "_backward_params").default, elementwise=2,
                       outputs=("elementwise", "param_grad", "param_grad"))


def activation_backward(formula: Formula, grad, saved, w0, w1, scalars, needs: tuple[bool, bool, bool]):
    """``(grad_x, grad_w0, grad_w1)`` of one activation call; ``needs`` says which are wanted (else None).

    Learnable formulas get all three from one ``<formula>_backward_params`` call (one pass, the
    parameter sums reduced inside the kernel); the others from ``<formula>_backward``.
    """
    if formula.name in PARAM_FORMULAS and ((needs[1] and w0 is not None) or (needs[2] and w1 is not None)):
        dx, gw0, gw1 = getattr(torch.ops.torchinit, formula.name + "_backward_params")(grad, saved, w0, w1, *scalars)
        return (dx if needs[0] else None, gw0 if needs[1] and w0 is not None else None,
                gw1 if needs[2] and w1 is not None else None)
    dx = getattr(torch.ops.torchinit, formula.name + "_backward")(grad, saved, w0, w1, *scalars) if needs[0] else None
    return dx, None, None


# ---------------------------------------------------------------------------------------------
# glu: torch's gated linear unit (first half * sigmoid(second half)) on the generic gated kernels
# ---------------------------------------------------------------------------------------------

_LIB.define("glu(Tensor x, int dim) -> Tensor")
_LIB.define("glu_backward(Tensor grad, Tensor x, int dim) -> Tensor")


def _glu_geometry(x: torch.Tensor, dim: int) -> tuple[int, int]:
    half = x.shape[dim] // 2
    after = 1
    for s in x.shape[dim + 1:]:
        after *= s
    inner = half * after
    return inner, 2 * inner


def _glu_out_shape(x: torch.Tensor, dim: int) -> list[int]:
    shape = list(x.shape)
    shape[dim] //= 2
    return shape


@torch.library.impl(_LIB, "glu", "CompositeExplicitAutograd")
def _glu(x, dim):
    if backend.kernel_runs_on(x.device) and x.numel() > 0:
        from torchinit.kernels.gated import launch_gated_forward

        xc = x.contiguous()
        inner, row_stride = _glu_geometry(xc, dim)
        flat = xc.view(-1)
        out = empty_like(xc, _glu_out_shape(xc, dim))
        fwd, _ = _kernel_pair(FORMULAS["sigmoid"])
        return launch_gated_forward(fwd, flat[inner:], flat, out, inner, row_stride, (0.0, 0.0, 0.0))
    return torch.nn.functional.glu(x, dim).contiguous()


@torch.library.impl(_LIB, "glu_backward", "CompositeExplicitAutograd")
def _glu_backward(grad, x, dim):
    if backend.kernel_runs_on(x.device) and x.numel() > 0:
        from torchinit.kernels.gated import launch_gated_backward

        xc = x.contiguous()
        g = grad.contiguous()
        inner, row_stride = _glu_geometry(xc, dim)
        flat = xc.view(-1)
        dx = empty_like(xc)
        dflat = dx.view(-1)
        fwd, bwd = _kernel_pair(FORMULAS["sigmoid"])
        launch_gated_backward(fwd, bwd, True, g, flat[inner:], flat, dflat[inner:], dflat, inner, row_stride,
                              (0.0, 0.0, 0.0))
        return dx
    return torch.ops.aten.glu_backward(grad, x, dim).contiguous()


@torch.library.register_fake("torchinit::glu", lib=_LIB)
def _glu_fake(x, dim):
    return x.new_empty(_glu_out_shape(x, dim))


@torch.library.register_fake("torchinit::glu_backward", lib=_LIB)
def _glu_backward_fake(grad, x, dim):
    return x.new_empty(x.shape)


def _glu_vmap(info, in_dims, x, dim):
    xb = x.movedim(in_dims[0], 0)
    return torch.ops.torchinit.glu(xb, dim + 1 if dim >= 0 else dim), 0


def _glu_backward_vmap(info, in_dims, grad, x, dim):
    g = _to_front(grad, in_dims[0], info.batch_size)
    xb = _to_front(x, in_dims[1], info.batch_size)
    return torch.ops.torchinit.glu_backward(g, xb, dim + 1 if dim >= 0 else dim), 0


torch.library.register_vmap("torchinit::glu", _glu_vmap, lib=_LIB)
torch.library.register_vmap("torchinit::glu_backward", _glu_backward_vmap, lib=_LIB)


sharding.off_dim(torch.ops.torchinit.glu.default, tensors=1)  # (x, dim): halves along dim
sharding.off_dim(torch.ops.torchinit.glu_backward.default, tensors=2)  # (grad, x, dim)


def _glu_setup(ctx, inputs, output):
    ctx.dim = inputs[1]
    ctx.save_for_backward(inputs[0])


def _glu_grad(ctx, grad):
    (x,) = ctx.saved_tensors
    return torch.ops.torchinit.glu_backward(grad, x, ctx.dim), None


torch.library.register_autograd("torchinit::glu", _glu_grad, setup_context=_glu_setup)


# ---------------------------------------------------------------------------------------------
# autograd for the functional API
# ---------------------------------------------------------------------------------------------


class ActivationFunction(torch.autograd.Function):
    """Differentiates one activation call through the ``torchinit::<formula>`` operators."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, w0, w1, name, p0, p1, p2, inplace):
        if inplace:
            getattr(torch.ops.torchinit, name + "_")(x, w0, w1, p0, p1, p2)
            return x
        return getattr(torch.ops.torchinit, name)(x, w0, w1, p0, p1, p2)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w0, w1, name, p0, p1, p2, inplace = inputs
        formula = FORMULAS[name]
        if inplace:
            ctx.mark_dirty(x)
        ctx.formula = formula
        ctx.scalars = (p0, p1, p2)
        ctx.save_for_backward(output if formula.saves == "output" else x, w0, w1)

    @staticmethod
    def backward(ctx, grad):
        saved, w0, w1 = ctx.saved_tensors
        dx, gw0, gw1 = activation_backward(ctx.formula, grad, saved, w0, w1, ctx.scalars,
                                           tuple(ctx.needs_input_grad[:3]))
        return dx, gw0, gw1, None, None, None, None, None


class GluFunction(torch.autograd.Function):
    """Differentiates ``glu`` through ``torchinit::glu`` / ``glu_backward``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, dim):
        return torch.ops.torchinit.glu(x, dim)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _glu_setup(ctx, inputs, output)

    @staticmethod
    def backward(ctx, grad):
        return _glu_grad(ctx, grad)


# ---------------------------------------------------------------------------------------------
# the entry point of torchinit.functional
# ---------------------------------------------------------------------------------------------


def check_tensor(op: str, x, arg: str = "input") -> None:
    """Raise a clear error unless ``x`` is a tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"torchinit.{op}: argument '{arg}' must be a torch.Tensor, got {type(x).__name__}")


def check_input(op: str, x, arg: str = "input") -> None:
    """Raise a clear error unless ``x`` is a floating-point tensor torchinit supports."""
    check_tensor(op, x, arg)
    if x.dtype not in _FLOATING:
        raise TypeError(
            f"torchinit.{op}: argument '{arg}' must be a floating-point tensor "
            f"(float16, bfloat16, float32 or float64), got dtype {x.dtype}"
        )


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


_RESOLVED: dict[tuple, Resolved] = {}  # calls without tensor arguments resolve to the same formula every time


def _resolve(name: str, arguments: dict) -> Resolved:
    """The table's resolution of activation ``name`` with keyword ``arguments`` (cached without tensors)."""
    return _resolve_values(ACTIVATIONS[name], tuple(arguments.get(k, d) for k, d in ACTIVATIONS[name].defaults.items()))


def _resolve_values(activation, values: tuple) -> Resolved:
    if not cacheable(values) or _is_compiling():  # no side effects on a global while Dynamo traces
        return activation.resolve(**activation.arguments(values))
    key = (activation.name, values)
    resolved = _RESOLVED.get(key)
    if resolved is None:
        resolved = activation.resolve(**activation.arguments(values))
        if len(_RESOLVED) < 4096:
            _RESOLVED[key] = resolved
    return resolved


def _torch_errors_named(op: str, call, *args, **kwargs):
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
        return _torch_errors_named(name, resolved.formula.forward, x, *resolved.params(), inplace)
    kwargs = dict(arguments, inplace=inplace) if activation.inplace else arguments
    return _torch_errors_named(name, getattr(torch.nn.functional, activation.torch_name), x, **kwargs)


def run_activation(name: str, x: torch.Tensor, inplace: bool = False, **arguments) -> torch.Tensor:
    """Compute activation ``name`` of ``x`` on the path the backend chooses (see :mod:`torchinit.backend`).

    ``arguments`` are the activation's keyword arguments (as its ``torchinit.functional`` function
    takes them); :func:`call` is the same with the arguments in the table's order.
    """
    activation = ACTIVATIONS[name]
    return call(name, x, inplace, tuple(arguments.get(k, d) for k, d in activation.defaults.items()))


def _learnable_args(values: tuple) -> tuple:
    args = tuple(v if isinstance(v, torch.Tensor) else float(v) for v in values)
    return args + (0.0,) * (3 - len(args))


def call(name: str, x: torch.Tensor, inplace: bool = False, values: tuple = ()) -> torch.Tensor:
    """Activation ``name`` of ``x`` with its arguments ``values`` (in the order of the table's defaults).

    Floating-point inputs (fp16, bf16, fp32, fp64) take torchinit's path; any other dtype takes
    torch's (:func:`torch_twin`), so torchinit accepts exactly the dtypes torch accepts. One backend
    decision (:func:`torchinit.backend.route`): where it picks the torch form (CPU under "auto"),
    the call goes straight to the table's torch form -- torch's own ops, differentiated by torch's
    autograd; else through torchinit's operators (:func:`run_operator`).
    """
    if not isinstance(x, _Tensor):
        ACTIVATIONS[name].check(values, x=x)
        check_tensor(name, x)
    # the common case first: a floating input and arguments seen before (numbers only) are one look-up
    resolved = _RESOLVED.get((name, values)) if x.dtype in _FLOATING_SET else None
    if resolved is None:
        return _call_uncached(name, x, inplace, values)
    if not _route(name, x):
        direct = resolved.direct
        return direct(x) if direct is not None and not inplace else resolved.torch_form(x, inplace)
    return run_operator(resolved, x, inplace)


def _call_uncached(name: str, x: torch.Tensor, inplace: bool, values: tuple) -> torch.Tensor:
    """:func:`call` for other dtypes, tensor (learnable) arguments and arguments not seen before."""
    activation = ACTIVATIONS[name]
    activation.check(values, x=x)
    if x.dtype not in _FLOATING_SET:
        return torch_twin(name, x, inplace, activation.arguments(values))
    if activation.learnable is not None and not backend.route(name, x):
        # p0, p1 are the arguments themselves (numbers or tensors): no resolution needed
        return FORMULAS[activation.learnable].forward(x, *_learnable_args(values), inplace)
    resolved = _resolve_values(activation, values)
    if not backend.route(name, x):
        return resolved.torch_form(x, inplace)
    return run_operator(resolved, x, inplace)


def run_operator(resolved: Resolved, x: torch.Tensor, inplace: bool) -> torch.Tensor:
    """One activation call through torchinit's operators."""
    formula = resolved.inplace_formula if inplace and resolved.inplace_formula is not None else resolved.formula
    w0, w1 = resolved.weights
    p0, p1, p2 = resolved.scalars
    if not _needs_grad(x, w0, w1):
        if inplace:
            getattr(torch.ops.torchinit, formula.name + "_")(x, w0, w1, p0, p1, p2)
            return x
        return getattr(torch.ops.torchinit, formula.name)(x, w0, w1, p0, p1, p2)
    if inplace and formula.saves == "input":
        # like torch's in-place ops whose derivative needs the input: keep a copy of the original
        y = ActivationFunction.apply(x.clone(), w0, w1, formula.name, p0, p1, p2, False)
        return x.copy_(y)
    return ActivationFunction.apply(x, w0, w1, formula.name, p0, p1, p2, inplace)


def run_glu(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``glu`` on the path the backend chooses: first half times sigmoid of the second half along ``dim``.

    Non-floating inputs take torch's own ``glu`` (its result or its error), as in :func:`run_activation`.
    """
    check_tensor("glu", x)
    if x.dtype not in _FLOATING:
        return _torch_errors_named("glu", torch.nn.functional.glu, x, dim)
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
    if not _needs_grad(x):
        return torch.ops.torchinit.glu(x, dim)
    return GluFunction.apply(x, dim)


__all__ = ["ActivationFunction", "GluFunction", "check_input", "check_tensor", "run_activation", "torch_twin",
           "run_glu", "channel_view"]
