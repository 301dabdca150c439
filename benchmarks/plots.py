"""PNG plots of a result JSON: per op and dtype, time and achieved GB/s against size, one line per implementation.

Points are medians; the error bars span the recorded quartiles (p25 to p75 of the samples), for the
achieved bandwidth too (bytes / p75 to bytes / p25).
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

from benchmarks.labels import DTYPE_BYTES, IMPL_ORDER, PASS_NAMES

_STYLE = {"torchinit": ("tab:red", "o"), "torchinit_torch": ("tab:orange", "s"), "eager": ("tab:blue", "^"),
          "compile": ("tab:green", "v")}


def plot_all(data: dict[str, Any], out_dir: str) -> list[str]:
    """Write one PNG per (op, dtype) into ``out_dir``; return their paths.

    Each figure has a column per pass (forward, backward, forward+backward); the top row is median time
    (log-log), the bottom row achieved GB/s from the byte model (log scale), with the run's copy bandwidth dashed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    os.makedirs(out_dir, exist_ok=True)
    series: dict[tuple[str, str], dict[tuple[str, str], list[tuple[int, float, float]]]] = defaultdict(
        lambda: defaultdict(list))
    for r in data.get("results", []):
        if "time_s" not in r:
            continue
        size = r["numel"] * DTYPE_BYTES.get(r["dtype"], 4)
        t = r["time_s"]
        series[r["op"], r["dtype"]][r["pass"], r["impl"]].append(
            (size, t["median"], t.get("p25", t["median"]), t.get("p75", t["median"]), r["gbps"]))
    copy = (data.get("env", {}).get("copy") or {}).get("gbps")
    device = data.get("env", {}).get("device_name", "")
    paths = []
    for (op, dtype), lines in sorted(series.items()):
        fig, axes = plt.subplots(2, len(PASS_NAMES), figsize=(4.2 * len(PASS_NAMES), 6.5), squeeze=False)
        for col, (pass_, title) in enumerate(PASS_NAMES.items()):
            ax_t, ax_b = axes[0][col], axes[1][col]
            for impl in IMPL_ORDER:
                pts = sorted(lines.get((pass_, impl), []))
                if not pts:
                    continue
                color, marker = _STYLE.get(impl, (None, "x"))
                xs = [p[0] for p in pts]
                us = [p[1] * 1e6 for p in pts]
                time_err = [[m - p[2] * 1e6 for m, p in zip(us, pts)], [p[3] * 1e6 - m for m, p in zip(us, pts)]]
                gbps = [p[4] for p in pts]
                # bandwidth is bytes / time: the slow quartile (p75) gives the low bar, p25 the high one
                gb_err = [[g - g * p[1] / p[3] for g, p in zip(gbps, pts)],
                          [g * p[1] / p[2] - g for g, p in zip(gbps, pts)]]
                ax_t.errorbar(xs, us, yerr=time_err, marker=marker, color=color, label=impl, capsize=3)
                ax_b.errorbar(xs, gbps, yerr=gb_err, marker=marker, color=color, label=impl, capsize=3)
            if copy:
                ax_b.axhline(copy, color="gray", linestyle="--", label="copy bandwidth")
            ax_t.set(xscale="log", yscale="log", title=f"{op} {dtype}: {title}",
                     ylabel="median time (µs), bars: quartiles")
            ax_b.set(xscale="log", yscale="log", xlabel="input size (bytes)", ylabel="achieved GB/s")
            for ax in (ax_t, ax_b):
                ax.grid(True, alpha=0.3)
                ax.xaxis.set_minor_locator(NullLocator())
        axes[0][0].legend(fontsize=8)
        axes[1][0].legend(fontsize=8)
        fig.suptitle(f"torchinit {op} ({dtype}) on {device}", fontsize=10)
        fig.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.08, hspace=0.3, wspace=0.3)
        path = os.path.join(out_dir, f"{op.replace('[', '-').replace(']', '')}-{dtype}.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths
