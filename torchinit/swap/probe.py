"""Checking, before a swap, that a foreign activation module computes what its torchinit replacement computes.

The candidate runs in fp32 on a probe tensor: ±inf, NaN, ±0.0, ±1e30, ±1e4, ±100, ±20, ±1e-3, ±1e-30
and a grid of 401 points over [-10, 10]. Its output must match the replacement's:

* the same NaN and the same ±inf positions as the replacement in fp32 (the dtype the model runs in);
* elsewhere within ``FORWARD_ULPS`` fp32 ulps of the replacement computed in fp64, measured against
  ``|f(x)| + |x|``: a formula evaluated in fp32 carries its input's rounding (``|x|`` ulps for an
  activation whose slope is at most about one) and its own few roundings (``|f(x)|`` ulps);
* its gradient (``autograd``, upstream gradient 1) on 193 points over [-6, 6] placed off every kink
  (0, ±1, ±3, 6: where the derivative jumps, libraries pick different one-sided values) within
  ``GRADIENT_ULPS`` ulps of the replacement's fp64 gradient, measured against ``|f'(x)| + |x| + 1``
  (custom autograd functions, as in timm's ``*Me`` classes and Bloom's GELU, are checked this way);
* it may not leave its input untouched where the replacement writes into it.

Measured on every class of :data:`torchinit.swap.foreign.TABLE` (transformers 5.24, timm 1.0.31, CPU):
at most 1.5 ulps forward (torch's erf GELU against fp64) and 0.9 ulps for the gradient, so
``FORWARD_ULPS = GRADIENT_ULPS = 8`` leaves a margin for other CPUs' vectorised math while a changed
constant shows: 0.044715 -> 0.0447 in the tanh approximation moves GELU by ~20 ulps near x = 2.

A candidate with parameters is probed with its parameters replaced by fixed values (its own may be on
the meta device); the replacement gets the same values under the same names. Hooks never run (the
probe calls ``forward``). Results are cached per class and plain settings, so a 32-layer model is
probed once per distinct activation.
"""

from __future__ import annotations

import copy
import functools
import math
import types
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

FORWARD_ULPS = 8
GRADIENT_ULPS = 8
_EPS = torch.finfo(torch.float32).eps
_TINY = torch.finfo(torch.float32).tiny

_SPECIAL = [-math.inf, math.inf, math.nan, -0.0, 0.0, -1e30, 1e30, -1e4, 1e4, -100.0, 100.0, -20.0, 20.0,
            -1e-3, 1e-3, -1e-30, 1e-30]


def probe_values() -> torch.Tensor:
    """The forward probe: special values, then 401 points over [-10, 10] (fp32)."""
    return torch.cat([torch.tensor(_SPECIAL), torch.linspace(-10, 10, 401)]).float()


def gradient_points() -> torch.Tensor:
    """193 points over [-6, 6], none on a kink of a torchinit activation (fp64: exactly representable in fp32)."""
    k = torch.arange(193, dtype=torch.float64)
    return (-6 + 12 * (k + 0.5) / 193 + 0.00731).float().double()


@dataclass(frozen=True)
class Verdict:
    """The probe's finding: ``ok``, or the reason the candidate is left; notes for the report."""

    ok: bool
    reason: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


def _synthetic(module: nn.Module) -> dict[str, torch.Tensor]:
    """Fixed probe values for every parameter of ``module`` (0.05 .. 0.45), by name, fp32 on the CPU."""
    out = {}
    for name, p in module.named_parameters():
        out[name] = torch.linspace(0.05, 0.45, max(p.numel(), 1))[: p.numel()].reshape(p.shape)
    return out


def _with_params(module: nn.Module, params: dict[str, torch.Tensor]) -> nn.Module:
    """``module`` (or a shallow copy of it with ``params`` in place of its own parameters)."""
    if not params:
        return module
    clone = copy.copy(module)
    clone.__dict__["_parameters"] = dict(module._parameters)
    for name, value in params.items():
        owner = clone
        *path, leaf = name.split(".")
        if path:
            raise ValueError("nested parameters")
        owner._parameters[leaf] = value
    return clone


def _input(values: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    channels = max((p.numel() for p in params.values() if p.dim() == 1), default=1)
    if channels > 1:  # a per-channel parameter (PReLU): every channel sees every value, channels on dim 1
        return values.reshape(1, 1, -1).expand(1, channels, -1).contiguous()
    return values


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool((a.contiguous().view(torch.int32) == b.contiguous().view(torch.int32)).all())


def _run(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``module.forward`` on a copy of ``x``: the output and whether the copy was written to."""
    xc = x.clone()
    with torch.no_grad():
        y = module.forward(xc)
    if x.dtype == torch.float32:
        mutated = not _bits_equal(xc, x)
    else:
        mutated = not bool(((xc == x) | (xc.isnan() & x.isnan())).all())
    return y, mutated


def _gradient(module: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    leaf = x.clone().requires_grad_(True)
    y = module.forward(leaf * 1)  # a non-leaf input: in-place candidates may write into it
    if not isinstance(y, torch.Tensor) or not y.requires_grad:
        return None
    (g,) = torch.autograd.grad(y.sum(), leaf, allow_unused=True)
    return g


def _first_miss(bad: torch.Tensor, x: torch.Tensor, got: torch.Tensor, want: torch.Tensor) -> str:
    i = int(bad.reshape(-1).nonzero()[0])
    return (f"at x={x.reshape(-1)[i].item():.6g} it gives {got.reshape(-1)[i].item():.9g} where torchinit gives "
            f"{want.reshape(-1)[i].item():.9g}")


def compare(candidate: nn.Module, make_replacement: Callable[[], nn.Module], what: str) -> Verdict:
    """Probe ``candidate`` against a fresh replacement (``make_replacement()``, built on the CPU).

    ``what`` names the replacement in the reasons, e.g. ``"torchinit.nn.GELU(approximate='tanh')"``.
    """
    if any(True for _ in candidate.buffers()):
        return Verdict(False, "it has buffers, which the probe cannot reproduce")
    params = _synthetic(candidate)
    try:
        replacement64 = make_replacement()
        replacement32 = make_replacement()
    except Exception as exc:  # noqa: BLE001 - a settings value the replacement refuses
        return Verdict(False, f"{what} could not be built from its settings: {exc}")
    theirs = {n: tuple(p.shape) for n, p in replacement32.named_parameters()}
    if theirs != {n: tuple(p.shape) for n, p in params.items()}:
        return Verdict(False, f"its parameters {sorted(params)} do not correspond to {what}'s {sorted(theirs)}")
    try:
        cand = _with_params(candidate, params)
    except ValueError:
        return Verdict(False, "it has parameters in submodules")
    for n, v in params.items():
        replacement32._parameters[n] = v.clone()
        replacement64._parameters[n] = v.double()

    values = probe_values()
    x = _input(values, params)
    try:
        got, cand_mutates = _run(cand, x)
    except Exception as exc:  # noqa: BLE001 - anything the candidate raises means: not this function
        return Verdict(False, f"it failed on the probe tensor: {type(exc).__name__}: {exc}")
    if not isinstance(got, torch.Tensor) or got.shape != x.shape or got.dtype != x.dtype:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        return Verdict(False, f"on an fp32 probe of shape {tuple(x.shape)} it returns {shape} "
                              f"{getattr(got, 'dtype', '')}, not an elementwise fp32 result")
    want32, rep_mutates = _run(replacement32, x)
    want64, _ = _run(replacement64, x.double())

    same_class = (got.isnan() == want32.isnan()) & (got.isposinf() == want32.isposinf()) & \
        (got.isneginf() == want32.isneginf())
    if not bool(same_class.all()):
        return Verdict(False, f"the probe disagrees with {what}: {_first_miss(~same_class, x, got, want32)}")
    finite = want32.isfinite()
    err = (got.double() - want64).abs()
    tol = FORWARD_ULPS * _EPS * (want64.abs() + x.double().abs()) + _TINY
    bad = finite & ~(err <= tol)
    if bool(bad.any()):
        return Verdict(False, f"the probe disagrees with {what} beyond fp32 rounding: "
                              f"{_first_miss(bad, x, got, want64)}")

    if rep_mutates and not cand_mutates:
        return Verdict(False, f"{what} would write into its input, which it does not")
    notes = ("works in place; torchinit's computes out of place (same values)",) if cand_mutates and not rep_mutates \
        else ()

    xg = _input(gradient_points(), params)
    try:
        g = _gradient(cand, xg.float())
    except Exception as exc:  # noqa: BLE001
        return Verdict(False, f"its backward failed on the probe: {type(exc).__name__}: {exc}")
    if g is None:
        return Verdict(False, "its output does not depend on its input through autograd")
    g64 = _gradient(replacement64, xg)
    gtol = GRADIENT_ULPS * _EPS * (g64.abs() + xg.abs() + 1)
    gbad = ~((g.double() - g64).abs() <= gtol)
    if bool(gbad.any()):
        return Verdict(False, f"its gradient disagrees with {what}'s: {_first_miss(gbad, xg, g, g64)}")
    return Verdict(True, notes=notes)


# ---------------------------------------------------------------------------------------------
# cache: one probe per class and plain settings
# ---------------------------------------------------------------------------------------------


def _plain(v):
    if isinstance(v, (bool, int, float, str, type(None))):
        return v
    if isinstance(v, functools.partial):
        return ("partial", v.func, tuple(_plain(a) for a in v.args),
                tuple(sorted((k, _plain(a)) for k, a in v.keywords.items())))
    if isinstance(v, types.MethodType):
        return ("method", v.__func__)
    if isinstance(v, (types.FunctionType, types.BuiltinFunctionType)):
        return v
    if isinstance(v, tuple):
        return tuple(_plain(e) for e in v)
    raise TypeError


def settings_key(module: nn.Module) -> tuple | None:
    """What a probe of ``module`` depends on: its class, plain attributes, callables and parameter shapes."""
    items = []
    for k, v in module.__dict__.items():
        if k in ("_parameters", "_buffers", "_modules", "training") or \
                (k.startswith("_") and isinstance(v, (dict, set))):
            continue
        try:
            items.append((k, _plain(v)))
        except TypeError:
            return None
    shapes = tuple((n, tuple(p.shape), p.dtype) for n, p in module.named_parameters())
    key = (type(module), tuple(sorted(items, key=lambda kv: kv[0])), shapes)
    try:
        hash(key)
    except TypeError:
        return None
    return key


_CACHE: dict = {}


def cached_compare(candidate: nn.Module, settings: tuple, make_replacement: Callable[[], nn.Module],
                   what: str) -> Verdict:
    """:func:`compare`, remembered per :func:`settings_key` of the candidate and the replacement's settings."""
    key = settings_key(candidate)
    if key is None:
        return compare(candidate, make_replacement, what)
    key = (key, settings)
    verdict = _CACHE.get(key)
    if verdict is None:
        verdict = compare(candidate, make_replacement, what)
        if len(_CACHE) < 4096:
            _CACHE[key] = verdict
    return verdict


__all__ = ["Verdict", "compare", "cached_compare", "settings_key", "probe_values", "gradient_points",
           "FORWARD_ULPS", "GRADIENT_ULPS"]
