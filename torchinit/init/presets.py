"""Presets: published initialisation recipes as lists of :class:`~torchinit.init.Rule`.

Pass the list to :func:`~torchinit.init.apply_init` (``apply_init(model, gpt2(n_layers=12), seed=0)``),
optionally with more rules after it (later rules win).
"""

from __future__ import annotations

import math
from typing import Sequence

from torch import nn

from .fans import is_norm_layer
from .rules import Rule
from .schemes import Scheme

__all__ = ["gpt2", "vit_jax", "timm", "zero_init_residual", "fixup", "residual_branches"]

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def gpt2(n_layers: int, std: float = 0.02,
         residual: Sequence[str] = ("*c_proj", "*out_proj", "*fc2", "*down_proj", "*.wo", "*.w2")) -> list[Rule]:
    """GPT-2: Linear/Conv1D and embedding weights N(0, 0.02^2), biases 0, LayerNorm 1/0; the residual
    output projections N(0, (0.02 / sqrt(2 * n_layers))^2).

    Source: Radford et al. (2019), "Language Models are Unsupervised Multitask Learners", section 2.3
    ("we scale the weights of residual layers at initialization by a factor of 1/sqrt(N) where N is the
    number of residual layers"; two per block), and the reference implementations (OpenAI's gpt-2
    ``model.py``, Hugging Face ``GPT2PreTrainedModel._init_weights``, nanoGPT's ``c_proj`` rule).

    Args:
        n_layers: transformer blocks (each contributes two residual branches).
        std: the base standard deviation.
        residual: module-name globs of the residual output projections.
    """
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"gpt2: n_layers must be a positive int, got {n_layers!r}")
    return [
        Rule(layers=(nn.Linear, "Conv1D", nn.Embedding), scheme=Scheme("normal", std=std)),
        Rule(layers=_NORMS, scheme="ones"),
        Rule(names=list(residual), params="weight", scheme=Scheme("normal", std=std / math.sqrt(2 * n_layers))),
    ]


def vit_jax(head_bias: float = 0.0) -> list[Rule]:
    """ViT as initialised in the original JAX code (big_vision / google-research/vision_transformer), as
    timm's ``init_weights_vit_jax`` reproduces it: Linear xavier-uniform with zero bias, except MLP
    biases N(0, 1e-6^2); the patch-embedding convolution LeCun normal; ``pos_embed`` N(0, 0.02^2);
    ``cls_token`` 0; the classifier head 0 (bias ``head_bias``); norms 1/0.

    Source: Dosovitskiy et al. (2021) and timm ``timm/models/vision_transformer.py``
    (``init_weights_vit_jax``).
    """
    return [
        Rule(layers=nn.Linear, scheme="xavier_uniform"),
        Rule(layers=nn.Linear, names="re:(.*\\.)?mlp(\\..*)?\\.bias", scheme=Scheme("normal", std=1e-6)),
        Rule(layers=_CONVS, scheme="lecun_normal"),
        Rule(layers=_NORMS, scheme="ones"),
        Rule(names=["pos_embed", "*.pos_embed"], scheme=Scheme("normal", std=0.02)),
        Rule(names=["cls_token", "*.cls_token", "dist_token", "*.dist_token"], scheme="zeros"),
        Rule(names=["head.weight", "head.*.weight"], scheme="zeros"),
        Rule(names=["head.bias", "head.*.bias"], scheme=Scheme("constant", val=head_bias)),
    ]


def timm(std: float = 0.02) -> list[Rule]:
    """ViT as timm initialises it by default (``init_weights_vit_timm``): Linear weights
    ``trunc_normal_(std=0.02)`` (absolute bounds +-2, so in effect untruncated), biases 0; ``pos_embed``
    trunc-normal 0.02; ``cls_token`` N(0, 1e-6^2); norms 1/0; other layers keep their default.

    Source: timm ``timm/models/vision_transformer.py`` (``init_weights_vit_timm``, ``VisionTransformer.init_weights``).
    """
    tn = Scheme("trunc_normal", std=std, a=-2.0, b=2.0)
    return [
        Rule(layers=nn.Linear, scheme=tn),
        Rule(layers=_NORMS, scheme="ones"),
        Rule(names=["pos_embed", "*.pos_embed"], scheme=tn),
        Rule(names=["cls_token", "*.cls_token", "dist_token", "*.dist_token"], scheme=Scheme("normal", std=1e-6)),
    ]


def _is_block(m: nn.Module) -> bool:
    name = type(m).__name__
    return name in ("BasicBlock", "Bottleneck") or any(k in name for k in ("Block", "Residual", "Bottleneck")) or (
        hasattr(m, "downsample") and any(isinstance(c, _CONVS) for c in m.children()))


def residual_branches(model: nn.Module) -> list[tuple[str, list[str], str | None]]:
    """Residual blocks found in ``model``: (block name, its branch's conv/linear layers in order, the last
    norm layer of the branch or None). Blocks are torchvision-style ``BasicBlock``/``Bottleneck`` or any
    module named like a block; the shortcut (``downsample``/``shortcut``) is excluded."""
    found = []
    for name, m in model.named_modules():
        if not name or not _is_block(m):
            continue
        convs: list[str] = []
        norms: list[str] = []
        for cname, child in m.named_children():
            if cname in ("downsample", "shortcut", "skip"):
                continue
            full = f"{name}.{cname}"
            if isinstance(child, _CONVS + (nn.Linear,)):
                convs.append(full)
            elif is_norm_layer(child):
                norms.append(full)
        if convs:
            found.append((name, convs, norms[-1] if norms else None))
    return found


def zero_init_residual(model: nn.Module) -> list[Rule]:
    """Zero the last normalisation weight (or, without one, the last conv) of every residual branch, so each
    block starts as the identity.

    Source: Goyal et al. (2017), "Accurate, Large Minibatch SGD", section 5.1, and torchvision's
    ``ResNet(zero_init_residual=True)``. Add these rules after the main ones.
    """
    names = [f"{norm or convs[-1]}.weight" for _, convs, norm in residual_branches(model)]
    if not names:
        raise ValueError("zero_init_residual: found no residual blocks in the model")
    return [Rule(names=names, scheme="zeros")]


def fixup(model: nn.Module, nonlinearity: str = "relu") -> list[Rule]:
    """Fixup (Zhang, Dauphin & Ma 2019, "Fixup Initialization", section 3): He init everywhere; inside each
    of the ``L`` residual branches with ``m`` weight layers, scale those layers by ``L^(-1/(2m-2))`` and
    zero the branch's last layer; zero the classifier (the last Linear). (Fixup's scalar biases and
    multipliers are architecture changes, not part of this init.)
    """
    branches = residual_branches(model)
    if not branches:
        raise ValueError("fixup: found no residual blocks in the model")
    n_branches = len(branches)
    base_gain = math.sqrt(2.0) if nonlinearity == "relu" else 1.0
    rules = [Rule(layers=_CONVS + (nn.Linear,), scheme="kaiming_normal", mode="fan_in", nonlinearity=nonlinearity)]
    for _, convs, _ in branches:
        m = len(convs)
        scale = n_branches ** (-1.0 / (2 * m - 2)) if m > 1 else 1.0
        if m > 1:
            rules.append(Rule(names=[f"{c}.weight" for c in convs[:-1]], scheme="kaiming_normal", mode="fan_in",
                              gain=base_gain * scale))
        rules.append(Rule(names=[f"{convs[-1]}.weight"], scheme="zeros"))
    linears = [n for n, mod in model.named_modules() if isinstance(mod, nn.Linear)]
    if linears:
        rules.append(Rule(names=[f"{linears[-1]}.weight", f"{linears[-1]}.bias"], scheme="zeros"))
    return rules
