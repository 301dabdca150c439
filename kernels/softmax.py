"""Triton softmax and log-softmax, forward and backward, over any dimension of a strided tensor.

Geometry: the reduced dimension ``dim`` (size ``n``) is moved last in thought only; the remaining
("batch") dimensions are merged where every tensor of the call allows it, and must come down to at
most two, ``(b0, b1)``. Row ``r`` then starts at ``(r // b1) * s0 + (r % b1) * s1`` in each tensor,
with that tensor's own strides, and its elements are ``sn`` apart. A contiguous tensor reduced over
its last dim has one batch dim, over a middle dim two (before and after), so no ``.contiguous()``
copy is made for contiguous inputs, nor for transposed, sliced or expanded inputs of up to three
dims; a layout whose batch dims cannot be merged into two, together with the (contiguous) output's,
is copied first (some permutations of 4-D and larger tensors).

Two readings of those rows: by rows (a program takes whole rows, threads along the reduced dim: coalesced when
that dim is contiguous) and, when the reduced dim is strided in some tensor while a batch dim has stride 1
(softmax over C or N of an NCHW tensor, over C of a channels_last one), by columns (:class:`ColumnGeometry`):
a program takes the whole reduced dim for ``BLOCK_I`` consecutive indices of that batch dim, so a warp reads
consecutive addresses (the row kernels put a warp's threads ``4 * H * W`` bytes apart there).

Two strategies, chosen per call:

* one pass: a row fits in one block (``n <= single_pass_max``); a program takes ``ROWS`` rows at a
  time (many short rows share a program), reads each element once and writes it once.
* online: longer rows are walked in chunks. Pass one keeps the running maximum ``m`` and the running
  sum ``d`` of ``exp(x - m)``, rescaling ``d`` when ``m`` grows (Milakov and Gimelshein, 2018); pass
  two reads the row again and writes ``exp(x - m) / d`` (or ``x - m - log d``). The backward kernels
  likewise take the row's dot product (softmax) or sum (log-softmax) in a first pass.

Math runs in fp32 (fp64 when the output is fp64); offsets are 64-bit. Casting semantics follow
torch's ``dtype=`` argument: the input is rounded to the output dtype *before* the reduction, and the
input gradient is rounded to the output dtype before it is cast to the input's dtype, so the result
equals ``softmax(x.to(dtype))`` differentiated through the cast. Special values behave as in torch:
``-inf`` entries give probability 0, a row that is all ``-inf`` (or holds ``+inf`` or NaN) gives NaN.

Import this module only where Triton is available; ``torchinit/softmax.py`` imports it lazily.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .elementwise import compute_dtype
from .launch import on_device as _on_device
from .rounding import round_to, to_dtype

# Tile sizes. The CUDA values are first guesses, not yet tuned on a GPU (one pass up to 32k elements:
# 32 warps hold such a row at 32 fp32 values per thread). The interpreter costs ~ms per program
# instance, so it gets few, large programs; tests shrink SINGLE_PASS_MAX / CHUNK to make short rows
# take the online loop.
SINGLE_PASS_MAX_CUDA = 32768
# backward holds two row tensors (grad and output): at 32k elements and 32 warps (ptxas caps registers at 64
# per thread there) its one-pass kernel spills (sm_80/sm_90, benchmarks/static_cost.py), so it goes online sooner
SINGLE_PASS_MAX_BACKWARD_CUDA = 16384
CHUNK_CUDA = 4096
TILE_CUDA = 4096  # elements per program in the one-pass kernels (rows * block)
SINGLE_PASS_MAX_INTERPRETER = 4096
CHUNK_INTERPRETER = 4096
TILE_INTERPRETER = 16384
# column kernels (a strided reduced dim, a contiguous batch dim): consecutive inner elements per program on a GPU
COLUMN_MIN_CUDA = 32


# ---------------------------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------------------------


@triton.jit
def _row_tile(rows, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    """This program's ``ROWS`` row indices (int64), which of them exist, and the ``BLOCK`` column offsets."""
    r = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    return r, r < rows, tl.arange(0, BLOCK).to(tl.int64)


@triton.jit
def _row_starts(r, b1, s0, s1):
    return (r // b1) * s0 + (r % b1) * s1


# The math of a tile, shared by the row kernels (rows along axis 0, the reduced dim along axis 1) and the
# column kernels (the reduced dim along axis 0, a contiguous batch dim along axis 1): ``AXIS`` is the reduced one.


@triton.jit
def _load_input(ptr, offs, mask, ROUND_IN: tl.constexpr, OUT_TY: tl.constexpr, COMPUTE: tl.constexpr):
    x = tl.load(ptr + offs, mask=mask, other=float("-inf"))
    if ROUND_IN:  # torch casts to the output dtype before the reduction
        x = to_dtype(x, OUT_TY)
    return x.to(COMPUTE)


@triton.jit
def _fwd_tile(x, LOG: tl.constexpr, AXIS: tl.constexpr):
    m = tl.max(x, axis=AXIS)
    z = x - tl.expand_dims(m, AXIS)
    e = tl.exp(z)
    d = tl.sum(e, axis=AXIS)
    if LOG:
        y = z - tl.expand_dims(tl.log(d), AXIS)
    else:
        y = e / tl.expand_dims(d, AXIS)
    return y


@triton.jit
def _online_step(m, d, x, AXIS: tl.constexpr):
    # running maximum m and sum d of exp(x - m), rescaled when m grows
    m_new = tl.maximum(m, tl.max(x, axis=AXIS))
    # while a row has seen only -inf, shift by 0 so that exp gives 0 instead of exp(-inf + inf) = NaN
    shift = tl.where(m_new == float("-inf"), 0.0, m_new).to(m.dtype)
    d = d * tl.exp(m - shift) + tl.sum(tl.exp(x - tl.expand_dims(shift, AXIS)), axis=AXIS)
    return m_new, d


@triton.jit
def _online_out(x, m, d, LOG: tl.constexpr, AXIS: tl.constexpr):
    # with LOG, m is already the row's log-sum-exp (m + log d, taken once after the first pass)
    if LOG:
        y = x - tl.expand_dims(m, AXIS)
    else:
        y = tl.exp(x - tl.expand_dims(m, AXIS)) / tl.expand_dims(d, AXIS)
    return y


@triton.jit
def _bwd_sum(g, y, LOG: tl.constexpr, AXIS: tl.constexpr):
    if LOG:
        s = tl.sum(g, axis=AXIS)
    else:
        s = tl.sum(g * y, axis=AXIS)
    return s


@triton.jit
def _bwd_dx(g, y, s, LOG: tl.constexpr, ROUND_OUT: tl.constexpr, Y_TY: tl.constexpr, COMPUTE: tl.constexpr,
            AXIS: tl.constexpr):
    if LOG:  # dx = g - exp(y) * sum(g)
        dx = g - tl.exp(y) * tl.expand_dims(s, AXIS)
    else:  # dx = y * (g - sum(g * y))
        dx = y * (g - tl.expand_dims(s, AXIS))
    if ROUND_OUT:  # the gradient exists in the output dtype before the cast back to the input dtype
        dx = round_to(dx, Y_TY, COMPUTE)
    return dx


# Row kernels: a program takes ROWS rows (axis 0) of BLOCK elements (axis 1), rows starting at _row_starts.


@triton.jit
def _softmax_fwd_one_pass(
    x_ptr, y_ptr, rows, n, b1, xs0, xs1, xsn, ys0, ys1, ysn,
    LOG: tl.constexpr, ROUND_IN: tl.constexpr, COMPUTE: tl.constexpr, ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    r, rmask, cols = _row_tile(rows, ROWS, BLOCK)
    mask = rmask[:, None] & (cols[None, :] < n)
    xrow = _row_starts(r, b1, xs0, xs1)
    x = _load_input(x_ptr, xrow[:, None] + cols[None, :] * xsn, mask, ROUND_IN, y_ptr.dtype.element_ty, COMPUTE)
    y = _fwd_tile(x, LOG, 1)
    yrow = _row_starts(r, b1, ys0, ys1)
    tl.store(y_ptr + yrow[:, None] + cols[None, :] * ysn, to_dtype(y, y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _softmax_fwd_online(
    x_ptr, y_ptr, rows, n, b1, xs0, xs1, xsn, ys0, ys1, ysn,
    LOG: tl.constexpr, ROUND_IN: tl.constexpr, COMPUTE: tl.constexpr, ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    r, rmask, cols = _row_tile(rows, ROWS, BLOCK)
    xrow = _row_starts(r, b1, xs0, xs1)
    yrow = _row_starts(r, b1, ys0, ys1)
    m = tl.full([ROWS], float("-inf"), COMPUTE)
    d = tl.zeros([ROWS], COMPUTE)
    for start in range(0, n, BLOCK):
        c = start + cols
        mask = rmask[:, None] & (c[None, :] < n)
        x = _load_input(x_ptr, xrow[:, None] + c[None, :] * xsn, mask, ROUND_IN, y_ptr.dtype.element_ty, COMPUTE)
        m, d = _online_step(m, d, x, 1)
    if LOG:
        m = m + tl.log(d)
    for start in range(0, n, BLOCK):
        c = start + cols
        mask = rmask[:, None] & (c[None, :] < n)
        x = _load_input(x_ptr, xrow[:, None] + c[None, :] * xsn, mask, ROUND_IN, y_ptr.dtype.element_ty, COMPUTE)
        y = _online_out(x, m, d, LOG, 1)
        tl.store(y_ptr + yrow[:, None] + c[None, :] * ysn, to_dtype(y, y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _softmax_bwd_one_pass(
    g_ptr, y_ptr, dx_ptr, rows, n, b1, gs0, gs1, gsn, ys0, ys1, ysn, ds0, ds1, dsn,
    LOG: tl.constexpr, ROUND_OUT: tl.constexpr, COMPUTE: tl.constexpr,
    ROWS: tl.constexpr, BLOCK: tl.constexpr,
):
    r, rmask, cols = _row_tile(rows, ROWS, BLOCK)
    mask = rmask[:, None] & (cols[None, :] < n)
    g = tl.load(g_ptr + _row_starts(r, b1, gs0, gs1)[:, None] + cols[None, :] * gsn, mask=mask, other=0.0)
    y = tl.load(y_ptr + _row_starts(r, b1, ys0, ys1)[:, None] + cols[None, :] * ysn, mask=mask, other=0.0)
    g = g.to(COMPUTE)
    y = y.to(COMPUTE)
    dx = _bwd_dx(g, y, _bwd_sum(g, y, LOG, 1), LOG, ROUND_OUT, y_ptr.dtype.element_ty, COMPUTE, 1)
    drow = _row_starts(r, b1, ds0, ds1)
    tl.store(dx_ptr + drow[:, None] + cols[None, :] * dsn, to_dtype(dx, dx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _softmax_bwd_online(
    g_ptr, y_ptr, dx_ptr, rows, n, b1, gs0, gs1, gsn, ys0, ys1, ysn, ds0, ds1, dsn,
    LOG: tl.constexpr, ROUND_OUT: tl.constexpr, COMPUTE: tl.constexpr,
    ROWS: tl.constexpr, BLOCK: tl.constexpr,
):
    r, rmask, cols = _row_tile(rows, ROWS, BLOCK)
    grow = _row_starts(r, b1, gs0, gs1)
    yrow = _row_starts(r, b1, ys0, ys1)
    drow = _row_starts(r, b1, ds0, ds1)
    s = tl.zeros([ROWS], COMPUTE)
    for start in range(0, n, BLOCK):
        c = start + cols
        mask = rmask[:, None] & (c[None, :] < n)
        g = tl.load(g_ptr + grow[:, None] + c[None, :] * gsn, mask=mask, other=0.0).to(COMPUTE)
        if LOG:
            s += tl.sum(g, axis=1)
        else:
            y = tl.load(y_ptr + yrow[:, None] + c[None, :] * ysn, mask=mask, other=0.0).to(COMPUTE)
            s += tl.sum(g * y, axis=1)
    for start in range(0, n, BLOCK):
        c = start + cols
        mask = rmask[:, None] & (c[None, :] < n)
        g = tl.load(g_ptr + grow[:, None] + c[None, :] * gsn, mask=mask, other=0.0).to(COMPUTE)
        y = tl.load(y_ptr + yrow[:, None] + c[None, :] * ysn, mask=mask, other=0.0).to(COMPUTE)
        dx = _bwd_dx(g, y, s, LOG, ROUND_OUT, y_ptr.dtype.element_ty, COMPUTE, 1)
        tl.store(dx_ptr + drow[:, None] + c[None, :] * dsn, to_dtype(dx, dx_ptr.dtype.element_ty), mask=mask)


# Column kernels, for a reduced dim that is not contiguous while a batch dim is (softmax over C of NCHW, over
# dim 0, ...): program pid takes outer index o = pid // tiles and BLOCK_I consecutive inner indices i, i.e.
# columns of a [BLOCK_N (reduced, axis 0), BLOCK_I (inner, axis 1)] tile at o * s0 + i * s1 + k * sn. With the
# inner stride 1 (Triton specialises it to the constant 1) neighbouring threads read neighbouring addresses
# (coalesced, vectorised when aligned); no division per element, one per program.


@triton.jit
def _column_starts(pid, tiles, b1, s0, s1, BLOCK_I: tl.constexpr):
    o = (pid // tiles).to(tl.int64)
    i = (pid % tiles) * BLOCK_I + tl.arange(0, BLOCK_I)
    return o * s0 + i.to(tl.int64) * s1, i < b1


@triton.jit
def _softmax_fwd_columns(
    x_ptr, y_ptr, b1, n, tiles, xs0, xs1, xsn, ys0, ys1, ysn,
    LOG: tl.constexpr, ROUND_IN: tl.constexpr, COMPUTE: tl.constexpr, ONE_PASS: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_I: tl.constexpr,
):
    pid = tl.program_id(0)
    xcol, imask = _column_starts(pid, tiles, b1, xs0, xs1, BLOCK_I)
    ycol, _ = _column_starts(pid, tiles, b1, ys0, ys1, BLOCK_I)
    k = tl.arange(0, BLOCK_N).to(tl.int64)[:, None]
    if ONE_PASS:
        mask = (k < n) & imask[None, :]
        x = _load_input(x_ptr, xcol[None, :] + k * xsn, mask, ROUND_IN, y_ptr.dtype.element_ty, COMPUTE)
        y = _fwd_tile(x, LOG, 0)
        tl.store(y_ptr + ycol[None, :] + k * ysn, to_dtype(y, y_ptr.dtype.element_ty), mask=mask)
    else:
        m = tl.full([BLOCK_I], float("-inf"), COMPUTE)
        d = tl.zeros([BLOCK_I], COMPUTE)
        for start in range(0, n, BLOCK_N):
            kk = start + k
            mask = (kk < n) & imask[None, :]
            x = _load_input(x_ptr, xcol[None, :] + kk * xsn, mask, ROUND_IN, y_ptr.dtype.element_ty, COMPUTE)
            m, d = _online_step(m, d, x, 0)
        if LOG:
            m = m + tl.log(d)
        for start in range(0, n, BLOCK_N):
            kk = start + k
            mask = (kk < n) & imask[None, :]
            x = _load_input(x_ptr, xcol[None, :] + kk * xsn, mask, ROUND_IN, y_ptr.dtype.element_ty, COMPUTE)
            y = _online_out(x, m, d, LOG, 0)
            tl.store(y_ptr + ycol[None, :] + kk * ysn, to_dtype(y, y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _softmax_bwd_columns(
    g_ptr, y_ptr, dx_ptr, b1, n, tiles, gs0, gs1, gsn, ys0, ys1, ysn, ds0, ds1, dsn,
    LOG: tl.constexpr, ROUND_OUT: tl.constexpr, COMPUTE: tl.constexpr, ONE_PASS: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_I: tl.constexpr,
):
    pid = tl.program_id(0)
    gcol, imask = _column_starts(pid, tiles, b1, gs0, gs1, BLOCK_I)
    ycol, _ = _column_starts(pid, tiles, b1, ys0, ys1, BLOCK_I)
    dcol, _ = _column_starts(pid, tiles, b1, ds0, ds1, BLOCK_I)
    k = tl.arange(0, BLOCK_N).to(tl.int64)[:, None]
    if ONE_PASS:
        mask = (k < n) & imask[None, :]
        g = tl.load(g_ptr + gcol[None, :] + k * gsn, mask=mask, other=0.0).to(COMPUTE)
        y = tl.load(y_ptr + ycol[None, :] + k * ysn, mask=mask, other=0.0).to(COMPUTE)
        dx = _bwd_dx(g, y, _bwd_sum(g, y, LOG, 0), LOG, ROUND_OUT, y_ptr.dtype.element_ty, COMPUTE, 0)
        tl.store(dx_ptr + dcol[None, :] + k * dsn, to_dtype(dx, dx_ptr.dtype.element_ty), mask=mask)
    else:
        s = tl.zeros([BLOCK_I], COMPUTE)
        for start in range(0, n, BLOCK_N):
            kk = start + k
            mask = (kk < n) & imask[None, :]
            g = tl.load(g_ptr + gcol[None, :] + kk * gsn, mask=mask, other=0.0).to(COMPUTE)
            if LOG:
                s += tl.sum(g, axis=0)
            else:
                y = tl.load(y_ptr + ycol[None, :] + kk * ysn, mask=mask, other=0.0).to(COMPUTE)
                s += tl.sum(g * y, axis=0)
        for start in range(0, n, BLOCK_N):
            kk = start + k
            mask = (kk < n) & imask[None, :]
            g = tl.load(g_ptr + gcol[None, :] + kk * gsn, mask=mask, other=0.0).to(COMPUTE)
            y = tl.load(y_ptr + ycol[None, :] + kk * ysn, mask=mask, other=0.0).to(COMPUTE)
            dx = _bwd_dx(g, y, s, LOG, ROUND_OUT, y_ptr.dtype.element_ty, COMPUTE, 0)
            tl.store(dx_ptr + dcol[None, :] + kk * dsn, to_dtype(dx, dx_ptr.dtype.element_ty), mask=mask)


# ---------------------------------------------------------------------------------------------
# host side: geometry and launch parameters
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowGeometry:
    """Rows of a reduction over one dim: ``rows = b0 * b1`` rows of ``n`` elements, strides per tensor."""

    rows: int
    n: int
    b1: int
    strides: tuple[tuple[int, int, int], ...]  # per tensor: (s0, s1, sn)


def row_geometry(tensors: list[torch.Tensor], dim: int) -> RowGeometry | None:
    """The row geometry shared by ``tensors`` (same shape) for a reduction over ``dim``, or None.

    None means the batch dims cannot be merged into two for every tensor at once; the caller then
    copies the tensors into contiguous ones, for which two always suffice.
    """
    shape = list(tensors[0].shape) or [1]
    all_strides = [list(t.stride()) or [1] for t in tensors]
    n = shape[dim]
    batch = [i for i in range(len(shape)) if i != dim and shape[i] != 1]
    # merge batch dims from the innermost outwards: dim i folds into the group of dim j (next inner)
    # when, in every tensor, stride[i] == stride[j] * size(group of j)
    groups: list[tuple[int, list[int]]] = []  # (size, per-tensor stride of the group's innermost step)
    for i in reversed(batch):
        if groups:
            size, strides = groups[-1]
            if all(st[i] == s * size for st, s in zip(all_strides, strides)):
                groups[-1] = (size * shape[i], strides)
                continue
        groups.append((shape[i], [st[i] for st in all_strides]))
    if len(groups) > 2:
        return None
    groups.reverse()  # outermost first; a single group is the outer one, so that b1 == 1 (no div/mod)
    while len(groups) < 2:
        groups.append((1, [0] * len(tensors)))
    (b0, outer), (b1, inner) = groups
    per_tensor = tuple((outer[k], inner[k], all_strides[k][dim]) for k in range(len(tensors)))
    return RowGeometry(b0 * b1, n, b1, per_tensor)


def _limits(device: torch.device, backward: bool = False) -> tuple[int, int, int]:
    if device.type == "cpu":
        return SINGLE_PASS_MAX_INTERPRETER, CHUNK_INTERPRETER, TILE_INTERPRETER
    return SINGLE_PASS_MAX_BACKWARD_CUDA if backward else SINGLE_PASS_MAX_CUDA, CHUNK_CUDA, TILE_CUDA


def _launch_params(geo: RowGeometry, device: torch.device, backward: bool = False) -> tuple[bool, int, int, int]:
    """(one_pass, BLOCK, ROWS, num_warps) for rows of ``geo.n`` elements."""
    single_max, chunk, tile = _limits(device, backward)
    one_pass = geo.n <= single_max
    block = triton.next_power_of_2(max(geo.n, 1) if one_pass else chunk)
    rows = max(1, min(tile // block, triton.next_power_of_2(geo.rows)))
    warps = max(1, min(32, block * rows // 1024))
    return one_pass, block, rows, triton.next_power_of_2(warps)


@dataclass(frozen=True)
class ColumnGeometry:
    """A reduction over a strided dim read by columns: ``b0`` outer indices times ``b1`` inner indices (a batch
    group of stride 1 in some tensor), ``n`` reduced elements; per tensor ``(s0, s1, sn)``."""

    b0: int
    b1: int
    n: int
    strides: tuple[tuple[int, int, int], ...]


def column_geometry(geo: RowGeometry) -> ColumnGeometry | None:
    """``geo`` read by columns, or None where rows suit: the reduced dim is contiguous in every tensor already,
    or no batch group has stride 1 in any tensor (then nothing is coalesced either way)."""
    if all(sn == 1 for _, _, sn in geo.strides) or geo.n == 1:
        return None
    b0, b1, strides = geo.rows // geo.b1, geo.b1, geo.strides
    if b1 == 1:  # a single batch group (the outer one in RowGeometry): make it the inner one
        b0, b1, strides = 1, b0, tuple((0, s0, sn) for s0, _, sn in strides)
    if b1 == 1 or not any(s1 == 1 for _, s1, _ in strides):
        return None
    return ColumnGeometry(b0, b1, geo.n, strides)


def _column_params(geo: ColumnGeometry, device: torch.device, backward: bool = False,
                   fp64: bool = False) -> tuple[bool, int, int, int]:
    """(one_pass, BLOCK_N, BLOCK_I, num_warps) for a column read: on a GPU at least COLUMN_MIN_CUDA consecutive
    inner elements per program (whole 32-byte sectors at every dtype), the rest of the tile down the reduced dim;
    16 elements per thread and tensor in the chunked loops (32 spilled in backward, sm_90), half the one-pass
    tile in backward and for fp64 math (a full one spilled: bf16 backward 184 B, fp64 forward ~1.3 KB per thread)."""
    single_max, chunk, tile = _limits(device, backward)
    gpu = device.type != "cpu"
    if gpu:  # columns reduce across warps: registers run out sooner than in the row kernels
        single_max //= 2 if (fp64 or backward) else 1
    wide = triton.next_power_of_2(geo.b1)
    min_i = min(wide, COLUMN_MIN_CUDA) if gpu else 1
    one_pass = triton.next_power_of_2(geo.n) * min_i <= single_max
    block_n = triton.next_power_of_2(geo.n) if one_pass else max(1, chunk // min_i)
    block_i = max(min_i, min(wide, tile // block_n))
    per_warp = 1024 if one_pass or not gpu else 512
    warps = max(1, min(32, block_n * block_i // per_warp))
    return one_pass, block_n, block_i, triton.next_power_of_2(warps)


def _launch_columns(kernel, tensors: list[torch.Tensor], geo: ColumnGeometry, device: torch.device,
                    backward: bool, **constexprs) -> None:
    one_pass, block_n, block_i, warps = _column_params(geo, device, backward, constexprs["COMPUTE"] == tl.float64)
    tiles = triton.cdiv(geo.b1, block_i)
    with _on_device(device):
        kernel[(geo.b0 * tiles,)](
            *tensors, geo.b1, geo.n, tiles, *[s for triple in geo.strides for s in triple],
            ONE_PASS=one_pass, BLOCK_N=block_n, BLOCK_I=block_i, num_warps=warps, **constexprs,
        )


def _contiguous_call(tensors: list[torch.Tensor], out: torch.Tensor, dim: int, launch) -> torch.Tensor:
    """Run ``launch`` on contiguous copies when no two-group geometry exists for the given layouts."""
    dense = [t.contiguous() for t in tensors]
    tmp = out if out.is_contiguous() else torch.empty(out.shape, dtype=out.dtype, device=out.device)
    geo = row_geometry(dense + [tmp], dim)
    launch(dense, tmp, geo)
    if tmp is not out:
        out.copy_(tmp)
    return out


def _flat_strides(geo: RowGeometry) -> list[int]:
    return [s for triple in geo.strides for s in triple]


def softmax_forward(x: torch.Tensor, dim: int, out: torch.Tensor, log: bool = False) -> torch.Tensor:
    """Write ``softmax(x, dim)`` (``log_softmax`` with ``log=True``) into ``out``, of ``x``'s shape.

    ``out``'s dtype is the result dtype (``x`` is rounded to it first, as torch's ``dtype=`` does);
    ``out`` must not overlap itself; ``x`` may have any strides. ``dim`` is non-negative.
    """
    if out.numel() == 0:
        return out

    def launch(ins, o, geo):
        (xi,) = ins
        const = {"LOG": log, "ROUND_IN": xi.dtype != o.dtype, "COMPUTE": compute_dtype(o.dtype)}
        cols = column_geometry(geo)
        if cols is not None:
            _launch_columns(_softmax_fwd_columns, [xi, o], cols, o.device, False, **const)
            return
        one_pass, block, rows, warps = _launch_params(geo, o.device)
        kernel = _softmax_fwd_one_pass if one_pass else _softmax_fwd_online
        grid = (triton.cdiv(geo.rows, rows),)
        with _on_device(o.device):
            kernel[grid](xi, o, geo.rows, geo.n, geo.b1, *_flat_strides(geo), ROWS=rows, BLOCK=block,
                         num_warps=warps, **const)

    geo = row_geometry([x, out], dim)
    if geo is None:
        return _contiguous_call([x], out, dim, launch)
    launch([x], out, geo)
    return out


def softmax_backward(grad: torch.Tensor, output: torch.Tensor, dim: int, out: torch.Tensor,
                     log: bool = False) -> torch.Tensor:
    """Write the input gradient of ``softmax`` (``log_softmax`` with ``log=True``) into ``out``.

    ``output`` is the forward result; ``out``'s dtype is the input's dtype (the gradient is rounded to
    ``output``'s dtype first when the two differ). ``grad`` may have any strides, expanded ones too.
    """
    if out.numel() == 0:
        return out

    def launch(ins, o, geo):
        g, y = ins
        const = {"LOG": log, "ROUND_OUT": y.dtype != o.dtype, "COMPUTE": compute_dtype(y.dtype)}
        cols = column_geometry(geo)
        if cols is not None:
            _launch_columns(_softmax_bwd_columns, [g, y, o], cols, o.device, True, **const)
            return
        one_pass, block, rows, warps = _launch_params(geo, o.device, backward=True)
        kernel = _softmax_bwd_one_pass if one_pass else _softmax_bwd_online
        grid = (triton.cdiv(geo.rows, rows),)
        with _on_device(o.device):
            kernel[grid](g, y, o, geo.rows, geo.n, geo.b1, *_flat_strides(geo), ROWS=rows, BLOCK=block,
                         num_warps=warps, **const)

    geo = row_geometry([grad, output, out], dim)
    if geo is None:
        return _contiguous_call([grad, output], out, dim, launch)
    launch([grad, output], out, geo)
    return out
