"""The GLU family on the generic gated kernels of ``kernels/gated.py``: ``up * act(gate)``.

Operators (namespace ``torchinit``; ``formula`` names an entry of the activation table, ``p0..p2``
its scalar parameters; each made with :func:`torchinit.opdef.operator`):

* ``gated(Tensor gate, Tensor up, str formula, float p0, float p1, float p2) -> Tensor`` and
  ``gated_backward(Tensor grad, Tensor gate, Tensor up, ...) -> (Tensor grad_gate, Tensor grad_up)``:
  two tensors of one shape and dtype. A dense gate (any layout without gaps) is used in place and
  the results share its strides; ``up`` is copied only when its layout differs from the gate's.
* the split ops, one tensor halved along ``dim`` (one implementation, which half is the gate a parameter):
  ``gated_split(Tensor x, int dim, str formula, ...) -> Tensor`` and ``gated_split_backward``: **gate =
  first half, up = second half** (the SwiGLU/GEGLU convention of Shazeer 2020 and most LLM code);
  ``glu(Tensor x, int dim) -> Tensor`` and ``glu_backward``: torch's ``glu``, the other way round
  (sigmoid of the *second* half times the first), with torch's own ``glu`` as its torch form.

Forward is one pass (read gate and up, write the output); backward is one pass (read grad, gate and
up, write both gradients) recomputing the activation: only the two inputs are saved. The gated ops
round the activation to the storage dtype before the multiply, as the eager composite ``act(gate) * up``
does, so half-precision results match eager's (glu rounds once, as torch's glu kernel does). Elsewhere
(no kernel) the torch forms run.
"""

from __future__ import annotations

import functools

import torch

from .. import kernels, sharding
from ..activations import FORMULAS, Formula
from ..layout import dense, empty_like, layout_like, layout_ref, to_front
from ..opdef import autograd_function, kernel_or_torch, kernel_pair, operator
from ._common import formula_of

_SCALARS = "float p0, float p1, float p2"


# ---------------------------------------------------------------------------------------------
# torch forms (the reference, and the path wherever no kernel runs)
# ---------------------------------------------------------------------------------------------


def torch_gated(gate: torch.Tensor, up: torch.Tensor, formula: str, p0: float, p1: float, p2: float) -> torch.Tensor:
    """``act(gate) * up`` in plain torch (what eager users write; what Inductor fuses under compile)."""
    return formula_of(formula).forward(gate, p0, p1, p2, False) * up


def torch_gated_backward(grad, gate, up, formula: str, p0, p1, p2):
    """Both gradients of ``act(gate) * up`` from the table's torch forms (nothing but the inputs used)."""
    f = formula_of(formula)
    act = f.forward(gate, p0, p1, p2, False)
    saved = act if f.saves == "output" else gate
    return f.backward(grad * up, saved, p0, p1, p2), grad * act


# ---------------------------------------------------------------------------------------------
# two tensors
# ---------------------------------------------------------------------------------------------


def _gated_kernel(gate, up, formula, p0, p1, p2):
    gd = dense(gate)
    fwd, _ = kernel_pair(formula_of(formula).kernel_name, gd.dtype)
    n = gd.numel()
    return kernels.gated.launch_gated_forward(fwd, gd, layout_like(up, gd), empty_like(gd), n, n, (p0, p1, p2),
                                              round_act=True)


def _gated_torch(gate, up, formula, p0, p1, p2):
    return layout_like(torch_gated(gate, up, formula, p0, p1, p2), layout_ref(gate))


def _gated_backward_kernel(grad, gate, up, formula, p0, p1, p2):
    gd = dense(gate)
    f = formula_of(formula)
    fwd, bwd = kernel_pair(f.kernel_name, gd.dtype)
    d_gate, d_up = empty_like(gd), empty_like(gd)
    n = gd.numel()
    kernels.gated.launch_gated_backward(fwd, bwd, f.saves == "output", layout_like(grad, gd), gd, layout_like(up, gd),
                                        d_gate, d_up, n, n, (p0, p1, p2), round_act=True)
    return d_gate, d_up


def _gated_backward_torch(grad, gate, up, formula, p0, p1, p2):
    ref = layout_ref(gate)
    d_gate, d_up = torch_gated_backward(grad, gate, up, formula, p0, p1, p2)
    return layout_like(d_gate, ref), layout_like(d_up, ref)


def _batched(op_name: str, tensors: int, outputs: int):
    """vmap rule of an element-wise op over its first ``tensors`` tensors: the batch dim in front."""

    def rule(info, in_dims, *args):
        front = [to_front(t, d, info.batch_size) for t, d in zip(args[:tensors], in_dims[:tensors])]
        out = getattr(torch.ops.torchinit, op_name)(*front, *args[tensors:])
        return out, (0 if outputs == 1 else (0,) * outputs)

    return rule


def _gated_setup(ctx, inputs, output):
    gate, up, formula, p0, p1, p2 = inputs[:6]
    ctx.args = (formula, p0, p1, p2)
    ctx.save_for_backward(gate, up)


def _gated_grad(ctx, grad):
    gate, up = ctx.saved_tensors
    d_gate, d_up = torch.ops.torchinit.gated_backward(grad, gate, up, *ctx.args)
    return d_gate, d_up, None, None, None, None


operator("gated", f"(Tensor gate, Tensor up, str formula, {_SCALARS}) -> Tensor",
         kernel_or_torch(_gated_kernel, _gated_torch), lambda gate, *a: torch.empty_like(gate),
         vmap=_batched("gated", 2, 1), autograd=(_gated_setup, _gated_grad),
         sharding=functools.partial(sharding.pointwise, elementwise=2, params=()))
operator("gated_backward", f"(Tensor grad, Tensor gate, Tensor up, str formula, {_SCALARS}) -> (Tensor, Tensor)",
         kernel_or_torch(_gated_backward_kernel, _gated_backward_torch, device_of=1),
         lambda grad, gate, *a: (torch.empty_like(gate), torch.empty_like(gate)), vmap=_batched("gated_backward", 3, 2),
         sharding=functools.partial(sharding.pointwise, elementwise=3, params=(),
                                    outputs=("elementwise", "elementwise")))

GatedFunction = autograd_function(
    "GatedFunction", lambda gate, up, formula, p0, p1, p2: torch.ops.torchinit.gated(gate, up, formula, p0, p1, p2),
    _gated_setup, _gated_grad, "Differentiates ``up * act(gate)`` through ``torchinit::gated`` / ``gated_backward``.")


# ---------------------------------------------------------------------------------------------
# one tensor halved along dim: gated_split (gate = first half) and glu (gate = second half)
# ---------------------------------------------------------------------------------------------


def _split_geometry(x: torch.Tensor, dim: int) -> tuple[int, int]:
    after = 1
    for s in x.shape[dim + 1:]:
        after *= s
    inner = (x.shape[dim] // 2) * after
    return inner, 2 * inner


def _half_shape(x: torch.Tensor, dim: int) -> list[int]:
    shape = list(x.shape)
    shape[dim] //= 2
    return shape


def _register_split(name: str, extra_schema: str, spec, gate_first: bool, round_act: bool, torch_forward,
                    torch_backward, forward, doc: str):
    """The forward and backward operators of one split op ``name(Tensor x, int dim, <extra>)``, and its
    autograd Function (``forward`` calls the operator). ``spec(*extra) -> (formula, scalars)``;
    ``gate_first`` says which half is the gate."""

    def halves(flat: torch.Tensor, inner: int) -> tuple[torch.Tensor, torch.Tensor]:
        first, second = flat, flat[inner:]
        return (first, second) if gate_first else (second, first)

    def kernel(x, dim, *extra):
        f, scalars = spec(*extra)
        xc = x.contiguous()
        inner, row_stride = _split_geometry(xc, dim)
        gate, up = halves(xc.view(-1), inner)
        fwd, _ = kernel_pair(f.kernel_name, xc.dtype)
        return kernels.gated.launch_gated_forward(fwd, gate, up, empty_like(xc, _half_shape(xc, dim)), inner, row_stride,
                                                  scalars, round_act=round_act)

    def backward_kernel(grad, x, dim, *extra):
        f, scalars = spec(*extra)
        xc = x.contiguous()
        inner, row_stride = _split_geometry(xc, dim)
        dx = empty_like(xc)
        gate, up = halves(xc.view(-1), inner)
        d_gate, d_up = halves(dx.view(-1), inner)
        fwd, bwd = kernel_pair(f.kernel_name, xc.dtype)
        kernels.gated.launch_gated_backward(fwd, bwd, f.saves == "output", grad.contiguous(), gate, up, d_gate, d_up,
                                            inner, row_stride, scalars, round_act=round_act)
        return dx

    def vmap(info, in_dims, x, dim, *extra):
        return getattr(torch.ops.torchinit, name)(x.movedim(in_dims[0], 0), dim + 1 if dim >= 0 else dim, *extra), 0

    def backward_vmap(info, in_dims, grad, x, dim, *extra):
        g, xb = to_front(grad, in_dims[0], info.batch_size), to_front(x, in_dims[1], info.batch_size)
        return getattr(torch.ops.torchinit, name + "_backward")(g, xb, dim + 1 if dim >= 0 else dim, *extra), 0

    def setup(ctx, inputs, output):
        ctx.args = tuple(inputs[1:])  # dim and the activation's arguments
        ctx.save_for_backward(inputs[0])

    def grad_fn(ctx, grad):
        (x,) = ctx.saved_tensors
        return (getattr(torch.ops.torchinit, name + "_backward")(grad, x, *ctx.args),) + (None,) * len(ctx.args)

    operator(name, f"(Tensor x, int dim{extra_schema}) -> Tensor", kernel_or_torch(kernel, torch_forward, nonempty=True),
             lambda x, dim, *a: x.new_empty(_half_shape(x, dim)), vmap=vmap, autograd=(setup, grad_fn),
             sharding=functools.partial(sharding.off_dim, tensors=1))  # (x, dim, ...): halves along dim
    operator(name + "_backward", f"(Tensor grad, Tensor x, int dim{extra_schema}) -> Tensor",
             kernel_or_torch(backward_kernel, torch_backward, device_of=1, nonempty=True),
             lambda grad, x, *a: x.new_empty(x.shape), vmap=backward_vmap,
             sharding=functools.partial(sharding.off_dim, tensors=2))  # (grad, x, dim, ...)
    return autograd_function(f"{name.title().replace('_', '')}Function", forward, setup, grad_fn, doc)


def _split_torch(x, dim, formula, p0, p1, p2):
    gate, up = x.chunk(2, dim)
    return torch_gated(gate, up, formula, p0, p1, p2).contiguous()


def _split_backward_torch(grad, x, dim, formula, p0, p1, p2):
    gate, up = x.chunk(2, dim)
    return torch.cat(torch_gated_backward(grad, gate, up, formula, p0, p1, p2), dim).contiguous()


def _split_spec(formula: str, p0: float, p1: float, p2: float) -> tuple[Formula, tuple[float, float, float]]:
    return formula_of(formula), (p0, p1, p2)


GatedSplitFunction = _register_split(
    "gated_split", f", str formula, {_SCALARS}", _split_spec, True, True, _split_torch, _split_backward_torch,
    lambda x, dim, formula, p0, p1, p2: torch.ops.torchinit.gated_split(x, dim, formula, p0, p1, p2),
    "Differentiates the one-tensor gated unit through ``torchinit::gated_split`` / its backward.")

GluFunction = _register_split(
    "glu", "", lambda: (FORMULAS["sigmoid"], (0.0, 0.0, 0.0)), False, False,
    lambda x, dim: torch.nn.functional.glu(x, dim).contiguous(),
    lambda grad, x, dim: torch.ops.aten.glu_backward(grad, x, dim).contiguous(),
    lambda x, dim: torch.ops.torchinit.glu(x, dim),
    "Differentiates ``glu`` through ``torchinit::glu`` / ``glu_backward``.")

__all__ = ["GatedFunction", "GatedSplitFunction", "GluFunction", "torch_gated", "torch_gated_backward"]
