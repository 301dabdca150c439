"""The rational (Padé) activation unit ``P(x) / Q(x)`` with learnable coefficients (Molina et al., ICLR 2020).

``P(x) = a_0 + a_1 x + ... + a_m x^m``, ``Q(x) = 1 + |b_1| |x| + ... + |b_n| |x|^n`` (the "safe"
denominator: ``Q >= 1``, no poles). Operators (namespace ``torchinit``):

* ``rational(Tensor x, Tensor num, Tensor den) -> Tensor``
* ``rational_backward(Tensor grad, Tensor x, Tensor num, Tensor den) -> (Tensor dx, Tensor dnum, Tensor dden)``

In eager torch the unit is about ``3(m + n)`` element-wise kernels forward and more backward, each
writing a full tensor (autograd keeps several of them); the Triton kernels do one pass forward and
one backward, save only ``x``, and reduce the coefficient gradients inside the backward kernel. Math
runs in fp32 (fp64 when ``x`` or the coefficients are fp64); the result has ``x``'s dtype and each
gradient its tensor's dtype.
"""

from __future__ import annotations

import functools

import torch

from .. import kernels, sharding
from ..layout import dense, empty_like, layout_like, layout_ref, to_front
from ..opdef import autograd_function, kernel_or_torch, operator, per_sample, refuse_batched


def _acc(*tensors) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def torch_rational(x: torch.Tensor, num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``P(x) / Q(x)`` in plain (differentiable) torch, computed in fp32 (fp64 for fp64) like the kernels."""
    acc = _acc(x, num, den)
    xf, a, b = x.to(acc), num.to(acc), den.to(acc)
    p = a[-1] * torch.ones_like(xf)
    for j in range(a.numel() - 2, -1, -1):
        p = p * xf + a[j]
    ax = xf.abs()
    q = torch.zeros_like(xf)
    for k in range(b.numel() - 1, -1, -1):
        q = (q + b[k].abs()) * ax
    return (p / (1.0 + q)).to(x.dtype)


def torch_rational_backward(grad, x, num, den):
    """The three gradients of :func:`torch_rational` in plain torch (the formulas the kernel uses)."""
    acc = _acc(x, num, den)
    xf, a, b, g = x.to(acc), num.to(acc), den.to(acc), grad.to(acc)
    m, n = a.numel() - 1, b.numel()
    powers = [torch.ones_like(xf)]
    for _ in range(max(m, n)):
        powers.append(powers[-1] * xf)
    ax = xf.abs()
    apowers = [torch.ones_like(xf)]
    for _ in range(n):
        apowers.append(apowers[-1] * ax)
    p = sum(a[j] * powers[j] for j in range(m + 1))
    q = 1.0 + sum((b[k - 1].abs() * apowers[k] for k in range(1, n + 1)), torch.zeros_like(xf))
    dp = sum((j * a[j] * powers[j - 1] for j in range(1, m + 1)), torch.zeros_like(xf))
    dq = sum((k * b[k - 1].abs() * apowers[k - 1] for k in range(1, n + 1)), torch.zeros_like(xf)) * torch.sign(xf)
    y = p / q
    dx = g * (dp - y * dq) / q
    gq = g / q
    da = torch.stack([(gq * powers[j]).sum() for j in range(m + 1)])
    db = (torch.stack([(-gq * y * apowers[k]).sum() * torch.sign(b[k - 1]) for k in range(1, n + 1)])
          if n else b.new_zeros(0))
    return dx.to(x.dtype), da.to(num.dtype), db.to(den.dtype)


def _coefficients(x, num, den) -> tuple[torch.Tensor, torch.Tensor]:
    acc = _acc(x, num, den)
    return num.detach().to(acc).contiguous(), den.detach().to(acc).contiguous()


def _kernel(x, num, den):
    xd = dense(x)
    return kernels.rational.launch_rational_forward(xd, *_coefficients(x, num, den), empty_like(xd))


def _torch(x, num, den):
    return layout_like(torch_rational(x, num, den), layout_ref(x))


def _backward_kernel(grad, x, num, den):
    xd = dense(x)
    dx = empty_like(xd)
    sums = kernels.rational.launch_rational_backward(layout_like(grad, xd), xd, *_coefficients(x, num, den), dx)
    m = num.numel()
    # clones: the two coefficient gradients must not alias one buffer
    return dx, sums[:m].to(num.dtype).reshape(num.shape).clone(), sums[m:].to(den.dtype).reshape(den.shape).clone()


def _backward_torch(grad, x, num, den):
    dx, da, db = torch_rational_backward(grad, x, num, den)
    return layout_like(dx, layout_ref(x)), da.contiguous(), db.contiguous()


def _vmap(info, in_dims, x, num, den):
    refuse_batched("rational", in_dims, (1, 2), "the coefficients")
    return torch.ops.torchinit.rational(to_front(x, in_dims[0], info.batch_size), num, den), 0


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:3])


def _grad(ctx, grad):
    x, num, den = ctx.saved_tensors
    return torch.ops.torchinit.rational_backward(grad, x, num, den)


# DTensor: element-wise in x; the coefficients apply to every element (their gradients are sums: Partial)
operator("rational", "(Tensor x, Tensor num, Tensor den) -> Tensor", kernel_or_torch(_kernel, _torch),
         lambda x, num, den: torch.empty_like(x), vmap=_vmap, autograd=(_setup, _grad),
         sharding=functools.partial(sharding.pointwise, elementwise=1, params=("whole", "whole")))
operator("rational_backward", "(Tensor grad, Tensor x, Tensor num, Tensor den) -> (Tensor, Tensor, Tensor)",
         kernel_or_torch(_backward_kernel, _backward_torch, device_of=1),
         lambda grad, x, num, den: (torch.empty_like(x), torch.empty_like(num, memory_format=torch.contiguous_format),
                                    torch.empty_like(den, memory_format=torch.contiguous_format)),
         vmap=per_sample("rational_backward", 2, (2, 3), "the coefficients"),
         sharding=functools.partial(sharding.pointwise, elementwise=2, params=("whole", "whole"),
                                    outputs=("elementwise", "param_grad", "param_grad")))

RationalFunction = autograd_function(
    "RationalFunction", lambda x, num, den: torch.ops.torchinit.rational(x, num, den), _setup, _grad,
    "Differentiates ``P(x) / Q(x)`` through ``torchinit::rational`` / ``rational_backward``.")


# ---------------------------------------------------------------------------------------------
# initialisation: least squares against a named activation
# ---------------------------------------------------------------------------------------------

FIT_RANGE = (-4.0, 4.0)
FIT_POINTS = 2001


@functools.lru_cache(maxsize=64)
def _fit(act: str, m: int, n: int) -> tuple[tuple[float, ...], tuple[float, ...], float]:
    from ..activations import ACTIVATIONS

    resolved = ACTIVATIONS[act].resolve(**ACTIVATIONS[act].defaults)
    x = torch.linspace(*FIT_RANGE, FIT_POINTS, dtype=torch.float64)
    target = resolved.formula.forward(x, *resolved.params(), False)
    # 1) linear least squares of P(x) - f(x) (Q(x) - 1) = f(x) with Q(x) - 1 = sum_k c_k |x|^k
    cols = [x ** j for j in range(m + 1)] + [-target * x.abs() ** k for k in range(1, n + 1)]
    coef = torch.linalg.lstsq(torch.stack(cols, 1), target[:, None]).solution[:, 0]
    a = coef[: m + 1].clone()
    b = coef[m + 1:].abs().clamp_min(1e-3)  # the safe form takes |b_k|: start from valid magnitudes
    # 2) refine on the true (nonlinear) objective, the mean squared error of P / Q
    a.requires_grad_()
    b.requires_grad_()
    opt = torch.optim.LBFGS([a, b], lr=1.0, max_iter=500, tolerance_grad=1e-14, tolerance_change=1e-16,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (torch_rational(x, a, b) - target).square().mean()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        err = float((torch_rational(x, a, b) - target).abs().max())
    return tuple(a.detach().tolist()), tuple(b.detach().tolist()), err


def rational_init(act: str = "gelu", degrees: tuple[int, int] = (5, 4)) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Coefficients ``(num, den)`` approximating activation ``act``, and the max abs error on the fit range.

    Least squares on 2001 points of [-4, 4] (fp64): first the linearised problem
    ``P(x) - f(x) (Q(x) - 1) = f(x)``, then L-BFGS on the mean squared error of ``P / Q`` itself.
    Cached per (act, degrees).
    """
    from ..activations import ACTIVATIONS

    if act not in ACTIVATIONS or any(d is None for d in ACTIVATIONS[act].defaults.values()):  # a tensor argument
        raise ValueError(f"torchinit.Rational: argument 'approximate' must name an activation of "
                         f"torchinit.functional without learnable tensors, got {act!r}")
    m, n = degrees
    if not (isinstance(m, int) and isinstance(n, int) and m >= 0 and n >= 0):
        raise ValueError(f"torchinit.Rational: argument 'degrees' must be two integers >= 0, got {degrees!r}")
    num, den, err = _fit(act, m, n)
    return torch.tensor(num, dtype=torch.float64), torch.tensor(den, dtype=torch.float64), err


__all__ = ["RationalFunction", "rational_init", "torch_rational"]
