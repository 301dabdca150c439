"""Timers, peak memory, the copy-bandwidth probe and the environment record.

Two timers, both reporting the median (and quartiles) of many runs after warm-up:

* :func:`host_times` -- wall clock (``time.perf_counter``), used on CPU and, on CUDA, for the
  per-call overhead of tiny tensors (synchronising before and after a loop of calls, so what is
  measured is the rate at which the host can issue calls). Each sample runs ``inner`` calls, with
  ``inner`` chosen so a sample lasts at least ``target_s``; the implementations being compared are
  timed in interleaved rounds (A B C, B C A, ...) so that drift on a shared machine hits all alike.
  On a CPU shared with other work it can instead read the thread's CPU time (``time.thread_time``,
  clock ``"thread"``): with one torch thread every op runs on the calling thread, so what is counted
  is the op's own work (memory stalls included), not the time the scheduler gave other processes.
* :func:`cuda_time` -- ``triton.testing.do_bench``: CUDA events around each call, L2 flushed (a
  256 MB buffer cleared) before every call, warm-up and repetition given in milliseconds.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch


@dataclass(frozen=True)
class Stats:
    """Seconds per call: median and quartiles over ``samples`` samples of ``inner`` calls each."""

    median: float
    p25: float
    p75: float
    samples: int
    inner: int

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _stats(values: list[float], inner: int) -> Stats:
    values = sorted(values)
    if len(values) >= 2:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1 = q3 = values[0]
    return Stats(statistics.median(values), q1, q3, len(values), inner)


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits for ``device``'s queued work (a no-op on CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


#: Host clocks: "wall" (time.perf_counter) or "thread" (time.thread_time: this thread's CPU time).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "thread": time.thread_time}


def host_times(fns: dict[str, Callable[[], Any]], device: torch.device, samples: int = 15,
               target_s: float = 1e-3, warmup: int = 2, max_inner: int = 20000,
               clock: str = "wall") -> dict[str, Stats]:
    """Wall-clock seconds per call of each function in ``fns``, timed in interleaved rounds.

    Each function runs ``warmup`` times, then three more single calls size ``inner`` (calls per
    sample, so that a sample lasts about ``target_s``; the fastest of the three, so a call that was
    pre-empted does not shrink it); then ``samples`` rounds time every function once each, the order
    rotating from round to round. ``clock`` is a key of :data:`CLOCKS`.
    """
    if clock not in CLOCKS:
        raise ValueError(f"benchmarks.timing.host_times: 'clock' must be one of {list(CLOCKS)}, got {clock!r}")
    now = CLOCKS[clock]
    if samples < 1:
        raise ValueError(f"benchmarks.timing.host_times: 'samples' must be >= 1, got {samples}")
    sync = synchronizer(device)
    inner: dict[str, int] = {}
    for key, fn in fns.items():
        for _ in range(warmup):
            fn()
        once = float("inf")
        for _ in range(3):
            sync()
            t0 = now()
            fn()
            sync()
            once = min(once, now() - t0)
        once = max(once, 1e-7)
        inner[key] = max(1, min(max_inner, int(target_s / once)))
    keys = list(fns)
    times: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(samples):
        shift = r % len(keys)
        for key in keys[shift:] + keys[:shift]:
            fn, n = fns[key], inner[key]
            sync()
            t0 = now()
            for _ in range(n):
                fn()
            sync()
            times[key].append((now() - t0) / n)
    return {k: _stats(v, inner[k]) for k, v in times.items()}


def cuda_time(fn: Callable[[], Any], warmup_ms: float = 25.0, rep_ms: float = 100.0) -> Stats:
    """Seconds per call of ``fn`` on CUDA via ``triton.testing.do_bench`` (events, L2 flushed per call)."""
    from triton.testing import do_bench

    times_ms = do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="all")  # one time per timed call
    return _stats([t * 1e-3 for t in times_ms], 1)


def peak_memory(fn: Callable[[], Any], device: torch.device) -> int | None:
    """Peak bytes allocated during one call of ``fn`` beyond what was allocated before it (CUDA).

    On CPU torch's allocator keeps no peak counter, so ``None`` is returned rather than a guess.
    """
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del result
    return int(peak)


def copy_bandwidth(device: torch.device, nbytes: int, samples: int = 11, clock: str = "wall") -> dict[str, Any]:
    """The device's copy bandwidth: (bytes read + bytes written) / time of ``dst.copy_(src)``.

    ``src`` holds random fp32 values (never zeros) and is large enough (``nbytes``) to spill out of
    the caches.
    """
    numel = max(1, nbytes // 4)
    gen = torch.Generator(device=device).manual_seed(1234)
    src = torch.randn(numel, generator=gen, device=device)
    dst = torch.empty_like(src)
    fn = lambda: dst.copy_(src)  # noqa: E731
    if device.type == "cuda":
        stats = cuda_time(fn, warmup_ms=50.0, rep_ms=300.0)
    else:
        stats = host_times({"copy": fn}, device, samples=samples, target_s=0.0, warmup=2, clock=clock)["copy"]
    moved = 2 * numel * 4
    return {"bytes": moved, "tensor_bytes": numel * 4, "time_s": stats.as_dict(), "gbps": moved / stats.median / 1e9}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_state() -> dict[str, Any] | None:
    """The checkout's commit and whether the package sources differ from it (None outside a git checkout)."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "torchinit", "kernels"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "uncommitted_changes_in_package": bool(dirty)}


def device_name(device: torch.device) -> str:
    """A human name for ``device``: the GPU's name, or the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpu_name()


def device_slug(device: torch.device) -> str:
    """A short file-name tag: ``cpu``, or the GPU's name lower-cased with dashes (``nvidia-h100-80gb-hbm3``)."""
    if device.type != "cuda":
        return device.type
    name = device_name(device).lower()
    return "-".join("".join(ch if ch.isalnum() else " " for ch in name).split())


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, device and date of this run (JSON-ready)."""
    try:
        import triton

        triton_version = triton.__version__
    except Exception:  # pragma: no cover - platforms without triton
        triton_version = None
    import torchinit

    env: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": device.type,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "triton": triton_version,
        "torchinit": getattr(torchinit, "__version__", None),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    env["git"] = _git_state()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update({"cuda": torch.version.cuda, "gpu_memory_bytes": props.total_memory,
                    "multiprocessors": props.multi_processor_count})
    return env
