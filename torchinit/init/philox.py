"""Philox-4x32-10 in plain torch integer ops, bit-for-bit equal to Triton's ``tl.randint4x`` / ``tl.rand4x``.

Triton's counter layout (``triton/language/random.py``): for a 64-bit ``seed`` and an int64 ``offset``,
``randint4x(seed, offset)`` runs Philox-4x32 with counter ``(offset_lo, offset_hi, 0, 0)`` and key
``(seed_lo, seed_hi)``, ten rounds, and returns the four 32-bit words. ``uint_to_uniform_float`` bitcasts a
word to int32, folds negatives with ``~x`` and multiplies by ``4.6566127342e-10`` in fp32, giving a float in
``[0, 1)``. ``randn4x`` pairs the uniforms through Box-Muller (``u1`` clamped below at ``1e-7``).

torch has no unsigned 32-bit arithmetic with a high-half multiply, so every 32-bit word is held in an
int64 tensor with its upper half zero. The product of two such words fits the 64-bit pattern (int64
multiplication wraps), its low word is ``p & 0xFFFFFFFF`` and its high word ``(p >> 32) & 0xFFFFFFFF``
(the mask undoes the arithmetic shift's sign extension). The work is done in cache-sized chunks with
in-place ops, which is several times faster on CPU than whole-tensor temporaries.
"""

from __future__ import annotations

import torch

__all__ = [
    "PHILOX_ROUNDS",
    "philox4x32",
    "randint4x",
    "uint_to_uniform_float",
    "rand4x",
    "randn4x",
    "box_muller",
]

PHILOX_ROUNDS = 10
_KEY_A = 0x9E3779B9
_KEY_B = 0xBB67AE85
_ROUND_A = 0xD2511F53
_ROUND_B = 0xCD9E8D57
_M32 = 0xFFFFFFFF
_CHUNK = 1 << 18  # counters per chunk: big enough for intra-op threads, small enough to bound temporaries
_UNIFORM_SCALE = 4.6566127342e-10  # Triton's scale: largest value with (2**31 - 1) * scale < 1 in fp32


def philox4x32(
    c0: torch.Tensor, c1: torch.Tensor, key: int, rounds: int = PHILOX_ROUNDS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run Philox-4x32 on counters ``(c0, c1, 0, 0)`` with the 64-bit ``key`` (Triton's ``seed``).

    ``c0`` and ``c1`` are int64 tensors holding 32-bit words; the result is four int64 tensors of
    32-bit words, the same words ``tl.philox`` returns.
    """
    if c0.dtype != torch.int64 or c1.dtype != torch.int64:
        raise TypeError(f"philox4x32: expected int64 counter words, got {c0.dtype} and {c1.dtype}")
    if not 0 <= key < 1 << 64:
        raise ValueError(f"philox4x32: key must be a 64-bit unsigned integer, got {key}")
    k0, k1 = key & _M32, (key >> 32) & _M32
    outs: list[list[torch.Tensor]] = [[], [], [], []]
    n = c0.numel()
    c0 = c0.reshape(-1)
    c1 = c1.reshape(-1)
    for s in range(0, n, _CHUNK):
        words = _rounds(c0[s : s + _CHUNK], c1[s : s + _CHUNK], k0, k1, rounds)
        for i in range(4):
            outs[i].append(words[i])
    if n == 0:
        empty = torch.empty(0, dtype=torch.int64, device=c0.device)
        return empty, empty.clone(), empty.clone(), empty.clone()
    return tuple(torch.cat(o) if len(o) > 1 else o[0] for o in outs)  # type: ignore[return-value]


def _rounds(c0: torch.Tensor, c1: torch.Tensor, k0: int, k1: int, rounds: int) -> list[torch.Tensor]:
    n = c0.numel()
    dev = c0.device
    x0 = c0.clone()
    x1 = c1.clone()
    x2 = torch.zeros(n, dtype=torch.int64, device=dev)
    x3 = torch.zeros(n, dtype=torch.int64, device=dev)
    p = torch.empty(n, dtype=torch.int64, device=dev)
    q = torch.empty(n, dtype=torch.int64, device=dev)
    for _ in range(rounds):
        torch.mul(x2, _ROUND_B, out=p)  # B * c2
        torch.mul(x0, _ROUND_A, out=q)  # A * c0
        # c0' = hi(B*c2) ^ c1 ^ k0, written into x0 (old c0 is consumed by q)
        torch.bitwise_right_shift(p, 32, out=x0).bitwise_and_(_M32).bitwise_xor_(x1).bitwise_xor_(k0)
        # c1' = lo(B*c2), written into x1
        torch.bitwise_and(p, _M32, out=x1)
        # c2' = hi(A*c0) ^ c3 ^ k1, written into x2 (old c2 is consumed by p)
        torch.bitwise_right_shift(q, 32, out=x2).bitwise_and_(_M32).bitwise_xor_(x3).bitwise_xor_(k1)
        # c3' = lo(A*c0)
        torch.bitwise_and(q, _M32, out=x3)
        k0 = (k0 + _KEY_A) & _M32
        k1 = (k1 + _KEY_B) & _M32
    return [x0, x1, x2, x3]


def randint4x(key: int, offset: torch.Tensor, rounds: int = PHILOX_ROUNDS) -> tuple[torch.Tensor, ...]:
    """Mirror of ``tl.randint4x(seed=key, offset)``: four int64 tensors of 32-bit words, shaped like ``offset``."""
    if offset.dtype != torch.int64:
        raise TypeError(f"randint4x: expected an int64 offset tensor, got {offset.dtype}")
    flat = offset.reshape(-1)
    lo = flat & _M32
    hi = (flat >> 32) & _M32
    return tuple(w.view(offset.shape) for w in philox4x32(lo, hi, key, rounds))


def uint_to_uniform_float(x: torch.Tensor) -> torch.Tensor:
    """Mirror of Triton's ``uint_to_uniform_float`` for 32-bit words held in int64: fp32 in ``[0, 1)``."""
    folded = torch.where(x >= 1 << 31, _M32 - x, x)  # bitcast to int32, then ~x for negatives
    return folded.to(torch.float32) * torch.tensor(_UNIFORM_SCALE, dtype=torch.float32, device=x.device)


def rand4x(key: int, offset: torch.Tensor, rounds: int = PHILOX_ROUNDS) -> tuple[torch.Tensor, ...]:
    """Mirror of ``tl.rand4x``: four fp32 uniform tensors in ``[0, 1)``."""
    return tuple(uint_to_uniform_float(w) for w in randint4x(key, offset, rounds))


def box_muller(u1: torch.Tensor, u2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror of Triton's ``pair_uniform_to_normal`` in fp32 (``u1`` clamped below at 1e-7)."""
    u1 = torch.clamp(u1, min=1.0e-7)
    th = u2 * torch.tensor(6.283185307179586, dtype=torch.float32, device=u2.device)
    r = torch.sqrt(torch.log(u1) * -2.0)
    return r * torch.cos(th), r * torch.sin(th)


def randn4x(key: int, offset: torch.Tensor, rounds: int = PHILOX_ROUNDS) -> tuple[torch.Tensor, ...]:
    """Mirror of ``tl.randn4x``: four fp32 standard-normal tensors (Box-Muller on pairs of ``rand4x``)."""
    u1, u2, u3, u4 = rand4x(key, offset, rounds)
    n1, n2 = box_muller(u1, u2)
    n3, n4 = box_muller(u3, u4)
    return n1, n2, n3, n4
