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

import math

import torch

from .. import backend, sharding
from ..kernels.launch import table_on
from ..ops import _dense, _kernel_pair, empty_like
from ._common import LIB, formula_of

_SCALARS = "float p0, float p1, float p2"
LIB.define(f"bits_forward(Tensor x, Tensor? w, str formula, {_SCALARS}) -> (Tensor, Tensor)")
LIB.define(f"bits_backward(Tensor grad, Tensor codes, Tensor? w, str formula, {_SCALARS}) -> Tensor")
LIB.define(f"fewbit_forward(Tensor x, Tensor bounds, str formula, int bits, {_SCALARS}) -> (Tensor, Tensor)")
LIB.define("fewbit_backward(Tensor grad, Tensor codes, Tensor levels, int bits) -> Tensor")

#: The formulas with a two-valued derivative, and the stand-ins (on-branch, off-branch) their backward gets.
BIT_FORMULAS = ("relu", "hardtanh", "leaky_relu", "leaky_relu_from_input", "prelu")
FEWBIT_FORMULAS = ("gelu", "gelu_tanh", "silu", "mish")
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


def surrogates(formula: str, p0: float, p1: float) -> tuple[float, float]:
    """``(on, off)``: values on the pass-through side and the other side of every branch of ``formula``."""
    if formula == "relu":
        return 1.0, 0.0
    if formula == "hardtanh":
        lo, hi = p0, p1
        if math.isfinite(lo) and math.isfinite(hi):
            on = lo + (hi - lo) / 2
        elif math.isfinite(lo):
            on = lo + 1.0
        elif math.isfinite(hi):
            on = hi - 1.0
        else:
            on = 0.0
        return on, lo  # lo is never strictly inside (lo, hi)
    return 1.0, -1.0  # leaky_relu, prelu: the sign decides


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


def _pass_bit(formula: str, s: torch.Tensor, p0: float, p1: float) -> torch.Tensor | None:
    """The bit (True: the pass-through side) straight from the saved value, for the formulas whose
    backward is a plain comparison; written to give exactly what the table's backward decides,
    NaN included. None where the generic rule must be used."""
    if formula == "relu":
        return ~(s <= 0)  # threshold_backward passes a NaN
    if formula in ("leaky_relu", "leaky_relu_from_input") or (formula == "prelu"):
        return s > 0
    return None


def torch_bits_forward(x, w, formula, p0, p1, p2):
    """Reference ``bits_forward``: the table's forward, and the bit from the table's backward."""
    f = formula_of(formula)
    xd = _dense(x)
    pw = w if w is not None else p0
    y = f.forward(xd, pw, p1, p2, False)
    y = y if _same_strides(y, xd) else torch.empty_like(xd).copy_(y)
    s = y if f.saves == "output" else xd
    on, off = surrogates(formula, p0, p1)
    probe = s[:1] if s.dim() else s  # keeps the channel dim: the off-branch derivative broadcasts per channel
    bit = _pass_bit(formula, s, p0, p1)
    if bit is None:
        d_off = f.backward(torch.ones_like(probe), torch.full_like(probe, off), pw, p1, p2)
        bit = f.backward(torch.ones_like(s), s, pw, p1, p2) != d_off
    return y, _pack(storage_flat(bit), 1)


def _same_strides(a, b) -> bool:
    return all(sa == sb for n, sa, sb in zip(a.shape, a.stride(), b.stride()) if n > 1)


def torch_bits_backward(grad, codes, w, formula, p0, p1, p2):
    """Reference ``bits_backward``: the table's backward on the stand-in values the bits select."""
    f = formula_of(formula)
    g = _dense(grad)
    on, off = surrogates(formula, p0, p1)
    bit = from_storage_flat(_unpack(codes, g.numel(), 1), g)
    if math.isfinite(on) and math.isfinite(off):  # bit * (on - off) + off: a cheap select of the two sides
        s = bit.to(g.dtype).mul_(on - off).add_(off)
    else:
        s = torch.where(bit.view(torch.bool), g.new_full((), on), g.new_full((), off))
    dx = f.backward(g, s, w if w is not None else p0, p1, p2)
    return dx if _same_strides(dx, g) else torch.empty_like(g).copy_(dx)


def _table(table: torch.Tensor, device: torch.device, acc: torch.dtype) -> torch.Tensor:
    """A few-bit table for inputs on ``device`` in dtype ``acc``, never copied host-to-device per call: on the
    device (``kernels.launch.table_on``), or, while torch.compile traces a host table (:func:`fewbit_tables`),
    the host table, read by the graph as host scalars (reading its values would break the graph)."""
    if torch.compiler.is_compiling() and table.device != torch.device(device):
        return table.to(acc)
    return table_on(table, device, acc).to(acc)


def torch_fewbit_forward(x, bounds, formula, bits, p0, p1, p2):
    """Reference ``fewbit_forward``: the table's forward, and the interval index of each element."""
    xd = _dense(x)
    y = formula_of(formula).forward(xd, p0, p1, p2, False)
    y = y if _same_strides(y, xd) else torch.empty_like(xd).copy_(y)
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
    g = _dense(grad)
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
# operator implementations
# ---------------------------------------------------------------------------------------------


def _channel_dim(x: torch.Tensor) -> int:
    return 1 if x.dim() >= 2 else 0


@torch.library.impl(LIB, "bits_forward", "CompositeExplicitAutograd")
def _bits_forward(x, w, formula, p0, p1, p2):
    if backend.kernel_runs_on(x.device):
        from torchinit.kernels.bits import launch_pack_forward

        f = formula_of(formula)
        xd = _dense(x)
        y = empty_like(xd)
        codes = xd.new_empty((packed_bytes(xd.numel(), 1),), dtype=torch.uint8)
        fwd, bwd = _kernel_pair(f)
        launch_pack_forward(fwd, bwd, f.saves == "output", xd, y, codes, (p0, p1, p2), w, _channel_dim(xd),
                            surrogates(formula, p0, p1))
        return y, codes
    return torch_bits_forward(x, w, formula, p0, p1, p2)


@torch.library.impl(LIB, "bits_backward", "CompositeExplicitAutograd")
def _bits_backward(grad, codes, w, formula, p0, p1, p2):
    if backend.kernel_runs_on(grad.device):
        from torchinit.kernels.bits import launch_unpack_backward

        g = _dense(grad)
        dx = empty_like(g)
        _, bwd = _kernel_pair(formula_of(formula))
        launch_unpack_backward(bwd, g, codes, dx, (p0, p1, p2), w, _channel_dim(g), surrogates(formula, p0, p1))
        return dx
    return torch_bits_backward(grad, codes, w, formula, p0, p1, p2)


@torch.library.impl(LIB, "fewbit_forward", "CompositeExplicitAutograd")
def _fewbit_forward(x, bounds, formula, bits, p0, p1, p2):
    if backend.kernel_runs_on(x.device):
        from torchinit.kernels.bits import launch_pack_forward

        f = formula_of(formula)
        xd = _dense(x)
        y = empty_like(xd)
        codes = xd.new_empty((packed_bytes(xd.numel(), bits),), dtype=torch.uint8)
        fwd, bwd = _kernel_pair(f)
        launch_pack_forward(fwd, bwd, False, xd, y, codes, (p0, p1, p2), bounds=bounds, bits=bits)
        return y, codes
    return torch_fewbit_forward(x, bounds, formula, bits, p0, p1, p2)


@torch.library.impl(LIB, "fewbit_backward", "CompositeExplicitAutograd")
def _fewbit_backward(grad, codes, levels, bits):
    if backend.kernel_runs_on(grad.device):
        from torchinit.kernels.bits import launch_unpack_backward
        from torchinit.kernels.math import relu_bwd

        g = _dense(grad)
        dx = empty_like(g)
        launch_unpack_backward(relu_bwd, g, codes, dx, (0.0, 0.0, 0.0), levels=levels, bits=bits)
        return dx
    return torch_fewbit_backward(grad, codes, levels, bits)


@torch.library.register_fake("torchinit::bits_forward", lib=LIB)
def _bits_forward_fake(x, w, formula, p0, p1, p2):
    return torch.empty_like(x), x.new_empty((packed_bytes(x.numel(), 1),), dtype=torch.uint8)


@torch.library.register_fake("torchinit::bits_backward", lib=LIB)
def _bits_backward_fake(grad, codes, w, formula, p0, p1, p2):
    return torch.empty_like(grad)


@torch.library.register_fake("torchinit::fewbit_forward", lib=LIB)
def _fewbit_forward_fake(x, bounds, formula, bits, p0, p1, p2):
    return torch.empty_like(x), x.new_empty((packed_bytes(x.numel(), bits),), dtype=torch.uint8)


@torch.library.register_fake("torchinit::fewbit_backward", lib=LIB)
def _fewbit_backward_fake(grad, codes, levels, bits):
    return torch.empty_like(grad)


def _per_sample(op, n_out):
    """vmap: codes are packed per tensor, so each sample is one call (the codes get a batch dim)."""

    def rule(info, in_dims, *args):
        outs = []
        for b in range(info.batch_size):
            sample = [a.select(d, b) if d is not None else a for a, d in zip(args, in_dims)]
            outs.append(op(*sample))
        if n_out == 1:
            return torch.stack(outs), 0
        return tuple(torch.stack(parts) for parts in zip(*outs)), (0,) * n_out

    return rule


torch.library.register_vmap("torchinit::bits_forward", _per_sample(torch.ops.torchinit.bits_forward, 2), lib=LIB)
torch.library.register_vmap("torchinit::bits_backward", _per_sample(torch.ops.torchinit.bits_backward, 1), lib=LIB)
torch.library.register_vmap("torchinit::fewbit_forward", _per_sample(torch.ops.torchinit.fewbit_forward, 2), lib=LIB)
torch.library.register_vmap("torchinit::fewbit_backward", _per_sample(torch.ops.torchinit.fewbit_backward, 1),
                            lib=LIB)


def _like_output(grad: torch.Tensor, shape, stride) -> torch.Tensor:
    if all(s == t for n, s, t in zip(shape, grad.stride(), stride) if n > 1):
        return grad
    return torch.empty_strided(shape, stride, dtype=grad.dtype, device=grad.device).copy_(grad)


class BitsFunction(torch.autograd.Function):
    """Saves a 1-bit packed mask instead of a tensor; the gradient is exactly the one torch computes."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, w, formula, p0, p1, p2, use_op):
        if use_op:
            return torch.ops.torchinit.bits_forward(x, w, formula, p0, p1, p2)
        return torch_bits_forward(x, w, formula, p0, p1, p2)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, formula, p0, p1, p2, use_op = inputs
        y, codes = output
        ctx.mark_non_differentiable(codes)
        ctx.args = (formula, p0, p1, p2)
        ctx.use_op = use_op
        ctx.layout = (tuple(y.shape), tuple(y.stride()))
        ctx.save_for_backward(codes, w)

    @staticmethod
    def backward(ctx, grad, _grad_codes):
        codes, w = ctx.saved_tensors
        g = _like_output(grad, *ctx.layout)
        op = torch.ops.torchinit.bits_backward if ctx.use_op else torch_bits_backward
        return op(g, codes, w, *ctx.args), None, None, None, None, None, None


class FewBitFunction(torch.autograd.Function):
    """Saves a ``bits``-bit code of the derivative's step instead of the input (approximate gradient)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, bounds, levels, formula, bits, p0, p1, p2, use_op):
        if use_op:
            return torch.ops.torchinit.fewbit_forward(x, bounds, formula, bits, p0, p1, p2)
        return torch_fewbit_forward(x, bounds, formula, bits, p0, p1, p2)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, bounds, levels, formula, bits, p0, p1, p2, use_op = inputs
        y, codes = output
        ctx.mark_non_differentiable(codes)
        ctx.bits = bits
        ctx.use_op = use_op
        ctx.layout = (tuple(y.shape), tuple(y.stride()))
        ctx.save_for_backward(codes, levels)

    @staticmethod
    def backward(ctx, grad, _grad_codes):
        codes, levels = ctx.saved_tensors
        g = _like_output(grad, *ctx.layout)
        op = torch.ops.torchinit.fewbit_backward if ctx.use_op else torch_fewbit_backward
        return op(g, codes, levels, ctx.bits), None, None, None, None, None, None, None, None


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
    device = torch.device(device)
    if device.type == "cpu" or torch.compiler.is_compiling():
        return bounds, levels
    return table_on(bounds, device, torch.float64), table_on(levels, device, torch.float64)


# DTensor: the codes are packed over the whole tensor, so these run on gathered (replicated) tensors
sharding.replicated(torch.ops.torchinit.bits_forward.default, outputs=2)
sharding.replicated(torch.ops.torchinit.bits_backward.default)
sharding.replicated(torch.ops.torchinit.fewbit_forward.default, outputs=2)
sharding.replicated(torch.ops.torchinit.fewbit_backward.default)
