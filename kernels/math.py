"""The Triton form of every activation's math: one ``<name>_fwd`` / ``<name>_bwd`` pair each.

Conventions shared by every pair (the generic kernels in ``elementwise.py`` and ``gated.py`` rely on them):

* ``<name>_fwd(x, p0, p1, p2)`` returns the activation of ``x``; ``p0..p2`` are the activation's
  parameters (unused ones are passed as 0). Everything is computed in fp32 (fp64 for fp64 tensors).
* ``<name>_bwd(g, s, p0, p1, p2)`` returns the input gradient from the incoming gradient ``g`` and the
  saved tensor ``s``: the activation's *output* for the entries whose torch form declares
  ``saves="output"`` in ``torchinit/activations.py``, its *input* otherwise.
* The formulas follow the order of operations of torch's own kernels, so that special values (inf,
  NaN, -0.0, overflow points) give what torch gives.

``exp``, ``expm1``, ``log1p`` and ``tanh`` are libdevice's on the compiled path (accurate to 1-2 ulp, and
cheaper than forms built on ``tl.exp``); under Triton's interpreter, which cannot run libdevice, ``libm``
supplies numpy stand-ins, so the formulas here are written once for both.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .libm import primitives as libm

# ---------------------------------------------------------------------------------------------
# building blocks: the transcendental primitives come from ``libm`` (libdevice when compiled)
# ---------------------------------------------------------------------------------------------


@triton.jit
def _sigmoid(x):
    # 1 / (1 + exp(-x)) for x >= 0, exp(x) / (1 + exp(x)) below: exp never overflows, and the left tail keeps
    # its digits down to the subnormals (1 / (1 + inf) is 0 from x = -88.7 on)
    e = libm.exp(-tl.abs(x))
    return tl.where(x >= 0, 1.0, e) / (1.0 + e)


@triton.jit
def _sigmoid_and_complement(x):
    # (sigmoid(x), 1 - sigmoid(x) = sigmoid(-x)), each without cancellation in either tail
    e = libm.exp(-tl.abs(x))
    r = 1.0 / (1.0 + e)
    er = e * r
    return tl.where(x >= 0, r, er), tl.where(x >= 0, er, r)


# ---------------------------------------------------------------------------------------------
# relu family (piecewise linear)
# ---------------------------------------------------------------------------------------------


@triton.jit
def relu_fwd(x, p0, p1, p2):
    return tl.where(x < 0, 0.0, x)


@triton.jit
def relu_bwd(g, y, p0, p1, p2):
    return tl.where(y <= 0, 0.0, g)


@triton.jit
def hardtanh_fwd(x, p0, p1, p2):
    # p0 = min_val, p1 = max_val; NaN stays NaN like torch's clamp
    y = tl.where(x < p0, p0, x)
    return tl.where(y > p1, p1, y)


@triton.jit
def hardtanh_bwd(g, s, p0, p1, p2):
    # valid from input or output: the output lies strictly inside (min, max) iff the input does;
    # NaN is outside (torch gives it a zero gradient)
    return tl.where((s > p0) & (s < p1), g, 0.0)


@triton.jit
def leaky_relu_fwd(x, p0, p1, p2):
    return tl.where(x > 0, x, x * p0)


@triton.jit
def leaky_relu_bwd(g, s, p0, p1, p2):
    # valid from the output when negative_slope >= 0 (sign of output == sign of input)
    return tl.where(s > 0, g, g * p0)


@triton.jit
def prelu_fwd(x, p0, p1, p2):
    # p0 is the per-channel weight, gathered per element by the kernel
    return tl.where(x > 0, x, p0 * x)


@triton.jit
def prelu_bwd(g, x, p0, p1, p2):
    return tl.where(x > 0, g, p0 * g)


@triton.jit
def squared_relu_fwd(x, p0, p1, p2):
    r = tl.where(x < 0, 0.0, x)
    return r * r


@triton.jit
def squared_relu_bwd(g, x, p0, p1, p2):
    r = tl.where(x < 0, 0.0, x)
    return tl.where(r <= 0, 0.0, 2.0 * r * g)


@triton.jit
def star_relu_fwd(x, p0, p1, p2):
    # p0 = scale, p1 = bias
    r = tl.where(x < 0, 0.0, x)
    return (p0 * r) * r + p1  # scale first: r * r overflows from 1.8e19 on, scale * r**2 a little later


@triton.jit
def star_relu_bwd(g, x, p0, p1, p2):
    r = tl.where(x < 0, 0.0, x)
    return tl.where(r <= 0, 0.0, 2.0 * (p0 * r) * g)


# ---------------------------------------------------------------------------------------------
# exponential family
# ---------------------------------------------------------------------------------------------


@triton.jit
def elu_fwd(x, p0, p1, p2):
    # p0 = alpha, p1 = scale, p2 = input_scale (elu: 1, 1; selu: fixed constants; celu: 1, 1/alpha)
    # the exponential branch for x < 0 only: at +-0 torch returns x * scale (so +0 stays +0 when alpha < 0)
    return tl.where(x < 0, libm.expm1(x * p2) * (p0 * p1), x * p1)


@triton.jit
def elu_bwd(g, y, p0, p1, p2):
    # from the output, valid for alpha >= 0
    return tl.where(y > 0, g * p1, g * p2 * (y + p0 * p1))


elu_from_input_fwd = elu_fwd  # same forward; backward from the input, for alpha < 0


@triton.jit
def elu_from_input_bwd(g, x, p0, p1, p2):
    return tl.where(x > 0, g * p1, g * p2 * (p0 * p1) * libm.exp(x * p2))


@triton.jit
def softplus_fwd(x, p0, p1, p2):
    # p0 = beta, p1 = threshold
    xb = x * p0
    return tl.where(xb > p1, x, libm.log1p(libm.exp(xb)) / p0)


@triton.jit
def softplus_bwd(g, x, p0, p1, p2):
    xb = x * p0
    z = libm.exp(xb)
    return tl.where(xb > p1, g, g * z / (z + 1.0))


@triton.jit
def logsigmoid_fwd(x, p0, p1, p2):
    m = tl.where(x < 0, x, 0.0)
    return m - libm.log1p(libm.exp(-tl.abs(x)))


@triton.jit
def logsigmoid_bwd(g, x, p0, p1, p2):
    neg = x < 0
    max_deriv = tl.where(neg, 1.0, 0.0)
    sign = tl.where(neg, 1.0, -1.0)
    z = libm.exp(-tl.abs(x))
    return g * (max_deriv - sign * (z / (1.0 + z)))


# ---------------------------------------------------------------------------------------------
# sigmoid family
# ---------------------------------------------------------------------------------------------


@triton.jit
def sigmoid_fwd(x, p0, p1, p2):
    return _sigmoid(x)


@triton.jit
def sigmoid_bwd(g, y, p0, p1, p2):
    return g * (1.0 - y) * y


@triton.jit
def tanh_fwd(x, p0, p1, p2):
    return libm.tanh(x)


@triton.jit
def tanh_bwd(g, y, p0, p1, p2):
    return g * (1.0 - y * y)


@triton.jit
def silu_fwd(x, p0, p1, p2):
    return x * _sigmoid(x)


@triton.jit
def silu_bwd(g, x, p0, p1, p2):
    s, sc = _sigmoid_and_complement(x)
    return g * (s * (1.0 + x * sc))


@triton.jit
def swish_fwd(x, p0, p1, p2):
    # p0 = beta
    return x * _sigmoid(p0 * x)


@triton.jit
def swish_bwd(g, x, p0, p1, p2):
    s, sc = _sigmoid_and_complement(p0 * x)
    a = x * s * sc  # 0 where sc underflows (also when p0 * x overflows): the tail's limit, as in fp64
    return g * (s + tl.where(a == 0.0, 0.0, p0 * a))


@triton.jit
def _mish_tanh_softplus(x):
    # tanh(softplus(x)) = n / (n + 2) with n = e * (e + 2), e = exp(x): one exp and one division instead of
    # tanh(log1p(exp(x))). Past x = 20 (fp32; 40 in fp64) it is 1 to the dtype's precision and e * e would
    # soon overflow, so x is clamped there (the callers select the large-x limits themselves).
    if x.dtype == tl.float64:
        limit = 40.0
    else:
        limit = 20.0
    e = libm.exp(tl.minimum(x, limit))
    n = e * (e + 2.0)
    return n / (n + 2.0), e, n, limit


@triton.jit
def mish_fwd(x, p0, p1, p2):
    t, e, n, limit = _mish_tanh_softplus(x)
    return tl.where(x > limit, x, x * t)


@triton.jit
def mish_bwd(g, x, p0, p1, p2):
    # d/dx x tanh(sp(x)) = t + x sigmoid(x) (1 - t^2), with 1 - t^2 = 4 (n + 1) / (n + 2)^2 (no cancellation)
    t, e, n, limit = _mish_tanh_softplus(x)
    d = n + 2.0
    s = e / (1.0 + e)
    # past the limit the gradient is 1; x * 0 keeps torch's NaN at x = +inf (its tail term is inf * 0 there)
    return tl.where(x > limit, g * (1.0 + x * 0.0), g * (t + x * s * (4.0 * (n + 1.0) / (d * d))))


@triton.jit
def gelu_fwd(x, p0, p1, p2):
    # Phi(x) = erfc(-x / sqrt 2) / 2: no cancellation in the left tail (1 + erf there is 1 - 1)
    return x * 0.5 * libm.erfc(x * -0.7071067811865476)


@triton.jit
def gelu_bwd(g, x, p0, p1, p2):
    cdf = 0.5 * libm.erfc(x * -0.7071067811865476)
    pdf = libm.exp(-0.5 * x * x) * 0.3989422804014327
    return g * (cdf + x * pdf)


@triton.jit
def gelu_tanh_fwd(x, p0, p1, p2):
    # 0.5 (1 + tanh(u)) = sigmoid(2u): one exp and one division, and no cancellation in the left tail
    inner = 0.7978845608028654 * (x + 0.044715 * (x * x * x))
    return x * _sigmoid(2.0 * inner)


@triton.jit
def gelu_tanh_bwd(g, x, p0, p1, p2):
    # d/dx x s(2u) = s + 2 x u' s (1 - s), s = sigmoid(2u), u = k (x + c x^3), u' = k (1 + 3 c x^2)
    x_sq = x * x
    inner = 0.7978845608028654 * (x + 0.044715 * (x_sq * x))
    s, sc = _sigmoid_and_complement(2.0 * inner)
    inner_derivative = 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x_sq)
    a = x * s * sc
    # for huge finite |x| (x**2 overflows: |x| > ~1.8e19 in fp32) s * sc is exactly 0 and u' is inf; the tail's
    # limit (and fp64's value) is 0, so the gradient is 1 (x > 0) or 0 (x < 0); at +-inf a is NaN, as in torch
    tail = tl.where(a == 0.0, 0.0, 2.0 * a * inner_derivative)
    return g * (s + tail)


# ---------------------------------------------------------------------------------------------
# hard (piecewise) approximations and the rest
# ---------------------------------------------------------------------------------------------


@triton.jit
def hardswish_fwd(x, p0, p1, p2):
    # torch's order: x * clamp(x + 3, 0, 6) / 6 (so -inf gives NaN, as in torch)
    r = x + 3.0
    r = tl.where(r < 0, 0.0, r)
    r = tl.where(r > 6.0, 6.0, r)
    # x itself from x >= 3 on (x * 6 / 6 would overflow near the largest finite values)
    return tl.where(r >= 6.0, x, x * r / 6.0)


@triton.jit
def hardswish_bwd(g, x, p0, p1, p2):
    return tl.where(x <= -3.0, 0.0, tl.where(x >= 3.0, g, g * ((2.0 * x + 3.0) / 6.0)))


@triton.jit
def hardsigmoid_fwd(x, p0, p1, p2):
    r = x + 3.0
    r = tl.where(r < 0, 0.0, r)
    r = tl.where(r > 6.0, 6.0, r)
    return r / 6.0


@triton.jit
def hardsigmoid_bwd(g, x, p0, p1, p2):
    return tl.where((x > -3.0) & (x < 3.0), g / 6.0, 0.0)


@triton.jit
def softsign_fwd(x, p0, p1, p2):
    return x / (1.0 + tl.abs(x))


@triton.jit
def softsign_bwd(g, x, p0, p1, p2):
    # 1 / d - |x| / d^2 = 1 / d^2 with d = 1 + |x| (no cancellation); x - x keeps torch's NaN at +-inf
    d = 1.0 + tl.abs(x)
    return (g + (x - x)) / (d * d)


@triton.jit
def _tanhshrink_series(x):
    # x - tanh(x) = x^3 (1/3 - 2 x^2 / 15 + ...): its Taylor series to x^31 (15 terms), relative truncation
    # error below 1e-8 for |x| <= 0.85, where x - tanh(x) cancels (at 0.85 it loses 2 of 24 bits, at 1e-3 all)
    x2 = x * x
    p = 1.0597268320104654e-06
    p = p * x2 + -2.6147711512907546e-06
    p = p * x2 + 6.451689215655431e-06
    p = p * x2 + -1.5918905069328964e-05
    p = p * x2 + 3.927832388331683e-05
    p = p * x2 + -9.691537956929451e-05
    p = p * x2 + 0.00023912911424355248
    p = p * x2 + -0.000590027440945586
    p = p * x2 + 0.0014558343870513183
    p = p * x2 + -0.003592128036572481
    p = p * x2 + 0.008863235529902197
    p = p * x2 + -0.021869488536155203
    p = p * x2 + 0.05396825396825397
    p = p * x2 + -0.13333333333333333
    p = p * x2 + 0.3333333333333333
    return x * x2 * p


@triton.jit
def tanhshrink_fwd(x, p0, p1, p2):
    if x.dtype == tl.float64:  # fp64 keeps the plain difference (the series would need ~32 terms there)
        return x - libm.tanh(x)
    else:
        # + 0.0: x - tanh(x) is +0 at -0 and where it underflows, as in torch; the series' product would be -0
        return tl.where(tl.abs(x) <= 0.85, _tanhshrink_series(x) + 0.0, x - libm.tanh(x))


@triton.jit
def tanhshrink_bwd(g, x, p0, p1, p2):
    t = libm.tanh(x)
    return g * (t * t)  # 1 - (1 - t^2), without the cancellation


# ---------------------------------------------------------------------------------------------
# parameter gradients of the learnable formulas: ``<name>_pgrad(g, x, p0, p1, p2) -> (d p0, d p1)``
# per element (the kernels in ``channel_reduce.py`` sum them per channel or over the tensor); the
# torch forms are ``param_grads`` in ``torchinit/activations.py``
# ---------------------------------------------------------------------------------------------


@triton.jit
def prelu_pgrad(g, x, p0, p1, p2):
    return tl.where(x > 0, 0.0, x * g), 0.0 * g


@triton.jit
def swish_pgrad(g, x, p0, p1, p2):
    s, sc = _sigmoid_and_complement(p0 * x)
    return g * x * x * s * sc, 0.0 * g


@triton.jit
def star_relu_pgrad(g, x, p0, p1, p2):
    r = tl.where(x < 0, 0.0, x)
    return g * (r * r), g
