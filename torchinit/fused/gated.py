"""The GLU family on the generic gated kernels of ``kernels/gated.py``: ``up * act(gate)``.

Operators (namespace ``torchinit``; ``formula`` names an entry of the activation table, ``p0..p2``
its scalar parameters):

* ``gated(Tensor gate, Tensor up, str formula, float p0, float p1, float p2) -> Tensor`` and
  ``gated_backward(Tensor grad, Tensor gate, Tensor up, ...) -> (Tensor grad_gate, Tensor grad_up)``:
  two tensors of one shape and dtype. A dense gate (any layout without gaps) is used in place and
  the results share its strides; ``up`` is copied only when its layout differs from the gate's.
* ``gated_split(Tensor x, int dim, str formula, ...) -> Tensor`` and ``gated_split_backward``: one
  tensor halved along ``dim``, **gate = first half, up = second half** (the SwiGLU/GEGLU convention of
  Shazeer 2020 and most LLM code). torch's ``glu`` (``torchinit.functional.glu``) is the other
  way round: it passes the first half and gates the *second*.

Forward is one pass (read gate and up, write the output); backward is one pass (read grad, gate and
up, write both gradients) recomputing the activation: only the two inputs are saved. The activation
is rounded to the storage dtype before the multiply, as the eager composite ``act(gate) * up`` does,
so half-precision results match eager's. Elsewhere (no kernel) the torch forms of the table run.
"""

from __future__ import annotations

import torch

from .. import backend, sharding
from ..ops import _dense, _is_dense, _kernel_pair, _layout_like, _to_front, empty_like
from ._common import LIB, formula_of

_SCALARS = "float p0, float p1, float p2"
LIB.define(f"gated(Tensor gate, Tensor up, str formula, {_SCALARS}) -> Tensor")
LIB.define(f"gated_backward(Tensor grad, Tensor gate, Tensor up, str formula, {_SCALARS}) -> (Tensor, Tensor)")
LIB.define(f"gated_split(Tensor x, int dim, str formula, {_SCALARS}) -> Tensor")
LIB.define(f"gated_split_backward(Tensor grad, Tensor x, int dim, str formula, {_SCALARS}) -> Tensor")


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


def _halves(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    return x.chunk(2, dim)


# ---------------------------------------------------------------------------------------------
# two tensors
# ---------------------------------------------------------------------------------------------


def _layout_ref(gate: torch.Tensor) -> torch.Tensor:
    return gate if _is_dense(gate) else torch.empty_like(gate)


@torch.library.impl(LIB, "gated", "CompositeExplicitAutograd")
def _gated(gate, up, formula, p0, p1, p2):
    if backend.kernel_runs_on(gate.device):
        from torchinit.kernels.gated import launch_gated_forward

        gd = _dense(gate)
        ud = _layout_like(up, gd)
        fwd, _ = _kernel_pair(formula_of(formula))
        n = gd.numel()
        return launch_gated_forward(fwd, gd, ud, empty_like(gd), n, n, (p0, p1, p2), round_act=True)
    return _layout_like(torch_gated(gate, up, formula, p0, p1, p2), _layout_ref(gate))


@torch.library.impl(LIB, "gated_backward", "CompositeExplicitAutograd")
def _gated_backward(grad, gate, up, formula, p0, p1, p2):
    if backend.kernel_runs_on(gate.device):
        from torchinit.kernels.gated import launch_gated_backward

        gd = _dense(gate)
        ud = _layout_like(up, gd)
        g = _layout_like(grad, gd)
        f = formula_of(formula)
        fwd, bwd = _kernel_pair(f)
        d_gate, d_up = empty_like(gd), empty_like(gd)
        n = gd.numel()
        launch_gated_backward(fwd, bwd, f.saves == "output", g, gd, ud, d_gate, d_up, n, n, (p0, p1, p2),
                              round_act=True)
        return d_gate, d_up
    ref = _layout_ref(gate)
    d_gate, d_up = torch_gated_backward(grad, gate, up, formula, p0, p1, p2)
    return _layout_like(d_gate, ref), _layout_like(d_up, ref)


@torch.library.register_fake("torchinit::gated", lib=LIB)
def _gated_fake(gate, up, formula, p0, p1, p2):
    return torch.empty_like(gate)


@torch.library.register_fake("torchinit::gated_backward", lib=LIB)
def _gated_backward_fake(grad, gate, up, formula, p0, p1, p2):
    return torch.empty_like(gate), torch.empty_like(gate)


def _gated_vmap(info, in_dims, gate, up, formula, p0, p1, p2):
    g = _to_front(gate, in_dims[0], info.batch_size)
    u = _to_front(up, in_dims[1], info.batch_size)
    return torch.ops.torchinit.gated(g, u, formula, p0, p1, p2), 0


def _gated_backward_vmap(info, in_dims, grad, gate, up, formula, p0, p1, p2):
    gr, g, u = (_to_front(t, d, info.batch_size) for t, d in zip((grad, gate, up), in_dims[:3]))
    return torch.ops.torchinit.gated_backward(gr, g, u, formula, p0, p1, p2), (0, 0)


torch.library.register_vmap("torchinit::gated", _gated_vmap, lib=LIB)
torch.library.register_vmap("torchinit::gated_backward", _gated_backward_vmap, lib=LIB)


def _gated_setup(ctx, inputs, output):
    gate, up, formula, p0, p1, p2 = inputs[:6]
    ctx.args = (formula, p0, p1, p2)
    ctx.save_for_backward(gate, up)


def _gated_grad(ctx, grad):
    gate, up = ctx.saved_tensors
    d_gate, d_up = torch.ops.torchinit.gated_backward(grad, gate, up, *ctx.args)
    return d_gate, d_up, None, None, None, None


torch.library.register_autograd("torchinit::gated", _gated_grad, setup_context=_gated_setup, lib=LIB)


class GatedFunction(torch.autograd.Function):
    """Differentiates ``up * act(gate)`` through ``torchinit::gated`` / ``gated_backward``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(gate, up, formula, p0, p1, p2):
        return torch.ops.torchinit.gated(gate, up, formula, p0, p1, p2)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _gated_setup(ctx, inputs, output)

    @staticmethod
    def backward(ctx, grad):
        return _gated_grad(ctx, grad)


# ---------------------------------------------------------------------------------------------
# one tensor, halved along dim: gate = first half, up = second half
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


@torch.library.impl(LIB, "gated_split", "CompositeExplicitAutograd")
def _gated_split(x, dim, formula, p0, p1, p2):
    if backend.kernel_runs_on(x.device) and x.numel() > 0:
        from torchinit.kernels.gated import launch_gated_forward

        xc = x.contiguous()
        inner, row_stride = _split_geometry(xc, dim)
        flat = xc.view(-1)
        fwd, _ = _kernel_pair(formula_of(formula))
        out = empty_like(xc, _half_shape(xc, dim))
        return launch_gated_forward(fwd, flat, flat[inner:], out, inner, row_stride, (p0, p1, p2), round_act=True)
    gate, up = _halves(x, dim)
    return torch_gated(gate, up, formula, p0, p1, p2).contiguous()


@torch.library.impl(LIB, "gated_split_backward", "CompositeExplicitAutograd")
def _gated_split_backward(grad, x, dim, formula, p0, p1, p2):
    if backend.kernel_runs_on(x.device) and x.numel() > 0:
        from torchinit.kernels.gated import launch_gated_backward

        xc = x.contiguous()
        g = grad.contiguous()
        inner, row_stride = _split_geometry(xc, dim)
        flat = xc.view(-1)
        dx = empty_like(xc)
        dflat = dx.view(-1)
        f = formula_of(formula)
        fwd, bwd = _kernel_pair(f)
        launch_gated_backward(fwd, bwd, f.saves == "output", g, flat, flat[inner:], dflat, dflat[inner:],
                              inner, row_stride, (p0, p1, p2), round_act=True)
        return dx
    gate, up = _halves(x, dim)
    return torch.cat(torch_gated_backward(grad, gate, up, formula, p0, p1, p2), dim).contiguous()


@torch.library.register_fake("torchinit::gated_split", lib=LIB)
def _gated_split_fake(x, dim, formula, p0, p1, p2):
    return x.new_empty(_half_shape(x, dim))


@torch.library.register_fake("torchinit::gated_split_backward", lib=LIB)
def _gated_split_backward_fake(grad, x, dim, formula, p0, p1, p2):
    return x.new_empty(x.shape)


def _gated_split_vmap(info, in_dims, x, dim, formula, p0, p1, p2):
    xb = x.movedim(in_dims[0], 0)
    return torch.ops.torchinit.gated_split(xb, dim + 1, formula, p0, p1, p2), 0


def _gated_split_backward_vmap(info, in_dims, grad, x, dim, formula, p0, p1, p2):
    g = _to_front(grad, in_dims[0], info.batch_size)
    xb = _to_front(x, in_dims[1], info.batch_size)
    return torch.ops.torchinit.gated_split_backward(g, xb, dim + 1, formula, p0, p1, p2), 0


torch.library.register_vmap("torchinit::gated_split", _gated_split_vmap, lib=LIB)
torch.library.register_vmap("torchinit::gated_split_backward", _gated_split_backward_vmap, lib=LIB)


def _split_setup(ctx, inputs, output):
    x, dim, formula, p0, p1, p2 = inputs[:6]
    ctx.args = (dim, formula, p0, p1, p2)
    ctx.save_for_backward(x)


def _split_grad(ctx, grad):
    (x,) = ctx.saved_tensors
    return torch.ops.torchinit.gated_split_backward(grad, x, *ctx.args), None, None, None, None, None


torch.library.register_autograd("torchinit::gated_split", _split_grad, setup_context=_split_setup, lib=LIB)


class GatedSplitFunction(torch.autograd.Function):
    """Differentiates the one-tensor gated unit through ``torchinit::gated_split`` / its backward."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, dim, formula, p0, p1, p2):
        return torch.ops.torchinit.gated_split(x, dim, formula, p0, p1, p2)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _split_setup(ctx, inputs, output)

    @staticmethod
    def backward(ctx, grad):
        return _split_grad(ctx, grad)

# DTensor: gate and up (and the gradient) element-wise; the one-tensor form works along its dim
sharding.pointwise(torch.ops.torchinit.gated.default, elementwise=2, params=())
sharding.pointwise(torch.ops.torchinit.gated_backward.default, elementwise=3, params=(),
                   outputs=("elementwise", "elementwise"))
sharding.off_dim(torch.ops.torchinit.gated_split.default, tensors=1)
sharding.off_dim(torch.ops.torchinit.gated_split_backward.default, tensors=2)
