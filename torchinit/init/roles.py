"""What a layer is for, across libraries: residual output projections, normalisation layers and the value
that makes a norm the identity, residual blocks and whether they have a skip connection.

Recognised by name and structure, with no import of ``transformers``, ``timm`` or ``torchvision``.

Residual output projections
---------------------------
The layer whose output is added back onto the residual stream (what GPT-2 scales by ``1/sqrt(2 N)``).
Matched as globs over module qualified names (a layer of a weight-bearing type: Linear, HF ``Conv1D``,
convolutions):

=======================  ============================================================================
pattern                  architectures
=======================  ============================================================================
``*c_proj``              GPT-2, nanoGPT (``attn.c_proj``, ``mlp.c_proj``)
``*.o_proj``             Llama, Mistral, Qwen2/3, Gemma, Phi-3 (attention output)
``*.down_proj``          Llama, Mistral, Qwen2/3, Gemma, Phi-3 (MLP output)
``*.out_proj``           ``nn.MultiheadAttention``, BART, OPT, CLIP, Whisper (attention output)
``*.wo``, ``*.o``        T5 (``DenseReluDense.wo``, ``T5Attention.o``)
``*.output.dense``       BERT, RoBERTa, HF ViT (``attention.output.dense`` and ``output.dense``)
``*.fc2``                OPT, BART, CLIP, timm ``Mlp`` (ViT, ConvNeXt MLP output)
``*.attn.proj``          timm ViT attention output
``*.w2``                 Mixtral experts, Meta's Llama reference code
``*.dense_4h_to_h``      GPT-NeoX, Falcon, Bloom (MLP output)
``*.attention.dense``    GPT-NeoX (attention output)
=======================  ============================================================================

Extend it with :func:`register_residual_projection` (process-wide) or a preset's ``residual=`` option.
"""

from __future__ import annotations

import copy
import fnmatch
import weakref
from dataclasses import dataclass, field

import torch
from torch import nn

from ..layers import is_hf_conv1d

__all__ = ["checkpoint_named_modules", "RESIDUAL_PROJECTIONS", "register_residual_projection", "residual_projection_patterns",
           "is_residual_projection", "is_norm_layer", "norm_identity_weight", "ResidualBlock",
           "residual_blocks"]

#: child attributes through which a wrapper holds the wrapped model: left out of names
_WRAPPED_ATTRS = ("_orig_mod", "_checkpoint_wrapped_module", "_fsdp_wrapped_module")
_DDP_TYPES = ("DistributedDataParallel", "DataParallel")


def checkpoint_named_modules(model: nn.Module, every_path: bool = False) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` pre-order as ``named_modules``, with names as a checkpoint of the unwrapped model
    stores them: the segments of wrappers (``torch.compile``'s ``_orig_mod``, DDP's ``module``,
    ``checkpoint_wrapper``'s ``_checkpoint_wrapped_module``, FSDP1's ``_fsdp_wrapped_module``) left out.
    A module reachable by several paths is listed once (first path), or once per path with ``every_path``."""
    out: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()

    def rec(prefix: str, m: nn.Module, on_path: frozenset[int]) -> None:
        if every_path or id(m) not in seen:
            out.append((prefix, m))
        seen.add(id(m))
        for cname, child in m._modules.items():
            if child is None or id(child) in on_path or (not every_path and id(child) in seen):
                continue
            wrapped = cname in _WRAPPED_ATTRS or (cname == "module" and type(m).__name__ in _DDP_TYPES)
            rec(prefix if wrapped else (f"{prefix}.{cname}" if prefix else cname), child, on_path | {id(child)})

    rec("", model, frozenset({id(model)}))
    return out


#: the default residual output projection globs (see the module docstring); extend with register_residual_projection
RESIDUAL_PROJECTIONS: tuple[str, ...] = (
    "*c_proj", "*.o_proj", "*.down_proj", "*.out_proj", "*.wo", "*.o", "*.output.dense", "*.fc2", "*.attn.proj",
    "*.w2", "*.dense_4h_to_h", "*.attention.dense",
)
_EXTRA: list[str] = []


def register_residual_projection(*patterns: str) -> None:
    """Add module-name globs (e.g. ``"*.proj_out"``) to the residual output projections every preset
    recognises, for this process."""
    for p in patterns:
        if not isinstance(p, str) or not p:
            raise TypeError(f"register_residual_projection: patterns must be non-empty glob strings, got {p!r}")
        if p not in _EXTRA and p not in RESIDUAL_PROJECTIONS:
            _EXTRA.append(p)


def residual_projection_patterns() -> list[str]:
    """The residual output projection globs in effect: the defaults, then the registered ones."""
    return list(RESIDUAL_PROJECTIONS) + list(_EXTRA)


def _is_projection_layer(m: nn.Module) -> bool:
    return isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) or is_hf_conv1d(m)


def is_residual_projection(name: str, m: nn.Module, patterns: list[str] | tuple[str, ...] | None = None) -> bool:
    """Whether module ``name`` is a residual output projection (a weight layer matching one of ``patterns``,
    by default :func:`residual_projection_patterns`)."""
    pats = residual_projection_patterns() if patterns is None else patterns
    return _is_projection_layer(m) and any(fnmatch.fnmatchcase(name, p) for p in pats)


# -- normalisation layers ---------------------------------------------------------------------------------

def is_norm_layer(m: nn.Module) -> bool:
    """BatchNorm/InstanceNorm/LayerNorm/GroupNorm/RMSNorm and any class whose name contains ``Norm``
    (``LlamaRMSNorm``, ``T5LayerNorm``, timm's ``BatchNormAct2d``, ...)."""
    norm_types: tuple[type, ...] = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    if hasattr(nn, "RMSNorm"):
        norm_types += (nn.RMSNorm,)
    return isinstance(m, norm_types) or "Norm" in type(m).__name__


_TORCH_NORMS: tuple[type, ...] = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm) + (
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
_IDENTITY_CACHE: "weakref.WeakKeyDictionary[nn.Module, float]" = weakref.WeakKeyDictionary()


def _probe_identity(m: nn.Module) -> float:
    """Run a copy of the norm with weight 0 (and bias 0) on a probe: output 0 means the weight multiplies
    (identity at 1); a non-zero output means the norm scales by ``1 + weight`` (identity at 0)."""
    w = m.weight
    probe = copy.deepcopy(m)
    if any(t.device.type == "meta" for t in list(probe.parameters()) + list(probe.buffers())):
        probe = probe.to_empty(device="cpu")
    probe = probe.to(device="cpu", dtype=torch.float32).eval()
    with torch.no_grad():
        for name, p in probe.named_parameters(recurse=False):
            p.zero_()
        x = torch.randn((4,) + tuple(w.shape), generator=torch.Generator().manual_seed(0))
        y = probe(x)
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        raise ValueError("not an elementwise-affine norm")
    return 1.0 if float(y.abs().max()) == 0.0 else 0.0


def norm_identity_weight(m: nn.Module) -> float:
    """The weight value that makes ``m``'s affine part the identity, as its library resets it: 1 for torch's
    norms and norms computing ``weight * x_hat`` (Llama's RMSNorm, T5's LayerNorm), 0 for norms computing
    ``(1 + weight) * x_hat`` (Gemma's RMSNorm). Found by running a copy of the norm with zero weight on a
    probe; 1 where the probe cannot run."""
    if isinstance(m, _TORCH_NORMS) or not isinstance(getattr(m, "weight", None), torch.Tensor):
        return 1.0
    if m in _IDENTITY_CACHE:
        return _IDENTITY_CACHE[m]
    try:
        value = _probe_identity(m)
    except Exception:  # noqa: BLE001 - a norm whose forward needs other inputs: torch's convention
        value = 1.0
    _IDENTITY_CACHE[m] = value
    return value


# -- residual blocks ----------------------------------------------------------------------------------------

_SHORTCUT_NAMES = ("downsample", "shortcut", "skip", "residual", "proj_shortcut")
_SIDE_BRANCHES = ("se", "attn", "aa", "drop_path", "drop_block")
_LAYER_SCALES = ("gamma", "ls", "layer_scale", "ls1", "ls2", "gamma_1", "gamma_2")
_RESIDUAL_CLASSES = ("BasicBlock", "Bottleneck", "ResBlock", "ResidualBlock", "PreActBlock", "PreActBottleneck")
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class ResidualBlock:
    """A block that may add its input back: ``identity`` says whether it does (``reason`` says how it was
    decided); ``layers`` are the branch's conv/linear layers in order (shortcut and side branches
    excluded), ``last_norm`` the branch's last norm layer, ``layer_scales`` its layer-scale parameters."""

    name: str
    kind: str
    identity: bool
    reason: str
    layers: list[str] = field(default_factory=list)
    last_norm: str | None = None
    layer_scales: list[str] = field(default_factory=list)


def _skip_flag(m: nn.Module) -> tuple[bool | None, str]:
    for attr in ("has_skip", "use_res_connect", "has_residual"):
        v = getattr(m, attr, None)
        if isinstance(v, bool):
            return v, f"{attr}={v}"
    kind = type(m).__name__
    if any(isinstance(getattr(m, a, None), nn.Module) or (a in m._modules) for a in _SHORTCUT_NAMES):
        return True, "has a shortcut (" + next(a for a in _SHORTCUT_NAMES if a in m._modules or
                                               isinstance(getattr(m, a, None), nn.Module)) + ")"
    if kind in _RESIDUAL_CLASSES or any(kind.endswith(c) for c in _RESIDUAL_CLASSES):
        return True, f"{kind} (a residual block class)"
    return None, "no skip connection found (no has_skip/use_res_connect attribute, no shortcut/downsample module)"


def _is_candidate(m: nn.Module) -> bool:
    kind = type(m).__name__
    if any(hasattr(m, a) for a in ("has_skip", "use_res_connect")):
        return True
    if kind in ("Sequential", "ModuleList", "ModuleDict") or "Stage" in kind or "Layer" in kind:
        return False
    return any(k in kind for k in ("Block", "Residual", "Bottleneck")) or (
        hasattr(m, "downsample") and any(isinstance(c, _CONVS) for c in m.children()))


def _branch(block_name: str, m: nn.Module) -> tuple[list[str], str | None, list[str]]:
    layers: list[str] = []
    norms: list[str] = []
    scales: list[str] = []
    for pname, p in m.named_parameters(recurse=False):
        if pname in _LAYER_SCALES and p is not None:
            scales.append(f"{block_name}.{pname}")

    def walk(prefix: str, mod: nn.Module) -> None:
        for cname, child in mod.named_children():
            if child is None or cname in _SHORTCUT_NAMES or cname in _SIDE_BRANCHES:
                continue
            full = f"{prefix}.{cname}"
            if cname in _LAYER_SCALES and isinstance(getattr(child, "gamma", None), torch.Tensor):
                scales.append(f"{full}.gamma")  # timm LayerScale
            elif isinstance(child, _CONVS + (nn.Linear,)) or is_hf_conv1d(child):
                layers.append(full)
            elif is_norm_layer(child) and isinstance(getattr(child, "weight", None), torch.Tensor):
                norms.append(full)
            else:
                walk(full, child)

    walk(block_name, m)
    return layers, (norms[-1] if norms else None), scales


def residual_blocks(model: nn.Module) -> list[ResidualBlock]:
    """The residual blocks of ``model`` (outermost candidates; torchvision/timm ResNet blocks, inverted
    residuals with ``has_skip``/``use_res_connect``, ConvNeXt blocks, any class named like a block),
    each with whether it has a skip connection and why."""
    found: list[ResidualBlock] = []
    inside: list[str] = []
    for name, m in checkpoint_named_modules(model):
        if not name or not _is_candidate(m) or any(name.startswith(p + ".") for p in inside):
            continue
        identity, reason = _skip_flag(m)
        layers, norm, scales = _branch(name, m)
        found.append(ResidualBlock(name, type(m).__name__, bool(identity), reason, layers, norm, scales))
        inside.append(name)
    return found
