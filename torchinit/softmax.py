"""The softmax family: ``softmax``, ``log_softmax``, ``softmin`` and their modules.

Operators (namespace ``torchinit``, defined with :func:`torchinit.opdef.operator` like every other):

* ``softmax(Tensor x, int dim, ScalarType? dtype) -> Tensor`` and ``log_softmax(...)``: the result
  has dtype ``dtype`` (default: ``x``'s) and is contiguous, as torch's is. ``x`` is rounded to
  ``dtype`` before the reduction, as torch's ``dtype=`` argument does, but inside the kernel: no
  converted copy of ``x`` is made.
* ``softmax_backward(Tensor grad, Tensor output, int dim, ScalarType input_dtype) -> Tensor`` and
  ``log_softmax_backward(...)``: the input gradient from the forward *output* (nothing else is kept).

Each runs the Triton kernels of ``torchinit.kernels.softmax`` where they can run (CUDA; CPU under
Triton's interpreter with the "triton" backend) and torch's own softmax elsewhere, and has a fake
implementation, a vmap rule and an autograd formula (for exported programs). The functions below
differentiate through :class:`SoftmaxFunction` (a ``torch.autograd.Function`` with a generated vmap
rule, so ``torch.func.grad``/``vmap`` work too) and pick the path with :mod:`torchinit.backend`.
Double backward is not supported on the operator path (the torch path supports it).

Plain entry points for benchmarks: :func:`softmax`, :func:`log_softmax` (whole autograd path) and
``torch.ops.torchinit.softmax`` / ``softmax_backward`` (one kernel each).
"""

from __future__ import annotations

import functools
import operator
import warnings

import torch
from torch import nn

from . import backend, kernels, sharding
from .entry import FLOATING_SET, needs_grad, torch_errors_named
from .layout import to_front
from .opdef import autograd_function, kernel_or_torch
from .opdef import operator as define_operator

Tensor = torch.Tensor

_NAMES = ("softmax", "log_softmax")
_route = backend.route  # the one backend decision of a call


def _canonical_dim(op: str, dim: int, ndim: int) -> int:
    """``dim`` as a non-negative index into a tensor of ``ndim`` dims (a 0-d tensor counts as one dim)."""
    rank = max(ndim, 1)
    try:
        dim = operator.index(dim)
    except TypeError:
        raise TypeError(f"torchinit.{op}: argument 'dim' must be an int, got {type(dim).__name__}") from None
    if not -rank <= dim < rank:
        raise IndexError(f"torchinit.{op}: argument 'dim' must be in [{-rank}, {rank - 1}] for a tensor of "
                         f"{ndim} dims, got {dim}")
    return dim % rank


# ---------------------------------------------------------------------------------------------
# operator implementations: the kernel where it runs (and the tensor has elements), else torch's softmax
# ---------------------------------------------------------------------------------------------


def _forward(name: str):
    log = name == "log_softmax"
    reference = torch.log_softmax if log else torch.softmax

    def kernel(x: Tensor, dim: int, dtype: torch.dtype | None) -> Tensor:
        d = _canonical_dim(name, dim, x.dim())
        out = x.new_empty(x.shape, dtype=x.dtype if dtype is None else dtype)
        return kernels.softmax.softmax_forward(x, d, out, log)

    def torch_form(x: Tensor, dim: int, dtype: torch.dtype | None) -> Tensor:
        d = _canonical_dim(name, dim, x.dim())
        return reference(x, d, dtype=x.dtype if dtype is None else dtype).contiguous()

    return kernel_or_torch(kernel, torch_form, device_of=0, nonempty=True)


def _backward(name: str):
    log = name == "log_softmax"
    reference = torch.ops.aten._log_softmax_backward_data if log else torch.ops.aten._softmax_backward_data
    op = name + "_backward"

    def kernel(grad: Tensor, output: Tensor, dim: int, input_dtype: torch.dtype) -> Tensor:
        d = _canonical_dim(op, dim, output.dim())
        return kernels.softmax.softmax_backward(grad, output, d, output.new_empty(output.shape, dtype=input_dtype), log)

    def torch_form(grad: Tensor, output: Tensor, dim: int, input_dtype: torch.dtype) -> Tensor:
        d = _canonical_dim(op, dim, output.dim())
        # torch computes the gradient in the output's dtype, then autograd casts it to the input's
        dx = reference(grad.to(output.dtype), output, d, output.dtype)
        return dx.to(input_dtype).contiguous()

    return kernel_or_torch(kernel, torch_form, device_of=1, nonempty=True)


def _fake_forward(x, dim, dtype):
    return x.new_empty(x.shape, dtype=x.dtype if dtype is None else dtype)


def _fake_backward(grad, output, dim, input_dtype):
    return output.new_empty(output.shape, dtype=input_dtype)


# ---------------------------------------------------------------------------------------------
# vmap: the batch dim goes in front, the reduced dim moves one to the right
# ---------------------------------------------------------------------------------------------


def _batched_dim(op: str, dim: int, logical_ndim: int) -> int:
    return _canonical_dim(op, dim, logical_ndim) + 1


def _vmap_forward(name: str):
    def rule(info, in_dims, x, dim, dtype):
        op = getattr(torch.ops.torchinit, name)
        xb = to_front(x, in_dims[0], info.batch_size)
        if xb.dim() == 1:  # a batch of 0-d tensors: reduce over a unit dim, not over the batch
            return op(xb.unsqueeze(1), 1, dtype).squeeze(1), 0
        return op(xb, _batched_dim(name, dim, xb.dim() - 1), dtype), 0

    return rule


def _vmap_backward(name: str):
    def rule(info, in_dims, grad, output, dim, input_dtype):
        op = getattr(torch.ops.torchinit, name)
        g = to_front(grad, in_dims[0], info.batch_size)
        y = to_front(output, in_dims[1], info.batch_size)
        if y.dim() == 1:
            return op(g.unsqueeze(1), y.unsqueeze(1), 1, input_dtype).squeeze(1), 0
        return op(g, y, _batched_dim(name, dim, y.dim() - 1), input_dtype), 0

    return rule


# ---------------------------------------------------------------------------------------------
# autograd: one setup/backward pair, for the bare operators (exported programs) and SoftmaxFunction
# ---------------------------------------------------------------------------------------------


def _save(ctx, x: Tensor, dim: int, output: Tensor, name: str) -> None:
    ctx.dim = dim
    ctx.name = name
    ctx.input_dtype = x.dtype
    ctx.save_for_backward(output)


def _input_grad(ctx, grad: Tensor) -> Tensor:
    (output,) = ctx.saved_tensors
    return getattr(torch.ops.torchinit, ctx.name + "_backward")(grad, output, ctx.dim, ctx.input_dtype)


def _operator_autograd(name: str):
    def setup_context(ctx, inputs, output):
        x, dim, _dtype = inputs
        _save(ctx, x, dim, output, name)

    def backward(ctx, grad):
        return _input_grad(ctx, grad), None, None

    return setup_context, backward


def _register(name: str) -> None:
    define_operator(name, "(Tensor x, int dim, ScalarType? dtype) -> Tensor", _forward(name), _fake_forward,
                    vmap=_vmap_forward(name),
                    sharding=functools.partial(sharding.off_dim, tensors=1),  # (x, dim, dtype): rows along dim
                    autograd=_operator_autograd(name))
    define_operator(name + "_backward", "(Tensor grad, Tensor output, int dim, ScalarType input_dtype) -> Tensor",
                    _backward(name), _fake_backward, vmap=_vmap_backward(name + "_backward"),
                    sharding=functools.partial(sharding.off_dim, tensors=2))  # (grad, output, dim)


for _name in _NAMES:
    _register(_name)


def _function_forward(x, dim, dtype, name):
    return getattr(torch.ops.torchinit, name)(x, dim, dtype)


def _function_setup(ctx, inputs, output):
    x, dim, _dtype, name = inputs
    _save(ctx, x, dim, output, name)


def _function_backward(ctx, grad):
    return _input_grad(ctx, grad), None, None, None


SoftmaxFunction = autograd_function(
    "SoftmaxFunction", _function_forward, _function_setup, _function_backward,
    "Differentiates ``softmax``/``log_softmax`` through the ``torchinit`` operators (saves the output); "
    "``apply(x, dim, dtype, name)``.")


# ---------------------------------------------------------------------------------------------
# functional API
# ---------------------------------------------------------------------------------------------


def _implicit_dim(name: str, ndim: int, stacklevel: int) -> int:
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X "
                  "as an argument.", stacklevel=stacklevel)
    return 0 if ndim in (0, 1, 3) else 1


def _run(name: str, op: str, torch_op, input: Tensor, dim: int | None, stacklevel: int,
         dtype: torch.dtype | None) -> Tensor:
    """One call of ``name`` (operator ``op``, torch's function ``torch_op``): checks, one backend decision
    (:func:`torchinit.backend.route`), then torch's own softmax or torchinit's operator."""
    if not isinstance(input, Tensor):
        raise TypeError(f"torchinit.{name}: argument 'input' must be a torch.Tensor, got {type(input).__name__}")
    if dim is None:
        dim = _implicit_dim(name, input.dim(), stacklevel + 1)
    if dtype is not None:
        if dtype not in FLOATING_SET:
            raise TypeError(f"torchinit.{name}: argument 'dtype' must be float16, bfloat16, float32 or float64, "
                            f"got {dtype}")
        if not input.is_floating_point():  # integers: cast first, as torch does
            input, dtype = input.to(dtype), None
    if input.dtype not in FLOATING_SET:  # torch's own path (its result or its error), as for every activation
        return torch_errors_named(name, torch_op, input, dim)
    if not _route(name, input):
        return torch_op(input, dim) if dtype is None else torch_op(input, dim, dtype=dtype)
    dim = _canonical_dim(name, dim, input.dim())
    if dtype == input.dtype:
        dtype = None
    if not needs_grad(input):
        return getattr(torch.ops.torchinit, op)(input, dim, dtype)
    return SoftmaxFunction.apply(input, dim, dtype, op)


_softmax, _log_softmax = torch.softmax, torch.log_softmax


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim``, as ``torch.nn.functional.softmax``.

    ``dtype`` casts ``input`` before the reduction (the result has that dtype); ``-inf`` entries get
    probability 0 and a row that is all ``-inf`` gives NaN, as in torch. ``dim=None`` picks a dim the
    way torch's deprecated implicit choice does, with its warning.
    """
    return _run("softmax", "softmax", _softmax, input, dim, _stacklevel, dtype)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3,
                dtype: torch.dtype | None = None) -> Tensor:
    """x - log(sum(exp(x))) along ``dim``, as ``torch.nn.functional.log_softmax`` (see :func:`softmax`)."""
    return _run("log_softmax", "log_softmax", _log_softmax, input, dim, _stacklevel, dtype)


def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None) -> Tensor:
    """softmax(-x) along ``dim``, as ``torch.nn.functional.softmin`` (negated before the ``dtype`` cast)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"torchinit.softmin: argument 'input' must be a torch.Tensor, got {type(input).__name__}")
    if dim is None:
        dim = _implicit_dim("softmin", input.dim(), _stacklevel)
    return _run("softmin", "softmax", _softmax, -input, dim, _stacklevel, dtype)


# ---------------------------------------------------------------------------------------------
# modules
# ---------------------------------------------------------------------------------------------


class Softmax(nn.Softmax):
    """:func:`softmax` along ``dim``; ``inplace`` is accepted (for model factories) and computes out of place."""

    def __init__(self, dim: int | None = None, inplace: bool = False) -> None:
        super().__init__(dim)
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return softmax(input, self.dim, _stacklevel=5)


class LogSoftmax(nn.LogSoftmax):
    """:func:`log_softmax` along ``dim``; ``inplace`` is accepted and computes out of place."""

    def __init__(self, dim: int | None = None, inplace: bool = False) -> None:
        super().__init__(dim)
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return log_softmax(input, self.dim, _stacklevel=5)


class Softmin(nn.Softmin):
    """:func:`softmin` along ``dim``; ``inplace`` is accepted and computes out of place."""

    def __init__(self, dim: int | None = None, inplace: bool = False) -> None:
        super().__init__(dim)
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return softmin(input, self.dim, _stacklevel=5)


__all__ = ["LogSoftmax", "Softmax", "SoftmaxFunction", "Softmin", "log_softmax", "softmax", "softmin"]

# torch.fx: record calls of these functions (from the modules above) as single nodes
for _name in ("softmax", "log_softmax", "softmin"):
    torch.fx.wrap(_name)
del _name
