"""Autograd of the activation operators: one setup/backward pair, used twice.

* ``register_autograd`` on every ``torchinit::<formula>`` forward operator, so the bare operators in an
  exported program stay differentiable;
* :class:`ActivationFunction`, the new-style ``torch.autograd.Function`` (``setup_context``, generated
  vmap rule; made by :func:`~torchinit.opdef.autograd_function`, as every torchinit Function) the functional
  API differentiates through: it also works under ``torch.func.grad`` /
  ``vmap``, which ``register_autograd`` does not, up to at least torch 2.14.

Backward saves the input or the output (the formula's ``saves``) and the weights, and calls
:func:`~torchinit.param_ops.activation_backward`. Double backward is not supported.
"""

from __future__ import annotations

import torch

from .activations import FORMULAS, Formula
from .opdef import LIB, autograd_function
from .param_ops import activation_backward


def _save(ctx, formula: Formula, inputs: tuple, output: torch.Tensor) -> None:
    """What backward keeps of one call ``(x, w0, w1, p0, p1, p2, ...)``: the formula, its scalars, the saved
    tensor and the weights."""
    x, w0, w1, p0, p1, p2 = inputs[:6]
    ctx.formula = formula
    ctx.scalars = (p0, p1, p2)
    ctx.save_for_backward(output if formula.saves == "output" else x, w0, w1)


def _grads(ctx, grad: torch.Tensor, needs: tuple[bool, bool, bool]) -> tuple:
    saved, w0, w1 = ctx.saved_tensors
    return activation_backward(ctx.formula, grad, saved, w0, w1, ctx.scalars, needs)


def _register(formula: Formula) -> None:
    def setup_context(ctx, inputs, output):
        _save(ctx, formula, inputs, output)

    def backward(ctx, grad):
        return (*_grads(ctx, grad, (True,) + tuple(ctx.needs_input_grad[1:3])), None, None, None)

    torch.library.register_autograd(f"torchinit::{formula.name}", backward, setup_context=setup_context, lib=LIB)


for _formula in FORMULAS.values():
    _register(_formula)
del _formula


def _function_forward(x, w0, w1, p0, p1, p2, name, inplace):
    if inplace:
        getattr(torch.ops.torchinit, name + "_")(x, w0, w1, p0, p1, p2)
        return x
    return getattr(torch.ops.torchinit, name)(x, w0, w1, p0, p1, p2)


def _function_setup_context(ctx, inputs, output):
    if inputs[7]:
        ctx.mark_dirty(inputs[0])
    _save(ctx, FORMULAS[inputs[6]], inputs, output)


def _function_backward(ctx, grad):
    return (*_grads(ctx, grad, tuple(ctx.needs_input_grad[:3])), None, None, None, None, None)


ActivationFunction = autograd_function(
    "ActivationFunction", _function_forward, _function_setup_context, _function_backward,
    """Differentiates one activation call through the ``torchinit::<formula>`` operators.

    ``apply(x, w0, w1, p0, p1, p2, formula_name, inplace)``: the operator's own arguments first.
    """)


__all__ = ["ActivationFunction"]
