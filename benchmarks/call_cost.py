"""Per-call cost of torchinit against torch on a tiny tensor, side by side in one run (issue 15).

For every op the harness discovers (:func:`benchmarks.cases.discover`), plus ``rational`` against
its torch composite, one forward call on a 16-element fp32 tensor is timed against the torch
computation it stands for (torch's own op, or the composite a user writes for the fused ops),
interleaved round by round (:func:`benchmarks.timing.host_times`), one CPU thread, the thread's CPU
time by default (the machine is shared). The ratio is torchinit's median over torch's median.

Goal (issue 15): at most 1.5x for every core activation, at most 3x for the fused ops
(the gated family, ``bias_act``, ``rational``).

    python -m benchmarks.call_cost                   # every op, a table on stdout
    python -m benchmarks.call_cost --ops gelu,relu --json out.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

if __package__ in (None, ""):  # run as a file: make ``benchmarks`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

#: the fused ops and their goal; every other op of the discovery is held to the core goal
FUSED = ("swiglu", "geglu", "reglu", "gated", "bias_act", "rational")
CORE_GOAL, FUSED_GOAL = 1.5, 3.0


def _rational_case():
    import torchinit.fused as tf
    from benchmarks.cases import Case, shape_2d
    from torchinit.fused.rational import rational_init, torch_rational

    num, den, _ = rational_init("gelu", (5, 4))

    def inputs(numel: int, dtype: torch.dtype, device: torch.device, seed: int) -> list[Any]:
        gen = torch.Generator(device=device).manual_seed(seed)
        x = torch.randn(shape_2d(numel), generator=gen, device=device).to(dtype)
        return [x, num.to(device=device, dtype=dtype), den.to(device=device, dtype=dtype)]

    return Case("rational", "torchinit.fused.rational", tf.rational, torch_rational,
                "torch_rational(x, num, den) (its torch composite)", inputs, (0, 1, 2))


def measure(ops: Sequence[str] | None = None, numel: int = 16, samples: int = 31, target_ms: float = 2.0,
            clock: str = "thread", grad: bool = False) -> list[dict[str, Any]]:
    """One row per op: ``{"op", "kind", "torchinit_us", "torch_us", "ratio", "goal"}`` (forward calls).

    ``grad=True`` gives the inputs ``requires_grad`` (the forward still runs alone).
    """
    from benchmarks import cases, timing

    found = cases.discover()
    all_cases = [c for c in found.cases if c.name != "rational"] + [_rational_case()]
    if ops:
        all_cases = [c for c in all_cases if c.name in ops]
    device = torch.device("cpu")
    rows = []
    for case in all_cases:
        args = case.make_inputs(numel, torch.float32, device, 0)
        if grad:
            args = [a.detach().requires_grad_() if i in case.grad_args else a for i, a in enumerate(args)]
        fns = {"torchinit": functools.partial(case.torchinit, *args), "torch": functools.partial(case.reference, *args)}
        stats = timing.host_times(fns, device, samples=samples, target_s=target_ms / 1e3, warmup=20, clock=clock)
        kind = "fused" if case.name in FUSED else "core"
        t_ti, t_ref = stats["torchinit"].median, stats["torch"].median
        rows.append({"op": case.name, "kind": kind, "torchinit_us": t_ti * 1e6, "torch_us": t_ref * 1e6,
                     "ratio": t_ti / t_ref, "goal": FUSED_GOAL if kind == "fused" else CORE_GOAL,
                     "reference": case.reference_desc})
    return rows


def walk(fn, *args, until: str = "op") -> list[str]:
    """The Python frames one call ``fn(*args)`` enters, in order (``sys.setprofile``), before it reaches
    torch's op (``until="op"``: a builtin of ``torch._C._nn`` or ``torch`` other than a query) or a kernel
    launch (``until="launch"``: a function named ``launch_*``)."""
    stops: list[str] = []
    done = False

    def profile(frame, event, arg):
        nonlocal done
        if done:
            return
        if event == "call":
            code = frame.f_code
            where = code.co_filename.split("site-packages/")[-1]
            stops.append(f"{os.path.relpath(where) if where.startswith('/') else where}:{code.co_name}")
            done = code.co_name.startswith("launch_")
        elif (event == "c_call" and until == "op" and getattr(arg, "__module__", None) in ("torch", "torch._C._nn")
              and not arg.__name__.startswith(("is_", "_"))):
            stops.append(f"<torch op {arg.__module__}.{arg.__name__}>")
            done = True

    fn(*args)  # warm: first-call work (resolution caches, lazy imports) is not per-call work
    sys.setprofile(profile)
    try:
        fn(*args)
    finally:
        sys.setprofile(None)
    return stops


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a fixed-width text table, worst ratio of each kind at the end."""
    lines = [f"{'op':<18} {'kind':<6} {'torchinit us':>12} {'torch us':>9} {'ratio':>6}  goal"]
    for r in rows:
        mark = "" if r["ratio"] <= r["goal"] else "  over"
        lines.append(f"{r['op']:<18} {r['kind']:<6} {r['torchinit_us']:>12.2f} {r['torch_us']:>9.2f} "
                     f"{r['ratio']:>6.2f}  {r['goal']}{mark}")
    for kind in ("core", "fused"):
        of = [r for r in rows if r["kind"] == kind]
        if of:
            worst = max(of, key=lambda r: r["ratio"])
            lines.append(f"worst {kind}: {worst['op']} {worst['ratio']:.2f}x (goal {worst['goal']}x)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: measure, print the table, optionally write JSON."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.call_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", default="", help="comma-separated case names (default: every op)")
    p.add_argument("--numel", type=int, default=16)
    p.add_argument("--samples", type=int, default=31)
    p.add_argument("--target-ms", type=float, default=2.0)
    p.add_argument("--clock", default="thread", choices=("thread", "wall"))
    p.add_argument("--grad", action="store_true", help="inputs require grad")
    p.add_argument("--json", default="", help="write the rows here")
    p.add_argument("--walk", action="store_true", help="print the stops of ti.functional.gelu(x) and exit")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.walk:
        import torchinit as ti

        x = torch.randn(args.numel)
        for backend in ("auto", "triton"):
            if backend == "triton" and not ti.backend.triton_can_run(x.device):
                print("backend triton: skipped (no kernel runs here; set TRITON_INTERPRET=1)")
                continue
            with ti.use_backend(backend):
                stops = walk(ti.functional.gelu, x, until="op" if backend == "auto" else "launch")
            python = [s for s in stops if not s.startswith("<torch op")]  # generated frames (<torchinit ...>) count
            print(f"backend {backend}: {len(python)} Python frames in {len({s.split(':')[0] for s in python})} "
                  f"files, then {stops[-1]}")
            for s in stops:
                print("   ", s)
        return 0
    rows = measure([o for o in args.ops.split(",") if o] or None, args.numel, args.samples, args.target_ms,
                   args.clock, args.grad)
    print(f"torch {torch.__version__}, {args.numel} elements fp32 CPU, forward, clock={args.clock}, "
          f"grad={args.grad}")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
