"""Presets: published initialisation recipes.

One calling convention for all of them: a preset is a function of keyword options only, returning a
:class:`Preset`; whatever it needs from the model (depth, block structure, layer names) is read when
:func:`~torchinit.init.apply_init` runs. Pass it called or not::

    apply_init(model, ti.init.gpt2, seed=0)                 # default options
    apply_init(model, ti.init.gpt2(std=0.01), seed=0)
    apply_init(model, ["kaiming_normal", ti.init.zero_init_residual], seed=0)   # after other rules

Each preset's docstring lists the architectures it reproduces; on a model it does not cover it raises a
:class:`PresetError` that says what it looked for. What a preset skipped, and why, is in the report's
``notes``; its rules that match nothing in a given model (e.g. gpt2's ``Conv1D`` rule on Llama) are listed
in the report's ``unmatched`` rather than warned about one by one.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from torch import nn

from ..layers import is_hf_conv1d
from .roles import (
    checkpoint_named_modules, is_norm_layer, is_residual_projection, residual_blocks, residual_projection_patterns,
)
from .rules import Rule
from .schemes import Scheme

__all__ = ["Preset", "PresetError", "PresetPlan", "gpt2", "vit_jax", "timm", "zero_init_residual", "fixup",
           "is_preset_function", "is_preset"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


class PresetError(ValueError):
    """A preset was misused or given a model it does not cover."""


@dataclass
class PresetPlan:
    """What a preset decided for one model: its rules and notes (what it skipped and why)."""

    rules: list[Rule]
    notes: list[str] = field(default_factory=list)


class Preset:
    """A recipe with bound options; :func:`~torchinit.init.apply_init` calls :meth:`plan` with the model."""

    def __init__(self, name: str, options: dict[str, Any], build: Callable[[nn.Module], PresetPlan]) -> None:
        self.name = name
        self.options = dict(options)
        self._build = build

    def plan(self, model: nn.Module) -> PresetPlan:
        """The rules (and notes) for ``model``; raises :class:`PresetError` on a model the preset does not cover."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"torchinit.init.{self.name}: plan() needs an nn.Module, got {type(model).__name__}")
        plan = self._build(model)
        for r in plan.rules:
            r.origin = self.name
        return plan

    def __repr__(self) -> str:
        return f"{self.name}(" + ", ".join(f"{k}={v!r}" for k, v in self.options.items()) + ")"


def _preset(fn: Callable[..., Preset]) -> Callable[..., Preset]:
    """Keyword options only, with an error that names the fix for a positional argument or a misspelt option."""
    name = fn.__name__
    options = [p for p in inspect.signature(fn).parameters]

    @functools.wraps(fn)
    def make(*args: Any, **kwargs: Any) -> Preset:
        if args:
            got = type(args[0]).__name__
            raise TypeError(
                f"torchinit.init.{name}: a preset takes keyword options only ({', '.join(options) or 'none'}), got a "
                f"positional {got}; the model is read when apply_init runs: apply_init(model, ti.init.{name}) or "
                f"apply_init(model, ti.init.{name}({options[0] + '=...' if options else ''}))")
        for k in kwargs:
            if k not in options:
                close = difflib.get_close_matches(k, options, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise TypeError(f"torchinit.init.{name}: unknown option {k!r}{hint} (options: {', '.join(options) or 'none'})")
        return fn(**kwargs)

    make._torchinit_preset = True  # type: ignore[attr-defined]
    return make


def is_preset_function(obj: Any) -> bool:
    """Whether ``obj`` is a preset function (``ti.init.gpt2``), not yet called."""
    return callable(obj) and getattr(obj, "_torchinit_preset", False) is True


def is_preset(obj: Any) -> bool:
    """Whether ``obj`` is a preset, called (``ti.init.gpt2(std=0.01)``) or not (``ti.init.gpt2``): something to
    pass to :func:`~torchinit.init.apply_init`, never to call with a model (callers that accept their own
    ``fn(model)`` callables, such as ``compare_inits``, can tell them apart with this)."""
    return isinstance(obj, Preset) or is_preset_function(obj)


def _positive(name: str, arg: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise PresetError(f"torchinit.init.{name}: {arg} must be a positive number, got {v!r}")
    return float(v)


def _model_kind(model: nn.Module) -> str:
    return type(model).__name__


# -- gpt2 ---------------------------------------------------------------------------------------------------

@_preset
def gpt2(*, std: float = 0.02, n_layers: int | None = None, residual: Sequence[str] | None = None) -> Preset:
    """GPT-2's init: Linear/``Conv1D``/Embedding weights N(0, std^2), biases 0, every norm reset (weight at
    its identity value, bias 0: ``LlamaRMSNorm``, ``T5LayerNorm``, Gemma's ``1 + weight`` norm included);
    the residual output projections N(0, (std / sqrt(N))^2), N the number of residual layers.

    Reproduces Hugging Face ``GPT2PreTrainedModel._init_weights`` (GPT2Model, GPT2LMHeadModel, ...) and
    nanoGPT's ``c_proj`` rule, parameter group by parameter group. Applies the same recipe to decoder and
    encoder transformers whose residual projections it recognises (Llama, Mistral, Qwen2, Gemma, Phi-3:
    ``o_proj`` and ``down_proj``; BERT/RoBERTa: ``output.dense``; T5: ``o``, ``wo``; OPT/BART/CLIP:
    ``out_proj``, ``fc2``; see :mod:`torchinit.init.roles` for the list). Refuses models with no linear
    layer or no recognised residual projection.

    Source: Radford et al. (2019), "Language Models are Unsupervised Multitask Learners", section 2.3
    ("we scale the weights of residual layers at initialization by a factor of 1/sqrt(N) where N is the
    number of residual layers").

    Args:
        std: the base standard deviation.
        n_layers: transformer blocks; N = 2 * n_layers. By default N is the number of residual projections
            found (two per GPT-2 block, as Hugging Face's ``2 * n_layer``).
        residual: module-name globs of the residual output projections; default
            :func:`~torchinit.init.residual_projection_patterns` (extend it with
            :func:`~torchinit.init.register_residual_projection`).
    """
    std = _positive("gpt2", "std", std)
    if n_layers is not None and (isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1):
        raise PresetError(f"torchinit.init.gpt2: n_layers must be a positive int or None, got {n_layers!r}")
    if residual is not None and (isinstance(residual, str) or not all(isinstance(p, str) for p in residual)):
        raise PresetError(f"torchinit.init.gpt2: residual must be a list of glob strings, got {residual!r}")
    patterns = list(residual) if residual is not None else None

    def build(model: nn.Module) -> PresetPlan:
        pats = patterns if patterns is not None else residual_projection_patterns()
        mods = checkpoint_named_modules(model)
        if not any(isinstance(m, (nn.Linear, nn.Embedding)) or is_hf_conv1d(m) for _, m in mods):
            raise PresetError(f"torchinit.init.gpt2: {_model_kind(model)} has no Linear, Conv1D or Embedding layer; "
                              "this preset is for transformers (GPT-2, Llama, BERT, T5, ...)")
        proj = [n for n, m in mods if n and is_residual_projection(n, m, pats)]
        if not proj:
            raise PresetError(
                f"torchinit.init.gpt2: found no residual output projection in {_model_kind(model)} (module names "
                f"matching {', '.join(pats)}); name yours with gpt2(residual=[...]) or "
                "ti.init.register_residual_projection('*.your_out_proj')")
        n_res = 2 * n_layers if n_layers is not None else len(proj)
        scaled = std / math.sqrt(n_res)
        rules = [
            Rule(layers=(nn.Linear, "Conv1D", nn.Embedding), scheme=Scheme("normal", std=std),
                 label=f"gpt2: N(0, {std:g}^2)"),
            Rule(layers=is_norm_layer, scheme="norm_reset", label="gpt2: norms reset"),
            Rule(names=proj, params="weight", scheme=Scheme("normal", std=scaled),
                 label=f"gpt2: residual proj. {std:g}/sqrt({n_res})"),
        ]
        return PresetPlan(rules, [f"gpt2: {len(proj)} residual projections scaled to std {scaled:.4g} "
                                  f"(N = {n_res})"])

    return Preset("gpt2", {"std": std, "n_layers": n_layers, "residual": residual}, build)


# -- ViT ----------------------------------------------------------------------------------------------------

def _require_vit(name: str, model: nn.Module) -> None:
    params = {n.rsplit(".", 1)[-1] for n, _ in model.named_parameters()}
    mods = {n.rsplit(".", 1)[-1] for n, _ in checkpoint_named_modules(model)}
    if "pos_embed" not in params and "patch_embed" not in mods:
        raise PresetError(
            f"torchinit.init.{name}: {_model_kind(model)} has no 'pos_embed' parameter or 'patch_embed' module; this "
            "preset reproduces timm's VisionTransformer family (ViT, DeiT, ...), named as timm names them")


@_preset
def vit_jax(*, head_bias: float = 0.0) -> Preset:
    """ViT as initialised in the original JAX code (big_vision / google-research/vision_transformer), as
    timm's ``init_weights_vit_jax`` reproduces it: Linear xavier-uniform with zero bias, except MLP
    biases N(0, 1e-6^2); the patch-embedding convolution LeCun normal; ``pos_embed`` N(0, 0.02^2)
    (timm: ``trunc_normal_`` with bounds +-2, the same distribution); ``cls_token``/``reg_token``
    N(0, 1e-6^2) (timm; the JAX code uses 0); the classifier head 0 (bias ``head_bias``); norms 1/0.

    Reproduces timm ``VisionTransformer.init_weights(mode="jax")`` (ViT models named as timm names them:
    ``patch_embed``, ``pos_embed``, ``cls_token``, ``reg_token``, ``blocks.*.mlp``, ``head``). Refuses
    models with neither ``pos_embed`` nor ``patch_embed``.

    Source: Dosovitskiy et al. (2021) and timm ``timm/models/vision_transformer.py`` (``init_weights_vit_jax``).
    """
    if isinstance(head_bias, bool) or not isinstance(head_bias, (int, float)) or not math.isfinite(head_bias):
        raise PresetError(f"torchinit.init.vit_jax: head_bias must be a finite number, got {head_bias!r}")

    def build(model: nn.Module) -> PresetPlan:
        _require_vit("vit_jax", model)
        return PresetPlan([
            Rule(layers=nn.Linear, scheme="xavier_uniform", label="vit_jax: Linear"),
            Rule(layers=nn.Linear, names="re:(.*\\.)?mlp(\\..*)?\\.bias", scheme=Scheme("normal", std=1e-6),
                 label="vit_jax: MLP biases"),
            Rule(layers=_CONVS, scheme="lecun_normal", label="vit_jax: convs"),
            Rule(layers=is_norm_layer, scheme="norm_reset", label="vit_jax: norms"),
            Rule(names=["pos_embed", "*.pos_embed"], scheme=Scheme("trunc_normal", std=0.02, a=-2.0, b=2.0),
                 label="vit_jax: pos_embed"),
            Rule(names=["cls_token", "*.cls_token", "reg_token", "*.reg_token"], scheme=Scheme("normal", std=1e-6),
                 label="vit_jax: tokens"),
            Rule(names=["head.weight", "head.*.weight"], scheme="zeros", label="vit_jax: head"),
            Rule(names=["head.bias", "head.*.bias"], scheme=Scheme("constant", val=float(head_bias)),
                 label="vit_jax: head bias"),
        ])

    return Preset("vit_jax", {"head_bias": head_bias}, build)


@_preset
def timm(*, std: float = 0.02) -> Preset:
    """ViT as timm initialises it by default (``init_weights_vit_timm``): Linear weights
    ``trunc_normal_(std=0.02)`` (absolute bounds +-2, so in effect untruncated), biases 0; ``pos_embed``
    trunc-normal 0.02; ``cls_token``/``reg_token`` N(0, 1e-6^2); norms 1/0; other layers keep their default.

    Reproduces timm ``VisionTransformer`` (default ``weight_init``); refuses models with neither
    ``pos_embed`` nor ``patch_embed``.

    Source: timm ``timm/models/vision_transformer.py`` (``init_weights_vit_timm``, ``VisionTransformer.init_weights``).
    """
    std = _positive("timm", "std", std)
    tn = Scheme("trunc_normal", std=std, a=-2.0, b=2.0)

    def build(model: nn.Module) -> PresetPlan:
        _require_vit("timm", model)
        return PresetPlan([
            Rule(layers=nn.Linear, scheme=tn, label="timm: Linear"),
            Rule(layers=is_norm_layer, scheme="norm_reset", label="timm: norms"),
            Rule(names=["pos_embed", "*.pos_embed"], scheme=tn, label="timm: pos_embed"),
            Rule(names=["cls_token", "*.cls_token", "reg_token", "*.reg_token"], scheme=Scheme("normal", std=1e-6),
                 label="timm: tokens"),
        ])

    return Preset("timm", {"std": std}, build)


# -- residual CNNs ------------------------------------------------------------------------------------------

_RESIDUAL_COVERS = ("torchvision ResNet (BasicBlock, Bottleneck), MobileNetV2/V3 and EfficientNet (use_res_connect); "
                    "timm ResNet, EfficientNet/MobileNet blocks (has_skip), ConvNeXt (layer scale gamma)")


def _skipped_note(name: str, skipped: list[tuple[str, str, str]]) -> list[str]:
    if not skipped:
        return []
    by_reason: dict[str, list[str]] = {}
    for block, kind, reason in skipped:
        by_reason.setdefault(f"{kind}: {reason}", []).append(block)
    return [f"{name}: skipped {len(blocks)} block(s) ({why}): {', '.join(blocks)}" for why, blocks in by_reason.items()]


@_preset
def zero_init_residual() -> Preset:
    """Zero the last scale of every residual branch that has a skip connection, so each such block starts
    as its shortcut: the branch's layer scale (``gamma``, timm ``LayerScale``) where it has one, else its
    last normalisation weight, else its last conv/linear weight. Blocks without a skip connection (timm
    ``has_skip=False``, torchvision ``use_res_connect=False``: stride or channel changes) are left alone,
    since zeroing them would cut the signal, and listed in the report's notes with the reason.

    Reproduces torchvision's ``ResNet(zero_init_residual=True)`` and timm's ``zero_init_last`` on ResNets;
    covers {covers}. Refuses models with no residual block or none with a skip connection.

    Source: Goyal et al. (2017), "Accurate, Large Minibatch SGD", section 5.1. Add it after the main rules.
    """

    def build(model: nn.Module) -> PresetPlan:
        blocks = residual_blocks(model)
        if not blocks:
            raise PresetError(f"torchinit.init.zero_init_residual: found no residual block in {_model_kind(model)}; "
                              f"it covers {_RESIDUAL_COVERS}")
        targets, skipped = [], []
        for b in blocks:
            if not b.identity:
                skipped.append((b.name, b.kind, b.reason))
            elif b.layer_scales:
                targets.extend(b.layer_scales)
            elif b.last_norm is not None:
                targets.append(f"{b.last_norm}.weight")
            elif b.layers:
                targets.append(f"{b.layers[-1]}.weight")
            else:
                skipped.append((b.name, b.kind, "no norm, layer scale or conv/linear in its branch"))
        if not targets:
            raise PresetError(f"torchinit.init.zero_init_residual: {len(blocks)} block(s) in {_model_kind(model)} but "
                              f"none with a skip connection ({blocks[0].name}: {blocks[0].reason})")
        zeroed = len(blocks) - len(skipped)
        notes = [f"zero_init_residual: zeroed the last scale of {zeroed} of {len(blocks)} residual blocks"]
        rule = Rule(names=targets, scheme="zeros", label=f"zero_init_residual: {zeroed} branches")
        return PresetPlan([rule], notes + _skipped_note("zero_init_residual", skipped))

    return Preset("zero_init_residual", {}, build)


zero_init_residual.__doc__ = (zero_init_residual.__doc__ or "").replace("{covers}", _RESIDUAL_COVERS)


@_preset
def fixup(*, nonlinearity: str = "relu") -> Preset:
    """Fixup (Zhang, Dauphin & Ma 2019, "Fixup Initialization", section 3): He init everywhere; inside each
    of the ``L`` residual branches with ``m`` weight layers, scale those layers by ``L^(-1/(2m-2))`` and
    zero the branch's last layer; zero the classifier (the last Linear). (Fixup's scalar biases and
    multipliers are architecture changes, not part of this init.)

    Reproduces the paper's ResNet recipe on torchvision/timm ResNets (BasicBlock, Bottleneck); blocks
    without a skip connection are not residual branches and are listed in the notes. Refuses models with no
    residual block.
    """
    if not isinstance(nonlinearity, str):
        raise PresetError(f"torchinit.init.fixup: nonlinearity must be a name, got {nonlinearity!r}")

    def build(model: nn.Module) -> PresetPlan:
        blocks = residual_blocks(model)
        branches = [b for b in blocks if b.identity and b.layers]
        if not branches:
            raise PresetError(f"torchinit.init.fixup: found no residual branch in {_model_kind(model)}; it covers "
                              "ResNets (torchvision/timm BasicBlock, Bottleneck)")
        n_branches = len(branches)
        base_gain = math.sqrt(2.0) if nonlinearity == "relu" else 1.0
        rules = [Rule(layers=_CONVS + (nn.Linear,), scheme="kaiming_normal", mode="fan_in", nonlinearity=nonlinearity,
                      label="fixup: He")]
        last = []
        for b in branches:
            m = len(b.layers)
            if m > 1:
                scale = n_branches ** (-1.0 / (2 * m - 2))
                rules.append(Rule(names=[f"{c}.weight" for c in b.layers[:-1]], scheme="kaiming_normal", mode="fan_in",
                                  gain=base_gain * scale, label=f"fixup: branch x{scale:.3g}"))
            last.append(f"{b.layers[-1]}.weight")
        rules.append(Rule(names=last, scheme="zeros", label="fixup: last layer of branches"))
        linears = [n for n, mod in checkpoint_named_modules(model) if isinstance(mod, nn.Linear)]
        if linears:
            rules.append(Rule(names=[f"{linears[-1]}.weight", f"{linears[-1]}.bias"], scheme="zeros",
                              label="fixup: classifier"))
        skipped = [(b.name, b.kind, b.reason if not b.identity else "no conv/linear in its branch")
                   for b in blocks if b not in branches]
        return PresetPlan(rules, [f"fixup: {n_branches} residual branches"] + _skipped_note("fixup", skipped))

    return Preset("fixup", {"nonlinearity": nonlinearity}, build)
