"""Signal-propagation diagnostics: one forward and one backward pass, measured layer by layer.

:func:`diagnose` hooks the model's layers, runs ``model(inputs)`` and one backward pass, and returns a
:class:`DiagnosisReport` with, for every layer call in execution order:

* the output's mean and standard deviation;
* the fraction of exact zeros (dead ReLU units, for instance);
* the fraction of *saturated* outputs, for bounded activation modules (see below);
* the norm of the gradient of the layer's weight and the norm (and RMS) of the gradient with respect
  to the layer's output (the "activation gradient").

Which modules are probed: every module without children, plus every module that owns parameters
directly (``torch.nn.MultiheadAttention``, for instance); the root module only when it is itself a
single layer. A module called several times (torchvision's BasicBlock reuses one ReLU) gives one row per
call. Activations applied functionally inside a ``forward`` (``F.relu(x)``) have no module and no row.

**Depth.** The *depth layers* are the probed modules that own a parameter of two or more dimensions
(Linear, convolutions, Embedding, attention projections): the layers that set the signal's scale.
Normalisation layers and activations are reported but do not count as depth. The plot and the verdict
use the depth layers (all rows, when the model has fewer than two depth layers).

**Verdict.** The verdict looks at the *trunk*: the depth layers without the last one (the head, which
maps features to outputs, often after pooling; with fewer than three depth layers, all of them).
``forward_gain`` is the output std of the trunk's last layer over that of its first; ``backward_gain``
is the RMS of the gradient at the output of the trunk's first layer over that at its last (how much the
gradient grows on its way back to the input). The references are the first trunk layer whose output is
not all zero and the last whose gradient is not all zero, so that a branch initialised to zero (as
``zero_init_residual`` does) is not read as an explosion; with no signal (or gradient) at all the gain is 0. With ``factor`` (default 10, one order
of magnitude), the verdict is "vanishing" when either gain is below ``1 / factor``, "exploding" when
either is above ``factor`` or when any probed value is NaN or infinite, and "ok" otherwise; when one
gain vanishes and the other explodes, the one farther from 1 (in log scale) decides. A signal that is
zero from the first depth layer on counts as vanishing. The gains are per-element quantities: a layer
that changes resolution changes them by design (a 2x2 max pool halves the gradient RMS, since a quarter
of its inputs receive the whole gradient), so for networks with several pooling stages, VGG for instance,
read the per-layer rows and the plot as well as the verdict.

**Saturation.** A bounded activation's output is saturated when the activation's local derivative,
computed from the output, is below ``saturation`` (default 0.05) times its largest value: for
``Tanh``, ``1 - y**2 < 0.05``, that is ``|y| > 0.9747``; for ``Sigmoid``, ``4 y (1 - y) < 0.05``, that is
``y < 0.0128`` or ``y > 0.9872``; for ``Softsign``, ``(1 - |y|)**2 < 0.05``; for ``Hardtanh``, ``ReLU6``
and ``Hardsigmoid``, outputs at their clamp bounds (derivative 0). Other layers report ``None``.

**Backward.** Without ``loss_fn``, the backward pass starts from a fixed random cotangent: every
floating-point output tensor ``y`` contributes ``sum(y * g)`` with ``g`` drawn from N(0, 1) (seeded by
``seed``), so the gradient at the model's output has RMS 1 whatever the scale of the output, and the
gradients further down measure only how the network amplifies or damps it. The scalar differentiated is
then that random projection of the output, not a loss: the report calls it so (``loss_kind``). With
``loss_fn``, the pass starts from ``loss_fn(output)`` (a scalar, reported as the loss).

**Score.** ``report.score`` is the continuous quantity behind the verdict: log10 of the gain (forward
or backward) farther from 1, signed, over log10(``factor``). The verdict is "ok" for scores in [-1, 1],
"vanishing" below -1 and "exploding" above 1, so two near-identical curves get near-identical scores
even when they fall on either side of a threshold; summaries and plot legends show it beside the verdict.

**Plots** (:meth:`DiagnosisReport.plot`, :func:`plot_reports`, matplotlib: ``pip install
torchinit[plot]``) draw the trunk's depth layers by name; the head is drawn hollow and kept out of the
axis scale, since a classifier head after pooling sits orders of magnitude away from the trunk.

The model runs in its current mode (``train()``/``eval()``); parameter gradients that existed before the
call are restored afterwards, so :func:`diagnose` leaves no gradients behind.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

__all__ = ["LayerStats", "DiagnosisReport", "diagnose", "compare_inits", "plot_reports", "DEFAULT_FACTOR", "DEFAULT_SATURATION"]

#: Default growth/shrink factor over depth beyond which the verdict is "exploding"/"vanishing".
DEFAULT_FACTOR = 10.0
#: Default relative-derivative threshold below which a bounded activation's output counts as saturated.
DEFAULT_SATURATION = 0.05


@dataclass
class LayerStats:
    """Measurements for one call of one layer (one row of a :class:`DiagnosisReport`)."""

    index: int
    """Position in execution order (0-based)."""
    name: str
    """Qualified module name (``"features.0"``); a repeated call gets ``"#2"``, ``"#3"``... appended."""
    kind: str
    """The module's class name."""
    shape: tuple[int, ...]
    """Shape of the output tensor probed (the first floating-point tensor of the output)."""
    mean: float
    std: float
    zero_fraction: float
    """Fraction of output elements exactly equal to 0."""
    saturated_fraction: float | None
    """Fraction of saturated outputs for bounded activations (see the module docstring), else None."""
    depth_layer: bool
    """True when the module owns a parameter of 2+ dims (Linear, conv, Embedding, attention)."""
    weight_grad_norm: float | None = None
    """L2 norm of the gradient of the module's ``weight`` (or of its 2+-dim parameters), else None."""
    grad_norm: float | None = None
    """L2 norm of the gradient with respect to this call's output; None if no gradient reached it."""
    grad_rms: float | None = None
    """``grad_norm / sqrt(numel)``: comparable between layers of different sizes."""
    finite: bool = True
    """False when the output (or its gradient) holds NaN or infinity."""

    def to_dict(self) -> dict[str, Any]:
        """The row as a plain dict (JSON-serialisable)."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass
class DiagnosisReport:
    """What :func:`diagnose` measured: per-layer rows, the gains over depth and the verdict."""

    layers: list[LayerStats]
    verdict: str
    """"ok", "vanishing" or "exploding" (see the module docstring for the rule)."""
    reason: str
    """One sentence explaining the verdict with the measured gains."""
    forward_gain: float | None
    backward_gain: float | None
    factor: float
    loss: float
    """The scalar the backward pass started from: ``loss_fn(output)``, or the random projection (see ``loss_kind``)."""
    label: str | None = None
    loss_kind: str = "loss"
    """``"loss"`` (``loss_fn(output)``) or ``"random projection"`` (no ``loss_fn``: ``sum(output * g)``, g ~ N(0, 1))."""
    _depth_idx: list[int] = field(default_factory=list, repr=False)

    @property
    def score(self) -> float | None:
        """The verdict as a number: signed log10 of the gain farther from 1, over log10(factor) (None: no gain).

        In [-1, 1]: "ok"; below -1: "vanishing"; above 1: "exploding" (NaN/inf values explode whatever the score).
        """
        logs = []
        for g in (self.forward_gain, self.backward_gain):
            if g is None or math.isnan(g):
                continue
            logs.append(-math.inf if g == 0 else math.log10(g) if math.isfinite(g) else math.inf)
        if not logs:
            return None
        return max(logs, key=abs) / math.log10(self.factor)

    def trunk(self) -> list[LayerStats]:
        """The depth layers the verdict reads: without the head (the last one) when there are three or more."""
        return _trunk(self.depth_layers())

    def depth_layers(self) -> list[LayerStats]:
        """The rows used for depth (see the module docstring): depth layers, or all rows if < 2 of them."""
        return [self.layers[i] for i in self._depth_idx]

    def first_layer(self) -> LayerStats | None:
        """The first depth layer's row (the one nearest the input), or None for an empty report."""
        rows = self.depth_layers()
        return rows[0] if rows else None

    def to_dict(self) -> dict[str, Any]:
        """The report as a plain dict (JSON-serialisable)."""
        return {
            "label": self.label, "verdict": self.verdict, "reason": self.reason,
            "forward_gain": self.forward_gain, "backward_gain": self.backward_gain,
            "factor": self.factor, "score": self.score, "loss": self.loss, "loss_kind": self.loss_kind,
            "layers": [row.to_dict() for row in self.layers],
        }

    def table(self) -> str:
        """A fixed-width text table of every row, in execution order."""
        head = (f"{'#':>3}  {'layer':<28} {'type':<14} {'mean':>10} {'std':>10} {'zeros':>6} {'sat':>6} "
                f"{'|dW|':>10} {'|dy|':>10} {'rms(dy)':>10}")
        lines = [head, "-" * len(head)]
        depth = set(self._depth_idx)
        for row in self.layers:
            mark = "*" if row.index in depth else " "
            lines.append(
                f"{row.index:>3}{mark} {_clip(row.name, 28):<28} {_clip(row.kind, 14):<14} {_num(row.mean):>10} "
                f"{_num(row.std):>10} {_pct(row.zero_fraction):>6} {_pct(row.saturated_fraction):>6} "
                f"{_num(row.weight_grad_norm):>10} {_num(row.grad_norm):>10} {_num(row.grad_rms):>10}")
        return "\n".join(lines)

    def verdict_with_score(self) -> str:
        """The verdict and the score behind it: ``"ok (score -0.93)"``."""
        score = self.score
        return self.verdict if score is None else f"{self.verdict} (score {score:+.2f})"

    def summary(self) -> str:
        """One line: the label, the verdict with its score, and the reason."""
        who = f"{self.label}: " if self.label else ""
        return f"{who}verdict {self.verdict!r}, score {_score(self.score)} (ok within [-1, 1]): {self.reason}"

    def loss_text(self) -> str:
        """What the backward pass started from, named: ``loss 0.31`` or ``random projection of the output ...``."""
        if self.loss_kind == "random projection":
            return (f"backward from a random projection of the output, sum(output * g) with g ~ N(0, 1): "
                    f"{self.loss:.4g} (not a loss; pass loss_fn for one)")
        return f"loss {self.loss:.4g}"

    def __str__(self) -> str:
        return (f"{self.summary()}\n{self.table()}\n(* depth layer; zeros/sat in %; |dW| weight-gradient norm, "
                f"|dy| output-gradient norm; {self.loss_text()})")

    def plot(self, path: str | Path | None = None, title: str | None = None) -> Path:
        """Draw forward std and backward gradient RMS against depth (log scale) and save to ``path``.

        ``path`` defaults to ``diagnose-<label>.png`` (``diagnose.png`` without a label) in the current
        directory. Uses matplotlib's Agg canvas (no display needed; ``pip install torchinit[plot]``);
        the format follows the suffix (``.png``, ``.svg``, ``.pdf``). Returns the path written.
        """
        if path is None:
            path = Path("diagnose.png" if not self.label else f"diagnose-{_file_slug(self.label)}.png")
        return plot_reports({self.label or "model": self}, path, title or self.summary())


def diagnose(model: nn.Module, inputs: Any, loss_fn: Callable[[Any], torch.Tensor] | None = None, *,
             factor: float = DEFAULT_FACTOR, saturation: float = DEFAULT_SATURATION, seed: int = 0,
             label: str | None = None) -> DiagnosisReport:
    """Run one forward and one backward pass of ``model`` with hooks and report signal propagation.

    Args:
        model: the module to probe (its mode, train or eval, is used as it is).
        inputs: a tensor (``model(inputs)``), a tuple or list (``model(*inputs)``) or a dict
            (``model(**inputs)``).
        loss_fn: maps the model's output to a scalar to differentiate; None: a seeded random cotangent
            of RMS 1 at every floating output (see the module docstring).
        factor: growth or shrink of the signal or gradient over depth beyond which the verdict is
            "exploding" or "vanishing" (> 1; default 10).
        saturation: relative-derivative threshold for saturated outputs of bounded activations (in (0, 1)).
        seed: seeds the random cotangent (no effect on the global RNG).
        label: a name carried by the report (used in summaries and plot legends).

    Returns:
        A :class:`DiagnosisReport`; ``report.verdict`` is "ok", "vanishing" or "exploding".
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"torchinit.diagnose: argument 'model' must be a torch.nn.Module, got {type(model).__name__}")
    if not (isinstance(factor, (int, float)) and factor > 1):
        raise ValueError(f"torchinit.diagnose: argument 'factor' must be a number > 1, got {factor!r}")
    if not (isinstance(saturation, (int, float)) and 0 < saturation < 1):
        raise ValueError(f"torchinit.diagnose: argument 'saturation' must be in (0, 1), got {saturation!r}")
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"torchinit.diagnose: argument 'loss_fn' must be callable or None, got {type(loss_fn).__name__}")

    probes = _probed_modules(model)
    rows: list[LayerStats] = []
    row_modules: list[nn.Module] = []
    grads: dict[int, torch.Tensor] = {}
    calls: dict[int, int] = {}

    def make_hook(name: str, module: nn.Module):
        depth = _is_depth_layer(module)

        def hook(mod: nn.Module, args: Any, output: Any) -> None:
            out = _first_float_tensor(output)
            if out is None:
                return
            n = calls[id(mod)] = calls.get(id(mod), 0) + 1
            row = _forward_stats(len(rows), name if n == 1 else f"{name}#{n}", mod, out, depth, saturation)
            rows.append(row)
            row_modules.append(mod)
            if out.requires_grad:
                idx = row.index

                def keep(g: torch.Tensor) -> None:
                    grads[idx] = g.detach()
                out.register_hook(keep)
        return hook

    params = [p for p in model.parameters() if p.requires_grad]
    saved_grads = [p.grad for p in params]
    handles = [m.register_forward_hook(make_hook(name, m)) for name, m in probes]
    try:
        for p in params:
            p.grad = None
        with torch.enable_grad():
            output = _call(model, inputs)
            for h in handles:  # stop probing before the loss (loss_fn may call modules)
                h.remove()
            loss = _loss(output, loss_fn, seed)
            if loss.requires_grad:
                loss.backward()
        weight_norms = {id(m): _weight_grad_norm(m) for _, m in probes}
    finally:
        for h in handles:
            h.remove()
        for p, g in zip(params, saved_grads):
            p.grad = g

    for row, mod in zip(rows, row_modules):
        row.weight_grad_norm = weight_norms.get(id(mod))
        g = grads.get(row.index)
        if g is not None:
            gf = g.float()
            norm = float(torch.linalg.vector_norm(gf))
            row.grad_norm = norm
            row.grad_rms = norm / math.sqrt(max(gf.numel(), 1))
            if not math.isfinite(norm):
                row.finite = False
    report = _verdict(rows, float(loss.detach().float()), factor)
    report.label = label
    report.loss_kind = "loss" if loss_fn is not None else "random projection"
    return report


def compare_inits(build_model: Callable[[], nn.Module], schemes: Sequence[Any] | Mapping[str, Any], inputs: Any,
                  loss_fn: Callable[[Any], torch.Tensor] | None = None, *, path: str | Path | None = None,
                  seed: int = 0, factor: float = DEFAULT_FACTOR, title: str | None = None) -> dict[str, DiagnosisReport]:
    """Diagnose one architecture under several init schemes and overlay them in one plot.

    Args:
        build_model: called once per scheme to build a fresh model; a model itself is accepted too,
            and each scheme then gets its own deep copy (the model passed is left as it is).
        schemes: scheme names or rules for :func:`torchinit.init.apply_init` (a list; labels are their
            ``str``) or a mapping label -> scheme. Data-dependent schemes (``"lsuv"``) run on ``inputs``.
            A scheme may also be a callable ``fn(model)`` that initialises the model in place, or None to
            keep the model's own initialisation.
        inputs, loss_fn, factor: as for :func:`diagnose`.
        path: if given, the overlay plot (forward std and gradient RMS against depth) is saved there.
        seed: passed to ``apply_init`` and to :func:`diagnose`.
        title: the plot's title.

    Returns:
        label -> :class:`DiagnosisReport`, in the order given.
    """
    if isinstance(build_model, nn.Module):  # a model, not a builder: every scheme initialises its own copy
        import copy

        original = build_model
        build_model = lambda: copy.deepcopy(original)  # noqa: E731
    if not callable(build_model):
        raise TypeError("torchinit.compare_inits: argument 'build_model' must be a function that builds a fresh "
                        f"model (or a model, copied for each scheme), got {type(build_model).__name__}")
    if isinstance(schemes, Mapping):
        items = [(str(k), v) for k, v in schemes.items()]
    elif isinstance(schemes, (list, tuple)):
        items = [(_scheme_label(s), s) for s in schemes]
    else:
        raise TypeError("torchinit.compare_inits: argument 'schemes' must be a list/tuple of schemes or a mapping "
                        f"label -> scheme, got {type(schemes).__name__}")
    if not items:
        raise ValueError("torchinit.compare_inits: argument 'schemes' is empty; give at least one scheme")
    reports: dict[str, DiagnosisReport] = {}
    for label, scheme in items:
        model = build_model()
        if not isinstance(model, nn.Module):
            raise TypeError(f"torchinit.compare_inits: build_model() must return a torch.nn.Module, got {type(model).__name__}")
        _initialise(model, scheme, seed, inputs)
        reports[label] = diagnose(model, inputs, loss_fn, factor=factor, seed=seed, label=label)
    if path is not None:
        plot_reports(reports, path, title or "signal propagation by init scheme")
    return reports


# ----------------------------------------------------------------------------------------------- helpers

_SATURATING: tuple[tuple[type, Callable[[nn.Module, torch.Tensor], torch.Tensor]], ...] = (
    # (module type, relative derivative computed from the output y); checked in order with isinstance.
    (nn.Hardsigmoid, lambda m, y: ((y > 0) & (y < 1)).float()),
    (nn.Hardtanh, lambda m, y: ((y > m.min_val) & (y < m.max_val)).float()),  # ReLU6 is a Hardtanh
    (nn.Tanh, lambda m, y: 1 - y * y),
    (nn.Sigmoid, lambda m, y: 4 * y * (1 - y)),
    (nn.Softsign, lambda m, y: (1 - y.abs()) ** 2),
)


def _probed_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    seen: set[int] = set()
    out = []
    for name, m in model.named_modules():
        if id(m) in seen:
            continue
        seen.add(id(m))
        has_children = next(iter(m.children()), None) is not None
        own_params = next(iter(m.parameters(recurse=False)), None) is not None
        if m is model and has_children:
            continue
        if not has_children or own_params:
            out.append((name or type(m).__name__, m))
    return out


def _is_depth_layer(m: nn.Module) -> bool:
    return any(p.dim() >= 2 for p in m.parameters(recurse=False))


def _weight_grad_norm(m: nn.Module) -> float | None:
    w = getattr(m, "weight", None)
    chosen = [w] if isinstance(w, nn.Parameter) else [p for p in m.parameters(recurse=False) if p.dim() >= 2]
    gs = [p.grad for p in chosen if p.grad is not None]
    if not gs:
        return None
    return float(torch.sqrt(sum(torch.linalg.vector_norm(g.float()) ** 2 for g in gs)))


def _first_float_tensor(obj: Any) -> torch.Tensor | None:
    for t in _tensors(obj):
        if t.is_floating_point() or t.is_complex():
            return t
    return None


def _tensors(obj: Any) -> Iterable[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def _forward_stats(index: int, name: str, m: nn.Module, out: torch.Tensor, depth: bool,
                   saturation: float) -> LayerStats:
    with torch.no_grad():
        y = out.detach()
        y = (y.abs() if y.is_complex() else y).float()
        n = y.numel()
        mean = float(y.mean()) if n else float("nan")
        std = float(y.std(unbiased=False)) if n else float("nan")
        zeros = float((y == 0).float().mean()) if n else 0.0
        sat = None
        for kind, deriv in _SATURATING:
            if isinstance(m, kind):
                sat = float((deriv(m, y) < saturation).float().mean()) if n else 0.0
                break
        finite = bool(torch.isfinite(y).all()) if n else True
    return LayerStats(index=index, name=name, kind=type(m).__name__, shape=tuple(out.shape), mean=mean, std=std,
                      zero_fraction=zeros, saturated_fraction=sat, depth_layer=depth, finite=finite)


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (list, tuple)):
        return model(*inputs)
    return model(inputs)


def _loss(output: Any, loss_fn: Callable[[Any], torch.Tensor] | None, seed: int) -> torch.Tensor:
    if loss_fn is not None:
        loss = loss_fn(output)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError("torchinit.diagnose: argument 'loss_fn' must return a scalar tensor, got "
                             f"{type(loss).__name__}{'' if not isinstance(loss, torch.Tensor) else tuple(loss.shape)}")
        return loss.reshape(())
    outs = [t for t in _tensors(output) if t.is_floating_point()]
    if not outs:
        raise ValueError("torchinit.diagnose: the model's output holds no floating-point tensor to differentiate; "
                         "pass 'loss_fn'")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    total = outs[0].new_zeros((), dtype=torch.float32)
    for t in outs:
        g = torch.randn(t.shape, generator=gen, dtype=torch.float32).to(t.device)
        total = total + (t.float() * g).sum()
    return total


def _gain(num: float | None, den: float | None) -> float | None:
    if num is None or den is None:
        return None
    if not (math.isfinite(num) and math.isfinite(den)):
        return float("nan")
    if den == 0:
        return 0.0 if num == 0 else math.inf
    return num / den


def _trunk(depth_rows: list[LayerStats]) -> list[LayerStats]:
    # the trunk: leave out the head (the last depth layer) when there are three or more, see the module docstring
    return depth_rows[:-1] if len(depth_rows) >= 3 else depth_rows


def _verdict(rows: list[LayerStats], loss: float, factor: float) -> DiagnosisReport:
    depth_idx = [r.index for r in rows if r.depth_layer]
    if len(depth_idx) < 2:
        depth_idx = [r.index for r in rows]
    seq = _trunk([rows[i] for i in depth_idx])
    fwd = bwd = None
    if len(seq) >= 2:
        # reference: the first layer with a signal, the last with a gradient (a branch initialised to zero,
        # as zero_init_residual does, must not read as an explosion); none at all: the gain is 0
        ref_f = next((r.std for r in seq if r.std > 0 or not math.isfinite(r.std)), None)
        fwd = 0.0 if ref_f is None else _gain(seq[-1].std, ref_f)
        if any(r.grad_rms is not None for r in seq):
            ref_b = next((r.grad_rms for r in reversed(seq) if r.grad_rms is not None
                          and (r.grad_rms > 0 or not math.isfinite(r.grad_rms))), None)
            bwd = 0.0 if ref_b is None else _gain(seq[0].grad_rms or 0.0, ref_b)

    def _fmt(g: float | None) -> str:
        return "n/a" if g is None else f"{g:.3g}"

    gains = f"forward std gain {_fmt(fwd)}, backward gradient gain {_fmt(bwd)} over {len(seq)} layers"
    bad = [r for r in rows if not r.finite]
    if bad or not math.isfinite(loss) or any(g is not None and math.isnan(g) for g in (fwd, bwd)):
        where = f"layer {bad[0].name}" if bad else "the loss"
        return DiagnosisReport(rows, "exploding", f"non-finite values (NaN/inf) at {where}; {gains}",
                               fwd, bwd, factor, loss, _depth_idx=depth_idx)
    logs = []
    for what, g in (("forward signal", fwd), ("backward gradient", bwd)):
        if g is None:
            continue
        lg = -math.inf if g == 0 else math.log10(g) if math.isfinite(g) else math.inf
        if abs(lg) > math.log10(factor):
            logs.append((abs(lg), what, "vanishing" if lg < 0 else "exploding", g))
    if not logs:
        return DiagnosisReport(rows, "ok", f"{gains}, within a factor {factor:g}", fwd, bwd, factor, loss,
                               _depth_idx=depth_idx)
    _, what, verdict, g = max(logs, key=lambda t: t[0])
    change = "shrinks" if verdict == "vanishing" else "grows"
    return DiagnosisReport(rows, verdict, f"the {what} {change} by more than a factor {factor:g} over depth; {gains}",
                           fwd, bwd, factor, loss, _depth_idx=depth_idx)


def _scheme_label(scheme: Any) -> str:
    if scheme is None:
        return "default"
    if isinstance(scheme, str):
        return scheme
    return getattr(scheme, "__name__", None) or repr(scheme)


def _initialise(model: nn.Module, scheme: Any, seed: int, inputs: Any) -> None:
    if scheme is None:
        return
    try:
        from .init.apply import apply_init_with_batch
        from .init.presets import is_preset
    except ImportError as exc:  # the init package is optional for diagnose itself
        if callable(scheme) and not isinstance(scheme, (str, type)):
            scheme(model)
            return
        raise ImportError("torchinit.compare_inits: scheme names need torchinit.init.apply_init, which could not be "
                          f"imported ({exc}); pass callables fn(model) instead") from exc
    if callable(scheme) and not isinstance(scheme, (str, type)) and not is_preset(scheme):
        scheme(model)  # the caller's own fn(model); presets (called or not) go to apply_init
        return
    apply_init_with_batch(model, scheme, inputs, seed=seed)  # data-dependent schemes run on the diagnosis batch


_LINE_STYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")


def _matplotlib_figure():
    try:
        from matplotlib.figure import Figure  # no pyplot: no global state, no display backend
    except ImportError as exc:
        raise ImportError("torchinit: plotting needs matplotlib, which is not installed; "
                          "pip install torchinit[plot] (or pip install matplotlib)") from exc
    return Figure


def plot_reports(reports: Mapping[str, DiagnosisReport], path: str | Path, title: str | None = None) -> Path:
    """Overlay several reports (label -> report) in one figure: forward std and gradient RMS against depth.

    Two log-scale panels; each report is one line (its own line style and marker), labelled with its key,
    verdict and score. The x axis names the depth layers (those of the first report); the head (the last
    depth layer, left out of the verdict) is drawn hollow and does not set the axis scale. Written with
    matplotlib's Agg canvas (no display; ``pip install torchinit[plot]``); returns the path written.
    """
    if not isinstance(reports, Mapping) or not reports:
        raise ValueError("torchinit.plot_reports: argument 'reports' must be a non-empty mapping label -> "
                         f"DiagnosisReport, got {reports!r:.80}")
    for label, rep in reports.items():
        if not isinstance(rep, DiagnosisReport):
            raise TypeError(f"torchinit.plot_reports: reports[{label!r}] must be a DiagnosisReport, "
                            f"got {type(rep).__name__}")
    Figure = _matplotlib_figure()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(12, 5.2), layout="constrained")
    ax_f, ax_b = fig.subplots(1, 2)
    trunk_values: dict[Any, list[float]] = {ax_f: [], ax_b: []}
    for k, (label, rep) in enumerate(reports.items()):
        rows = rep.depth_layers()
        trunk = rep.trunk()
        style = {"linestyle": _LINE_STYLES[k % len(_LINE_STYLES)], "marker": _MARKERS[k % len(_MARKERS)], "ms": 4}
        name = f"{label}: {rep.verdict_with_score()}"
        if not any(_positive(r.std) == _positive(r.std) for r in trunk):  # NaN != NaN: nothing drawable
            name += ", zero signal: not drawn"
        depth = list(range(1, len(trunk) + 1))
        for ax, values in ((ax_f, [_positive(r.std) for r in rows]), (ax_b, [_positive(r.grad_rms) for r in rows])):
            line, = ax.plot(depth, values[:len(trunk)], label=name, **style)
            trunk_values[ax] += [v for v in values[:len(trunk)] if v == v]
            if len(rows) > len(trunk):  # the head: shown, hollow, outside the scale (set from the trunk below)
                ax.plot([len(rows)], values[len(trunk):], linestyle="none", marker=style["marker"], ms=6,
                        markerfacecolor="none", color=line.get_color())
    first = next(iter(reports.values()))
    names = [r.name for r in first.depth_layers()]
    n_trunk = len(first.trunk())
    ticks = list(range(1, len(names) + 1))
    step = max(1, math.ceil(len(names) / 40))  # at most ~40 names on the axis
    labels = [(n if i % step == 0 or i == len(names) - 1 else "") + (" (head)" if i >= n_trunk else "")
              for i, n in enumerate(names)]
    for ax, what, ylabel in ((ax_f, "forward", "output std (log scale)"),
                             (ax_b, "backward", "RMS of the gradient at the output (log scale)")):
        ax.set_yscale("log")
        if trunk_values[ax]:  # the trunk sets the scale, with a margin of a factor 2 (the head may fall outside)
            ax.set_ylim(min(trunk_values[ax]) / 2, max(trunk_values[ax]) * 2)
        ax.set_xlim(0.5, len(names) + 0.5)
        ax.set_xticks(ticks, labels, rotation=90, fontsize="x-small")
        ax.set_xlabel("depth layer (2-D+ weights), input first; hollow: the head")
        ax.set_ylabel(ylabel)
        ax.set_title(what)
        ax.grid(True, which="both", alpha=0.3)
    ax_b.legend(fontsize="small", loc="best")
    fig.suptitle(title or "signal propagation", fontsize="medium")
    fig.savefig(path, dpi=110)
    return path


def _positive(v: float | None) -> float:
    # log axes cannot show 0, None or non-finite values: they become NaN (a gap in the line)
    if v is None or not math.isfinite(v) or v <= 0:
        return float("nan")
    return v


def _score(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.2f}"


def _file_slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else "…" + s[-(n - 1):]
