"""Parameter-gradient operators of the learnable formulas (PReLU, Swish, StarReLU), and one call's backward.

``torchinit::<f>_backward_params(Tensor grad, Tensor saved, Tensor? w0, Tensor? w1, float p0, float p1,
float p2) -> (Tensor grad_x, Tensor grad_w0, Tensor grad_w1)``: the input and parameter gradients from
one kernel pass, the per-channel (or whole-tensor) parameter sums reduced inside the kernel
(``kernels/channel_reduce.py``); a missing weight gets an empty placeholder. :func:`activation_backward`
picks it or ``<f>_backward`` for one call.
"""

from __future__ import annotations

import functools

import torch

from . import kernels, sharding
from .activation_ops import ARGS, params
from .activations import FORMULAS, Formula
from .layout import channel_dim, dense, empty_like, layout_like, layout_ref
from .opdef import kernel_or_torch, kernel_pair, operator, param_grad_kernel, per_sample


def _reduce_param_grad(pg: torch.Tensor, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sum a per-element parameter gradient down to the parameter's shape (per channel or scalar)."""
    acc = torch.float64 if pg.dtype == torch.float64 else torch.float32
    if w.numel() == 1:
        return pg.sum(dtype=acc).to(w.dtype).reshape(w.shape)
    dim = channel_dim(x)
    others = [d for d in range(pg.dim()) if d != dim]
    return pg.sum(dim=others, dtype=acc).to(w.dtype).reshape(w.shape)


def _param_grads(formula: Formula, grad, x, w0, w1, p0, p1, p2, needs: tuple[bool, bool]):
    """The parameter gradients from the table's torch forms (``needs`` says which), reduced to each weight."""
    if formula.param_grads is None or not any(needs):
        return None, None
    per_element = formula.param_grads(grad, x, *params(w0, w1, p0, p1, p2))
    out = []
    for pg, w, need in zip(per_element, (w0, w1), needs):
        out.append(_reduce_param_grad(pg, w, x) if (need and w is not None and pg is not None) else None)
    return tuple(out)


def _placeholder(t: torch.Tensor) -> torch.Tensor:
    return t.new_empty((0,))


def _sum_to_weight(sums: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if w.numel() == 1:
        return sums.sum().to(w.dtype).reshape(w.shape)
    return sums.to(w.dtype).reshape(w.shape).clone()  # its own storage: outputs must not alias


def _backward_params(formula: Formula):
    def kernel(grad, saved, w0, w1, p0, p1, p2):
        sd = dense(saved)
        g = layout_like(grad, sd)
        wide = next((w for w in (w0, w1) if w is not None and w.numel() > 1), None)
        C, inner = kernels.channel_reduce.geometry(sd, channel_dim(sd) if wide is not None else None,
                            wide.numel() if wide is not None else 1)
        _, bwd = kernel_pair(formula.kernel_name)
        dx = empty_like(sd)
        sums = kernels.channel_reduce.launch_channel_backward(bwd, g, sd, dx, C, inner, (p0, p1, p2),
                                       pgrad=param_grad_kernel(formula.kernel_name),
                                       weights=(w0, w1), n_part=2 if w1 is not None else 1)
        grads = [_sum_to_weight(sums[k], w) if w is not None else _placeholder(sd) for k, w in enumerate((w0, w1))]
        return dx, grads[0], grads[1]

    def torch_form(grad, saved, w0, w1, p0, p1, p2):
        dx = layout_like(formula.backward(grad, saved, *params(w0, w1, p0, p1, p2)), layout_ref(saved))
        gw0, gw1 = _param_grads(formula, grad, saved, w0, w1, p0, p1, p2, needs=(w0 is not None, w1 is not None))
        return (dx, gw0 if gw0 is not None else _placeholder(saved), gw1 if gw1 is not None else _placeholder(saved))

    return kernel_or_torch(kernel, torch_form, device_of=1)


def _fake_backward_params(grad, saved, w0, w1, *args):
    return (torch.empty_like(saved), *(torch.empty_like(w) if w is not None else saved.new_empty((0,))
                                       for w in (w0, w1)))


PARAM_FORMULAS = tuple(f.name for f in FORMULAS.values() if f.param_grads is not None)

for _name in PARAM_FORMULAS:
    operator(_name + "_backward_params", f"(Tensor grad, Tensor saved, {ARGS}) -> (Tensor, Tensor, Tensor)",
             _backward_params(FORMULAS[_name]), _fake_backward_params,
             vmap=per_sample(_name + "_backward_params", 2, (2, 3), "the parameter tensors"),
             sharding=functools.partial(sharding.pointwise, elementwise=2, params=("auto", "auto"),
                                        outputs=("elementwise", "param_grad", "param_grad")))
del _name


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


__all__ = ["PARAM_FORMULAS", "activation_backward"]
