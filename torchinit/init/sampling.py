"""Filling tensors with uniform, normal and truncated-normal draws: counter-based (seeded) or from a torch generator.

Counter-based draws (``key`` given) are a pure function of ``(key, element index)``:

* element ``i`` of a parameter uses Philox counter ``i // 4`` and output word ``i % 4`` (Triton's
  ``tl.rand4x`` / ``tl.randn4x`` layout), so any subset of elements, a shard for instance, can be
  computed on its own and equals the same elements of the whole tensor;
* uniform: ``lo + (hi - lo) * u`` in fp32, ``u`` from Triton's ``uint_to_uniform_float``: bit for bit
  equal to the Triton kernel in ``torchinit.kernels.sampling``;
* normal: Box-Muller on word pairs (0, 1) and (2, 3), as ``tl.randn4x``; equal to the kernel within a
  few ulps (``log``, ``sqrt``, ``cos``, ``sin`` differ between libm implementations);
* truncated normal on ``[a, b]``: the inverse CDF of ``u`` mapped into ``[Phi(alpha), Phi(beta)]``, with
  ``erfinv`` evaluated by Giles' single-precision polynomial (written out below for both torch and
  Triton, so both sides compute the same formula); one pass, no rejection loop.

All arithmetic is fp32; the result is cast to the target dtype at the end, so bf16/fp16 parameters get
correctly rounded samples of the fp32 distribution.

Which path runs, and how their values relate:

* CUDA (and any device under the forced "triton" backend): the Triton kernel ``torchinit.kernels.sampling``.
* CPU, when the optional C sampler is built (``torchinit.init.native``, ``csrc/philox_sampler.c``; see
  :func:`torchinit.init.native.available`): one pass per tensor, Philox and the transform over chunks in
  L1, values written straight in the tensor's dtype (fp32/fp64/bf16/fp16, rounded as ``Tensor.to``).
  Philox words and uniforms are bit for bit those of the torch path and of Triton (all dtypes); normal
  and truncated normal run the same fp32 operations in the same order with the C sampler's own
  transcendental functions, so they differ from the torch path by at most 3 ulps (measured over 2**20
  values: normal 3, truncated normal 2 to 3; about 8% of normal values and 4e-5 of truncated ones differ
  at all), and normal is within 2.3 ulps of fp64 Box-Muller of the same fp32 uniforms and angle
  (torch path: 2.25).
* CPU otherwise (no compiler at install time, ``TORCHINIT_NATIVE=0``, or inside
  ``torchinit.init.native.disabled()``): the torch-ops path, the reference -- blocks of
  ``philox.BLOCK_COUNTERS`` counters through a reusable workspace, one fp32 block at a time, intra-op
  threads off.

:func:`fill_counter_` / :func:`sample_into_` write straight into an existing tensor; :func:`sample` and
:func:`counter_sample` return new tensors with the same values.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import struct
from dataclasses import dataclass

import torch

from .. import kernels
from . import native, philox

__all__ = [
    "Dist",
    "counter_sample",
    "derive_key",
    "erfinv_giles",
    "fill_counter_",
    "generator_sample",
    "kernel_scalars",
    "phi",
    "sample",
    "sample_into_",
    "use_triton_for",
]

_SQRT2 = math.sqrt(2.0)
_F32 = struct.Struct("f")


@dataclass(frozen=True)
class Dist:
    """An elementwise distribution: ``kind`` is "uniform" (a, b), "normal" (mean, std) or
    "trunc_normal" (mean, std, a, b with absolute bounds)."""

    kind: str
    mean: float = 0.0
    std: float = 1.0
    a: float = -math.inf
    b: float = math.inf

    def kernel_scalars(self) -> tuple[float, float, float, float, float, float, float, float]:
        """The eight fp32 scalars the one-pass samplers (C and Triton) take: :func:`kernel_scalars`."""
        return kernel_scalars(self)

    @property
    def variance_std(self) -> float:
        """The standard deviation of the distribution (for reports)."""
        if self.kind == "uniform":
            return (self.b - self.a) / math.sqrt(12.0)
        if self.kind == "normal":
            return self.std
        alpha, beta = (self.a - self.mean) / self.std, (self.b - self.mean) / self.std
        z = phi(beta) - phi(alpha)
        pdf = lambda t: 0.0 if math.isinf(t) else math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
        ta = 0.0 if math.isinf(alpha) else alpha * pdf(alpha)
        tb = 0.0 if math.isinf(beta) else beta * pdf(beta)
        var = 1.0 + (ta - tb) / z - ((pdf(alpha) - pdf(beta)) / z) ** 2
        return self.std * math.sqrt(max(var, 0.0))


def phi(x: float) -> float:
    """Standard normal CDF in float64."""
    if x == math.inf:
        return 1.0
    if x == -math.inf:
        return 0.0
    return 0.5 * math.erfc(-x / _SQRT2)


def derive_key(seed: int, name: str, stream: str = "") -> int:
    """The 63-bit Philox key of parameter ``name`` under ``seed`` (and an optional sub-stream tag).

    A keyed BLAKE2b hash, so keys of different names are unrelated and do not depend on the order in
    which parameters are visited.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"derive_key: seed must be an int, got {type(seed).__name__}")
    msg = f"{seed}\x00{name}\x00{stream}".encode()
    digest = hashlib.blake2b(msg, digest_size=8, person=b"torchinit").digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


# Giles (2010), "Approximating the erfinv function", single-precision branch coefficients.
_ERFINV_SMALL = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
                 -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)
_ERFINV_LARGE = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
                 -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)


def erfinv_giles(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``erfinv(x)`` in fp32 by Giles' polynomial, given ``w = -log((1 - x)(1 + x))`` (computed by the caller
    from the uniform without cancellation). Relative error about 3e-7 on fp32 inputs."""
    ws = w - 2.5
    p = torch.full_like(x, _ERFINV_SMALL[0])
    for c in _ERFINV_SMALL[1:]:
        p = p * ws + c
    wb = torch.sqrt(w) - 3.0
    q = torch.full_like(x, _ERFINV_LARGE[0])
    for c in _ERFINV_LARGE[1:]:
        q = q * wb + c
    return torch.where(w < 5.0, p, q) * x


def _f32(v: float) -> float:
    """Round a Python float to fp32, to nearest even (the value the kernel receives); beyond fp32's range, an
    infinity (as ``torch.tensor(v, dtype=torch.float32)``)."""
    try:
        return _F32.unpack(_F32.pack(v))[0]
    except OverflowError:
        return math.copysign(math.inf, v)


def trunc_params(d: Dist) -> tuple[float, float, float, float]:
    """fp32 scalars for the one-pass truncated normal: (p_lo, p_span, z_lo, z_hi) in std units."""
    alpha = (d.a - d.mean) / d.std
    beta = (d.b - d.mean) / d.std
    plo, phi_hi = phi(alpha), phi(beta)
    if not plo < phi_hi:
        raise ValueError(f"trunc_normal: the interval [{d.a}, {d.b}] has no probability mass under N({d.mean}, {d.std}^2)")
    zlo = max(alpha, -1e30)
    zhi = min(beta, 1e30)
    p_lo32 = _f32(plo)
    span32 = _f32(_f32(phi_hi) - p_lo32)
    return p_lo32, span32, _f32(zlo), _f32(zhi)


def _trunc_from_uniform(u: torch.Tensor, d: Dist) -> torch.Tensor:
    """Standard-normal-unit truncated draws from fp32 uniforms (same formula as the Triton kernel)."""
    p_lo, span, zlo, zhi = trunc_params(d)
    p = u * span + p_lo
    p = torch.clamp(p, 1.0e-30, 0.99999994)
    x = p * 2.0 - 1.0
    w = -torch.log((p * 4.0) * (1.0 - p))
    z = erfinv_giles(x, w) * _SQRT2
    return torch.clamp(z, zlo, zhi)


def _finish(base: torch.Tensor, d: Dist) -> torch.Tensor:
    """Affine map of base draws (uniform u / normal z / truncated z) to ``d`` in fp32."""
    if d.kind == "uniform":
        lo32 = _f32(d.a)
        span = _f32(_f32(d.b) - lo32)
        return base * span + lo32
    out = base * _f32(d.std) + _f32(d.mean)
    if d.kind == "trunc_normal":
        out = torch.clamp(out, _f32(max(d.a, -3e38)), _f32(min(d.b, 3e38)))
    return out


def _finish_(base: torch.Tensor, d: Dist) -> torch.Tensor:
    """:func:`_finish` in place on an fp32 block (the same two roundings per element)."""
    if d.kind == "uniform":
        lo32 = _f32(d.a)
        return base.mul_(_f32(_f32(d.b) - lo32)).add_(lo32)
    base.mul_(_f32(d.std)).add_(_f32(d.mean))
    if d.kind == "trunc_normal":
        base.clamp_(_f32(max(d.a, -3e38)), _f32(min(d.b, 3e38)))
    return base


def kernel_scalars(d: Dist) -> tuple[float, float, float, float, float, float, float, float]:
    """The eight fp32 scalars of the one-pass samplers (C and Triton): ``(s0, s1, p_lo, p_span, zlo, zhi,
    lo_clip, hi_clip)``; ``v = base * s1 + s0`` with ``(s0, s1)`` = ``(lo, span)`` for uniform and
    ``(mean, std)`` otherwise; the truncated normal's :func:`trunc_params` and the bounds of its final clamp."""
    p_lo = p_span = zlo = zhi = 0.0
    lo_clip, hi_clip = -3e38, 3e38
    if d.kind == "uniform":
        s0 = _f32(d.a)
        s1 = _f32(_f32(d.b) - s0)
    elif d.kind in ("normal", "trunc_normal"):
        s0, s1 = _f32(d.mean), _f32(d.std)
        if d.kind == "trunc_normal":
            p_lo, p_span, zlo, zhi = trunc_params(d)
            lo_clip, hi_clip = _f32(max(d.a, -3e38)), _f32(min(d.b, 3e38))
    else:
        raise ValueError(f"kernel_scalars: unknown distribution kind {d.kind!r}")
    return s0, s1, p_lo, p_span, zlo, zhi, lo_clip, hi_clip


def _block_values(d: Dist, ws: philox.Workspace, key: int, counters: torch.Tensor) -> torch.Tensor:
    """(C, 4) fp32 draws of ``d`` for C counters (element ``4c + k`` in row c, column k); a view into ``ws``
    (uniform, normal) or a new tensor (truncated normal)."""
    if d.kind == "normal":
        return _finish_(philox.normal_block(ws, key, counters), d)
    u = philox.uniform_block(ws, key, counters)
    if d.kind == "trunc_normal":
        return _finish(_trunc_from_uniform(u, d), d)
    return _finish_(u, d)


def fill_counter_(out: torch.Tensor, d: Dist, key: int, start: int = 0, ws: philox.Workspace | None = None) -> torch.Tensor:
    """Write the draws of ``d`` for elements ``start .. start + out.numel() - 1`` under ``key`` into the
    contiguous tensor ``out`` (any float dtype; fp32 values rounded once): in one pass by the C sampler for
    a CPU tensor of fp32/fp64/bf16/fp16 when it is available, else block by block in the torch path.

    ``ws`` (a :class:`~torchinit.init.philox.Workspace` on ``out``'s device) is reused by the torch path when
    given, so the call allocates nothing but what truncated normal's transform needs. Returns ``out``.
    """
    if not out.is_contiguous():
        raise ValueError("fill_counter_: out must be contiguous")
    flat = out.view(-1)
    n = flat.numel()
    if n == 0:
        return out
    g0, g1 = start >> 2, (start + n - 1) >> 2
    if native.supports(out):
        return native.fill(out, d.kind, key, start, kernel_scalars(d))
    if ws is None:
        ws = philox.Workspace(min(g1 - g0 + 1, philox.BLOCK_COUNTERS), out.device)
    with _one_thread(out.device):
        _fill_blocks(flat, d, key, start, ws, g0, g1)
    return out


@contextlib.contextmanager
def _one_thread(device: torch.device):
    """Run CPU sampling with intra-op parallelism off (restored afterwards).

    The sampler is dozens of elementwise ops per block; with intra-op threads each op is a parallel region
    whose barrier stalls for a whole scheduler slice when the CPU is shared (measured: a 1M-element fp32
    multiply took 17 ms with 2 threads on a loaded 2-core machine, 0.5 ms with 1)."""
    if device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fill_blocks(flat: torch.Tensor, d: Dist, key: int, start: int, ws: philox.Workspace, g0: int, g1: int) -> None:
    n = flat.numel()
    for c in range(g0, g1 + 1, ws.size):
        m = min(ws.size, g1 + 1 - c)
        counters = torch.arange(c, c + m, dtype=torch.int64, device=flat.device, out=ws.counters[:m])
        vals = _block_values(d, ws, key, counters).view(-1)
        e0, e1 = max(4 * c, start), min(4 * (c + m), start + n)
        flat[e0 - start : e1 - start].copy_(vals[e0 - 4 * c : e1 - 4 * c])


def counter_sample(d: Dist, key: int, n: int, start: int = 0, index: torch.Tensor | None = None,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """fp32 draws of ``d`` for elements ``start .. start + n - 1`` (or the int64 ``index`` tensor) under ``key``."""
    device = torch.device(device)
    if index is None:
        return fill_counter_(torch.empty(n, dtype=torch.float32, device=device), d, key, start)
    idx = index.reshape(-1).to(device=device, dtype=torch.int64)
    out = torch.empty(idx.numel(), dtype=torch.float32, device=device)
    if idx.numel() == 0:
        return out
    if native.supports(out):
        return native.fill_index(out, d.kind, key, idx, kernel_scalars(d))
    ws = philox.Workspace(min(idx.numel(), philox.BLOCK_COUNTERS), device)
    for s in range(0, idx.numel(), ws.size):
        part = idx[s : s + ws.size]
        vals = _block_values(d, ws, key, part >> 2)
        out[s : s + ws.size] = vals.gather(1, (part & 3).unsqueeze(1)).squeeze(1)
    return out


def generator_sample(d: Dist, shape: torch.Size | tuple[int, ...], generator: torch.Generator | None,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """fp32 draws of ``d`` from torch's own RNG (``generator`` or the global one), torch.nn.init style."""
    out = torch.empty(shape, dtype=torch.float32, device=device)
    if d.kind == "uniform":
        return out.uniform_(d.a, d.b, generator=generator)
    if d.kind == "normal":
        return out.normal_(d.mean, d.std, generator=generator)
    out.uniform_(0.0, 1.0, generator=generator)
    return _finish(_trunc_from_uniform(out, d), d)


def use_triton_for(device: torch.device) -> bool:
    """Whether the Triton sampler fills tensors on ``device``: CUDA under the "auto" backend; any device
    Triton can run on (CPU only under ``TRITON_INTERPRET=1``) when the backend is forced to "triton"."""
    try:
        from torchinit import backend
    except ImportError:  # pragma: no cover - backend module missing
        return False
    name = backend.get_backend()
    if name == "torch":
        return False
    if name == "triton":
        return backend.triton_can_run(device)
    return device.type == "cuda" and backend.triton_can_run(device)


def sample(d: Dist, shape: torch.Size | tuple[int, ...], dtype: torch.dtype, device: torch.device | str,
           key: int | None = None, generator: torch.Generator | None = None, start: int = 0,
           index: torch.Tensor | None = None) -> torch.Tensor:
    """A new tensor of ``shape``/``dtype`` filled with ``d``: counter-based under ``key`` (elements numbered
    from ``start``, or by ``index``), else from ``generator``. Drawn in fp32, then cast."""
    device = torch.device(device)
    n = math.prod(shape)
    if key is None:
        return generator_sample(d, shape, generator, device).to(dtype)
    if index is None and use_triton_for(device):
        out = torch.empty(n, dtype=dtype, device=device)
        kernels.sampling.fill(out, d, key, start)
        return out.view(shape)
    if index is None:
        return fill_counter_(torch.empty(shape, dtype=dtype, device=device), d, key, start)
    return counter_sample(d, key, n, start, index, device).to(dtype).view(shape)


def sample_into_(out: torch.Tensor, d: Dist, key: int | None = None, generator: torch.Generator | None = None,
                 start: int = 0, ws: philox.Workspace | None = None) -> torch.Tensor:
    """Fill the contiguous tensor ``out`` in place with the values :func:`sample` would return for its shape,
    dtype and device (counter-based under ``key`` with elements numbered from ``start``, else from
    ``generator`` on ``out``'s device), without a second full-size tensor where the path allows it.
    Returns ``out``."""
    if not out.is_contiguous():
        raise ValueError("sample_into_: out must be contiguous")
    if key is None:
        if out.dtype == torch.float32 and d.kind == "uniform":
            return out.uniform_(d.a, d.b, generator=generator)
        if out.dtype == torch.float32 and d.kind == "normal":
            return out.normal_(d.mean, d.std, generator=generator)
        return out.copy_(generator_sample(d, out.shape, generator, out.device))
    if use_triton_for(out.device):
        kernels.sampling.fill(out.view(-1), d, key, start)
        return out
    return fill_counter_(out, d, key, start, ws)
