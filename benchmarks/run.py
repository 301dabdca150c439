"""The benchmark harness: one command, on whatever device is there.

From the repository root::

    python -m benchmarks.run                      # every op, default sizes for the device, fp32 + bf16
    python -m benchmarks.run --save               # also write benchmarks/results/<date>-<device>.json
    python -m benchmarks.run --ops gelu,silu --sizes 16,1MB --dtypes float32 --no-compile

For every op of ``torchinit.functional`` (and ``torchinit.fused`` / ``torchinit.softmax`` where they
exist) it times forward, backward and forward+backward of torchinit (default backend; on CUDA also
``use_backend("torch")``), torch eager and ``torch.compile`` of the same torch computation, side by
side; measures the device's copy bandwidth in the same run; times one call on a 16-element tensor
(per-call overhead); optionally times ``apply_init`` against a loop of ``torch.nn.init`` calls. It
writes a JSON (environment + every measurement), a Markdown report, a README snippet and PNG plots
into ``--out`` (default ``torchinit-bench/`` in the current directory).

On CPU torch runs on one thread unless ``--threads`` says otherwise: with torch's default thread
pool a 16-element call measures thread wake-ups (milliseconds on a busy machine), not the op; a
run with more threads says so. Figures above the copy bandwidth measured in the same run are
flagged in the report (the data was cache-resident, or the timer was wrong).

Sizes: a plain number is a count of elements; ``64KB``, ``16MB``, ``1GB`` (powers of 1024) are the
input's size in bytes in each dtype. The CLI (``torchinit bench``) calls :func:`run` with its argv.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
from typing import Any, Callable, Sequence

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # importable by file path (the CLI) as well as with -m from the repository root
    sys.path.insert(0, _ROOT)

from benchmarks import report  # noqa: E402  (no torch: the arguments are parsed before torch is imported)

DEFAULT_SIZES = {"cpu": ["16", "64KB", "1MB", "16MB"],
                 "cuda": ["16", "1MB", "16MB", "256MB", "1GB"]}
DEFAULT_COPY_BYTES = {"cpu": 256 * 2**20, "cuda": 2**30}
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16", "float64": "float64", "fp64": "float64"}  # name -> torch.<dtype>
PASSES = tuple(report.PASS_NAMES)  # fwd, bwd, fwdbwd: as benchmarks.measure.PASSES, without importing torch
IMPLS = ("torchinit", "torchinit_torch", "eager", "compile")
RESULTS_DIR = os.path.join(_ROOT, "benchmarks", "results")
OUT_DIR = "torchinit-bench"  # relative: under the current directory, not inside the source tree

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMG]i?B)?\s*$", re.IGNORECASE)


def parse_size(token: str, dtype: torch.dtype) -> int:
    """Elements for a size token: ``"16"`` is 16 elements, ``"1MB"`` is 2**20 bytes of ``dtype``."""
    m = _SIZE_RE.match(token)
    if not m:
        raise ValueError(f"benchmarks.run: size {token!r} is not a number of elements or a byte size like 1MB")
    value, unit = int(m.group(1)), (m.group(2) or "").upper().replace("I", "")
    if not unit:
        numel = value
    else:
        nbytes = value * 1024 ** {"KB": 1, "MB": 2, "GB": 3}[unit]
        numel = nbytes // dtype.itemsize
    if numel < 1:
        raise ValueError(f"benchmarks.run: size {token!r} gives no elements")
    return numel


def build_parser(prog: str = "python -m benchmarks.run") -> argparse.ArgumentParser:
    """The harness's argument parser."""
    p = argparse.ArgumentParser(prog=prog, description="Time torchinit's ops against torch eager and "
                                "torch.compile, with the device's copy bandwidth, per-call overhead and init speed.")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    p.add_argument("--ops", default="", help="comma-separated op names (default: every discovered op)")
    p.add_argument("--sizes", default="", help="comma-separated sizes: elements (16) or input bytes (1MB, 1GB); "
                   "default cpu: 16,64KB,1MB,16MB; cuda: 16,1MB,16MB,256MB,1GB")
    p.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated dtypes (float32, bfloat16, ...)")
    p.add_argument("--impls", default=",".join(IMPLS), help="implementations to time (torchinit_torch: CUDA only)")
    p.add_argument("--passes", default=",".join(PASSES), help="fwd, bwd, fwdbwd")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile baseline")
    p.add_argument("--compile-dynamic", choices=("on", "off"), default="on",
                   help="torch.compile dynamic=True (default: one compile per op and grad mode covers every "
                   "size) or dynamic=False (one compile per size: slower to run, shape-specialised kernels)")
    p.add_argument("--samples", type=int, default=15, help="host-timer samples per measurement (CPU, overhead)")
    p.add_argument("--target-ms", type=float, default=1.0, help="host timer: minimum length of one sample, ms")
    p.add_argument("--warmup-ms", type=float, default=25.0, help="CUDA do_bench warm-up, ms")
    p.add_argument("--rep-ms", type=float, default=100.0, help="CUDA do_bench repetition time, ms")
    p.add_argument("--copy-bytes", default="", help="size of the copy-bandwidth tensor (default cpu 256MB, cuda 1GB)")
    p.add_argument("--overhead-numel", type=int, default=16, help="tensor size for the per-call overhead (0: skip)")
    p.add_argument("--no-init", action="store_true", help="skip the apply_init speed benchmark")
    p.add_argument("--init-scale", choices=("auto", "small", "full"), default="auto",
                   help="init-speed models: full = resnet50 + a ~353M-parameter transformer stack; small = "
                   "resnet18 + an 8.4M one; auto = full on CUDA, small on CPU")
    p.add_argument("--init-full", action="store_true", help="same as --init-scale full")
    p.add_argument("--init-repeats", type=int, default=0,
                   help="timed runs per init measurement (default: 3 on CUDA, 1 on CPU)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default on CPU: 1, so that timings measure the op rather than "
                   "the thread pool; 0: torch's own choice)")
    p.add_argument("--clock", choices=("wall", "thread"), default="wall",
                   help="CPU timer: wall clock, or this thread's CPU time (needs --threads 1; for a machine "
                   "shared with other work, where wall time mostly measures the scheduler)")
    p.add_argument("--out", default=OUT_DIR,
                   help=f"folder for JSON, Markdown and plots (default: {OUT_DIR}/ in the current directory)")
    p.add_argument("--save", action="store_true",
                   help="also write the JSON to benchmarks/results/<date>-<device>.json (results of real runs)")
    p.add_argument("--name", default="", help="file stem for the outputs (default <date>-<device>)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _load_harness() -> None:
    """Import torch and the measuring modules, once the arguments are parsed (so --help and errors answer at once)."""
    global torch, cases_mod, measure, timing
    import torch

    from benchmarks import cases as cases_mod
    from benchmarks import measure, timing


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"benchmarks.run: unknown device {name!r} ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("benchmarks.run: device 'cuda' was requested but torch sees no CUDA device")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"benchmarks.run: device type {device.type!r} is not supported (cpu or cuda)")
    return device


def _check_choice(kind: str, given: list[str], allowed: Sequence[str]) -> list[str]:
    bad = [g for g in given if g not in allowed]
    if bad:
        raise ValueError(f"benchmarks.run: unknown {kind} {bad}; expected some of {list(allowed)}")
    return given


def _progress(total: int, enabled: bool) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is in the bench extra; run without a bar rather than fail
        class _NoBar:
            def update(self, n: int = 1) -> None: ...
            def set_postfix_str(self, s: str) -> None: ...
            def close(self) -> None: ...
        return _NoBar()
    return tqdm(total=total, disable=not enabled, unit="case", dynamic_ncols=True)


def _backend_note(device: torch.device) -> str:
    from torchinit import backend

    if backend.use_custom_op("relu", device) and backend.kernel_runs_on(device):
        return "auto -> Triton kernels"
    return "auto -> pure-torch path (the Triton kernels run on CUDA only)"


def _implementations(case: cases_mod.Case, wanted: list[str], device: torch.device,
                     compiled: Callable[..., torch.Tensor] | None) -> dict[str, Callable[..., torch.Tensor]]:
    impls: dict[str, Callable[..., torch.Tensor]] = {}
    if "torchinit" in wanted:
        impls["torchinit"] = case.torchinit
    if "torchinit_torch" in wanted and device.type == "cuda":
        impls["torchinit_torch"] = measure.with_torch_backend(case.torchinit)
    if "eager" in wanted:
        impls["eager"] = case.reference
    if "compile" in wanted and compiled is not None:
        impls["compile"] = compiled
    return impls


def run(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks.run") -> int:
    """Run the harness with command-line arguments ``argv``; return the exit status (0 ok, 2 bad arguments).

    Writes ``<out>/<name>.json``, ``<name>.md``, ``<name>-readme.md`` and ``<name>/*.png``, and with
    ``--save`` the JSON also to ``benchmarks/results/``; prints the headline ratios.
    """
    args = build_parser(prog).parse_args(argv)
    _load_harness()
    try:
        device = _device(args.device)
        dtypes = [getattr(torch, DTYPES[d]) for d in _check_choice("dtype", _split(args.dtypes), list(DTYPES))]
        size_tokens = _split(args.sizes) or DEFAULT_SIZES[device.type]
        for dt in dtypes:
            for tok in size_tokens:
                parse_size(tok, dt)
        wanted = _check_choice("implementation", _split(args.impls), IMPLS)
        if args.no_compile and "compile" in wanted:
            wanted.remove("compile")
        passes = tuple(_check_choice("pass", _split(args.passes), PASSES))
        found = cases_mod.discover(_split(args.ops) or None)
        copy_bytes = parse_size(args.copy_bytes, torch.uint8) if args.copy_bytes else DEFAULT_COPY_BYTES[device.type]
        if args.samples < 1:
            raise ValueError(f"benchmarks.run: --samples must be >= 1, got {args.samples}")
        if args.threads is None:
            args.threads = 1 if device.type == "cpu" else 0
        if args.threads < 0:
            raise ValueError(f"benchmarks.run: --threads must be >= 1 (or 0 for torch's default), got {args.threads}")
        if args.clock == "thread" and (device.type != "cpu" or args.threads != 1):
            raise ValueError("benchmarks.run: --clock thread times the calling thread only: it needs "
                             "--device cpu and --threads 1")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if device.type == "cpu" and args.threads != 1:
        print(f"warning: timing on {args.threads or torch.get_num_threads()} CPU threads: small tensors then "
              "measure the thread pool's wake-ups, not the op (use --threads 1, the default, for per-op figures)",
              file=sys.stderr)

    threads_before = torch.get_num_threads()
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        _execute(args, device, dtypes, size_tokens, wanted, passes, found, copy_bytes)
    finally:
        torch.set_num_threads(threads_before)
    return 0


def _execute(args: argparse.Namespace, device: torch.device, dtypes: list[torch.dtype], size_tokens: list[str],
             wanted: list[str], passes: tuple[str, ...], found: cases_mod.Discovery, copy_bytes: int) -> None:
    dynamic = args.compile_dynamic == "on"
    settings = measure.Settings(samples=args.samples, target_s=args.target_ms * 1e-3,
                                warmup_ms=args.warmup_ms, rep_ms=args.rep_ms, clock=args.clock)
    if device.type == "cuda":
        timer = (f"triton.testing.do_bench: CUDA events, L2 flushed before each call, median; warm-up "
                 f"{args.warmup_ms:g} ms, repetitions {args.rep_ms:g} ms. Overhead rows: wall clock, "
                 f"synchronised, median of {args.samples} samples of >= {args.target_ms:g} ms")
    else:
        clock = ("time.perf_counter (wall clock)" if args.clock == "wall" else
                 "time.thread_time (CPU time of the calling thread; torch on 1 thread)")
        timer = (f"{clock}, implementations interleaved round by round, median of {args.samples} "
                 f"samples of >= {args.target_ms:g} ms each after warm-up")
    env = timing.environment(device)
    env["copy"] = timing.copy_bandwidth(device, copy_bytes, clock=args.clock)
    copy_gbps = env["copy"]["gbps"]
    data: dict[str, Any] = {
        "kind": "torchinit-benchmark", "schema": 1, "env": env,
        "config": {"sizes": size_tokens, "dtypes": [str(d).replace("torch.", "") for d in dtypes],
                   "impls": wanted, "passes": list(passes), "timer": timer,
                   "compile": ("not run" if "compile" not in wanted else
                               f"torch.compile(default mode, dynamic={dynamic}) of the torch baseline; "
                               "donated buffers off (so the backward-only pass can retain the graph)"),
                   "torchinit_backend": _backend_note(device), "samples": args.samples,
                   "target_ms": args.target_ms, "overhead_numel": args.overhead_numel,
                   "byte_model": "forward: read inputs + write output; backward: read grad + saved + write input "
                                 "grads; parameters neglected (benchmarks/cases.py Traffic)"},
        "modules": found.modules,
        "cases": [{"op": c.name, "source": c.source, "baseline": c.reference_desc} for c in found.cases],
        "skipped": found.skipped, "results": [], "overhead": [],
    }

    per_case = len(size_tokens) + (1 if args.overhead_numel > 0 else 0)
    bar = _progress(len(found.cases) * len(dtypes) * per_case, not args.no_progress)
    with measure.compile_settings():
        for case in found.cases:
            for dtype in dtypes:
                dname = str(dtype).replace("torch.", "")
                comp = None
                if "compile" in wanted:
                    comp = measure.compiled(case.reference, dynamic)
                impls = _implementations(case, wanted, device, comp)
                if args.overhead_numel > 0:
                    bar.set_postfix_str(f"{case.name} {dname} overhead")
                    small = {k: v for k, v in impls.items() if k != "compile"}
                    data["overhead"] += measure.measure_group(
                        case, dtype, args.overhead_numel, device, small, settings, copy_gbps,
                        passes=tuple(p for p in ("fwd", "fwdbwd") if p in passes) or ("fwd",), host_timer=True)
                    bar.update()
                for tok in size_tokens:
                    bar.set_postfix_str(f"{case.name} {dname} {tok}")
                    numel = parse_size(tok, dtype)
                    data["results"] += measure.measure_group(case, dtype, numel, device, impls, settings,
                                                             copy_gbps, passes=passes)
                    bar.update()
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
    bar.close()
    env["copy_end"] = timing.copy_bandwidth(device, copy_bytes, clock=args.clock)

    if not args.no_init:
        from benchmarks.init_speed import run_init_speed

        print("init speed ...", file=sys.stderr)
        full = args.init_full or args.init_scale == "full" or (args.init_scale == "auto" and device.type == "cuda")
        repeats = args.init_repeats or (3 if device.type == "cuda" else 1)
        data["init"] = run_init_speed(device, full=full, repeats=repeats)

    name = args.name or f"{datetime.date.today().isoformat()}-{timing.device_slug(device)}"
    os.makedirs(args.out, exist_ok=True)
    out_json = os.path.join(args.out, f"{name}.json")
    paths = [out_json]
    with open(out_json, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
    source = out_json
    if args.save:
        os.makedirs(RESULTS_DIR, exist_ok=True)
        saved = os.path.join(RESULTS_DIR, f"{name}.json")
        with open(saved, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
        paths.append(saved)
        source = saved
    written = report.render(data, report._rel(source), args.out, plots=not args.no_plots)
    _print_summary(data, paths + [written["markdown"], written["readme"]], len(written["plots"]))


def _print_summary(data: dict[str, Any], paths: list[str], n_plots: int) -> None:
    env = data["env"]
    print(f"device: {env['device_name']} ({env['device']}); copy bandwidth {env['copy']['gbps']:.1f} GB/s "
          f"(end of run {env['copy_end']['gbps']:.1f} GB/s)")
    s = report.summary(data)
    for key, v in s["largest"].items():
        print(f"  {key} at {v['numel']} elements: torchinit/eager median {v['median_ti_vs_eager']:.3f}x over "
              f"{v['ops']} ops, worst {v['worst_ti_vs_eager']:.3f}x ({v['worst_op']})")
    for key, v in s["overhead"].items():
        print(f"  {key} per call on {v['numel']} elements: worst torchinit/torch {v['worst_ti_vs_eager']:.2f}x "
              f"({v['worst_op']})")
    impossible = report.impossible_rows(data)
    if impossible:
        worst = max(impossible, key=lambda r: r["frac_copy"])
        print(f"  warning: {len(impossible)} measurements exceed the copy bandwidth (up to "
              f"{100 * worst['frac_copy']:.0f}%: {worst['op']} {worst['dtype']} {worst['pass']} {worst['impl']}): "
              "cache-resident data or a wrong timing, flagged in the report")
    errors = [r for r in data["results"] + data["overhead"] if "error" in r]
    if errors:
        print(f"  {len(errors)} measurements failed (see the report's 'Skipped and failed')")
    if data["skipped"]:
        print(f"  skipped ops: {', '.join(s['op'] for s in data['skipped'])}")
    for p in paths:
        print(f"wrote {p}")
    print(f"wrote {n_plots} plots")


if __name__ == "__main__":
    sys.exit(run())
