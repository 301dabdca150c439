"""Markdown tables (and the README performance snippet) generated from a result JSON, never typed by hand.

Usage, from the repository root::

    python -m benchmarks.report                          # every JSON in benchmarks/results/
    python -m benchmarks.report benchmarks/results/X.json --out benchmarks/out --print-readme

For each JSON it writes ``<stem>.md`` (environment, per-call overhead, the largest size, every size,
skipped ops, init speed), ``<stem>-readme.md`` (the README's performance section) and, unless
``--no-plots``, PNG plots under ``<stem>/``. Ratios are time ratios, torchinit / baseline: below 1
means torchinit is faster.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
from collections import defaultdict
from typing import Any, Iterable, Sequence

from benchmarks.labels import DTYPE_BYTES, IMPL_ORDER, PASS_NAMES

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def load(path: str) -> dict[str, Any]:
    """Read a result JSON written by ``benchmarks.run``; raise ``ValueError`` if it is not one."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or data.get("kind") != "torchinit-benchmark":
        raise ValueError(f"benchmarks.report: {path} is not a torchinit benchmark result (missing kind)")
    return data


def fmt_time(seconds: float | None) -> str:
    """A time in µs or ms with three significant digits."""
    if seconds is None:
        return "-"
    us = seconds * 1e6
    return f"{us:.3g} µs" if us < 1000 else f"{us / 1000:.3g} ms"


def fmt_bytes(n: float) -> str:
    """A byte count in B, KiB, MiB or GiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def fmt_ratio(r: float | None) -> str:
    """A time ratio as ``0.98x``."""
    return "-" if r is None else f"{r:.2f}x"


IMPOSSIBLE_MARK = "*"
IMPOSSIBLE_NOTE = (f"\\{IMPOSSIBLE_MARK} above 100% of the copy bandwidth measured in the same run: impossible for "
                   "data streamed from memory, so the tensors stayed in cache (a large CPU cache can hold a "
                   "16 MiB working set) or the timing is wrong; not a kernel beating memory.")


def fmt_frac_copy(frac: float | None) -> str:
    """A fraction of the copy bandwidth as a percentage, marked when it is above 100% (an impossible figure)."""
    if not frac:
        return "-"
    return f"{100 * frac:.0f}%" + (IMPOSSIBLE_MARK if frac > 1.0 else "")


def impossible_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The measurements whose achieved bandwidth exceeds the run's copy bandwidth."""
    return [r for r in data.get("results", []) if (r.get("frac_copy") or 0) > 1.0]


def size_label(numel: int, dtype: str) -> str:
    """``16 el`` for tiny tensors, else the input's size in bytes."""
    nbytes = numel * DTYPE_BYTES.get(dtype, 4)
    return f"{numel} el" if nbytes < 1024 else fmt_bytes(nbytes)


def _median(row: dict[str, Any] | None) -> float | None:
    return row["time_s"]["median"] if row and "time_s" in row else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def index(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str, int, str], dict[str, dict[str, Any]]]:
    """Rows grouped by (op, dtype, numel, pass), then by implementation."""
    out: dict[tuple[str, str, int, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        out[r["op"], r["dtype"], r["numel"], r["pass"]][r["impl"]] = r
    return out


def ratios(data: dict[str, Any], rows_key: str = "results") -> list[dict[str, Any]]:
    """One entry per (op, dtype, size, pass): median times per implementation and the time ratios
    torchinit/eager, torchinit/compile and (CUDA) torchinit_torch/eager, torchinit/torchinit_torch."""
    out = []
    for (op, dtype, numel, pass_), impls in index(data.get(rows_key, [])).items():
        t = {k: _median(v) for k, v in impls.items()}
        out.append({"op": op, "dtype": dtype, "numel": numel, "pass": pass_, "times": t,
                    "ti_vs_eager": _ratio(t.get("torchinit"), t.get("eager")),
                    "ti_vs_compile": _ratio(t.get("torchinit"), t.get("compile")),
                    "ti_torch_vs_eager": _ratio(t.get("torchinit_torch"), t.get("eager")),
                    "ti_vs_ti_torch": _ratio(t.get("torchinit"), t.get("torchinit_torch")),
                    "frac_copy": (impls.get("torchinit") or {}).get("frac_copy"),
                    "gbps": (impls.get("torchinit") or {}).get("gbps")})
    return out


def summary(data: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers: per dtype and pass at the largest size, the median and worst torchinit/eager
    ratio over ops (with the worst op), and the worst 16-element per-call ratio against torch."""
    result: dict[str, Any] = {"largest": {}, "overhead": {}}
    entries = ratios(data)
    by_dtype: dict[str, int] = {}
    for e in entries:
        by_dtype[e["dtype"]] = max(by_dtype.get(e["dtype"], 0), e["numel"])
    for dtype, numel in sorted(by_dtype.items()):
        for pass_ in PASS_NAMES:
            sel = [e for e in entries if e["dtype"] == dtype and e["numel"] == numel and e["pass"] == pass_
                   and e["ti_vs_eager"] is not None]
            if sel:
                worst = max(sel, key=lambda e: e["ti_vs_eager"])
                result["largest"][f"{dtype}/{pass_}"] = {
                    "numel": numel, "median_ti_vs_eager": statistics.median(e["ti_vs_eager"] for e in sel),
                    "worst_ti_vs_eager": worst["ti_vs_eager"], "worst_op": worst["op"], "ops": len(sel)}
    for e in ratios(data, "overhead"):
        key = f"{e['dtype']}/{e['pass']}"
        if e["ti_vs_eager"] is None:
            continue
        cur = result["overhead"].get(key)
        if cur is None or e["ti_vs_eager"] > cur["worst_ti_vs_eager"]:
            result["overhead"][key] = {"numel": e["numel"], "worst_ti_vs_eager": e["ti_vs_eager"], "worst_op": e["op"]}
    return result


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _impls(data: dict[str, Any]) -> list[str]:
    present = {r["impl"] for r in data.get("results", [])}
    return [i for i in IMPL_ORDER if i in present]


def _env_lines(data: dict[str, Any], source: str) -> list[str]:
    env, cfg = data.get("env", {}), data.get("config", {})
    copy = env.get("copy") or {}
    rows = [("device", f"{env.get('device_name')} ({env.get('device')})"),
            ("date", env.get("date")), ("torch / triton / torchinit",
                                         f"{env.get('torch')} / {env.get('triton')} / {env.get('torchinit')}"),
            ("copy bandwidth", f"{copy.get('gbps', 0):.1f} GB/s (copy of {fmt_bytes(copy.get('tensor_bytes', 0))}; "
                               f"bytes read + written / median time)" if copy else "not measured"),
            ("timer", cfg.get("timer", "-")),
            ("torch.compile", cfg.get("compile", "-")),
            ("torchinit default backend", cfg.get("torchinit_backend", "-")),
            ("threads", env.get("torch_threads"))]
    if env.get("copy_end"):
        rows.insert(4, ("copy bandwidth at the end", f"{env['copy_end']['gbps']:.1f} GB/s"))
    return [f"Generated by `python -m benchmarks.report` from `{source}`; do not edit by hand.", ""] + \
        _table(("", ""), rows)


def _overhead_lines(data: dict[str, Any]) -> list[str]:
    idx = index(data.get("overhead", []))
    if not idx:
        return []
    keys = sorted({(op, dt, n) for op, dt, n, _ in idx})
    rows = []
    for op, dt, n in keys:
        row: list[Any] = [op, dt]
        for pass_ in ("fwd", "fwdbwd"):
            impls = idx.get((op, dt, n, pass_), {})
            ti, ea = _median(impls.get("torchinit")), _median(impls.get("eager"))
            row += [fmt_time(ti), fmt_time(ea), fmt_ratio(_ratio(ti, ea))]
        rows.append(row)
    n = keys[0][2]
    return ["", f"## Per-call overhead ({n}-element tensor)", "",
            "The cost of one call on a tiny tensor, torchinit (default backend) against torch's op, timed "
            "on the host clock named in the timer row (synchronised on CUDA); target: within 3x.", ""] + _table(
        ("op", "dtype", "fwd torchinit", "fwd torch", "ratio", "fwd+bwd torchinit", "fwd+bwd torch", "ratio"), rows)


def _group_rows(data: dict[str, Any], keys: Iterable[tuple[str, str, int, str]], impls: list[str]) -> list[list[Any]]:
    idx = index(data.get("results", []))
    rows = []
    for key in keys:
        op, dt, n, pass_ = key
        group = idx[key]
        t = {i: _median(group.get(i)) for i in impls}
        ti = group.get("torchinit", {})
        peak = ti.get("peak_bytes")
        peak_e = group.get("eager", {}).get("peak_bytes")
        row = [op, dt, size_label(n, dt), PASS_NAMES[pass_]] + [fmt_time(t[i]) if t[i] else
                                                               ("error" if "error" in group.get(i, {}) else "-")
                                                               for i in impls]
        row += [fmt_ratio(_ratio(t.get("torchinit"), t.get("eager"))),
                fmt_ratio(_ratio(t.get("torchinit"), t.get("compile")))]
        if "torchinit_torch" in impls:
            row.append(fmt_ratio(_ratio(t.get("torchinit_torch"), t.get("eager"))))
        row += [f"{ti['gbps']:.1f}" if ti.get("gbps") else "-",
                fmt_frac_copy(ti.get("frac_copy")),
                f"{fmt_bytes(peak)} / {fmt_bytes(peak_e)}" if peak is not None and peak_e is not None else "n/a"]
        rows.append(row)
    return rows


def _results_header(impls: list[str]) -> list[str]:
    head = ["op", "dtype", "size", "pass"] + impls + ["torchinit/eager", "torchinit/compile"]
    if "torchinit_torch" in impls:
        head.append("torchinit_torch/eager")
    return head + ["torchinit GB/s", "% of copy", "peak mem torchinit / eager"]


def markdown(data: dict[str, Any], source: str) -> str:
    """The full Markdown report of one result JSON."""
    env = data.get("env", {})
    impls = _impls(data)
    lines = [f"# torchinit benchmark: {env.get('device_name')} ({env.get('date', '')[:10]})", ""]
    lines += _env_lines(data, source)
    lines += _overhead_lines(data)
    results = data.get("results", [])
    keys = sorted({(r["op"], r["dtype"], r["numel"], r["pass"]) for r in results},
                  key=lambda k: (k[0], k[1], k[2], list(PASS_NAMES).index(k[3])))
    largest = {}
    for op, dt, n, _ in keys:
        largest[dt] = max(largest.get(dt, 0), n)
    big = [k for k in keys if k[2] == largest[k[1]]]
    note = ("Times are medians; ratios are time ratios (below 1: torchinit faster); GB/s from the byte model "
            "in `benchmarks/cases.py` (forward: read input + write output; backward: read grad + saved + "
            "write grad_in). Peak memory: extra bytes allocated during one call (CUDA only; the CPU "
            "allocator keeps no peak counter).")
    flagged = ["", IMPOSSIBLE_NOTE] if impossible_rows(data) else []
    if big:
        lines += ["", "## Largest size", "", note, ""] + _table(_results_header(impls), _group_rows(data, big, impls))
        lines += flagged
    if keys:
        lines += ["", "## Every size", ""] + _table(_results_header(impls), _group_rows(data, keys, impls))
        lines += flagged
    errors = [r for r in results if "error" in r]
    if data.get("skipped") or errors:
        lines += ["", "## Skipped and failed", ""]
        lines += [f"- `{s['op']}`: {s['reason']}" for s in data.get("skipped", [])]
        seen = set()
        for r in errors:
            if (r["op"], r["impl"]) not in seen:
                seen.add((r["op"], r["impl"]))
                lines.append(f"- `{r['op']}` ({r['impl']}): {r['error']}")
    lines += _init_lines(data)
    return "\n".join(lines) + "\n"


def _init_lines(data: dict[str, Any]) -> list[str]:
    init = data.get("init")
    if not init:
        return []
    lines = ["", "## Init speed", ""]
    if "skipped" in init:
        return lines + [f"Not measured: {init['skipped']}"]
    for name, m in init.get("models", {}).items():
        lines.append(f"- `{name}`: {m['parameters'] / 1e6:.1f}M parameters ({fmt_bytes(m['bytes'])})")
    lines.append("")
    base = {(r["model"], r["scheme"]): r for r in init.get("rows", []) if r["impl"] == "torch.nn.init loop"}
    rows = []
    for r in init.get("rows", []):
        b = base.get((r["model"], r["scheme"]))
        t = r.get("time_s", {}).get("median")
        tb = (b or {}).get("time_s", {}).get("median")
        rows.append([r["model"], r["scheme"], r["impl"], fmt_time(t) if t else f"error: {r.get('error')}",
                     f"{r['params_per_s'] / 1e6:.0f}M/s" if t else "-", fmt_ratio(_ratio(t, tb))])
    lines += _table(("model", "scheme", "implementation", "median time", "parameters/s", "vs torch loop"), rows)
    for s in init.get("skipped_models", []):
        lines.append(f"- `{s['model']}` skipped: {s['reason']}")
    return lines


def readme_snippet(data: dict[str, Any], source: str) -> str:
    """The README's performance section: per op and dtype at the largest size, plus the 16-element ratio."""
    env = data.get("env", {})
    copy = (env.get("copy") or {}).get("gbps")
    entries = {(e["op"], e["dtype"], e["numel"], e["pass"]): e for e in ratios(data)}
    over = {(e["op"], e["dtype"], e["pass"]): e for e in ratios(data, "overhead")}
    largest: dict[str, int] = {}
    for op, dt, n, _ in entries:
        largest[dt] = max(largest.get(dt, 0), n)
    lines = [f"Measured on {env.get('device_name')} ({env.get('device')}), {env.get('date', '')[:10]}, torch "
             f"{env.get('torch')}; copy bandwidth {copy:.1f} GB/s in the same run." if copy else "",
             f"Generated by `python -m benchmarks.report {source} --print-readme`. Time ratios torchinit / "
             "baseline (below 1: torchinit faster) at the largest size of the run; the last column is one "
             "call on a 16-element tensor against torch's op.", ""]
    rows = []
    for op, dt in sorted({(k[0], k[1]) for k in entries}):
        n = largest[dt]
        get = lambda p, key: (entries.get((op, dt, n, p)) or {}).get(key)  # noqa: E731
        frac = get("fwdbwd", "frac_copy")
        rows.append([op, dt, size_label(n, dt), fmt_ratio(get("fwd", "ti_vs_eager")),
                     fmt_ratio(get("bwd", "ti_vs_eager")), fmt_ratio(get("fwdbwd", "ti_vs_eager")),
                     fmt_ratio(get("fwdbwd", "ti_vs_compile")), fmt_frac_copy(frac),
                     fmt_ratio((over.get((op, dt, "fwd")) or {}).get("ti_vs_eager"))])
    lines += _table(("op", "dtype", "size", "fwd vs eager", "bwd vs eager", "fwd+bwd vs eager",
                     "fwd+bwd vs compile", "fwd+bwd % of copy BW", "16-el call vs torch"), rows)
    if any(IMPOSSIBLE_MARK in row[7] for row in rows):
        lines += ["", IMPOSSIBLE_NOTE]
    return "\n".join(lines) + "\n"


def render(data: dict[str, Any], source: str, out_dir: str, plots: bool = True) -> dict[str, Any]:
    """Write ``<stem>.md``, ``<stem>-readme.md`` and (``plots``) ``<stem>/*.png`` under ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(source))[0]
    md = os.path.join(out_dir, f"{stem}.md")
    readme = os.path.join(out_dir, f"{stem}-readme.md")
    with open(md, "w", encoding="utf-8") as fh:
        fh.write(markdown(data, source))
    with open(readme, "w", encoding="utf-8") as fh:
        fh.write(readme_snippet(data, source))
    pngs: list[str] = []
    if plots:
        from benchmarks.plots import plot_all

        pngs = plot_all(data, os.path.join(out_dir, stem))
    return {"markdown": md, "readme": readme, "plots": pngs}


def _rel(path: str) -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = os.path.abspath(path)
    return os.path.relpath(ap, root) if ap.startswith(root + os.sep) else path


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: regenerate the Markdown (and plots) from result JSON files."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="*", help="result files (default: every benchmarks/results/*.json)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(RESULTS_DIR), "out"),
                        help="folder for the Markdown and plots (default: benchmarks/out)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--print-readme", action="store_true", help="print the README snippet to stdout")
    args = parser.parse_args(argv)
    files = args.json or sorted(glob.glob(os.path.join(RESULTS_DIR, "*.json")))
    if not files:
        print("benchmarks.report: no result JSON given and none in benchmarks/results/", file=sys.stderr)
        return 2
    for path in files:
        try:
            data = load(path)
        except (OSError, ValueError) as exc:
            print(f"benchmarks.report: cannot read {path}: {exc}", file=sys.stderr)
            return 2
        written = render(data, _rel(path), args.out, plots=not args.no_plots)
        print(f"{path}: wrote {written['markdown']}, {written['readme']} and {len(written['plots'])} plots")
        if args.print_readme:
            print(readme_snippet(data, _rel(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
