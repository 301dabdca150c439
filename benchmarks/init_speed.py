"""Init speed: ``torchinit.init.apply_init`` against the equivalent loop of ``torch.nn.init`` calls.

Models (``full=True``): torchvision's resnet50 (about 25.6M parameters, built without weights) and a
GPT-style transformer stack built here (embedding, then per layer LayerNorm, qkv and output
projections, LayerNorm, a 4x MLP; a final LayerNorm) of 24 layers of width 1024 over a 50257-token
vocabulary, about 353M parameters. The default (``full=False``), which keeps a CPU run short:
resnet18 (11.7M) and a stack of 2 layers of width 512 over 4096 tokens (8.4M).

The torch loop does what ``apply_init(model, scheme)`` does: the scheme on the weight of every Linear,
ConvNd and Embedding, zeros on their biases, ones and zeros on normalisation layers. Times are
wall clock (synchronised on CUDA), the median of ``repeats`` runs, after one warm-up run on CUDA
(where the first call compiles Triton kernels; on CPU the first run is timed too).
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

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
    except Exception as exc:
        skipped.append({"model": "resnet", "reason": f"torchvision not importable: {exc}"})
    dims = (24, 1024, 50257) if full else (2, 512, 4096)
    builders["transformer-%dx%d" % dims[:2]] = lambda: transformer_stack(*dims, device=device)
    return builders, skipped


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
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time apply_init (counter-based ``seed=0``, and torch-style ``generator=``) and the torch loop.

    Returns ``{"skipped": reason}`` when ``torchinit.init.apply_init`` cannot be imported; otherwise
    ``{"models": {...}, "rows": [...]}`` with one row per (model, scheme, implementation), a row
    carrying ``error`` where that call failed.
    """
    try:
        from torchinit.init import apply_init
    except Exception as exc:
        return {"skipped": f"torchinit.init.apply_init is not importable ({type(exc).__name__}: {exc}); "
                           "init speed not measured"}
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
                "apply_init(seed=0)": lambda: apply_init(model, scheme, seed=0, **kwargs),
                "apply_init(generator=g)": lambda: apply_init(model, scheme, generator=gen.manual_seed(0), **kwargs),
                "torch.nn.init loop": lambda: torch_init_loop(model, scheme, gen.manual_seed(0)),
            }
            for impl, fn in impls.items():
                if progress is not None:
                    progress(f"{model_name} {scheme} {impl}")
                row: dict[str, Any] = {"model": model_name, "scheme": scheme, "impl": impl, "parameters": n_params}
                try:
                    stats = _median_time(fn, sync, repeats, warmup=device.type == "cuda")
                    row.update(time_s=stats, params_per_s=n_params / stats["median"])
                except Exception as exc:  # record, go on
                    row["error"] = f"{type(exc).__name__}: {exc}".strip()[:500]
                rows.append(row)
        del model
    return {"models": models, "rows": rows, "skipped_models": skipped, "full": full, "repeats": repeats}
