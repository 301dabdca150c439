"""Time one op at one size and dtype: every implementation, every pass, side by side.

Implementations (names used in the results):

* ``torchinit`` -- the torchinit function with its default backend ("auto": the Triton kernels for
  CUDA tensors, the pure-torch path on CPU);
* ``torchinit_torch`` -- the same under ``use_backend("torch")`` (CUDA only; on CPU it is ``torchinit``);
* ``eager`` -- the torch computation a user would write (torch's own op or a composite);
* ``compile`` -- ``torch.compile`` of that same torch computation (default mode).

Passes: ``fwd`` (inputs without grad), ``bwd`` (``torch.autograd.grad`` of one retained graph, so
no gradient accumulation is timed), ``fwdbwd`` (a fresh forward, then its backward).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from benchmarks.cases import Case, shape_2d
from benchmarks.labels import PASS_NAMES
from benchmarks.timing import Stats, cuda_time, host_times, peak_memory

PASSES: tuple[str, ...] = tuple(PASS_NAMES)  # ("fwd", "bwd", "fwdbwd"), named in benchmarks/labels.py


@dataclass(frozen=True)
class Settings:
    """How to time: host-timer samples, target sample length and clock; CUDA warm-up/repetition in ms."""

    samples: int = 15
    target_s: float = 1e-3
    warmup_ms: float = 25.0
    rep_ms: float = 100.0
    clock: str = "wall"


def with_torch_backend(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``fn`` run under ``torchinit.use_backend("torch")``."""
    from torchinit import use_backend

    def run(*args: Any) -> torch.Tensor:
        with use_backend("torch"):
            return fn(*args)

    return run


def compiled(reference: Callable[..., torch.Tensor], dynamic: bool) -> Callable[..., torch.Tensor]:
    """``torch.compile`` of ``reference`` (dynamo's caches reset first, so each op compiles afresh)."""
    torch._dynamo.reset()

    def baseline(*args: Any) -> torch.Tensor:
        return reference(*args)

    return torch.compile(baseline, dynamic=dynamic)


@contextlib.contextmanager
def compile_settings(limit: int = 256) -> Iterator[None]:
    """torch.compile settings for the run, restored afterwards.

    Dynamo may recompile one function per size and grad mode without falling back to eager; and
    AOTAutograd's donated buffers are off (``torch._functorch.config.donated_buffer``), because a
    backward compiled with them refuses ``retain_graph=True``, which the backward-only pass needs to
    replay one graph. Donation only lets the compiled backward reuse a saved buffer for its output:
    it saves an allocation, not a pass over memory.
    """
    cfg = torch._dynamo.config
    names = [n for n in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit",
                         "accumulated_cache_size_limit") if hasattr(cfg, n)]
    old = {n: getattr(cfg, n) for n in names}
    fcfg = torch._functorch.config
    old_donated = getattr(fcfg, "donated_buffer", None)
    try:
        for n in names:
            setattr(cfg, n, max(old[n], limit))
        if old_donated is not None:
            fcfg.donated_buffer = False
        yield
    finally:
        for n, v in old.items():
            setattr(cfg, n, v)
        if old_donated is not None:
            fcfg.donated_buffer = old_donated


def _passes(fn: Callable[..., torch.Tensor], args: list[Any], grad_args: tuple[int, ...],
            grad_out: torch.Tensor) -> dict[str, Callable[[], Any]]:
    plain = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
    leaves = [a.detach().requires_grad_(i in grad_args) if isinstance(a, torch.Tensor) else a
              for i, a in enumerate(args)]
    wrt = [leaves[i] for i in grad_args]
    y = fn(*leaves)  # one graph kept for the backward-only pass

    def fwd() -> torch.Tensor:
        return fn(*plain)

    def bwd() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(y, wrt, grad_out, retain_graph=True)

    def fwdbwd() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(fn(*leaves), wrt, grad_out)

    return {"fwd": fwd, "bwd": bwd, "fwdbwd": fwdbwd}


def _rel_err(got: Any, want: Any) -> float:
    got = got if isinstance(got, (tuple, list)) else (got,)
    want = want if isinstance(want, (tuple, list)) else (want,)
    num = sum(float((g.double() - w.double()).norm()) ** 2 for g, w in zip(got, want))
    den = sum(float(w.double().norm()) ** 2 for w in want)
    return (num / den) ** 0.5 if den > 0 else num ** 0.5


def _row(case: Case, dtype: torch.dtype, numel: int, pass_: str, impl: str, **extra: Any) -> dict[str, Any]:
    return {"op": case.name, "source": case.source, "dtype": str(dtype).replace("torch.", ""), "numel": numel,
            "shape": list(shape_2d(numel)), "pass": pass_, "impl": impl, **extra}


def measure_group(case: Case, dtype: torch.dtype, numel: int, device: torch.device,
                  impls: dict[str, Callable[..., torch.Tensor]], settings: Settings,
                  copy_gbps: float | None, passes: tuple[str, ...] = PASSES,
                  host_timer: bool | None = None) -> list[dict[str, Any]]:
    """Time ``impls`` of ``case`` on ``numel`` elements of ``dtype``: one result row per (pass, impl).

    Every row carries the median time and quartiles (``time_s``), the bytes the pass must move
    (:class:`~benchmarks.cases.Traffic`), the achieved ``gbps`` and its fraction of ``copy_gbps``,
    the peak extra memory (CUDA; ``None`` on CPU), the relative error against ``eager`` of the
    pass's result, or ``error`` when the implementation failed. ``host_timer`` forces the wall-clock
    timer on CUDA (used for the per-call overhead of tiny tensors).
    """
    use_host = device.type != "cuda" if host_timer is None else host_timer
    nbytes = case.traffic.bytes(numel, torch.empty((), dtype=dtype).element_size())
    args = case.make_inputs(numel, dtype, device, 0)
    rows: list[dict[str, Any]] = []
    built: dict[str, dict[str, Callable[[], Any]]] = {}
    errors: dict[tuple[str, str], str] = {}
    rel_err: dict[tuple[str, str], float | None] = {}
    reference: dict[str, Any] = {}
    grad_out = None
    for impl in sorted(impls, key=lambda k: k != "eager"):  # eager first: the others are checked against it
        fn = impls[impl]
        try:
            if grad_out is None:
                with torch.no_grad():
                    like = fn(*args)
                gen = torch.Generator(device=device).manual_seed(7)
                grad_out = torch.randn(like.shape, generator=gen, device=device).to(like.dtype)
                del like
            built[impl] = _passes(fn, args, case.grad_args, grad_out)
        except Exception as exc:  # one failing implementation must not stop the run
            for p in passes:
                errors[impl, p] = f"{type(exc).__name__}: {exc}".strip()[:500]
            continue
        for p in passes:  # prime: compiles, warms up, catches errors, checks the result
            try:
                out = built[impl][p]()
            except Exception as exc:
                errors[impl, p] = f"{type(exc).__name__}: {exc}".strip()[:500]
                continue
            if impl == "eager":
                reference[p] = out
            rel_err[impl, p] = _rel_err(out, reference[p]) if p in reference else None
            del out
    reference.clear()
    for pass_ in passes:
        fns = {impl: b[pass_] for impl, b in built.items() if (impl, pass_) not in errors}
        timed: dict[str, Stats] = {}
        if fns:
            if use_host:
                timed = host_times(fns, device, samples=settings.samples, target_s=settings.target_s,
                                   clock=settings.clock)
            else:
                timed = {impl: cuda_time(f, settings.warmup_ms, settings.rep_ms) for impl, f in fns.items()}
        for impl in impls:
            if (impl, pass_) in errors:
                rows.append(_row(case, dtype, numel, pass_, impl, error=errors[impl, pass_], bytes=nbytes[pass_]))
                continue
            stats = timed[impl]
            gbps = nbytes[pass_] / stats.median / 1e9
            rows.append(_row(case, dtype, numel, pass_, impl, time_s=stats.as_dict(), bytes=nbytes[pass_],
                             gbps=gbps, frac_copy=(gbps / copy_gbps) if copy_gbps else None,
                             peak_bytes=peak_memory(fns[impl], device),
                             rel_err_vs_eager=rel_err.get((impl, pass_))))
    return rows
