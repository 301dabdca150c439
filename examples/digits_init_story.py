"""The classic initialisation story, measured: a deep MLP on scikit-learn's digits, every activation x init.

For each pairing of 8 activations (torchinit.nn modules) and 8 inits, the same 8-hidden-layer MLP is
initialised (``torchinit.init.apply_init``, or ``torchinit.init.lsuv`` on a training batch), probed once
with ``torchinit.diagnose`` (verdict, first layer's weight-gradient norm) and trained for a fixed budget
of SGD steps; the table reports the final training loss and the test accuracy. Three textbook claims are
then checked against the numbers, not asserted:

1. zero init does not learn (every activation stays near chance);
2. a small normal, N(0, 0.01^2), vanishes in a deep sigmoid net (tiny first-layer gradient, no learning);
3. He init with ReLU trains.

Run:  python examples/digits_init_story.py            (or: torchinit demo)
      python examples/digits_init_story.py --quick    (a reduced grid; also TORCHINIT_EXAMPLE_QUICK=1)

Writes ``digits_results.md`` (the table), ``digits_table.md`` (README's accuracy table, best init in
bold), ``digits_results.json`` and ``digits_<activation>.png`` (the diagnostics of every init for that
activation) to ``--out``: by default ``torchinit/demo`` under the user's cache folder (``$XDG_CACHE_HOME``
or ``~/.cache``), outside the source tree; the folder is printed at the end. The copy README cites is
``examples/results`` (``--out examples/results`` regenerates it).

Reproducible: every pairing runs on one thread with deterministic algorithms, its seed fixed, so a rerun
on the same machine and torch build gives the same table bit for bit. Another CPU can still differ: torch
picks its matmul kernels by the CPU's vector instructions (AVX2, AVX-512), whose roundings differ, and
150 steps of SGD amplify that; ``cpu_capability`` in the JSON says which ran.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Sequence

#: activation -> its torchinit.nn class (by name: torch is imported only after the arguments are parsed)
ACTIVATIONS: dict[str, str] = {
    "sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "ReLU", "leaky_relu": "LeakyReLU",
    "elu": "ELU", "selu": "SELU", "gelu": "GELU", "silu": "SiLU",
}
#: init label -> (apply_init scheme, scheme kwargs); "lsuv" is data-dependent and handled apart.
INITS: dict[str, tuple[str, dict[str, Any]] | None] = {
    "zeros": ("zeros", {}),
    "normal(0.01)": ("normal", {"std": 0.01}),
    "xavier": ("xavier_normal", {}),
    "he": ("kaiming_normal", {}),          # gain sqrt(2): torch's default nonlinearity leaky_relu with a=0
    "lecun": ("lecun_normal", {}),
    "orthogonal": ("orthogonal", {}),
    "lsuv": None,
    "auto": ("auto", {}),                  # gain computed for the activation feeding each layer
}
QUICK_ACTIVATIONS = ("sigmoid", "relu")
QUICK_INITS = ("zeros", "normal(0.01)", "he", "auto")
CHANCE = 0.1


def parse_args(argv: Sequence[str] | None, prog: str | None = None) -> argparse.Namespace:
    """Command-line options of the example."""
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"reduced run: activations {QUICK_ACTIVATIONS}, inits {QUICK_INITS}, 30 steps "
                        "(also set by the environment variable TORCHINIT_EXAMPLE_QUICK=1)")
    p.add_argument("--out", default=str(default_out_dir()),
                   help="folder for the table, JSON and plots (default: outside the source tree; "
                        f"README's copy is {here / 'results'})")
    p.add_argument("--steps", type=int, default=None, help="SGD steps per pairing (default 150; quick 30)")
    p.add_argument("--lr", type=float, default=0.02, help="SGD learning rate (momentum 0.9)")
    p.add_argument("--batch", type=int, default=64, help="minibatch size")
    p.add_argument("--depth", type=int, default=8, help="hidden layers")
    p.add_argument("--width", type=int, default=64, help="units per hidden layer")
    p.add_argument("--seed", type=int, default=0, help="seed for the split, the inits and the batches")
    p.add_argument("--workers", type=int, default=None,
                   help="processes (one activation each); default: min(2, CPUs), 1 in quick mode")
    p.add_argument("--activations", default=None, help="comma-separated subset of " + ",".join(ACTIVATIONS))
    p.add_argument("--inits", default=None, help="comma-separated subset of " + ",".join(INITS))
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    ns = p.parse_args(argv)
    ns.quick = ns.quick or os.environ.get("TORCHINIT_EXAMPLE_QUICK", "") not in ("", "0")
    ns.acts = _subset(p, ns.activations, ACTIVATIONS, QUICK_ACTIVATIONS if ns.quick else None, "--activations")
    ns.init_names = _subset(p, ns.inits, INITS, QUICK_INITS if ns.quick else None, "--inits")
    if ns.steps is None:
        ns.steps = 30 if ns.quick else 150
    if ns.workers is None:
        ns.workers = 1 if ns.quick else max(1, min(2, os.cpu_count() or 1))
    return ns


def default_out_dir() -> Path:
    """``<user cache>/torchinit/demo``: ``$XDG_CACHE_HOME`` or ``~/.cache``, never inside the source tree."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "torchinit" / "demo"


def _load_torch() -> None:
    """Import torch and torchinit, once the arguments are parsed (``--help`` and mistakes answer at once)."""
    global torch, nn, torchinit, tinn, diagnose, plot_reports, apply_init, lsuv
    import torch
    from torch import nn

    import torchinit
    import torchinit.nn as tinn
    from torchinit.diagnose import diagnose, plot_reports
    from torchinit.init import apply_init, lsuv


def _subset(p: argparse.ArgumentParser, text: str | None, known: dict, quick: tuple | None, flag: str) -> list[str]:
    if text is None:
        return list(quick) if quick else list(known)
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in known]
    if bad or not names:
        p.error(f"{flag}: unknown {bad or 'empty list'}; expected some of {', '.join(known)}")
    return names


# ------------------------------------------------------------------------------------------------ data

def load_data(seed: int) -> dict[str, torch.Tensor]:
    """scikit-learn's digits (1797 8x8 images), an 80/20 stratified split, standardised on the train part."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(digits.data, digits.target, test_size=0.2, random_state=seed,
                                              stratify=digits.target)
    x_tr, x_te = torch.tensor(x_tr, dtype=torch.float32), torch.tensor(x_te, dtype=torch.float32)
    mean, std = x_tr.mean(0), x_tr.std(0).clamp_min(1e-3)  # some border pixels are always 0
    return {"x_tr": (x_tr - mean) / std, "y_tr": torch.tensor(y_tr), "x_te": (x_te - mean) / std,
            "y_te": torch.tensor(y_te)}


def build_mlp(act: str, depth: int, width: int) -> nn.Sequential:
    """``depth`` x (Linear, activation) then a Linear head: 64 inputs, 10 classes."""
    layers: list[nn.Module] = []
    fan_in = 64
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), getattr(tinn, ACTIVATIONS[act])()]
        fan_in = width
    layers.append(nn.Linear(fan_in, 10))
    return nn.Sequential(*layers)


def initialise(model: nn.Module, init: str, batch: torch.Tensor, seed: int) -> None:
    """Apply one of :data:`INITS` (biases are zero in every scheme)."""
    spec = INITS[init]
    if spec is None:
        lsuv(model, batch, seed=seed)
    else:
        scheme, kwargs = spec
        apply_init(model, scheme, seed=seed, **kwargs)


# ---------------------------------------------------------------------------------------------- one run

def run_activation(act: str, inits: list[str], data: dict[str, torch.Tensor], cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Every init for one activation: diagnose at init, train, evaluate. Returns one row per init."""
    _load_torch()  # a worker started by "spawn" imports this module afresh
    torch.set_num_threads(1)  # tiny matrices: one thread each is faster, workers run side by side, and
    torch.use_deterministic_algorithms(True)  # the reductions' order is fixed: a rerun gives the same table
    rows = []
    probe_x, probe_y = data["x_tr"][:256], data["y_tr"][:256]
    for init in inits:
        t0 = time.perf_counter()
        torch.manual_seed(cfg["seed"])
        model = build_mlp(act, cfg["depth"], cfg["width"])
        initialise(model, init, probe_x, cfg["seed"])
        report = diagnose(model, probe_x, lambda out: nn.functional.cross_entropy(out, probe_y),
                          seed=cfg["seed"], label=init)
        first = report.first_layer()
        loss, acc = train(model, data, cfg)
        rows.append({
            "activation": act, "init": init, "verdict": report.verdict,
            "forward_gain": report.forward_gain, "backward_gain": report.backward_gain,
            "grad_first": first.weight_grad_norm if first is not None else None,
            "loss0": report.loss, "loss": loss, "acc": acc, "seconds": time.perf_counter() - t0,
            "report": report,
        })
    return rows


def train(model: nn.Module, data: dict[str, torch.Tensor], cfg: dict[str, Any]) -> tuple[float, float]:
    """``cfg['steps']`` SGD steps (momentum 0.9) on minibatches drawn with a fixed generator; returns
    (training loss on the whole training set, test accuracy). A non-finite loss stops training early."""
    x, y = data["x_tr"], data["y_tr"]
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=0.9)
    gen = torch.Generator().manual_seed(cfg["seed"] + 1)  # same batches for every pairing
    model.train()
    for _ in range(cfg["steps"]):
        idx = torch.randint(0, len(x), (cfg["batch"],), generator=gen)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        if not torch.isfinite(loss):
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        train_loss = float(nn.functional.cross_entropy(model(x), y))
        acc = float((model(data["x_te"]).argmax(1) == data["y_te"]).float().mean())
    return train_loss, acc


# ------------------------------------------------------------------------------------------ the story

def claims(rows: list[dict[str, Any]]) -> list[tuple[str, bool | None, str]]:
    """The three textbook claims, each with whether the measurements support it and the numbers used."""
    by = {(r["activation"], r["init"]): r for r in rows}
    out: list[tuple[str, bool | None, str]] = []

    zeros = [r for r in rows if r["init"] == "zeros"]
    if zeros:
        best = max(zeros, key=lambda r: r["acc"])
        out.append(("zero init does not learn", best["acc"] < CHANCE + 0.15,
                    f"best test accuracy under zeros over {len(zeros)} activations: {best['acc']:.3f} "
                    f"({best['activation']}); chance is {CHANCE:.2f}"))
    sig = by.get(("sigmoid", "normal(0.01)"))
    if sig:
        others = [r["grad_first"] for r in rows if r["activation"] == "sigmoid" and r["init"] not in
                  ("zeros", "normal(0.01)") and r["grad_first"]]
        ratio = (f"; {max(others) / sig['grad_first']:.1e}x smaller than the largest other sigmoid init"
                 if others and sig["grad_first"] else "")
        out.append(("small normal vanishes in a deep sigmoid net",
                    sig["verdict"] == "vanishing" and sig["acc"] < CHANCE + 0.15,
                    f"sigmoid + N(0, 0.01^2): verdict {sig['verdict']}, first-layer gradient norm "
                    f"{sig['grad_first']:.2e}{ratio}, test accuracy {sig['acc']:.3f}"))
    he = by.get(("relu", "he"))
    if he:
        out.append(("He init with ReLU trains", he["verdict"] == "ok" and he["acc"] > 0.9,
                    f"relu + he: verdict {he['verdict']}, loss {he['loss0']:.3f} -> {he['loss']:.3f}, "
                    f"test accuracy {he['acc']:.3f}"))
    return out


def markdown(rows: list[dict[str, Any]], cfg: dict[str, Any], env: dict[str, Any]) -> str:
    """The results as a Markdown document: setup, table, claims."""
    lines = [
        "# Initialisation x activation on scikit-learn's digits (measured)",
        "",
        f"Generated by `examples/digits_init_story.py` on {env['machine']}, torch {env['torch']}, torchinit "
        f"{env['torchinit']}, {env['threads']} (the grid ran in {env['seconds']:.1f} s wall, "
        f"{env['cpu_seconds']:.1f} s CPU).",
        "",
        f"MLP 64 -> {cfg['depth']} x {cfg['width']} (torchinit.nn activation after each) -> 10, biases 0; "
        f"{cfg['steps']} steps of SGD (lr {cfg['lr']}, momentum 0.9, batch {cfg['batch']}) on 1437 training "
        "images, the same batches for every pairing; test accuracy on the other 360 (chance 0.10). "
        "*verdict* and *|dW1|* (the first layer's weight-gradient norm under the cross-entropy loss) are "
        "measured at init by `torchinit.diagnose` on 256 training images; *loss* is the training loss after "
        "the budget (nan: it diverged).",
        "",
        "| activation | init | verdict at init | \\|dW1\\| at init | loss at init | loss after | test acc |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['activation']} | {r['init']} | {r['verdict']} | {_g(r['grad_first'])} | "
                     f"{r['loss0']:.3f} | {r['loss']:.3f} | {r['acc']:.3f} |")
    lines += ["", "## The textbook claims, checked against these numbers", ""]
    for claim, ok, evidence in claims(rows):
        lines.append(f"- **{claim}**: {'holds' if ok else 'does NOT hold'} here. {evidence}.")
    lines += ["", "## Best init per activation (test accuracy)", "", "| activation | best init | test acc |",
              "|---|---|---:|"]
    for act in dict.fromkeys(r["activation"] for r in rows):
        mine = [r for r in rows if r["activation"] == act and math.isfinite(r["loss"])]
        best = max(mine, key=lambda r: r["acc"]) if mine else None
        if best is None or best["acc"] < CHANCE + 0.15:
            lines.append(f"| {act} | none learned within the budget | {best['acc'] if best else float('nan'):.3f} |")
        else:
            lines.append(f"| {act} | {best['init']} | {best['acc']:.3f} |")
    return "\n".join(lines) + "\n"


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the worker processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _g(v: float | None) -> str:
    return "-" if v is None else f"{v:.2e}"


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run the grid, print the table and the claims, write the Markdown, JSON and plots. Returns 0."""
    ns = parse_args(argv, prog)
    _load_torch()
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    data = load_data(ns.seed)
    cfg = {k: getattr(ns, k) for k in ("steps", "lr", "batch", "depth", "width", "seed")}
    pairings = [(act, init) for act in ns.acts for init in ns.init_names]
    bar = _progress(len(pairings), not ns.no_progress)
    if ns.workers > 1 and len(pairings) > 1:
        import multiprocessing as mp
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(max_workers=ns.workers, mp_context=ctx) as pool:
            futures = [pool.submit(run_activation, act, [init], data, cfg) for act, init in pairings]
            for future in as_completed(futures):
                bar.update()
            per_pairing = [f.result() for f in futures]
    else:
        threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
        per_pairing = []
        for act, init in pairings:
            per_pairing.append(run_activation(act, [init], data, cfg))
            bar.update()
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    bar.close()
    rows = [r for group in per_pairing for r in group]
    seconds = time.perf_counter() - t0
    env = {"machine": f"{platform.machine()} CPU ({os.cpu_count()} logical cores)", "torch": torch.__version__,
           "torchinit": torchinit.__version__, "threads": f"{ns.workers} worker process(es) x 1 thread",
           "cpu_capability": torch.backends.cpu.get_cpu_capability(), "deterministic": True,
           "seconds": seconds, "cpu_seconds": _cpu_seconds() - cpu0}
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, cfg, env)
    (out / "digits_results.md").write_text(text)
    table = accuracy_table(rows)
    (out / "digits_table.md").write_text(table)
    (out / "digits_results.json").write_text(json.dumps(
        {"config": cfg, "env": env, "rows": [{k: v for k, v in r.items() if k != "report"} for r in rows]},
        indent=1))
    if not ns.no_plots:
        for act in ns.acts:
            reports = {r["init"]: r["report"] for r in rows if r["activation"] == act}
            plot_reports(reports, out / f"digits_{act}.png",
                         f"digits MLP, {act}: signal at init ({ns.depth} hidden layers of {ns.width})")
    print(text)
    print(table)
    print(f"wrote digits_results.md, digits_table.md, digits_results.json"
          + ("" if ns.no_plots else f" and {len(ns.acts)} plot(s)") + f" in {time.perf_counter() - t0:.1f} s to:")
    print(f"  {out.resolve()}")
    return 0


def accuracy_table(rows: list[dict[str, Any]]) -> str:
    """README's table: test accuracy per activation (rows) and init (columns), the best of each row in bold."""
    acts = list(dict.fromkeys(r["activation"] for r in rows))
    inits = list(dict.fromkeys(r["init"] for r in rows))
    by = {(r["activation"], r["init"]): r["acc"] for r in rows}
    lines = ["| activation | " + " | ".join(inits) + " |",
             "|---" * (len(inits) + 1) + "|"]
    for act in acts:
        accs = {i: by.get((act, i)) for i in inits}
        # rounded as shown, so that a tie on the page is bold twice; no bold when none learned
        shown = {i: f"{a:.3f}" for i, a in accs.items() if a is not None}
        best = max(shown.values()) if shown else None
        learned = best is not None and float(best) >= CHANCE + 0.15
        cells = [(f"**{v}**" if learned and v == best else v) if (v := shown.get(i)) else "-" for i in inits]
        lines.append(f"| {act} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _progress(total: int, enabled: bool) -> Any:
    """A tqdm bar over the pairings (to stderr), or a silent stand-in without tqdm or when disabled."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        enabled = False
    if not enabled:
        class _NoBar:
            def update(self, n: int = 1) -> None: ...
            def close(self) -> None: ...
        return _NoBar()
    return tqdm(total=total, unit="pairing", desc="activation x init", dynamic_ncols=True)


if __name__ == "__main__":
    sys.exit(main())
