"""Data-dependent initialisation: LSUV, ZCA whitening of a first layer, and weight-norm data init.

All three run the model under ``torch.no_grad()`` in eval mode (so dropout is off and batch-norm
running statistics are neither used for normalisation drift nor updated) and restore the mode after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from ..layers import is_hf_conv1d
from .actions import Orthogonal, Stream
from .sampling import derive_key

__all__ = ["lsuv", "LSUVReport", "LSUVLayer", "zca_", "data_init", "DataInitReport"]

#: LSUV's default layers: Linear, convolutions and Hugging Face's ``Conv1D`` (GPT-2; matched by class name,
#: no import of transformers). The rescaling is by a scalar, so Conv1D's (in, out) layout needs nothing else.
_DEFAULT_LAYERS: tuple[type | str, ...] = (nn.Linear, nn.modules.conv._ConvNd, "Conv1D")


class _Stop(Exception):
    pass


def _run(model: nn.Module, batch: Any, forward: Callable[[nn.Module, Any], Any] | None) -> None:
    if forward is not None:
        forward(model, batch)
    elif isinstance(batch, (tuple, list)):
        model(*batch)
    elif isinstance(batch, dict):
        model(**batch)
    else:
        model(batch)


def _first(out: Any) -> torch.Tensor:
    while isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"lsuv/data_init: a layer returned {type(out).__name__}, expected a tensor")
    return out


class _Capture:
    """Forward with hooks on ``layers``; optionally stop right after ``stop_at`` ran."""

    def __init__(self, model: nn.Module, batch: Any, forward: Callable | None) -> None:
        self.model, self.batch, self.forward = model, batch, forward

    def outputs(self, layers: dict[str, nn.Module], stop_at: str | None = None) -> dict[str, torch.Tensor]:
        seen: dict[str, torch.Tensor] = {}
        handles = []

        def make(name: str):
            def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
                if name not in seen:
                    seen[name] = _first(out).detach()
                if name == stop_at:
                    raise _Stop

            return hook

        for name, m in layers.items():
            handles.append(m.register_forward_hook(make(name)))
        try:
            _run(self.model, self.batch, self.forward)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        return seen


def _matches(m: nn.Module, types: Sequence[type | str]) -> bool:
    for t in types:
        if isinstance(t, str):
            if t == "Conv1D" and is_hf_conv1d(m) or any(c.__name__ == t for c in type(m).__mro__):
                return True
        elif isinstance(m, t):
            return True
    return False


def _layer_names(types: Sequence[type | str]) -> list[str]:
    return [t if isinstance(t, str) else t.__name__ for t in types]


def _layers(model: nn.Module, types: Sequence[type | str]) -> tuple[dict[str, nn.Module], list[tuple[str, str]]]:
    """The selected layers (name -> module, each weight once) and those skipped with the reason: a weight
    tied to a module of another kind (GPT-2's ``lm_head`` and ``wte``) is left alone, since rescaling it
    would rescale that module too (the input embedding)."""
    owners: dict[int, list[tuple[str, nn.Module]]] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        for pname, p in m.named_parameters(recurse=False):
            if pname == "weight" and p is not None:
                owners.setdefault(id(p), []).append((name, m))
    out: dict[str, nn.Module] = {}
    skipped: list[tuple[str, str]] = []
    weights: set[int] = set()
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if not _matches(m, types) or not isinstance(w, torch.Tensor):
            continue
        if id(w) in weights:
            continue  # a weight shared by several selected layers: processed once, at its first layer
        others = [(n, o) for n, o in owners.get(id(w), []) if o is not m and not _matches(o, types)]
        if others:
            skipped.append((name, f"weight tied to {others[0][0]} ({type(others[0][1]).__name__}): not rescaled"))
            continue
        out[name] = m
        weights.add(id(w))
    return out, skipped


def _ordered(cap: _Capture, layers: dict[str, nn.Module]) -> list[str]:
    """Layer names in the order the forward pass reaches them (unreached layers dropped)."""
    order: list[str] = []
    handles = []
    for name, m in layers.items():
        handles.append(m.register_forward_hook(lambda _m, _i, _o, n=name: order.append(n) if n not in order else None))
    try:
        _run(cap.model, cap.batch, cap.forward)
    finally:
        for h in handles:
            h.remove()
    return order


class _EvalMode:
    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.flags = {m: m.training for m in model.modules()}

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: Any) -> None:
        for m, flag in self.flags.items():
            m.training = flag


@dataclass(frozen=True)
class LSUVLayer:
    """One layer's output variance when LSUV reached it (after the orthonormal pre-init), and at the end."""

    name: str
    var_before: float
    var_after: float
    iterations: int
    converged: bool


class LSUVReport:
    """Per-layer variances before and after LSUV (``report.layers``), the layers left alone and why
    (``report.skipped``: name, reason), printable as a table."""

    def __init__(self, layers: list[LSUVLayer], tol: float, skipped: list[tuple[str, str]] | None = None) -> None:
        self.layers = layers
        self.tol = tol
        self.skipped = list(skipped or [])

    @property
    def converged(self) -> bool:
        return all(layer.converged for layer in self.layers)

    def __str__(self) -> str:
        w = max([len("layer")] + [len(layer.name) for layer in self.layers])
        lines = [f"LSUV (tol {self.tol}): {sum(lay.converged for lay in self.layers)}/{len(self.layers)} layers converged",
                 f"{'layer'.ljust(w)}  var before  var after  iters"]
        for lay in self.layers:
            lines.append(f"{lay.name.ljust(w)}  {lay.var_before:10.4g}  {lay.var_after:9.4g}  {lay.iterations:5d}"
                         + ("" if lay.converged else "  (not converged)"))
        lines += [f"skipped {name}: {why}" for name, why in self.skipped]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"LSUVReport({len(self.layers)} layers, converged={self.converged})"


def _param_stream(seed: int | None, generator: torch.Generator | None, name: str) -> Stream:
    return Stream(derive_key(seed, name)) if seed is not None else Stream(None, generator)


def lsuv(model: nn.Module, batch: Any, tol: float = 0.1, max_iter: int = 10, orthonormal: bool = True,
         layers: Sequence[type | str] = _DEFAULT_LAYERS, seed: int | None = None, generator: torch.Generator | None = None,
         forward: Callable[[nn.Module, Any], Any] | None = None) -> LSUVReport:
    """Layer-sequential unit-variance init (Mishkin & Matas 2016, "All you need is a good init").

    1. Orthonormal pre-init of every selected layer's weight (``orthogonal``, gain 1) and zero biases
       (``orthonormal=False`` keeps the current weights).
    2. Layer by layer in forward order: run ``batch`` through the model, divide the layer's weight by the
       standard deviation of its output, until ``|Var - 1| < tol`` or ``max_iter`` rescalings.

    Args:
        model: the network; run in eval mode under no_grad (the mode is restored).
        batch: the input (a tensor, a tuple of positional args or a dict of keyword args), or whatever
            ``forward(model, batch)`` takes.
        tol: tolerance on the output variance.
        max_iter: the most rescalings per layer.
        layers: the layer types (or class names) to process; by default Linear, convolutions and HF
            ``Conv1D``. A weight tied to a module of another kind (an output head tied to the input
            embedding) is skipped and reported; a weight shared by several layers is processed once.
        seed / generator: randomness of the orthonormal pre-init (counter-based with ``seed``).

    Returns:
        an :class:`LSUVReport` of per-layer variances before (when LSUV reached the layer) and after, and
        the skipped layers.
    """
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"lsuv: tol must be a positive number, got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"lsuv: max_iter must be a positive int, got {max_iter!r}")
    selected, skipped = _layers(model, layers)
    if not selected:
        raise ValueError(f"lsuv: the model has no layers of types {_layer_names(layers)}"
                         + (f" that can be rescaled ({skipped[0][0]}: {skipped[0][1]})" if skipped else ""))
    cap = _Capture(model, batch, forward)
    rows = []
    with torch.no_grad(), _EvalMode(model):
        if orthonormal:
            for name, m in selected.items():
                w = m.weight
                w.copy_(Orthogonal().materialize(tuple(w.shape), w.dtype, w.device,
                                                 _param_stream(seed, generator, f"{name}.weight")))
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()
        order = _ordered(cap, selected)
        before: dict[str, tuple[float, int, bool]] = {}
        for name in order:
            m = selected[name]
            first = None
            it = 0
            converged = False
            while True:
                out = cap.outputs({name: m}, stop_at=name)[name].float()
                var = float(out.var())
                first = var if first is None else first
                if abs(var - 1.0) < tol:
                    converged = True
                    break
                if it >= max_iter or not math.isfinite(var) or var == 0:
                    break
                m.weight.div_(math.sqrt(var))
                it += 1
            before[name] = (first, it, converged)
        final = cap.outputs({n: selected[n] for n in order})
        for name in order:
            var_after = float(final[name].float().var())
            first, it, _ = before[name]
            rows.append(LSUVLayer(name, first, var_after, it, abs(var_after - 1.0) < tol))
    unreached = [(n, "not reached by the forward pass on batch") for n in selected if n not in order]
    return LSUVReport(rows, tol, skipped + unreached)


def _patches(layer: nn.Module, data: torch.Tensor) -> torch.Tensor:
    """Rows of the input the layer's weight rows are dotted with: (M, D)."""
    if isinstance(layer, nn.Linear):
        x = data.reshape(-1, layer.in_features)
        return x
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)) and not layer.transposed:
        if layer.groups != 1:
            raise ValueError("zca_: grouped convolutions are not supported (whitening mixes all input channels)")
        if isinstance(layer, nn.Conv1d):
            data = data.unsqueeze(2)
            k, d, s = (1,) + layer.kernel_size, (1,) + layer.dilation, (1,) + layer.stride
        else:
            k, d, s = layer.kernel_size, layer.dilation, layer.stride
        cols = F.unfold(data, k, dilation=d, stride=s)  # (N, C*k*k, L)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    raise TypeError(f"zca_: expected an nn.Linear, nn.Conv1d or nn.Conv2d, got {type(layer).__name__}")


def zca_(layer: nn.Module, data: torch.Tensor, eps: float = 1e-2, generator: torch.Generator | None = None) -> nn.Module:
    """Initialise a first layer as a ZCA whitening transform of ``data`` (patches, for a convolution).

    With ``D`` the patch size (``in_channels * prod(kernel)``) and ``C = Cov(patches)``, the whitening
    matrix is ``W = U (L + eps)^(-1/2) U^T``. The layer's ``out`` filters are ``out`` rows of ``W`` (evenly
    spaced) when ``out <= D``, so its outputs on ``data`` have covariance close to the identity (exactly
    ``L / (L + eps)`` in the eigenbasis) and, with a bias, zero mean (``bias = -W mean``). When
    ``out > D`` the filters are ``sqrt(out / D) * Q W`` with ``Q`` having orthonormal columns.

    Args:
        layer: an ``nn.Linear``, ``nn.Conv1d`` or ``nn.Conv2d`` (ungrouped).
        data: a batch shaped like the layer's input.
        eps: regulariser added to the eigenvalues (in the data's variance units).
    """
    if not eps >= 0:
        raise ValueError(f"zca_: eps must be non-negative, got {eps!r}")
    with torch.no_grad():
        x = _patches(layer, data.detach()).double()
        if x.shape[0] < 2:
            raise ValueError("zca_: need at least two patches to estimate a covariance")
        mean = x.mean(0)
        xc = x - mean
        cov = xc.t() @ xc / (x.shape[0] - 1)
        evals, evecs = torch.linalg.eigh(cov)
        w = evecs @ torch.diag((evals.clamp(min=0) + eps).rsqrt()) @ evecs.t()
        out, dim = layer.weight.shape[0], w.shape[0]
        if out <= dim:
            idx = torch.linspace(0, dim - 1, out).round().long()
            filt = w[idx]
        else:
            q = Orthogonal().materialize((out, dim), torch.float64, torch.device("cpu"), Stream(None, generator))
            filt = math.sqrt(out / dim) * q @ w
        layer.weight.copy_(filt.reshape(layer.weight.shape).to(layer.weight))
        if getattr(layer, "bias", None) is not None:
            layer.bias.copy_((-(filt @ mean)).to(layer.bias))
    return layer


@dataclass(frozen=True)
class DataInitLayer:
    """Per-unit output statistics of one layer before (``mean``/``std`` averaged over units) and after."""

    name: str
    std_before: float
    std_after: float
    mean_after: float


class DataInitReport:
    """What :func:`data_init` did, per layer."""

    def __init__(self, layers: list[DataInitLayer]) -> None:
        self.layers = layers

    def __str__(self) -> str:
        w = max([len("layer")] + [len(x.name) for x in self.layers])
        lines = [f"{'layer'.ljust(w)}  std before  std after  |mean| after"]
        lines += [f"{x.name.ljust(w)}  {x.std_before:10.4g}  {x.std_after:9.4g}  {x.mean_after:12.3g}" for x in self.layers]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"DataInitReport({len(self.layers)} layers)"


def _unit_dim(m: nn.Module) -> int:
    return 1 if isinstance(m, nn.modules.conv._ConvNd) else -1


def _weight_out_dim(m: nn.Module) -> int:
    return 1 if (isinstance(m, nn.modules.conv._ConvNd) and m.transposed) or is_hf_conv1d(m) else 0


def data_init(model: nn.Module, batch: Any, init_scale: float = 1.0, layers: Sequence[type | str] = _DEFAULT_LAYERS,
              eps: float = 1e-8, forward: Callable[[nn.Module, Any], Any] | None = None) -> DataInitReport:
    """Data-dependent init of weight normalisation (Salimans & Kingma 2016, section 3): layer by layer in
    forward order, rescale each output unit so its pre-activation on ``batch`` has standard deviation
    ``init_scale`` and set the bias to make its mean 0: ``w <- w * s / sigma``, ``b <- -mu * s / sigma``.

    For layers under ``torch.nn.utils.parametrizations.weight_norm`` the magnitude ``g`` is rescaled. A layer
    without a bias is only rescaled.
    """
    if not init_scale > 0:
        raise ValueError(f"data_init: init_scale must be positive, got {init_scale!r}")
    selected, _ = _layers(model, layers)
    if not selected:
        raise ValueError(f"data_init: the model has no layers of types {_layer_names(layers)}")
    cap = _Capture(model, batch, forward)
    rows = []
    with torch.no_grad(), _EvalMode(model):
        order = _ordered(cap, selected)
        for name in order:
            m = selected[name]
            y = cap.outputs({name: m}, stop_at=name)[name].double()
            ud = _unit_dim(m) % y.dim()
            bias = getattr(m, "bias", None)
            shape = [1] * y.dim()
            shape[ud] = y.shape[ud]
            if bias is not None:
                y = y - bias.double().view(shape)
            dims = [d for d in range(y.dim()) if d != ud]
            mu, sigma = y.mean(dims), y.std(dims)
            factor = init_scale / (sigma + eps)
            od = _weight_out_dim(m)
            target = m.weight
            param_map = getattr(getattr(m, "parametrizations", None), "weight", None)
            if param_map is not None and hasattr(param_map, "original0"):
                target = param_map.original0  # weight_norm's magnitude g
            wshape = [1] * target.dim()
            n_out = target.shape[od]
            wshape[od] = n_out
            groups_factor = factor
            if factor.numel() != n_out:  # ConvTranspose with groups: units = groups * (out / groups)
                raise ValueError(f"data_init: cannot map {factor.numel()} output units onto {name}'s weight")
            target.mul_(groups_factor.view(wshape).to(target))
            if bias is not None:
                bias.copy_((-mu * factor).to(bias))
            rows.append(DataInitLayer(name, float(sigma.mean()), 0.0, 0.0))
        final = cap.outputs({n: selected[n] for n in order})
        done = []
        for r in rows:
            y = final[r.name].double()
            ud = _unit_dim(selected[r.name]) % y.dim()
            dims = [d for d in range(y.dim()) if d != ud]
            done.append(DataInitLayer(r.name, r.std_before, float(y.std(dims).mean()), float(y.mean(dims).abs().mean())))
    return DataInitReport(done)
