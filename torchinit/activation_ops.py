"""The operators of every activation formula: forward, in place and backward, one kernel pass each.

For each :class:`~torchinit.activations.Formula` ``f`` (made with :func:`torchinit.opdef.operator`):

* ``torchinit::<f>(Tensor x, Tensor? w0, Tensor? w1, float p0, float p1, float p2) -> Tensor``
* ``torchinit::<f>_(Tensor(a!) x, ...) -> ()`` (in place; no autograd, as torch refuses it on mutating ops)
* ``torchinit::<f>_backward(Tensor grad, Tensor saved, Tensor? w0, Tensor? w1, float p0, float p1, float p2) -> Tensor``

``w0``/``w1`` are learnable tensors standing for ``p0``/``p1`` (one value, or one per channel: dim 1).
Each runs the Triton pair ``kernels/math.py:<kernel>_fwd/_bwd`` where a kernel runs and the formula's
torch form elsewhere, with outputs laid out as their fake implementations say. The forward's autograd
(exported programs) is in :mod:`torchinit.activation_autograd`.
"""

from __future__ import annotations

import functools

import torch

from . import kernels, sharding
from .activations import FORMULAS, Formula
from .layout import channel_dim, dense, empty_like, is_dense, layout_like, layout_ref, to_front
from .opdef import kernel_or_torch, kernel_pair, operator, refuse_batched

ARGS = "Tensor? w0, Tensor? w1, float p0, float p1, float p2"


def params(w0, w1, p0, p1, p2) -> tuple:
    """The torch forms' ``(p0, p1, p2)``: a weight where one is given, else the number."""
    return (p0 if w0 is None else w0, p1 if w1 is None else w1, p2)


def _forward_into(formula: Formula, x: torch.Tensor, out: torch.Tensor, w0, w1, p0, p1, p2) -> torch.Tensor:
    fwd, _ = kernel_pair(formula.kernel_name, out.dtype)
    return kernels.elementwise.launch_unary_forward(fwd, x, out, (p0, p1, p2), (w0, w1), channel_dim(x))


def _forward(formula: Formula):
    def kernel(x, w0, w1, p0, p1, p2):
        xd = dense(x)
        return _forward_into(formula, xd, empty_like(xd), w0, w1, p0, p1, p2)

    def torch_form(x, w0, w1, p0, p1, p2):
        return layout_like(formula.forward(x, *params(w0, w1, p0, p1, p2), False), layout_ref(x))

    return kernel_or_torch(kernel, torch_form)


def _forward_inplace(formula: Formula):
    def kernel(x, w0, w1, p0, p1, p2):
        if is_dense(x):
            _forward_into(formula, x, x, w0, w1, p0, p1, p2)
        else:
            xd = dense(x)
            x.copy_(_forward_into(formula, xd, xd, w0, w1, p0, p1, p2))

    def torch_form(x, w0, w1, p0, p1, p2):
        formula.forward(x, *params(w0, w1, p0, p1, p2), True)

    return kernel_or_torch(kernel, torch_form)


def _backward(formula: Formula):
    def kernel(grad, saved, w0, w1, p0, p1, p2):
        sd = dense(saved)
        _, bwd = kernel_pair(formula.kernel_name, sd.dtype if grad.dtype == sd.dtype else None)
        return kernels.elementwise.launch_unary_backward(bwd, layout_like(grad, sd), sd, empty_like(sd), (p0, p1, p2),
                                                         (w0, w1), channel_dim(sd))

    def torch_form(grad, saved, w0, w1, p0, p1, p2):
        return layout_like(formula.backward(grad, saved, *params(w0, w1, p0, p1, p2)), layout_ref(saved))

    return kernel_or_torch(kernel, torch_form, device_of=1)


def per_channel(w0, w1) -> bool:
    """Whether a weight has more than one element (one per channel)."""
    return any(w is not None and w.numel() > 1 for w in (w0, w1))


def _elementwise_vmap(op_name: str, tensors: int):
    """The vmap rule of an element-wise operator over ``tensors`` same-shaped tensors followed by (w0, w1, p0,
    p1, p2): the batch dim goes in front; with per-channel weights it is folded into dim 0, so that the
    logical tensor's channel dim stays dim 1."""

    def rule(info, in_dims, *args):
        refuse_batched(op_name, in_dims, (tensors, tensors + 1), "the parameter tensors")
        op = getattr(torch.ops.torchinit, op_name)
        front = [to_front(t, d, info.batch_size) for t, d in zip(args[:tensors], in_dims[:tensors])]
        rest = args[tensors:]
        last = front[-1]
        if per_channel(rest[0], rest[1]) and last.dim() >= 3:
            flat = (-1,) + tuple(last.shape[2:])
            return op(*(t.reshape(flat) for t in front), *rest).reshape(last.shape), 0
        return op(*front, *rest), 0

    return rule


def _pointwise(elementwise: int, outputs: tuple[str, ...] = ("elementwise",)):
    """The DTensor rule of an element-wise operator with the optional (w0, w1) parameters."""
    return functools.partial(sharding.pointwise, elementwise=elementwise, params=("auto", "auto"), outputs=outputs)


def _register(formula: Formula) -> None:
    name = formula.name
    operator(name, f"(Tensor x, {ARGS}) -> Tensor", _forward(formula), lambda x, *a: torch.empty_like(x),
             vmap=_elementwise_vmap(name, 1), sharding=_pointwise(1))
    operator(name + "_", f"(Tensor(a!) x, {ARGS}) -> ()", _forward_inplace(formula), lambda *a: None)
    operator(name + "_backward", f"(Tensor grad, Tensor saved, {ARGS}) -> Tensor", _backward(formula),
             lambda grad, saved, *a: torch.empty_like(saved), vmap=_elementwise_vmap(name + "_backward", 2),
             sharding=_pointwise(2))


for _formula in FORMULAS.values():
    _register(_formula)
del _formula

__all__ = ["ARGS", "params", "per_channel"]
