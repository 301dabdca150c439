"""``act(x + bias)`` with the bias broadcast along one dim, in one pass each way.

Operators (namespace ``torchinit``):

* ``bias_act(Tensor x, Tensor bias, int dim, str formula, float p0, float p1, float p2) -> Tensor``
* ``bias_act_backward(Tensor grad, Tensor saved, Tensor bias, int dim, str formula, float p0, float p1,
  float p2, ScalarType x_dtype) -> (Tensor grad_x, Tensor grad_bias)``

``saved`` is what the formula's backward needs: the output for output-saving activations (relu,
sigmoid, tanh, elu, ...), else the *input* ``x`` (the bias is re-added inside the backward kernel, so
``x + bias`` is never stored). Forward reads x and writes y; backward reads grad and the saved
tensor, writes grad_x, and reduces grad_bias inside the same kernel as per-tile partial sums (a
``programs x C`` buffer summed on the host): no second pass over the tensor.

Dtypes follow torch's type promotion, as the composite ``act(x + bias)`` does: a bf16 ``x`` with an
fp32 bias gives an fp32 result (``x + bias`` is rounded to the promoted dtype before the activation,
exactly as eager rounds it), grad_x comes back in x's dtype and grad_bias in the bias's. Under
``torch.autocast`` nothing changes: neither eager's ``add`` nor the activations are autocast ops, so
the promoted dtype is what eager gives there too (the tests check both).
"""

from __future__ import annotations

import torch

from .. import backend, sharding
from .. import ops as _ops
from ..ops import _dense, _is_dense, _kernel_pair, _layout_like, _to_front
from ._common import LIB, formula_of

LIB.define("bias_act(Tensor x, Tensor bias, int dim, str formula, float p0, float p1, float p2) -> Tensor")
LIB.define("bias_act_backward(Tensor grad, Tensor saved, Tensor bias, int dim, str formula, float p0, float p1, "
           "float p2, ScalarType x_dtype) -> (Tensor, Tensor)")


def bias_view(bias: torch.Tensor, ndim: int, dim: int) -> torch.Tensor:
    """``bias`` (1-D, one value per entry of ``dim``) shaped to broadcast against an ``ndim``-dim tensor."""
    shape = [1] * ndim
    shape[dim] = bias.numel()
    return bias.reshape(shape)


def torch_bias_act(x, bias, dim: int, formula: str, p0, p1, p2) -> torch.Tensor:
    """``act(x + bias)`` in plain torch: what eager users write and what Inductor fuses under compile."""
    return formula_of(formula).forward(x + bias_view(bias, x.dim(), dim), p0, p1, p2, False)


def _promoted(x: torch.Tensor, bias: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, bias.dtype)


def _alloc(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A kernel output like ``t`` in ``dtype`` (NaN-filled when the tests poison outputs)."""
    out = torch.empty_like(t, dtype=dtype)
    return out.fill_(float("nan")) if _ops.POISON_OUTPUTS else out


def _layout_ref(x: torch.Tensor) -> torch.Tensor:
    return x if _is_dense(x) else torch.empty_like(x)


@torch.library.impl(LIB, "bias_act", "CompositeExplicitAutograd")
def _bias_act(x, bias, dim, formula, p0, p1, p2):
    z_dtype = _promoted(x, bias)
    if backend.kernel_runs_on(x.device):
        from torchinit.kernels.channel_reduce import geometry, launch_bias_act_forward

        xd = _dense(x)
        C, inner = geometry(xd, dim, bias.numel())
        fwd, _ = _kernel_pair(formula_of(formula))
        out = _alloc(xd, z_dtype)
        return launch_bias_act_forward(fwd, xd, bias.contiguous(), out, C, inner, (p0, p1, p2), z_dtype)
    y = torch_bias_act(x, bias, dim, formula, p0, p1, p2)
    return _layout_like(y, torch.empty_like(_layout_ref(x), dtype=z_dtype))


@torch.library.impl(LIB, "bias_act_backward", "CompositeExplicitAutograd")
def _bias_act_backward(grad, saved, bias, dim, formula, p0, p1, p2, x_dtype):
    f = formula_of(formula)
    z_dtype = grad.dtype
    if backend.kernel_runs_on(saved.device):
        from torchinit.kernels.channel_reduce import geometry, launch_channel_backward

        sd = _dense(saved)
        g = _layout_like(grad, sd)
        C, inner = geometry(sd, dim, bias.numel())
        _, bwd = _kernel_pair(f)
        dx = _alloc(sd, x_dtype)
        sums = launch_channel_backward(bwd, g, sd, dx, C, inner, (p0, p1, p2), bias=bias.contiguous(),
                                       saves_output=f.saves == "output", z_dtype=z_dtype)
        return dx, sums[0].to(bias.dtype).reshape(bias.shape)
    s = saved if f.saves == "output" else saved + bias_view(bias, saved.dim(), dim)
    dz = f.backward(grad, s, p0, p1, p2)
    others = [d for d in range(dz.dim()) if d != dim]
    acc = torch.float64 if dz.dtype == torch.float64 else torch.float32
    grad_bias = dz.sum(dim=others, dtype=acc).to(bias.dtype).reshape(bias.shape)
    dx = _layout_like(dz.to(x_dtype), torch.empty_like(_layout_ref(saved), dtype=x_dtype))
    return dx, grad_bias


@torch.library.register_fake("torchinit::bias_act", lib=LIB)
def _bias_act_fake(x, bias, dim, formula, p0, p1, p2):
    return torch.empty_like(x, dtype=_promoted(x, bias))


@torch.library.register_fake("torchinit::bias_act_backward", lib=LIB)
def _bias_act_backward_fake(grad, saved, bias, dim, formula, p0, p1, p2, x_dtype):
    return torch.empty_like(saved, dtype=x_dtype), torch.empty_like(bias, memory_format=torch.contiguous_format)


def _bias_act_vmap(info, in_dims, x, bias, dim, formula, p0, p1, p2):
    if in_dims[1] is not None:
        raise NotImplementedError("torchinit.bias_act: vmap over the bias is not supported")
    xb = _to_front(x, in_dims[0], info.batch_size)
    return torch.ops.torchinit.bias_act(xb, bias, dim + 1, formula, p0, p1, p2), 0


def _bias_act_backward_vmap(info, in_dims, grad, saved, bias, dim, formula, p0, p1, p2, x_dtype):
    # per-sample bias gradients: one call per sample, each reducing over its own sample only
    if in_dims[2] is not None:
        raise NotImplementedError("torchinit.bias_act_backward: vmap over the bias is not supported")
    g = _to_front(grad, in_dims[0], info.batch_size)
    s = _to_front(saved, in_dims[1], info.batch_size)
    outs = [torch.ops.torchinit.bias_act_backward(g[b], s[b], bias, dim, formula, p0, p1, p2, x_dtype)
            for b in range(info.batch_size)]
    return (torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])), (0, 0)


torch.library.register_vmap("torchinit::bias_act", _bias_act_vmap, lib=LIB)
torch.library.register_vmap("torchinit::bias_act_backward", _bias_act_backward_vmap, lib=LIB)


def _setup(ctx, inputs, output):
    x, bias, dim, formula, p0, p1, p2 = inputs[:7]
    ctx.args = (dim, formula, p0, p1, p2)
    ctx.x_dtype = x.dtype
    ctx.save_for_backward(output if formula_of(formula).saves == "output" else x, bias)


def _grad(ctx, grad):
    saved, bias = ctx.saved_tensors
    dim, formula, p0, p1, p2 = ctx.args
    dx, db = torch.ops.torchinit.bias_act_backward(grad, saved, bias, dim, formula, p0, p1, p2, ctx.x_dtype)
    return dx, db, None, None, None, None, None


torch.library.register_autograd("torchinit::bias_act", _grad, setup_context=_setup, lib=LIB)


class BiasActFunction(torch.autograd.Function):
    """Differentiates ``act(x + bias)`` through ``torchinit::bias_act`` / ``bias_act_backward``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, bias, dim, formula, p0, p1, p2):
        return torch.ops.torchinit.bias_act(x, bias, dim, formula, p0, p1, p2)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup(ctx, inputs, output)

    @staticmethod
    def backward(ctx, grad):
        return _grad(ctx, grad)

# DTensor: element-wise in x; the bias follows x's ``dim`` (argument 2 of the forward, 3 of the backward), its
# gradient is a sum over the other dims (Partial) or split with the channels
sharding.pointwise(torch.ops.torchinit.bias_act.default, elementwise=1, params=("channel",),
                   channel_dim=sharding.dim_argument(2))
sharding.pointwise(torch.ops.torchinit.bias_act_backward.default, elementwise=2, params=("channel",),
                   outputs=("elementwise", "param_grad"), channel_dim=sharding.dim_argument(3))
