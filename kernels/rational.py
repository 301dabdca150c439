"""The rational (Padé) activation unit: ``y = P(x) / Q(x)`` with learnable coefficients, in one pass each way.

``P(x) = a_0 + a_1 x + ... + a_m x^m`` and the "safe" denominator of Molina et al. (ICLR 2020)
``Q(x) = 1 + |b_1| |x| + ... + |b_n| |x|^n >= 1`` (no poles). ``M`` and ``N`` are compile-time
constants, so the polynomial loops unroll. Backward writes ``dx`` and, per program, one row of
partial sums of the ``m + 1 + n`` coefficient gradients (``dy/da_j = x^j / Q``,
``dy/db_k = -sign(b_k) |x|^k P / Q^2``); the host sums the rows (``programs x (m + 1 + n)``, tiny).
Math and sums run in fp32 (fp64 for fp64 tensors).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .elementwise import compute_dtype
from .launch import on_device
from .rounding import to_dtype

BLOCK_CUDA = 1024
BLOCK_INTERPRETER = 8192
ITERS_CUDA = 8  # tiles per program in backward: fewer rows of partial sums


@triton.jit
def _p_and_q(x, a_ptr, b_ptr, M: tl.constexpr, N: tl.constexpr, COMPUTE: tl.constexpr):
    p = tl.zeros_like(x) + tl.load(a_ptr + M).to(COMPUTE)
    for i in tl.static_range(M):
        p = p * x + tl.load(a_ptr + (M - 1 - i)).to(COMPUTE)
    ax = tl.abs(x)
    q = tl.zeros_like(x)
    for i in tl.static_range(N):
        q = (q + tl.abs(tl.load(b_ptr + (N - 1 - i)).to(COMPUTE))) * ax
    return p, 1.0 + q


@triton.jit
def _rational_forward_kernel(x_ptr, a_ptr, b_ptr, y_ptr, n, M: tl.constexpr, N: tl.constexpr,
                             COMPUTE: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
    p, q = _p_and_q(x, a_ptr, b_ptr, M, N, COMPUTE)
    tl.store(y_ptr + offs, to_dtype(p / q, y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rational_backward_kernel(g_ptr, x_ptr, a_ptr, b_ptr, dx_ptr, part_ptr, n, ITERS,
                              M: tl.constexpr, N: tl.constexpr, COMPUTE: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    K: tl.constexpr = M + 1 + N
    for it in range(0, ITERS):
        offs = (pid * ITERS + it) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
        g = tl.where(mask, g, 0.0)
        p, q = _p_and_q(x, a_ptr, b_ptr, M, N, COMPUTE)
        # P'(x) by Horner on the derivative's coefficients j * a_j
        dp = tl.zeros_like(x)
        for i in tl.static_range(M):
            j = M - i
            dp = dp * x + j * tl.load(a_ptr + j).to(COMPUTE)
        # Q'(x) = sign(x) * sum_k k |b_k| |x|^(k-1)
        ax = tl.abs(x)
        dq = tl.zeros_like(x)
        for i in tl.static_range(N):
            k = N - i
            dq = dq * ax + k * tl.abs(tl.load(b_ptr + (k - 1)).to(COMPUTE))
        sgn = tl.where(x > 0, 1.0, tl.where(x < 0, -1.0, 0.0))
        inv_q = 1.0 / q
        y = p * inv_q
        dx = g * (dp - y * sgn * dq) * inv_q
        tl.store(dx_ptr + offs, to_dtype(dx, dx_ptr.dtype.element_ty), mask=mask)
        gq = g * inv_q
        row = part_ptr + (pid * ITERS + it) * K
        power = tl.zeros_like(x) + 1.0
        for j in tl.static_range(M + 1):
            tl.store(row + j, tl.sum(gq * power, axis=0))
            power = power * x
        gy = -gq * y  # dy/dQ times g
        apower = ax
        for k in tl.static_range(N):
            bk = tl.load(b_ptr + k).to(COMPUTE)
            sb = tl.where(bk > 0, 1.0, tl.where(bk < 0, -1.0, 0.0))
            tl.store(row + M + 1 + k, tl.sum(gy * apower, axis=0) * sb)
            apower = apower * ax


def _block(device: torch.device) -> int:
    return BLOCK_INTERPRETER if device.type == "cpu" else BLOCK_CUDA


def launch_rational_forward(x: torch.Tensor, num: torch.Tensor, den: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out = P(x) / Q(x)`` over the storage of dense ``x`` (``out`` with the same strides)."""
    n = x.numel()
    if n == 0:
        return out
    block = _block(x.device)
    with on_device(x.device):
        _rational_forward_kernel[(triton.cdiv(n, block),)](
            x, num, den, out, n, M=num.numel() - 1, N=den.numel(), COMPUTE=compute_dtype(x.dtype), BLOCK=block,
            num_warps=4,
        )
    return out


def launch_rational_backward(grad: torch.Tensor, x: torch.Tensor, num: torch.Tensor, den: torch.Tensor,
                             dx: torch.Tensor) -> torch.Tensor:
    """Write ``dx``; return the coefficient gradients ``(m + 1 + n,)`` (fp32 sums; fp64 for fp64)."""
    n = x.numel()
    k = num.numel() + den.numel()
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    if n == 0:
        return torch.zeros(k, dtype=acc, device=x.device)
    block = _block(x.device)
    tiles = triton.cdiv(n, block)
    iters = 1 if x.device.type == "cpu" else ITERS_CUDA
    programs = triton.cdiv(tiles, iters)
    part = torch.empty((programs * iters, k), dtype=acc, device=x.device)  # every row is written
    with on_device(x.device):
        _rational_backward_kernel[(programs,)](
            grad, x, num, den, dx, part, n, iters, M=num.numel() - 1, N=den.numel(),
            COMPUTE=compute_dtype(x.dtype), BLOCK=block, num_warps=4,
        )
    return part.sum(0)
