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

from .libm import fma, primitives as libm

# ---------------------------------------------------------------------------------------------
# building blocks: the transcendental primitives come from ``libm`` (libdevice when compiled)
# ---------------------------------------------------------------------------------------------


# exp(-|z|) is subnormal in fp32 below z = -87.3, while x * exp(-|z|) (silu, mish, swish, gelu_tanh) stays
# normal a few units further: there it is computed as exp(-|z| + 37) * e**-37 with the scale applied last, so no
# intermediate loses digits to the subnormal range (-|z| + 37 is exact for |z| >= 18.5; fp32's e**-37 is within
# 0.007 ulp of the true value)
_TAIL = tl.constexpr(-80.0)
_TAIL_SHIFT = tl.constexpr(37.0)
_TAIL_SCALE = tl.constexpr(8.533047625744066e-17)  # exp(-37)


@triton.jit
def _recip(d):
    # 1 / d for 1 <= |d| < 2**126: the fast reciprocal (libm.fast_dividef, MUFU.RCP) when compiled, which needs
    # none of the range fix-ups of div.full.f32; IEEE division in fp64
    if d.dtype == tl.float64:
        return 1.0 / d
    else:
        return libm.fast_dividef(1.0, d)


@triton.jit
def _exp(x, EXACT: tl.constexpr):
    # libdevice's exp (about 9 instructions, 1-2 ulp), or without EXACT (fp32 math only) libm.fast_expf:
    # ex2.approx of x * log2(e) (two instructions), whose error grows to |x| 2**-24 relative from the rounded
    # product (2**-17.5 at |x| = 88), subnormal results flushed to 0
    if EXACT or x.dtype == tl.float64:
        return libm.exp(x)
    else:
        return libm.fast_expf(x)


@triton.jit
def _log_half(x):
    # log for the _half entry points: libm.fast_logf (lg2.approx times ln 2, absolute error ~2**-22) in fp32
    if x.dtype == tl.float64:
        return tl.log(x)
    else:
        return libm.fast_logf(x)


@triton.jit
def _divide(n, d, dl, r, EXACT: tl.constexpr):
    # n / (d + dl) for finite n from r ~ 1 / d (the fast reciprocal): with EXACT one Newton step on the quotient,
    # with the divisor's low part dl (0 where d is exact), so the result is within about half an ulp whatever r's
    # own error; the correction is written q - c r (c = q (d + dl) - n) so a zero quotient keeps its sign.
    # Without EXACT (the _half entry points) n * r.
    q = n * r
    if EXACT:
        q = fma(-fma(q, dl, fma(q, d, -n)), r, q)
    return q


@triton.jit
def _logistic(z, zl, COMPENSATED: tl.constexpr, TAIL: tl.constexpr, EXACT_EXP: tl.constexpr):
    # The parts of sigmoid(z + zl) from one exp and one fast reciprocal, without cancellation in either tail.
    # TAIL: scale the exp below -80 (for the x * sigmoid forms; see _TAIL). ``zl`` is the low part of an argument
    # computed as a double-float (swish's beta * x, gelu_tanh's cubic): the
    # exp of the rounded argument is corrected by exp(-sign * zl) = 1 - sign * zl (only when COMPENSATED).
    # Returns (pos, big_e, s_scale, e, d, dl, r): pos = z >= 0; e = exp(-|z + zl|), d + dl = 1 + e exactly, r ~ 1 / d; on the
    # negative side e = big_e * s_scale (s_scale = e**-37 where that keeps big_e normal, else 1; s_scale = 1 on the
    # positive side). Then sigmoid = where(pos, 1, big_e) / d * s_scale and 1 - sigmoid = where(pos, e, 1) / d;
    # products that stay normal multiply by ``s_scale`` last.
    pos = z >= 0
    a = -tl.abs(z)
    if TAIL:
        tail = a < _TAIL
        big_e = libm.exp(tl.where(tail, a + _TAIL_SHIFT, a))
    else:
        big_e = _exp(a, EXACT_EXP)
    if COMPENSATED:
        big_e = fma(big_e, tl.where(pos, -zl, zl), big_e)
    if TAIL:
        scale = tl.where(tail, _TAIL_SCALE, 1.0)
        e = big_e * scale
        s_scale = tl.where(pos, 1.0, scale)
    else:
        e = big_e
        s_scale = 1.0
    d = 1.0 + e
    dl = (1.0 - d) + e  # 1 + e = d + dl exactly (e <= 1)
    return pos, big_e, s_scale, e, d, dl, _recip(d)


@triton.jit
def _sigmoid_and_complement(x):
    # (sigmoid(x), 1 - sigmoid(x) = sigmoid(-x)), each without cancellation in either tail
    pos, _big_e, _s_scale, e, d, dl, r = _logistic(x, 0.0, False, False, True)
    er = _divide(e, d, dl, r, True)
    return tl.where(pos, r, er), tl.where(pos, er, r)


@triton.jit
def _two_product(a, b):
    # a * b = h + l exactly (FMA), for the arguments of exp whose rounding the result would magnify
    h = a * b
    return h, tl.where(h - h == 0.0, fma(a, b, -h), 0.0)  # 0 where h is not finite (inf - inf)


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
    # scale first (r * r overflows from 1.8e19 on, scale * r**2 a little later), and scale * r as a double-float
    # with both products fused: near the root (scale * r**2 = -bias) the result is far below the terms, and
    # (scale * r) * r + bias lost every digit there (1927 ulp at 0.7071 with the default parameters)
    h, l = _two_product(p0, r)
    y = fma(h, r, p1)
    return tl.where(y - y == 0.0, fma(l, r, y), y)  # inf and NaN as the plain form gives them


@triton.jit
def star_relu_bwd(g, x, p0, p1, p2):
    r = tl.where(x < 0, 0.0, x)
    return tl.where(r <= 0, 0.0, 2.0 * (p0 * r) * g)


# ---------------------------------------------------------------------------------------------
# exponential family
# ---------------------------------------------------------------------------------------------


@triton.jit
def _expm1_half(x):
    # expm1 for the _half entry points: its Taylor series to x**4 below |x| = 1/32 (relative truncation error
    # < 1e-8), exp(x) - 1 (the fast exp) above, where the subtraction loses at most 5 bits
    small = x * (1.0 + x * (0.5 + x * (0.16666666666666666 + x * 0.041666666666666664)))
    return tl.where(tl.abs(x) < 0.03125, small, _exp(x, False) - 1.0)


@triton.jit
def _log1p_half(t):
    # log1p for t >= 0 for the _half entry points: t (1 - t/2 + t**2/3) below 2**-7 (relative truncation error
    # < 2**-16), log(1 + t) (the fast log, absolute error ~2**-22: 2**-15 relative at worst) above
    small = t * (1.0 - t * (0.5 - t * 0.3333333333333333))
    return tl.where(t < 0.0078125, small, _log_half(1.0 + t))


@triton.jit
def elu_fwd(x, p0, p1, p2):
    # p0 = alpha, p1 = scale, p2 = input_scale (elu: 1, 1; selu: fixed constants; celu: 1, 1/alpha)
    # the exponential branch for x < 0 only: at +-0 torch returns x * scale (so +0 stays +0 when alpha < 0)
    return tl.where(x < 0, libm.expm1(x * p2) * (p0 * p1), x * p1)


@triton.jit
def elu_fwd_half(x, p0, p1, p2):
    return tl.where(x < 0, _expm1_half(x * p2) * (p0 * p1), x * p1)


@triton.jit
def elu_bwd(g, y, p0, p1, p2):
    # from the output, valid for alpha >= 0
    return tl.where(y > 0, g * p1, g * p2 * (y + p0 * p1))


elu_bwd_half = elu_bwd  # no transcendental to spare
elu_from_input_fwd = elu_fwd  # same forward; backward from the input, for alpha < 0
elu_from_input_fwd_half = elu_fwd_half


@triton.jit
def _elu_from_input_bwd(g, x, p0, p1, p2, EXACT: tl.constexpr):
    return tl.where(x > 0, g * p1, g * p2 * (p0 * p1) * _exp(x * p2, EXACT))


@triton.jit
def elu_from_input_bwd(g, x, p0, p1, p2):
    return _elu_from_input_bwd(g, x, p0, p1, p2, True)


@triton.jit
def elu_from_input_bwd_half(g, x, p0, p1, p2):
    return _elu_from_input_bwd(g, x, p0, p1, p2, False)


@triton.jit
def softplus_fwd(x, p0, p1, p2):
    # p0 = beta, p1 = threshold
    xb = x * p0
    return tl.where(xb > p1, x, libm.log1p(libm.exp(xb)) / p0)


@triton.jit
def softplus_fwd_half(x, p0, p1, p2):
    xb = x * p0
    return tl.where(xb > p1, x, _log1p_half(_exp(xb, False)) * (1.0 / p0))


@triton.jit
def _softplus_bwd(g, x, p0, p1, p2, EXACT: tl.constexpr):
    # z / (z + 1) with z = exp(beta x) <= exp(threshold): the fast reciprocal (refined with EXACT)
    xb = x * p0
    z = _exp(xb, EXACT)
    d = z + 1.0
    return tl.where(xb > p1, g, g * _divide(z, d, 0.0, _recip(d), EXACT))


@triton.jit
def softplus_bwd(g, x, p0, p1, p2):
    return _softplus_bwd(g, x, p0, p1, p2, True)


@triton.jit
def softplus_bwd_half(g, x, p0, p1, p2):
    return _softplus_bwd(g, x, p0, p1, p2, False)


@triton.jit
def logsigmoid_fwd(x, p0, p1, p2):
    m = tl.where(x < 0, x, 0.0)
    return m - libm.log1p(libm.exp(-tl.abs(x)))


@triton.jit
def logsigmoid_fwd_half(x, p0, p1, p2):
    m = tl.where(x < 0, x, 0.0)
    return m - _log1p_half(_exp(-tl.abs(x), False))


@triton.jit
def _logsigmoid_bwd(g, x, p0, p1, p2, EXACT: tl.constexpr):
    neg = x < 0
    max_deriv = tl.where(neg, 1.0, 0.0)
    sign = tl.where(neg, 1.0, -1.0)
    z = _exp(-tl.abs(x), EXACT)
    d = 1.0 + z
    return g * (max_deriv - sign * _divide(z, d, (1.0 - d) + z, _recip(d), EXACT))


@triton.jit
def logsigmoid_bwd(g, x, p0, p1, p2):
    return _logsigmoid_bwd(g, x, p0, p1, p2, True)


@triton.jit
def logsigmoid_bwd_half(g, x, p0, p1, p2):
    return _logsigmoid_bwd(g, x, p0, p1, p2, False)


# ---------------------------------------------------------------------------------------------
# sigmoid family
# ---------------------------------------------------------------------------------------------


@triton.jit
def sigmoid_fwd(x, p0, p1, p2):
    pos, _big_e, _s_scale, e, d, dl, r = _logistic(x, 0.0, False, False, True)
    return _divide(tl.where(pos, 1.0, e), d, dl, r, True)


@triton.jit
def sigmoid_bwd(g, y, p0, p1, p2):
    return g * (1.0 - y) * y


@triton.jit
def tanh_fwd(x, p0, p1, p2):
    return libm.tanh(x)


@triton.jit
def tanh_bwd(g, y, p0, p1, p2):
    # 1 - y**2 as (1 - |y|) (1 + |y|): 1 - |y| is exact for |y| >= 1/2, where 1 - y * y lost up to 10 bits
    a = tl.abs(y)
    return g * ((1.0 - a) * (1.0 + a))


@triton.jit
def _x_sigmoid(x, z, zl, COMPENSATED: tl.constexpr, EXACT: tl.constexpr):
    # x * sigmoid(z + zl); EXACT: with the left tail's exp scaled and the division refined (see _logistic)
    pos, big_e, s_scale, _e, d, dl, r = _logistic(z, zl, COMPENSATED, EXACT, EXACT)
    return (x * s_scale) * _divide(tl.where(pos, 1.0, big_e), d, dl, r, EXACT)


@triton.jit
def _x_sigmoid_bwd(x, z, zl, dz, COMPENSATED: tl.constexpr, EXACT: tl.constexpr, SUM_FORM: tl.constexpr):
    # d/dx x * sigmoid(z(x)) = s + x * z'(x) * s * (1 - s), s = sigmoid(z): evaluated as s * (1 + x z' (1 - s))
    # with s's tail scale applied last. x * z' * s * (1 - s) is taken as exactly 0 where s or 1 - s underflows
    # (also when z or z' overflows), the tail's limit as in fp64; at +-inf it is NaN, as in torch. SUM_FORM: zeros
    # carry the sign of torch's form s + x z' s (1 - s) (always +0), else that of s (1 + x (1 - s)) (silu's).
    pos, big_e, s_scale, e, d, dl, r = _logistic(z, zl, COMPENSATED, EXACT, EXACT)
    sc = _divide(tl.where(pos, e, 1.0), d, dl, r, EXACT)
    s_scaled = _divide(tl.where(pos, 1.0, big_e), d, dl, r, EXACT)
    a = x * sc
    factor = fma(a, dz, 1.0)
    factor = tl.where((factor - factor != 0.0) & (a * s_scaled == 0.0), 1.0, factor)  # inf * 0: the limit
    d = (s_scaled * factor) * s_scale
    if SUM_FORM:
        d = d + 0.0
    return d


# ``<name>_fwd_half`` / ``<name>_bwd_half``: the same formula without the steps that only fp32 (and fp64) outputs
# can see (the exp's tail scaling, double-float arguments, the Newton step of the divisions, whose errors are
# 2**-17 relative at most, far below half an ulp of bf16 (2**-9) or fp16 (2**-12)), for a launcher to pick for
# fp16/bf16 tensors, where instructions, not bytes, bound the kernel.


@triton.jit
def silu_fwd(x, p0, p1, p2):
    return _x_sigmoid(x, x, 0.0, False, True)


@triton.jit
def silu_fwd_half(x, p0, p1, p2):
    return _x_sigmoid(x, x, 0.0, False, False)


@triton.jit
def silu_bwd(g, x, p0, p1, p2):
    return g * _x_sigmoid_bwd(x, x, 0.0, 1.0, False, True, False)


@triton.jit
def silu_bwd_half(g, x, p0, p1, p2):
    return g * _x_sigmoid_bwd(x, x, 0.0, 1.0, False, False, False)


@triton.jit
def swish_fwd(x, p0, p1, p2):
    # p0 = beta; beta * x as a double-float: the exp of its rounded value would be off by |beta x| * 2**-24
    z, zl = _two_product(p0, x)
    return _x_sigmoid(x, z, zl, True, True)


@triton.jit
def swish_fwd_half(x, p0, p1, p2):
    return _x_sigmoid(x, p0 * x, 0.0, False, False)


@triton.jit
def swish_bwd(g, x, p0, p1, p2):
    z, zl = _two_product(p0, x)
    return g * _x_sigmoid_bwd(x, z, zl, p0, True, True, True)


@triton.jit
def swish_bwd_half(g, x, p0, p1, p2):
    return g * _x_sigmoid_bwd(x, p0 * x, 0.0, p0, False, False, True)


@triton.jit
def _mish_parts(x, EXACT: tl.constexpr):
    # tanh(softplus(x)) = n / (n + 2) with n = e * (e + 2), e = exp(x): one exp and one fast reciprocal instead of
    # tanh(log1p(exp(x))). Past x = 20 (fp32; 40 in fp64) it is 1 to the dtype's precision and e * e would
    # soon overflow, so x is clamped there (the callers select the large-x limits themselves). Below -80, e is
    # big_e * scale as in _logistic. Returns (t_scaled, big_e, scale, e, n, rd, limit): tanh(softplus(x)) =
    # t_scaled * scale, rd = 1 / (n + 2).
    if x.dtype == tl.float64:
        limit = 40.0
    else:
        limit = 20.0
    a = tl.minimum(x, limit)
    if EXACT:
        tail = a < _TAIL
        big_e = libm.exp(tl.where(tail, a + _TAIL_SHIFT, a))
        scale = tl.where(tail, _TAIL_SCALE, 1.0)
        e = big_e * scale
    else:
        big_e = _exp(a, False)
        scale = 1.0
        e = big_e
    w = e + 2.0
    n = e * w
    den = fma(e, w, 2.0)  # n + 2 with one rounding
    rd = _recip(den)
    return _divide(big_e * w, den, 0.0, rd, EXACT), big_e, scale, e, n, rd, limit


@triton.jit
def _mish_fwd(x, EXACT: tl.constexpr):
    t_scaled, _big_e, scale, _e, _n, _rd, limit = _mish_parts(x, EXACT)
    return tl.where(x > limit, x, (x * scale) * t_scaled)


@triton.jit
def _mish_bwd(g, x, EXACT: tl.constexpr):
    # d/dx x tanh(sp(x)) = t + x sigmoid(x) (1 - t^2), with 1 - t^2 = 4 (n + 1) / (n + 2)^2 (no cancellation)
    t_scaled, big_e, scale, e, n, rd, limit = _mish_parts(x, EXACT)
    d1 = 1.0 + e
    s_scaled = _divide(big_e, d1, (1.0 - d1) + e, _recip(d1), EXACT)
    if EXACT:
        # 1 - t^2 = (1 - t)(1 + t) = (2 / (n + 2)) (1 + t): fewer roundings than 4 (n + 1) / (n + 2)^2
        one_minus_t2 = (2.0 * _divide(1.0, n + 2.0, 0.0, rd, EXACT)) * (1.0 + t_scaled * scale)
    else:
        one_minus_t2 = 4.0 * (n + 1.0) * (rd * rd)
    d = t_scaled + x * s_scaled * one_minus_t2
    # past the limit the gradient is 1; x * 0 keeps torch's NaN at x = +inf (its tail term is inf * 0 there)
    return tl.where(x > limit, g * (1.0 + x * 0.0), g * (d * scale))


@triton.jit
def mish_fwd(x, p0, p1, p2):
    return _mish_fwd(x, True)


@triton.jit
def mish_fwd_half(x, p0, p1, p2):
    return _mish_fwd(x, False)


@triton.jit
def mish_bwd(g, x, p0, p1, p2):
    return _mish_bwd(g, x, True)


@triton.jit
def mish_bwd_half(g, x, p0, p1, p2):
    return _mish_bwd(g, x, False)


@triton.jit
def _erfc_half(z):
    # erfc(z) to ~1e-7 relative (8.3e-8 in exact arithmetic; fp32 evaluation adds the rounding of -|z|**2, at most
    # 2**-18 relative where erfc is still normal): t exp(-z**2 + P(t)), t = 1 / (1 + |z| / 2), P of degree 9 fitted
    # (least squares on Chebyshev nodes, for this package) to ln(erfc(z) / t) + z**2 over z in [0, 30];
    # erfc(-z) = 2 - erfc(z). For the _half entry points: one fast exp (adding up to 2**-17.5) and one fast
    # reciprocal against libdevice erfcf's ~47 instructions.
    a = tl.abs(z)
    t = _recip(1.0 + 0.5 * a)
    p = 0.17771412757964025
    p = p * t + -0.8549734306116705
    p = p * t + 1.5549594709508865
    p = p * t + -1.2089837787526005
    p = p * t + 0.3277618990208026
    p = p * t + -0.2059945967822498
    p = p * t + 0.10149580601279816
    p = p * t + 0.3734715596853876
    p = p * t + 1.000061995750853
    p = p * t + -1.265512970220446
    r = t * _exp(p - a * a, False)
    return tl.where(z >= 0, r, 2.0 - r)


@triton.jit
def _gelu_cdf(x, EXACT: tl.constexpr):
    # Phi(x) = erfc(z) / 2 with z = -x / sqrt 2: no cancellation in the left tail (1 + erf there is 1 - 1). With
    # EXACT z is a double-float (zh + zl): erfc magnifies its argument's relative error by 2 z**2 (188 ulp at
    # x = -12.8 from rounding z alone), so erfc(zh + zl) = erfc(zh) (1 - zl g(zh)) with g = -d ln erfc / dz =
    # 2 / (sqrt(pi) erfcx(z)), taken as 2 z + 1 / (z + 0.886) (within 6.3% for z >= 0, exact at 0 and
    # asymptotically, so the correction's own error stays below half an ulp)
    zh = x * -0.7071067811865476
    if EXACT:
        half_erfc = 0.5 * libm.erfc(zh)
        zl = fma(x, -0.7071067811865476, -zh)
        if x.dtype != tl.float64:
            zl = fma(x, -1.2101617152815436e-08, zl)  # 1 / sqrt 2 minus its fp32 value
        zc = tl.minimum(zh, 16.0)  # erfc(16) underflows
        # right of the mean (z < 0) erfc is near 2 and g falls off like exp(-z**2): no correction there (nor at
        # z = -inf, where zl is NaN)
        g = 2.0 * zc + _recip(zc + 0.886)
        half_erfc = fma(half_erfc, tl.where(zh > 0.0, -zl * g, 0.0), half_erfc)
    else:
        half_erfc = 0.5 * _erfc_half(zh)
    return half_erfc


@triton.jit
def _gelu_bwd(g, x, EXACT: tl.constexpr):
    # Phi(x) + x phi(x); phi's exp(-x**2 / 2) from x**2 as a double-float (its rounding alone cost x**2 / 2 ulp)
    if EXACT:
        x2, x2l = _two_product(x, x)
        e = libm.exp(-0.5 * x2)
        e = fma(e, -0.5 * x2l, e)
    else:
        e = _exp(-0.5 * (x * x), False)
    return g * fma(x, e * 0.3989422804014327, _gelu_cdf(x, EXACT))


@triton.jit
def gelu_fwd(x, p0, p1, p2):
    return x * _gelu_cdf(x, True)


@triton.jit
def gelu_fwd_half(x, p0, p1, p2):
    return x * _gelu_cdf(x, False)


@triton.jit
def gelu_bwd(g, x, p0, p1, p2):
    return _gelu_bwd(g, x, True)


@triton.jit
def gelu_bwd_half(g, x, p0, p1, p2):
    return _gelu_bwd(g, x, False)


@triton.jit
def _gelu_tanh_arg(x, EXACT: tl.constexpr):
    # 2u = x (A + B x**2) (A = 2k, B = 2kc; u = k (x + c x**3)). With EXACT as a double-float zh + zl: sigmoid(2u)
    # magnifies the argument's rounding by |2u| (118 ulp at x = -9.2 from the four roundings and the constants'
    # own), so x**2, B x**2, A + B x**2 and the product carry their exact errors (FMA, two-sum) and A, B their
    # fp32 residues. Returns (zh, zl, x**2).
    if EXACT:
        if x.dtype == tl.float64:
            a_lo = 0.0
            b_lo = 0.0
        else:
            a_lo = -4.534068032135963e-08
            b_lo = 2.3988323966106506e-09
        x2, x2l = _two_product(x, x)
        q = 0.07135481627260025 * x2
        ql = fma(0.07135481627260025, x2, -q) + fma(0.07135481627260025, x2l, b_lo * x2)
        p = 1.5957691216057308 + q
        bb = p - 1.5957691216057308
        pl = ((1.5957691216057308 - (p - bb)) + (q - bb)) + (ql + a_lo)  # two-sum error, plus the low parts
        zh = x * p
        zl = fma(x, pl, fma(x, p, -zh))
        zl = tl.where(zh - zh == 0.0, zl, 0.0)
    else:
        x2 = x * x
        zh = x * fma(0.07135481627260025, x2, 1.5957691216057308)
        zl = 0.0 * zh
    return zh, zl, x2


@triton.jit
def _gelu_tanh_fwd(x, EXACT: tl.constexpr):
    # 0.5 (1 + tanh(u)) = sigmoid(2u): one exp and one fast reciprocal, and no cancellation in the left tail
    zh, zl, _x2 = _gelu_tanh_arg(x, EXACT)
    return _x_sigmoid(x, zh, zl, EXACT, EXACT)


@triton.jit
def _gelu_tanh_bwd(g, x, EXACT: tl.constexpr):
    # d/dx x s(2u) = s + 2 x u' s (1 - s), s = sigmoid(2u), 2u' = A + 3 B x**2; for huge finite |x| (x**2
    # overflows: |x| > ~1.8e19 in fp32) 1 - s is exactly 0 and u' is inf: the tail's limit (and fp64's value)
    # is 0, so the gradient is 1 (x > 0) or 0 (x < 0); at +-inf it is NaN, as in torch
    zh, zl, x2 = _gelu_tanh_arg(x, EXACT)
    dz = fma(3.0 * 0.07135481627260025, x2, 1.5957691216057308)
    return g * _x_sigmoid_bwd(x, zh, zl, dz, EXACT, EXACT, True)


@triton.jit
def gelu_tanh_fwd(x, p0, p1, p2):
    return _gelu_tanh_fwd(x, True)


@triton.jit
def gelu_tanh_fwd_half(x, p0, p1, p2):
    return _gelu_tanh_fwd(x, False)


@triton.jit
def gelu_tanh_bwd(g, x, p0, p1, p2):
    return _gelu_tanh_bwd(g, x, True)


@triton.jit
def gelu_tanh_bwd_half(g, x, p0, p1, p2):
    return _gelu_tanh_bwd(g, x, False)


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
    # 1 / d - |x| / d^2 = 1 / d^2 with d = 1 + |x| (no cancellation); x - x keeps torch's NaN at +-inf.
    # 1 + |x| = d + dl exactly (the rounding of d alone cost 2.6 ulp), q = 1 / (d + dl) refined from the fast
    # reciprocal (0 past 2**126, where 1 / d^2 underflows anyway), q^2 = r + rl exactly
    a = tl.abs(x)
    d = 1.0 + a
    dl = tl.where(a <= 1.0, (1.0 - d) + a, (a - d) + 1.0)
    q = _divide(1.0, d, dl, _recip(d), True)
    r = q * q
    gg = g + (x - x)
    return fma(gg, r, gg * fma(q, q, -r))


@triton.jit
def _tanhshrink_series(x, EXACT: tl.constexpr):
    # x - tanh(x) = x^3 (1/3 - 2 x^2 / 15 + ...): its Taylor series to x^31 (15 terms), relative truncation
    # error below 1e-8 for |x| <= 0.85, where x - tanh(x) cancels (at 0.85 it loses 2 of 24 bits, at 1e-3 all);
    # without EXACT to x^17 (8 terms, 5e-5 relative at 0.85: for fp16/bf16 outputs)
    x2 = x * x
    if EXACT:
        p = 1.0597268320104654e-06
        p = p * x2 + -2.6147711512907546e-06
        p = p * x2 + 6.451689215655431e-06
        p = p * x2 + -1.5918905069328964e-05
        p = p * x2 + 3.927832388331683e-05
        p = p * x2 + -9.691537956929451e-05
        p = p * x2 + 0.00023912911424355248
        p = p * x2 + -0.000590027440945586
    else:
        p = -0.000590027440945586 + 0.0 * x2
    p = p * x2 + 0.0014558343870513183
    p = p * x2 + -0.003592128036572481
    p = p * x2 + 0.008863235529902197
    p = p * x2 + -0.021869488536155203
    p = p * x2 + 0.05396825396825397
    p = p * x2 + -0.13333333333333333
    p = p * x2 + 0.3333333333333333
    return x * x2 * p


@triton.jit
def _tanh_half(x):
    # tanh(x) = sign(x) (1 - 2 / (1 + exp(2 |x|))) from the fast exp and reciprocal (absolute error ~2**-22): for
    # |x| > 0.85 only, where x - tanh(x) >= 0.16 keeps that error relative
    t = 1.0 - 2.0 * _recip(1.0 + _exp(2.0 * tl.abs(x), False))
    return tl.where(x < 0, -t, t)


@triton.jit
def tanhshrink_fwd(x, p0, p1, p2):
    if x.dtype == tl.float64:  # fp64 keeps the plain difference (the series would need ~32 terms there)
        return x - libm.tanh(x)
    else:
        # + 0.0: x - tanh(x) is +0 at -0 and where it underflows, as in torch; the series' product would be -0
        return tl.where(tl.abs(x) <= 0.85, _tanhshrink_series(x, True) + 0.0, x - libm.tanh(x))


@triton.jit
def tanhshrink_fwd_half(x, p0, p1, p2):
    if x.dtype == tl.float64:
        return x - libm.tanh(x)
    else:
        return tl.where(tl.abs(x) <= 0.85, _tanhshrink_series(x, False) + 0.0, x - _tanh_half(x))


@triton.jit
def tanhshrink_bwd(g, x, p0, p1, p2):
    t = libm.tanh(x)
    return g * (t * t)  # 1 - (1 - t^2), without the cancellation


tanhshrink_bwd_half = tanhshrink_bwd  # within the bandwidth budget as it is (tanh near 0 needs libdevice's)


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
