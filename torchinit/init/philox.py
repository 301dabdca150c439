"""Philox-4x32-10 in plain torch integer ops, bit-for-bit equal to Triton's ``tl.randint4x`` / ``tl.rand4x``.

Triton's counter layout (``triton/language/random.py``): for a 64-bit ``seed`` and an int64 ``offset``,
``randint4x(seed, offset)`` runs Philox-4x32 with counter ``(offset_lo, offset_hi, 0, 0)`` and key
``(seed_lo, seed_hi)``, ten rounds, and returns the four 32-bit words. ``uint_to_uniform_float`` bitcasts a
word to int32, folds negatives with ``~x`` and multiplies by ``4.6566127342e-10`` in fp32, giving a float in
``[0, 1)``. ``randn4x`` pairs the uniforms through Box-Muller (``u1`` clamped below at ``1e-7``).

torch has no unsigned 32-bit arithmetic with a high-half multiply, so a word that must be multiplied is
kept in the low half of an int64 whose high half is zero; the int64 product then holds the full 64-bit
product, and viewing it as pairs of int32 gives its low word (column 0) and high word (column 1) with no
shift or mask. XORs work on those int32 views, writing the next round's multiplicands straight into the
low halves of the zero-topped int64 buffers, so a round is two int64 multiplies and four int32 XORs;
the products of the previous round are kept (double buffering) as the words that pass through. The
work runs over blocks of counters in preallocated buffers small enough to stay in cache
(:class:`Workspace`), with no temporaries per round.
"""

from __future__ import annotations

import torch

__all__ = [
    "BLOCK_COUNTERS",
    "PHILOX_ROUNDS",
    "ROUND_COUNTERS",
    "Workspace",
    "box_muller",
    "normal_block",
    "philox4x32",
    "rand4x",
    "randint4x",
    "randn4x",
    "uint_to_uniform_float",
    "uniform_block",
    "words_block",
]

PHILOX_ROUNDS = 10
_KEY_A = 0x9E3779B9
_KEY_B = 0xBB67AE85
_ROUND_A = 0xD2511F53
_ROUND_B = 0xCD9E8D57
_M32 = 0xFFFFFFFF
#: counters per Philox round pass: each int64 op is at most torch's intra-op grain (32768), so it runs on one
#: thread with no parallel-region barrier, and the six int64 buffers (1.5 MiB) stay near a core's L2 cache
ROUND_COUNTERS = 1 << 15
#: counters per workspace (4 Mi values): the float transforms (log, sin, cos, ...) run over this many
#: at once, few enough parallel regions that an oversubscribed CPU does not stall on their barriers
BLOCK_COUNTERS = 1 << 18
_UNIFORM_SCALE = 4.6566127342e-10  # Triton's scale: largest value with (2**31 - 1) * scale < 1 in fp32
_TWO_PI = 6.283185307179586


def _s32(v: int) -> int:
    """A 32-bit word as the signed int32 with the same bits."""
    v &= _M32
    return v - (1 << 32) if v >= 1 << 31 else v


class Workspace:
    """Preallocated buffers for Philox blocks of up to ``size`` counters on ``device``.

    One workspace serves any number of blocks in turn (not concurrently); :func:`words_block`,
    :func:`uniform_block` and :func:`normal_block` return views into it, valid until the next call.
    The rounds run over ``round_size`` counters at a time. The buffers are allocated on first use.
    """

    def __init__(self, size: int = BLOCK_COUNTERS, device: torch.device | str = "cpu",
                 round_size: int = ROUND_COUNTERS) -> None:
        if size < 1 or round_size < 1:
            raise ValueError(f"Workspace: size and round_size must be at least 1, got {size} and {round_size}")
        self.size = size
        self.round_size = min(size, round_size)
        self.device = torch.device(device)

    def __getattr__(self, name: str) -> torch.Tensor:
        # the buffers are allocated on first use: a workspace made for a fill that the C sampler
        # (torchinit.init.native) serves costs nothing
        if name not in _BUFFERS:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        self._allocate()
        return self.__dict__[name]

    def _allocate(self) -> None:
        r, size = self.round_size, self.size
        i64 = {"dtype": torch.int64, "device": self.device}
        self.a = torch.empty(r, **i64)  # x0 in the low half, high half zero
        self.b = torch.empty(r, **i64)  # x2 in the low half, high half zero
        self.p = (torch.empty(r, **i64), torch.empty(r, **i64))  # B * x2, double buffered
        self.q = (torch.empty(r, **i64), torch.empty(r, **i64))  # A * x0, double buffered
        self.counters = torch.empty(size, **i64)
        self.words = torch.empty(size, 4, dtype=torch.int32, device=self.device)
        self.fold = torch.empty(size, 4, dtype=torch.int32, device=self.device)
        self.values = torch.empty(size, 4, dtype=torch.float32, device=self.device)
        self.pair = torch.empty(size, 2, dtype=torch.float32, device=self.device)
        self.scale = torch.tensor(_UNIFORM_SCALE, dtype=torch.float32, device=self.device)
        self.two_pi = torch.tensor(_TWO_PI, dtype=torch.float32, device=self.device)


_BUFFERS = frozenset({"a", "b", "p", "q", "counters", "words", "fold", "values", "pair", "scale", "two_pi"})


def _pairs(t: torch.Tensor) -> torch.Tensor:
    """An int64 tensor viewed as (n, 2) int32: column 0 the low word, column 1 the high word."""
    return t.view(torch.int32).view(-1, 2)


def words_block(ws: Workspace, key: int, counters: torch.Tensor, rounds: int = PHILOX_ROUNDS) -> torch.Tensor:
    """Philox-4x32 of the int64 ``counters`` (at most ``ws.size``; counter ``c`` is ``(c_lo, c_hi, 0, 0)``)
    under the 64-bit ``key``: an (n, 4) int32 view of ``ws.words`` holding the four output words' bits."""
    m = counters.numel()
    if m > ws.size:
        raise ValueError(f"words_block: {m} counters do not fit a workspace of {ws.size}")
    if rounds < 1:
        raise ValueError(f"words_block: rounds must be at least 1, got {rounds}")
    out = ws.words[:m]
    for s in range(0, m, ws.round_size):
        _rounds_into(ws, key, counters[s : s + ws.round_size], rounds, out[s : s + ws.round_size])
    return out


def _rounds_into(ws: Workspace, key: int, counters: torch.Tensor, rounds: int, out: torch.Tensor) -> None:
    """The Philox rounds for at most ``ws.round_size`` counters, the four words written into ``out`` (m, 4)."""
    m = counters.numel()
    a, b = ws.a[:m], ws.b[:m]
    a32, b32 = _pairs(a), _pairs(b)
    k0, k1 = key & _M32, (key >> 32) & _M32
    torch.bitwise_and(counters, _M32, out=a)
    b.zero_()
    hi = counters >> 32
    x1: torch.Tensor | None = hi.to(torch.int32) if bool((hi != 0).any()) else None  # None: all zero
    x3: torch.Tensor | None = None
    x2_zero = True
    for r in range(rounds):
        last = r == rounds - 1
        o0 = out[:, 0] if last else a32[:, 0]
        o2 = out[:, 2] if last else b32[:, 0]
        q = ws.q[r & 1][:m]
        torch.mul(a, _ROUND_A, out=q)
        if x2_zero:  # B * 0 = 0: c0' = c1 ^ k0, c1' = 0
            if x1 is None:
                o0.fill_(_s32(k0))
            else:
                torch.bitwise_xor(x1, _s32(k0), out=o0)
            new_x1 = None
        else:
            p = ws.p[r & 1][:m]
            torch.mul(b, _ROUND_B, out=p)
            p32 = _pairs(p)
            if x1 is None:
                torch.bitwise_xor(p32[:, 1], _s32(k0), out=o0)
            else:
                torch.bitwise_xor(p32[:, 1], x1, out=o0).bitwise_xor_(_s32(k0))
            new_x1 = p32[:, 0]
        q32 = _pairs(q)
        if x3 is None:
            torch.bitwise_xor(q32[:, 1], _s32(k1), out=o2)
        else:
            torch.bitwise_xor(q32[:, 1], x3, out=o2).bitwise_xor_(_s32(k1))
        x1, x3, x2_zero = new_x1, q32[:, 0], False
        k0 = (k0 + _KEY_A) & _M32
        k1 = (k1 + _KEY_B) & _M32
    if x1 is None:
        out[:, 1].zero_()
    else:
        out[:, 1].copy_(x1)
    out[:, 3].copy_(x3)


def _to_uniform(ws: Workspace, words: torch.Tensor) -> torch.Tensor:
    """Triton's ``uint_to_uniform_float`` on an (n, 4) int32 block, in place in the workspace."""
    m = words.shape[0]
    fold = ws.fold[:m]
    torch.bitwise_right_shift(words, 31, out=fold)  # -1 where the int32 is negative, else 0
    words.bitwise_xor_(fold)  # ~x for negatives
    values = ws.values[:m]
    torch.mul(words, ws.scale, out=values)  # int32 -> fp32 (round to nearest), times the fp32 scale
    return values


def uniform_block(ws: Workspace, key: int, counters: torch.Tensor, rounds: int = PHILOX_ROUNDS) -> torch.Tensor:
    """``tl.rand4x`` of ``counters``: an (n, 4) fp32 view of ``ws.values`` (column k is output word k)."""
    return _to_uniform(ws, words_block(ws, key, counters, rounds))


def _box_muller_(ws: Workspace, values: torch.Tensor) -> torch.Tensor:
    """Box-Muller in place on an (n, 4) block of uniforms, pairing columns (0, 1) and (2, 3)."""
    u1, u2 = values[:, 0::2], values[:, 1::2]
    u1.clamp_(min=1.0e-7).log_().mul_(-2.0).sqrt_()  # r
    u2.mul_(ws.two_pi)  # theta
    s = ws.pair[: values.shape[0]]
    torch.sin(u2, out=s).mul_(u1)  # r * sin(theta)
    u2.cos_()
    u1.mul_(u2)  # r * cos(theta)
    u2.copy_(s)
    return values


def normal_block(ws: Workspace, key: int, counters: torch.Tensor, rounds: int = PHILOX_ROUNDS) -> torch.Tensor:
    """``tl.randn4x`` of ``counters``: an (n, 4) fp32 view of ``ws.values``."""
    return _box_muller_(ws, uniform_block(ws, key, counters, rounds))


def _blocks(counters: torch.Tensor, fn, key: int, rounds: int, dtype: torch.dtype) -> torch.Tensor:
    """Run a block function over any number of counters; an (n, 4) tensor of ``dtype``."""
    flat = counters.reshape(-1)
    n = flat.numel()
    out = torch.empty(n, 4, dtype=dtype, device=flat.device)
    if n == 0:
        return out
    ws = Workspace(min(n, BLOCK_COUNTERS), flat.device)
    for s in range(0, n, ws.size):
        out[s : s + ws.size] = fn(ws, key, flat[s : s + ws.size], rounds)
    return out


def _check_key(fn: str, key: int) -> None:
    if not 0 <= key < 1 << 64:
        raise ValueError(f"{fn}: key must be a 64-bit unsigned integer, got {key}")


def philox4x32(
    c0: torch.Tensor, c1: torch.Tensor, key: int, rounds: int = PHILOX_ROUNDS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run Philox-4x32 on counters ``(c0, c1, 0, 0)`` with the 64-bit ``key`` (Triton's ``seed``).

    ``c0`` and ``c1`` are int64 tensors holding 32-bit words; the result is four int64 tensors of
    32-bit words, the same words ``tl.philox`` returns.
    """
    if c0.dtype != torch.int64 or c1.dtype != torch.int64:
        raise TypeError(f"philox4x32: expected int64 counter words, got {c0.dtype} and {c1.dtype}")
    _check_key("philox4x32", key)
    counters = (c1.reshape(-1) << 32) | (c0.reshape(-1) & _M32)
    words = _blocks(counters, words_block, key, rounds, torch.int32).to(torch.int64) & _M32
    return tuple(words[:, i].contiguous() for i in range(4))  # type: ignore[return-value]


def randint4x(key: int, offset: torch.Tensor, rounds: int = PHILOX_ROUNDS) -> tuple[torch.Tensor, ...]:
    """Mirror of ``tl.randint4x(seed=key, offset)``: four int64 tensors of 32-bit words, shaped like ``offset``."""
    if offset.dtype != torch.int64:
        raise TypeError(f"randint4x: expected an int64 offset tensor, got {offset.dtype}")
    _check_key("randint4x", key)
    words = _blocks(offset, words_block, key, rounds, torch.int32).to(torch.int64) & _M32
    return tuple(words[:, i].reshape(offset.shape) for i in range(4))


def uint_to_uniform_float(x: torch.Tensor) -> torch.Tensor:
    """Mirror of Triton's ``uint_to_uniform_float`` for 32-bit words held in int64: fp32 in ``[0, 1)``."""
    folded = torch.where(x >= 1 << 31, _M32 - x, x)  # bitcast to int32, then ~x for negatives
    return folded.to(torch.float32) * torch.tensor(_UNIFORM_SCALE, dtype=torch.float32, device=x.device)


def rand4x(key: int, offset: torch.Tensor, rounds: int = PHILOX_ROUNDS) -> tuple[torch.Tensor, ...]:
    """Mirror of ``tl.rand4x``: four fp32 uniform tensors in ``[0, 1)``."""
    if offset.dtype != torch.int64:
        raise TypeError(f"rand4x: expected an int64 offset tensor, got {offset.dtype}")
    _check_key("rand4x", key)
    u = _blocks(offset, uniform_block, key, rounds, torch.float32)
    return tuple(u[:, i].reshape(offset.shape) for i in range(4))


def box_muller(u1: torch.Tensor, u2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror of Triton's ``pair_uniform_to_normal`` in fp32 (``u1`` clamped below at 1e-7)."""
    u1 = torch.clamp(u1, min=1.0e-7)
    th = u2 * torch.tensor(_TWO_PI, dtype=torch.float32, device=u2.device)
    r = torch.sqrt(torch.log(u1) * -2.0)
    return r * torch.cos(th), r * torch.sin(th)


def randn4x(key: int, offset: torch.Tensor, rounds: int = PHILOX_ROUNDS) -> tuple[torch.Tensor, ...]:
    """Mirror of ``tl.randn4x``: four fp32 standard-normal tensors (Box-Muller on pairs of ``rand4x``)."""
    if offset.dtype != torch.int64:
        raise TypeError(f"randn4x: expected an int64 offset tensor, got {offset.dtype}")
    _check_key("randn4x", key)
    z = _blocks(offset, normal_block, key, rounds, torch.float32)
    return tuple(z[:, i].reshape(offset.shape) for i in range(4))
