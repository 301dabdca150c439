"""How long ``swap_activations`` takes on a Llama-7B-shaped model built on the meta device (no weights).

The model: ``transformers.LlamaForCausalLM`` with Llama-2-7B's shape (32 layers, width 4096, MLP 11008,
32 heads, 32000 tokens: 6.7B parameters), built under ``torch.device("meta")``, as one does to swap
before loading a checkpoint. Timed, each on a freshly built model (wall clock, the median and range of
``repeats`` runs, and the first run, which fills torchinit's probe and trace caches; one intra-op
thread): the model's construction (for scale), the default swap, the swap with ``functional=True`` and
with ``fuse=True``; a variant that raises is recorded with its error.

    python -m benchmarks.swap_meta                  # writes benchmarks/results/<date>-swap-meta-cpu.json
    python -m benchmarks.swap_meta --repeats 5 --out /tmp/swap.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
from typing import Any, Callable, Sequence

import torch

from benchmarks.timing import environment

#: Llama-2-7B's shape
LLAMA_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096)

#: name -> keyword arguments of swap_activations
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "functional": {"functional": True},
    "fuse": {"fuse": True},
}


def build_meta_llama(**overrides: Any) -> torch.nn.Module:
    """``LlamaForCausalLM`` of Llama-7B's shape (or ``overrides``) on the meta device."""
    import transformers

    cfg = transformers.LlamaConfig(**{**LLAMA_7B, **overrides})
    with torch.device("meta"):
        return transformers.LlamaForCausalLM(cfg)


def _stats(times: list[float]) -> dict[str, float]:
    """Median, range and the first run (the one a user sees: torchinit's probe and trace caches start empty)."""
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "first": times[0],
            "runs": len(times)}


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run_swap_meta(repeats: int = 3, **overrides: Any) -> dict[str, Any]:
    """Time the construction and each swap variant ``repeats`` times; returns a JSON-ready dict."""
    import torchinit as ti

    rows: dict[str, Any] = {}
    builds: list[float] = []
    params = None
    for name, kwargs in VARIANTS.items():
        times, counts, error = [], None, None
        for _ in range(repeats):
            t_build, model = _timed(lambda: build_meta_llama(**overrides))
            builds.append(t_build)
            params = sum(p.numel() for p in model.parameters())
            try:
                t, report = _timed(lambda: ti.swap_activations(model, **kwargs))
            except Exception as exc:  # noqa: BLE001 - recorded, the other variants still run
                error = f"{type(exc).__name__}: {exc}"
                break
            times.append(t)
            counts = {"replaced_modules": len(report.modules), "functional": len(report.functional),
                      "fused": len(report.fused), "left": len(report.left), "unfused": len(report.unfused)}
        rows[name] = {"kwargs": kwargs, "time_s": _stats(times) if times else None, "report": counts,
                      "error": error}
    return {"kind": "torchinit-swap-meta", "schema": 1, "env": environment(torch.device("cpu")),
            "model": {"class": "transformers.LlamaForCausalLM", "device": "meta", "parameters": params,
                      "config": {**LLAMA_7B, **overrides}},
            "build_s": _stats(builds), "swap": rows}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run, print a summary, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/<date>-swap-meta-cpu.json)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    torch.set_num_threads(1)
    data = run_swap_meta(args.repeats)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"{datetime.date.today().isoformat()}-swap-meta-cpu.json")
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
    print(f"Llama-7B shape on meta ({data['model']['parameters'] / 1e9:.2f}B parameters), build "
          f"{data['build_s']['median']:.2f} s (median)")
    for name, row in data["swap"].items():
        if row["error"]:
            print(f"  swap {name:10s} failed: {row['error']}")
        else:
            t = row["time_s"]
            print(f"  swap {name:10s} {t['median']:.3f} s (median of {t['runs']}; {t['min']:.3f}-{t['max']:.3f}; "
                  f"first {t['first']:.3f})  {row['report']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
