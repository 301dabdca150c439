"""Init speed: ``torchinit.init.apply_init`` against the equivalent loop of ``torch.nn.init`` calls.

Models (``full=True``): torchvision's resnet50 (about 25.6M parameters, built without weights) and a
GPT-style transformer stack built here (embedding, then per layer LayerNorm, qkv and output
projections, LayerNorm, a 4x MLP; a final LayerNorm) of 24 layers of width 1024 over a 50257-token
vocabulary, about 353M parameters. The default (``full=False``), which keeps a CPU run short:
resnet18 (11.7M) and a stack of 2 layers of width 512 over 4096 tokens (8.4M).

The torch loop does what ``apply_init(model, scheme)`` does: the scheme on the weight of every Linear,
ConvNd and Embedding, zeros on their biases, ones and zeros on normalisation layers. Times are
wall clock (synchronised on CUDA), the median of ``repeats`` runs, after one warm-up run on CUDA
(where the first call compiles Triton kernels; on CPU the first run is timed too). The result names the
seeded sampler that ran on CPU (the C sampler of ``torchinit.init.native`` and its instruction set, or
the torch-ops path) and gives each model's and scheme's ratio of ``apply_init(seed=0)`` to the loop;
``reference_path=True`` adds a row for the torch-ops sampler, ``threads`` runs with that many torch
intra-op threads (restored afterwards).

:func:`run_init_speed_ranks` times seeded ``apply_init`` on FSDP2-sharded copies of the same models over
``world`` spawned gloo CPU ranks (meta device, ``fully_shard`` per layer and at the root, ``to_empty``,
then ``apply_init``: each rank samples only its own shard) beside the unsharded model in the same
processes, so a rank's time can be read against the single-rank time.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from benchmarks.timing import synchronizer

#: scheme -> (keyword arguments for apply_init, the torch.nn.init call on one weight)
SCHEMES: dict[str, tuple[dict[str, Any], Callable[[torch.Tensor, torch.Generator], torch.Tensor]]] = {
    "kaiming_normal": ({}, lambda w, g: nn.init.kaiming_normal_(w, generator=g)),
    "trunc_normal": ({"std": 0.02, "a": -0.04, "b": 0.04},
                     lambda w, g: nn.init.trunc_normal_(w, std=0.02, a=-0.04, b=0.04, generator=g)),
}


class _Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln1, self.qkv, self.proj = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln2, self.fc1, self.fc2 = nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.Linear(4 * d, d)


def transformer_stack(layers: int, d_model: int, vocab: int, device: torch.device | str = "cpu") -> nn.Module:
    """A GPT-style parameter stack (about ``12 * layers * d_model**2 + vocab * d_model`` parameters).

    Only the parameters matter for init speed; the module has no ``forward``.
    """
    with torch.device(device):
        model = nn.Module()
        model.embed = nn.Embedding(vocab, d_model)
        model.blocks = nn.ModuleList(_Block(d_model) for _ in range(layers))
        model.ln_f = nn.LayerNorm(d_model)
    return model


def torch_init_loop(model: nn.Module, scheme: str, generator: torch.Generator) -> None:
    """What ``apply_init(model, scheme)`` does, written as the loop of ``torch.nn.init`` calls a user writes."""
    _, init_weight = SCHEMES[scheme]
    norms = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd, nn.Embedding)):
                init_weight(m.weight, generator)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, norms):
                if getattr(m, "weight", None) is not None:
                    nn.init.ones_(m.weight)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)


def _models(full: bool, device: torch.device) -> tuple[dict[str, Callable[[], nn.Module]], list[dict[str, str]]]:
    builders: dict[str, Callable[[], nn.Module]] = {}
    skipped: list[dict[str, str]] = []
    try:
        import torchvision

        resnet = "resnet50" if full else "resnet18"
        builders[resnet] = lambda: getattr(torchvision.models, resnet)(weights=None).to(device)
    except ImportError as exc:
        skipped.append({"model": "resnet", "reason": f"torchvision not importable: {exc}"})
    dims = (24, 1024, 50257) if full else (2, 512, 4096)
    builders[f"transformer-{dims[0]}x{dims[1]}"] = lambda: transformer_stack(*dims, device=device)
    return builders, skipped


def seeded_sampler(device: torch.device) -> str:
    """Which sampler ``apply_init(seed=...)`` uses on ``device``."""
    if device.type != "cpu":
        return "Triton kernel" if device.type == "cuda" else "torch ops"
    from torchinit.init import native

    if native.available():
        return f"C sampler ({native.ISAS[native.isa()]})"
    return f"torch ops ({native.load_error() or 'C sampler switched off'})"


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ratios(rows: list[dict[str, Any]], impl: str = "apply_init(seed=0)",
           base: str = "torch.nn.init loop") -> dict[str, float]:
    """``"model scheme" -> median time of impl / median time of base`` over rows measured together."""
    times = {(r["model"], r["scheme"], r["impl"]): r["time_s"]["median"] for r in rows if "time_s" in r}
    return {f"{m} {s}": t / times[(m, s, base)] for (m, s, i), t in times.items()
            if i == impl and (m, s, base) in times}


def _median_time(fn: Callable[[], Any], sync: Callable[[], None], repeats: int, warmup: bool) -> dict[str, Any]:
    if warmup:
        fn()
        sync()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "samples": repeats,
            "warmup": warmup}


def run_init_speed(device: torch.device, full: bool = False, repeats: int = 3,
                   progress: Callable[[str], None] | None = None, reference_path: bool = False,
                   threads: int | None = None) -> dict[str, Any]:
    """Time apply_init (counter-based ``seed=0``, and torch-style ``generator=``) and the torch loop
    (with ``reference_path``, also ``seed=0`` through the torch-ops sampler).

    Returns ``{"skipped": reason}`` when ``torchinit.init.apply_init`` cannot be imported; otherwise
    ``{"models": {...}, "rows": [...], "ratios": {...}, "sampler": ...}`` with one row per (model, scheme,
    implementation), a row carrying ``error`` where that call failed.
    """
    try:
        from torchinit.init import apply_init, native
    except ImportError as exc:
        return {"skipped": f"torchinit.init.apply_init is not importable ({type(exc).__name__}: {exc}); "
                           "init speed not measured"}
    with _threads(threads):
        out = _run(device, full, repeats, progress, reference_path, apply_init, native)
    out.update(sampler=seeded_sampler(device), threads=threads or torch.get_num_threads())
    out["ratios"] = ratios(out["rows"])
    return out


def _run(device, full, repeats, progress, reference_path, apply_init, native) -> dict[str, Any]:
    builders, skipped = _models(full, device)
    sync = synchronizer(device)
    rows: list[dict[str, Any]] = []
    models: dict[str, Any] = {}
    for model_name, build in builders.items():
        model = build()
        n_params = sum(p.numel() for p in model.parameters())
        models[model_name] = {"parameters": n_params,
                              "bytes": sum(p.numel() * p.element_size() for p in model.parameters())}
        for scheme, (kwargs, _) in SCHEMES.items():
            gen = torch.Generator(device=device)
            impls: dict[str, Callable[[], Any]] = {
                "apply_init(seed=0)": lambda m=model, s=scheme, kw=kwargs: apply_init(m, s, seed=0, **kw),
                "apply_init(generator=g)": lambda m=model, s=scheme, kw=kwargs, g=gen: apply_init(
                    m, s, generator=g.manual_seed(0), **kw),
                "torch.nn.init loop": lambda m=model, s=scheme, g=gen: torch_init_loop(m, s, g.manual_seed(0)),
            }
            if reference_path:
                def torch_ops(m=model, s=scheme, kw=kwargs):
                    with native.disabled():
                        apply_init(m, s, seed=0, **kw)
                impls["apply_init(seed=0), torch-ops sampler"] = torch_ops
            for impl, fn in impls.items():
                if progress is not None:
                    progress(f"{model_name} {scheme} {impl}")
                row: dict[str, Any] = {"model": model_name, "scheme": scheme, "impl": impl, "parameters": n_params}
                try:
                    stats = _median_time(fn, sync, repeats, warmup=device.type == "cuda")
                    row.update(time_s=stats, params_per_s=n_params / stats["median"])
                except Exception as exc:  # noqa: BLE001 - record, go on
                    row["error"] = f"{type(exc).__name__}: {exc}".strip()[:500]
                rows.append(row)
        del model
    return {"models": models, "rows": rows, "skipped_models": skipped, "full": full, "repeats": repeats}


def _rank_worker(rank: int, world: int, init_file: str, out_dir: str, full: bool, repeats: int,
                 schemes: tuple[str, ...], threads: int) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from torchinit.init import apply_init

    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    builders, _ = _models(full, torch.device("meta"))
    res: dict[str, Any] = {}

    def timed(fn: Callable[[], Any]) -> float:
        times = []
        for _ in range(repeats):
            dist.barrier()
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
            dist.barrier()
        return statistics.median(times)

    for name, build in builders.items():
        sharded = build()
        for m in list(sharded.modules())[1:]:
            if any(p.dim() > 1 for p in m.parameters(recurse=False)):
                fully_shard(m, mesh=mesh)
        fully_shard(sharded, mesh=mesh)
        sharded.to_empty(device="cpu")
        local = sum(p.to_local().numel() for p in sharded.parameters())
        whole = build().to_empty(device="cpu")
        for scheme in schemes:
            kw = SCHEMES[scheme][0]
            res[f"{name} {scheme}"] = {
                "rank": timed(lambda m=sharded, s=scheme, kw=kw: apply_init(m, s, seed=0, **kw)),
                "unsharded": timed(lambda m=whole, s=scheme, kw=kw: apply_init(m, s, seed=0, **kw)),
                "local_parameters": local,
                "parameters": sum(p.numel() for p in whole.parameters()),
            }
        del sharded, whole
    torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()
    # exit without interpreter teardown, where a spawned gloo rank sometimes aborts (see tests/test_sharding_ranks.py)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_init_speed_ranks(world: int = 2, full: bool = False, repeats: int = 3,
                         schemes: tuple[str, ...] = ("kaiming_normal", "trunc_normal"),
                         threads: int = 1) -> dict[str, Any]:
    """Seeded ``apply_init`` on FSDP2 shards over ``world`` spawned gloo CPU ranks (``threads`` torch threads
    each), against the unsharded model timed in the same processes (all ranks at once, between barriers).

    Returns ``{"world": ..., "results": {"model scheme": {"rank": [s per rank], "unsharded": [...],
    "rank_over_unsharded": [...]}}}``."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_rank_worker, args=(world, os.path.join(tmp, "init"), tmp, full, repeats, schemes, threads),
                 nprocs=world, join=True)
        per_rank = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(world)]
    results = {}
    for key in per_rank[0]:
        rank_t = [p[key]["rank"] for p in per_rank]
        whole_t = [p[key]["unsharded"] for p in per_rank]
        results[key] = {"rank": rank_t, "unsharded": whole_t,
                        "rank_over_unsharded": [a / b for a, b in zip(rank_t, whole_t)],
                        "local_parameters": [p[key]["local_parameters"] for p in per_rank],
                        "parameters": per_rank[0][key]["parameters"]}
    return {"world": world, "full": full, "repeats": repeats, "threads": threads,
            "sampler": seeded_sampler(torch.device("cpu")), "results": results}


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.init_speed``: time one run (and optionally ``--ranks N``) and write its JSON."""
    import argparse
    import json

    from benchmarks.timing import device_slug, environment

    p = argparse.ArgumentParser(prog="python -m benchmarks.init_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="resnet50 and the 24x1024 stack (default: the small models)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--ranks", type=int, default=0, help="also time FSDP2 shards on this many gloo ranks")
    p.add_argument("--out", help="JSON path (default benchmarks/results/<date>-init-speed-<device>.json)")
    args = p.parse_args(argv)
    device = torch.device("cpu")
    data: dict[str, Any] = {"environment": environment(device),
                            "single": run_init_speed(device, full=args.full, repeats=args.repeats,
                                                     threads=args.threads, progress=print)}
    if args.ranks:
        data["ranks"] = run_init_speed_ranks(args.ranks, full=args.full, repeats=args.repeats, threads=args.threads)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"{time.strftime('%Y-%m-%d')}-init-speed-{device_slug(device)}.json")
    with open(out, "w") as f:
        json.dump(data, f, indent=1, default=str)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
