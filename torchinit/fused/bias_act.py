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

import functools

import torch

from .. import kernels, sharding
from ..layout import dense, empty_like, layout_like, layout_ref, to_front
from ..opdef import autograd_function, kernel_or_torch, kernel_pair, operator, per_sample, refuse_batched
from ._common import formula_of


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


def _kernel(x, bias, dim, formula, p0, p1, p2):
    z_dtype = _promoted(x, bias)
    xd = dense(x)
    C, inner = kernels.channel_reduce.geometry(xd, dim, bias.numel())
    fwd, _ = kernel_pair(formula_of(formula).kernel_name, z_dtype)
    return kernels.channel_reduce.launch_bias_act_forward(fwd, xd, bias.contiguous(), empty_like(xd, dtype=z_dtype), C,
                                                          inner, (p0, p1, p2), z_dtype)


def _torch(x, bias, dim, formula, p0, p1, p2):
    y = torch_bias_act(x, bias, dim, formula, p0, p1, p2)
    return layout_like(y, torch.empty_like(layout_ref(x), dtype=_promoted(x, bias)))


def _backward_kernel(grad, saved, bias, dim, formula, p0, p1, p2, x_dtype):
    f = formula_of(formula)
    sd = dense(saved)
    C, inner = kernels.channel_reduce.geometry(sd, dim, bias.numel())
    _, bwd = kernel_pair(f.kernel_name, x_dtype if grad.dtype == x_dtype else None)
    dx = empty_like(sd, dtype=x_dtype)
    sums = kernels.channel_reduce.launch_channel_backward(bwd, layout_like(grad, sd), sd, dx, C, inner, (p0, p1, p2),
                                                          bias=bias.contiguous(), saves_output=f.saves == "output",
                                                          z_dtype=grad.dtype)
    return dx, sums[0].to(bias.dtype).reshape(bias.shape)


def _backward_torch(grad, saved, bias, dim, formula, p0, p1, p2, x_dtype):
    f = formula_of(formula)
    s = saved if f.saves == "output" else saved + bias_view(bias, saved.dim(), dim)
    dz = f.backward(grad, s, p0, p1, p2)
    others = [d for d in range(dz.dim()) if d != dim]
    acc = torch.float64 if dz.dtype == torch.float64 else torch.float32
    grad_bias = dz.sum(dim=others, dtype=acc).to(bias.dtype).reshape(bias.shape)
    dx = layout_like(dz.to(x_dtype), torch.empty_like(layout_ref(saved), dtype=x_dtype))
    return dx, grad_bias


def _vmap(info, in_dims, x, bias, dim, formula, p0, p1, p2):
    refuse_batched("bias_act", in_dims, (1,), "the bias")
    xb = to_front(x, in_dims[0], info.batch_size)
    return torch.ops.torchinit.bias_act(xb, bias, dim + 1, formula, p0, p1, p2), 0


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


# DTensor: element-wise in x; the bias follows x's ``dim`` (argument 2 of the forward, 3 of the backward), its
# gradient is a sum over the other dims (Partial) or split with the channels
operator("bias_act", "(Tensor x, Tensor bias, int dim, str formula, float p0, float p1, float p2) -> Tensor",
         kernel_or_torch(_kernel, _torch), lambda x, bias, *a: torch.empty_like(x, dtype=_promoted(x, bias)),
         vmap=_vmap, autograd=(_setup, _grad),
         sharding=functools.partial(sharding.pointwise, elementwise=1, params=("channel",),
                                    channel_dim=sharding.dim_argument(2)))
# per-sample bias gradients under vmap: one call per sample, each reducing over its own sample only
operator("bias_act_backward", "(Tensor grad, Tensor saved, Tensor bias, int dim, str formula, float p0, float p1, "
         "float p2, ScalarType x_dtype) -> (Tensor, Tensor)",
         kernel_or_torch(_backward_kernel, _backward_torch, device_of=1),
         lambda grad, saved, bias, *a: (torch.empty_like(saved, dtype=a[-1]),
                                        torch.empty_like(bias, memory_format=torch.contiguous_format)),
         vmap=per_sample("bias_act_backward", 2, (2,), "the bias"),
         sharding=functools.partial(sharding.pointwise, elementwise=2, params=("channel",),
                                    outputs=("elementwise", "param_grad"), channel_dim=sharding.dim_argument(3)))

BiasActFunction = autograd_function(
    "BiasActFunction",
    lambda x, bias, dim, formula, p0, p1, p2: torch.ops.torchinit.bias_act(x, bias, dim, formula, p0, p1, p2),
    _setup, _grad, "Differentiates ``act(x + bias)`` through ``torchinit::bias_act`` / ``bias_act_backward``.")

__all__ = ["BiasActFunction", "bias_view", "torch_bias_act"]
