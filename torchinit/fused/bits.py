"""Memory-lean backward: a 1-bit packed mask (exact) or a few-bit derivative code (approximate).

Exact mode, ``memory="bits"`` (relu, relu6/hardtanh, leaky_relu, prelu with a frozen weight): these
activations' derivative takes one of two values, so backward needs one bit per element, not a
tensor. The bit is computed by the activation's own backward (the table's torch form, or its Triton
pair) and backward feeds that same formula a stand-in value on the same side of every branch: the
gradient is bit-for-bit torch's, NaN and infinities included.

Few-bit mode, ``memory="fewbit"`` (gelu, silu, mish; Novikov et al., "Few-Bit Backward: Quantized
Gradients of Activation Functions for Memory Footprint Reduction", ICML 2023): the derivative is
replaced by a step function of ``x`` with ``2**bits`` steps, fitted (optimal boundaries and levels,
by dynamic programming over a fine grid) to minimise the squared error weighted by the standard
normal density; forward stores each element's step index in ``bits`` bits. This *changes the
gradient*: the relative L2 error of the input gradient measured on N(0, 1) inputs is about 29% with
1 bit, 13-14% with 2 bits and 3-4% with 4 bits (the default), see :data:`FEWBIT_ERROR`. NaN inputs
get a finite gradient (the lowest step), unlike the exact backward.

Operators (namespace ``torchinit``; codes are packed over the storage order of a dense tensor):

* ``bits_forward(Tensor x, Tensor? w, str formula, float p0, float p1, float p2) -> (Tensor y, Tensor codes)``
* ``bits_backward(Tensor grad, Tensor codes, Tensor? w, str formula, float p0, float p1, float p2) -> Tensor``
* ``fewbit_forward(Tensor x, Tensor bounds, str formula, int bits, float p0, float p1, float p2) -> (Tensor, Tensor)``
* ``fewbit_backward(Tensor grad, Tensor codes, Tensor levels, int bits) -> Tensor``

The backward operators read ``grad`` in the storage order of the forward's output: pass it laid out
like the output (the autograd functions below do).
"""

from __future__ import annotations

import functools
import math

import torch

from .. import kernels, sharding
from ..activations import BIT_FORMULAS, FEWBIT_FORMULAS  # noqa: F401  (re-exported: the table's capabilities)
from ..layout import channel_dim, dense, empty_like, layout_like
from ..opdef import (
    autograd_function,
    kernel_or_torch,
    kernel_pair,
    operator,
    per_sample,
)
from ._common import formula_of

FEWBIT_WIDTHS = (1, 2, 4)

#: Measured relative L2 error of the input gradient, ``||dx_fewbit - dx|| / ||dx||``, with 10**6 fp64
#: inputs ``x ~ N(0, s^2)`` and incoming gradients ``g ~ N(0, 1)`` (torch path; the kernels compute
#: the same codes): ``{(formula, s): {bits: error}}``. The fit weights N(0, 1), so wider inputs are
#: approximated no better. ``tests/test_fused_memory.py`` re-measures it on a smaller sample.
FEWBIT_ERROR = {
    ("gelu", 1.0): {1: 0.2906, 2: 0.1327, 4: 0.0363}, ("gelu", 3.0): {1: 0.2213, 2: 0.0912, 4: 0.0421},
    ("silu", 1.0): {1: 0.2905, 2: 0.1441, 4: 0.0354}, ("silu", 3.0): {1: 0.3168, 2: 0.1347, 4: 0.0401},
    ("mish", 1.0): {1: 0.2670, 2: 0.1265, 4: 0.0307}, ("mish", 3.0): {1: 0.2680, 2: 0.1043, 4: 0.0522},
}
TAIL_WEIGHT = 1e-3  # added to the normal density in the fit


def packed_bytes(n: int, bits: int) -> int:
    """Bytes holding ``n`` codes of ``bits`` bits (``8 // bits`` to a byte)."""
    per = 8 // bits
    return (n + per - 1) // per


# ---------------------------------------------------------------------------------------------
# storage order and packing in torch (the path wherever no kernel runs)
# ---------------------------------------------------------------------------------------------


def _storage_perm(t: torch.Tensor) -> list[int]:
    return sorted(range(t.dim()), key=lambda d: -t.stride(d))


def storage_flat(t: torch.Tensor) -> torch.Tensor:
    """A 1-D view of dense ``t`` in storage order (the order the kernels walk)."""
    return t.permute(_storage_perm(t)).reshape(-1)


def from_storage_flat(flat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`storage_flat`: ``flat`` (storage order of dense ``like``) in ``like``'s shape."""
    perm = _storage_perm(like)
    inverse = [perm.index(d) for d in range(like.dim())]
    return flat.reshape([like.shape[d] for d in perm]).permute(inverse)


def _shifts(bits: int, device: torch.device) -> torch.Tensor:
    return torch.arange(0, 8, bits, dtype=torch.uint8, device=device)


def _pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack 1-D codes (< 2**bits) ``8 // bits`` to a byte, in uint8 arithmetic (no wide temporaries).

    The codes of one byte occupy disjoint bits, so shifting each into place and summing is their OR:
    two passes over the codes whatever the width.
    """
    per = 8 // bits
    n = codes.numel()
    c = codes.to(torch.uint8)
    if n % per:
        c = torch.nn.functional.pad(c, (0, per - n % per))
    return (c.view(-1, per) << _shifts(bits, c.device)).sum(dim=1, dtype=torch.uint8)


def _unpack(packed: torch.Tensor, n: int, bits: int) -> torch.Tensor:
    mask = (1 << bits) - 1
    return ((packed.unsqueeze(1) >> _shifts(bits, packed.device)) & mask).reshape(-1)[:n]


def torch_bits_forward(x, w, formula, p0, p1, p2):
    """Reference ``bits_forward``: the table's forward, and the bit from the table's backward."""
    f = formula_of(formula)
    xd = dense(x)
    pw = w if w is not None else p0
    y = layout_like(f.forward(xd, pw, p1, p2, False), xd)
    s = y if f.saves == "output" else xd
    if f.pass_bit is not None:
        bit = f.pass_bit(s)
    else:
        _, off = f.stand_ins(p0, p1)
        probe = s[:1] if s.dim() else s  # keeps the channel dim: the off-branch derivative broadcasts per channel
        d_off = f.backward(torch.ones_like(probe), torch.full_like(probe, off), pw, p1, p2)
        bit = f.backward(torch.ones_like(s), s, pw, p1, p2) != d_off
    return y, _pack(storage_flat(bit), 1)


def torch_bits_backward(grad, codes, w, formula, p0, p1, p2):
    """Reference ``bits_backward``: the table's backward on the stand-in values the bits select."""
    f = formula_of(formula)
    g = dense(grad)
    on, off = f.stand_ins(p0, p1)
    bit = from_storage_flat(_unpack(codes, g.numel(), 1), g)
    if math.isfinite(on) and math.isfinite(off):  # bit * (on - off) + off: a cheap select of the two sides
        s = bit.to(g.dtype).mul_(on - off).add_(off)
    else:
        s = torch.where(bit.view(torch.bool), g.new_full((), on), g.new_full((), off))
    return layout_like(f.backward(g, s, w if w is not None else p0, p1, p2), g)


def _table(table: torch.Tensor, device: torch.device, acc: torch.dtype) -> torch.Tensor:
    """A few-bit table for inputs on ``device`` in dtype ``acc``, never copied host-to-device per call: on the
    device (``kernels.launch.table_on``), or, while torch.compile traces a host table (:func:`fewbit_tables`),
    the host table, read by the graph as host scalars (reading its values would break the graph)."""
    if torch.compiler.is_compiling() and table.device != torch.device(device):
        return table.to(acc)
    return kernels.launch.table_on(table, device, acc).to(acc)


def torch_fewbit_forward(x, bounds, formula, bits, p0, p1, p2):
    """Reference ``fewbit_forward``: the table's forward, and the interval index of each element."""
    xd = dense(x)
    y = layout_like(formula_of(formula).forward(xd, p0, p1, p2, False), xd)
    flat = storage_flat(xd)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    b = _table(bounds, x.device, acc)
    xf = flat.to(b.dtype)
    codes = torch.zeros_like(flat, dtype=torch.uint8)
    for k in range(b.numel()):  # the number of bounds below x (NaN: none), one byte-wide pass per bound
        # (faster on CPU than torch.bucketize, measured: 4M elements, 15 bounds)
        codes += xf > b[k]
    return y, _pack(codes, bits)


def torch_fewbit_backward(grad, codes, levels, bits):
    """Reference ``fewbit_backward``: the gradient times the level of each element's interval."""
    g = dense(grad)
    acc = torch.float64 if g.dtype == torch.float64 else torch.float32
    lv = _table(levels, g.device, acc)
    index = _unpack(codes, g.numel(), bits)
    if lv.device == g.device:
        level = lv.index_select(0, index.to(torch.int32))
    else:  # host levels under torch.compile: select each as a host scalar (one fused pass once compiled)
        level = torch.zeros_like(index, dtype=acc)
        for k in range(lv.numel()):
            level = torch.where(index == k, lv[k], level)
    dx = (storage_flat(g).to(acc) * level).to(g.dtype)
    return from_storage_flat(dx, g)


# ---------------------------------------------------------------------------------------------
# the operators and their autograd Functions
# ---------------------------------------------------------------------------------------------


def _pack_forward(x, w, formula, bits, bounds, scalars):
    """Run the packing kernel: ``y`` and the codes (the exact mask when ``bounds`` is None)."""
    f = formula_of(formula)
    xd = dense(x)
    y = empty_like(xd)
    codes = xd.new_empty((packed_bytes(xd.numel(), bits),), dtype=torch.uint8)
    if bounds is None:  # the exact mask comes from the derivative: the exact pair, as the default path's backward
        fwd, bwd = kernel_pair(f.kernel_name)
        kernels.bits.launch_pack_forward(fwd, bwd, f.saves == "output", xd, y, codes, scalars, w, channel_dim(xd),
                                         f.stand_ins(*scalars[:2]))
    else:  # few-bit codes compare x with the bounds: the forward alone is the activation's, half pair and all
        fwd, bwd = kernel_pair(f.kernel_name, y.dtype)
        kernels.bits.launch_pack_forward(fwd, bwd, False, xd, y, codes, scalars, bounds=bounds, bits=bits)
    return y, codes


def _bits_forward_kernel(x, w, formula, p0, p1, p2):
    return _pack_forward(x, w, formula, 1, None, (p0, p1, p2))


def _fewbit_forward_kernel(x, bounds, formula, bits, p0, p1, p2):
    return _pack_forward(x, None, formula, bits, bounds, (p0, p1, p2))


def _bits_backward_kernel(grad, codes, w, formula, p0, p1, p2):
    f = formula_of(formula)
    g = dense(grad)
    dx = empty_like(g)
    kernels.bits.launch_unpack_backward(kernel_pair(f.kernel_name)[1], g, codes, dx, (p0, p1, p2), w, channel_dim(g),
                                        f.stand_ins(p0, p1))
    return dx


def _fewbit_backward_kernel(grad, codes, levels, bits):
    g = dense(grad)
    dx = empty_like(g)
    kernels.bits.launch_unpack_backward(kernels.math.relu_bwd, g, codes, dx, (0.0, 0.0, 0.0), levels=levels,
                                        bits=bits)
    return dx


def _codes_fake(x, bits):
    return torch.empty_like(x), x.new_empty((packed_bytes(x.numel(), bits),), dtype=torch.uint8)


_SCALARS = "float p0, float p1, float p2"
_REPLICATED = functools.partial(sharding.replicated, outputs=2)  # codes are packed over the whole tensor
operator("bits_forward", f"(Tensor x, Tensor? w, str formula, {_SCALARS}) -> (Tensor, Tensor)",
         kernel_or_torch(_bits_forward_kernel, torch_bits_forward),
         lambda x, w, formula, p0, p1, p2: _codes_fake(x, 1),
         vmap=per_sample("bits_forward", 2), sharding=_REPLICATED)
operator("bits_backward", f"(Tensor grad, Tensor codes, Tensor? w, str formula, {_SCALARS}) -> Tensor",
         kernel_or_torch(_bits_backward_kernel, torch_bits_backward),
         lambda grad, codes, w, formula, p0, p1, p2: torch.empty_like(grad),
         vmap=per_sample("bits_backward", 3), sharding=sharding.replicated)
operator("fewbit_forward", f"(Tensor x, Tensor bounds, str formula, int bits, {_SCALARS}) -> (Tensor, Tensor)",
         kernel_or_torch(_fewbit_forward_kernel, torch_fewbit_forward),
         lambda x, bounds, formula, bits, p0, p1, p2: _codes_fake(x, bits),
         vmap=per_sample("fewbit_forward", 2), sharding=_REPLICATED)
operator("fewbit_backward", "(Tensor grad, Tensor codes, Tensor levels, int bits) -> Tensor",
         kernel_or_torch(_fewbit_backward_kernel, torch_fewbit_backward),
         lambda grad, codes, levels, bits: torch.empty_like(grad),
         vmap=per_sample("fewbit_backward", 3), sharding=sharding.replicated)


def _like_output(grad: torch.Tensor, shape, stride) -> torch.Tensor:
    if all(s == t for n, s, t in zip(shape, grad.stride(), stride) if n > 1):
        return grad
    return torch.empty_strided(shape, stride, dtype=grad.dtype, device=grad.device).copy_(grad)


def _saving(ctx, output, use_op, args, *tensors):
    """The common setup: the codes non-differentiable and saved with ``tensors``, the output's layout kept."""
    y, codes = output
    ctx.mark_non_differentiable(codes)
    ctx.args, ctx.use_op = args, use_op
    ctx.layout = (tuple(y.shape), tuple(y.stride()))
    ctx.save_for_backward(codes, *tensors)


def _bits_forward(x, w, formula, p0, p1, p2, use_op):
    if use_op:
        return torch.ops.torchinit.bits_forward(x, w, formula, p0, p1, p2)
    return torch_bits_forward(x, w, formula, p0, p1, p2)


def _bits_setup(ctx, inputs, output):
    _, w, formula, p0, p1, p2, use_op = inputs
    _saving(ctx, output, use_op, (formula, p0, p1, p2), w)


def _bits_backward(ctx, grad, _grad_codes):
    codes, w = ctx.saved_tensors
    op = torch.ops.torchinit.bits_backward if ctx.use_op else torch_bits_backward
    return op(_like_output(grad, *ctx.layout), codes, w, *ctx.args), None, None, None, None, None, None


def _fewbit_forward(x, bounds, levels, formula, bits, p0, p1, p2, use_op):
    if use_op:
        return torch.ops.torchinit.fewbit_forward(x, bounds, formula, bits, p0, p1, p2)
    return torch_fewbit_forward(x, bounds, formula, bits, p0, p1, p2)


def _fewbit_setup(ctx, inputs, output):
    _, _, levels, _, bits, _, _, _, use_op = inputs
    _saving(ctx, output, use_op, bits, levels)


def _fewbit_backward(ctx, grad, _grad_codes):
    codes, levels = ctx.saved_tensors
    op = torch.ops.torchinit.fewbit_backward if ctx.use_op else torch_fewbit_backward
    return (op(_like_output(grad, *ctx.layout), codes, levels, ctx.args),) + (None,) * 8


BitsFunction = autograd_function(
    "BitsFunction", _bits_forward, _bits_setup, _bits_backward,
    "Saves a 1-bit packed mask instead of a tensor; the gradient is exactly the one torch computes.")
FewBitFunction = autograd_function(
    "FewBitFunction", _fewbit_forward, _fewbit_setup, _fewbit_backward,
    "Saves a ``bits``-bit code of the derivative's step instead of the input (approximate gradient).")


# ---------------------------------------------------------------------------------------------
# the few-bit quantiser
# ---------------------------------------------------------------------------------------------


_FITTED: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}


@torch.no_grad()
def _fit(formula: str, bits: int, lo: float, hi: float, points: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    f = formula_of(formula)
    x = torch.linspace(lo, hi, points, dtype=torch.float64)
    d = f.backward(torch.ones_like(x), x, 0.0, 0.0, 0.0).double()
    w = torch.exp(-0.5 * x * x) + TAIL_WEIGHT  # the floor keeps the tails' steps meaningful
    zero = torch.zeros(1, dtype=torch.float64)
    cw = torch.cat([zero, torch.cumsum(w, 0)])
    cs = torch.cat([zero, torch.cumsum(w * d, 0)])
    cq = torch.cat([zero, torch.cumsum(w * d * d, 0)])
    k_max = 2 ** bits
    # cost[i, j]: weighted squared error of one step over grid points i..j-1 (i < j)
    sw = cw[None, :] - cw[:, None]
    ss = cs[None, :] - cs[:, None]
    sq = cq[None, :] - cq[:, None]
    valid = torch.triu(torch.ones_like(sw, dtype=torch.bool), diagonal=1)
    cost = torch.where(valid, (sq - ss * ss / torch.where(valid, sw, 1.0)).clamp_min(0.0), float("inf"))
    best = torch.full((k_max + 1, points + 1), float("inf"), dtype=torch.float64)
    arg = torch.zeros((k_max + 1, points + 1), dtype=torch.long)
    best[0, 0] = 0.0
    for k in range(1, k_max + 1):  # best[k, j]: k steps covering points 0..j-1
        best[k], arg[k] = (best[k - 1][:, None] + cost).min(dim=0)
    cuts, j = [], points
    for k in range(k_max, 0, -1):
        i = int(arg[k, j])
        cuts.append((i, j))
        j = i
    cuts.reverse()
    levels = [float((cs[j] - cs[i]) / (cw[j] - cw[i])) for i, j in cuts]
    bounds = [float((x[i - 1] + x[i]) / 2) for i, _ in cuts[1:]]
    return tuple(bounds), tuple(levels)


def fewbit_quantizer(formula: str, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(bounds, levels)``: the ``2**bits``-step approximation of ``formula``'s derivative (fp64 tensors).

    Fitted once per (formula, bits) and cached: on 601 points of [-6, 6] (step 0.02), boundaries and levels
    minimise the squared derivative error weighted by the standard normal density plus a floor of
    ``TAIL_WEIGHT`` (the optimal piecewise-constant fit, by dynamic programming; each level is the
    weighted mean of its interval). The outer steps extend to -inf and +inf.
    """
    if formula not in FEWBIT_FORMULAS:
        raise ValueError(f"torchinit: few-bit backward covers {list(FEWBIT_FORMULAS)}, got {formula!r}")
    if bits not in FEWBIT_WIDTHS:
        raise ValueError(f"torchinit: argument 'bits' must be one of {list(FEWBIT_WIDTHS)}, got {bits!r}")
    key = (formula, bits)
    if key not in _FITTED:  # a plain dict, not lru_cache: torch.compile reads it as a constant
        if torch.compiler.is_compiling():
            raise RuntimeError(f"torchinit: the few-bit quantiser of {formula!r} with {bits} bits is fitted outside "
                               "torch.compile: build the module (GELU/SiLU/Mish(memory='fewbit')) or call "
                               "torchinit.fused.bits.fewbit_quantizer once before compiling")
        bounds, levels = _fit(formula, bits, -6.0, 6.0, 601)
        _FITTED[key] = (torch.tensor(bounds, dtype=torch.float64), torch.tensor(levels, dtype=torch.float64))
    return _FITTED[key]


def fewbit_tables(formula: str, bits: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`fewbit_quantizer`'s ``(bounds, levels)`` for inputs on ``device``, with no host-to-device copy.

    On a GPU: fp64 tables made there by fills and cached for good (``kernels.launch.device_table``), safe to
    ask for during CUDA-graph capture (a table first made there is captured with the graph, not cached).
    On the CPU, and while ``torch.compile`` traces (a traced ``.to(device)`` would copy at every call): the
    host tensors, which the few-bit operators and kernels take as they are."""
    bounds, levels = fewbit_quantizer(formula, bits)
    if not isinstance(device, torch.device):
        device = torch.device(device)
    if device.type == "cpu" or torch.compiler.is_compiling():
        return bounds, levels
    table_on = kernels.launch.table_on
    return table_on(bounds, device, torch.float64), table_on(levels, device, torch.float64)
