"""Activation classes of other libraries (Hugging Face ``transformers``, ``timm``), known by qualified name.

Nothing here imports either library: a module is recognised by ``type(m).__module__`` and
``type(m).__qualname__`` (its class's *defining* module, e.g. ``timm.layers.activations.GELU``), and
each entry states which torchinit module computes exactly the same function, with the settings read
from the instance. The entry is a claim about the library's source as read (transformers 5.x, timm
1.0.x); :mod:`torchinit.swap.probe` checks it on every class before anything is replaced, so a
version that changed a formula is reported, not swapped.

Entries whose function torchinit does not have (``kind=None``) are listed too, so that they are
reported with the reason rather than passed over. :func:`looks_like_activation` finds the modules
no table knows that still look like activations (reported, never swapped).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..registry import QUICK_GELU_BETA  # HF QuickGELUActivation and timm QuickGELU: x * sigmoid(1.702 x)


@dataclass(frozen=True)
class Known:
    """One foreign activation class: what torchinit module computes it, with which settings.

    ``kind``: a key of :data:`torchinit.nn.ACTIVATION_MODULES`, ``"identity"`` (``nn.Identity``),
    ``"clipped_gelu"`` (:class:`torchinit.registry.ClippedGELU`), or None (no torchinit function;
    ``why_not`` says what it computes). ``settings(module)`` gives the constructor arguments.
    ``note`` goes into the report next to the replacement (e.g. a rounded constant).
    """

    qualname: str
    kind: str | None
    settings: Callable[[nn.Module], dict] = lambda m: {}
    note: str = ""
    why_not: str = ""


def _inplace(m: nn.Module) -> dict:
    """The instance's own ``inplace`` flag (timm stores it only where the forward really works in place)."""
    return {"inplace": bool(m.__dict__["inplace"])} if "inplace" in m.__dict__ else {}


def _tanh(m: nn.Module) -> dict:
    return {"approximate": "tanh"}


def _prelu(m: nn.Module) -> dict:
    return {"num_parameters": int(m.num_parameters)}


_TANH_NOTE = "python formula of GELU's tanh approximation (agrees with torch's to rounding)"

_HF = "transformers.activations."
_TIMM = "timm.layers.activations."
_TIMM_ME = "timm.layers.activations_me."

TABLE: dict[str, Known] = {k.qualname: k for k in [
    # Hugging Face transformers.activations (ACT2CLS)
    Known(_HF + "GELUTanh", "gelu", _tanh),  # F.gelu(approximate="tanh") held as a partial, or the python formula
    Known(_HF + "PytorchGELUTanh", "gelu", _tanh),  # a separate class before transformers 4.57, an alias since
    Known(_HF + "NewGELUActivation", "gelu", _tanh, _TANH_NOTE),
    Known(_HF + "GELUActivation", "gelu"),  # F.gelu, or the erf formula (use_gelu_python=True)
    Known(_HF + "FastGELUActivation", "gelu", _tanh,
          "HF rounds sqrt(2/pi) to 0.7978845608 (relative difference 4e-12, far below fp32 rounding)"),
    Known(_HF + "AccurateGELUActivation", "gelu", _tanh, _TANH_NOTE),
    Known(_HF + "QuickGELUActivation", "swish", lambda m: {"beta": QUICK_GELU_BETA}),
    Known(_HF + "ClippedGELUActivation", "clipped_gelu", lambda m: {"min_val": float(m.min), "max_val": float(m.max)}),
    Known(_HF + "SiLUActivation", "silu"),
    Known(_HF + "MishActivation", "mish"),
    Known(_HF + "ReLUSquaredActivation", "squared_relu"),
    Known(_HF + "LinearActivation", "identity"),
    Known(_HF + "LaplaceActivation", None,
          why_not="the Laplace activation 0.5 * (1 + erf((x - mu) / (sigma * sqrt(2)))) is not a torchinit function"),
    Known(_HF + "SqrtSoftplusActivation", None, why_not="sqrt(softplus(x)) is not a torchinit function"),
    Known(_HF + "XIELUActivation", None, why_not="xIELU (learnable alpha_p, alpha_n) is not a torchinit function"),
    # transformers model files
    Known("transformers.models.bloom.modeling_bloom.BloomGelu", "gelu", _tanh,
          "Bloom rounds sqrt(2/pi) to 0.79788456 (relative difference 8e-10, below fp32 rounding)"),
    # timm.layers.activations
    Known(_TIMM + "Swish", "silu", _inplace),
    Known(_TIMM + "Mish", "mish"),  # takes inplace and ignores it: computes out of place
    Known(_TIMM + "Sigmoid", "sigmoid", _inplace),
    Known(_TIMM + "Tanh", "tanh", _inplace),
    Known(_TIMM + "HardSwish", "hardswish", _inplace),
    Known(_TIMM + "HardSigmoid", "hardsigmoid", _inplace),
    Known(_TIMM + "PReLU", "prelu", _prelu),
    Known(_TIMM + "GELU", "gelu"),
    Known(_TIMM + "GELUTanh", "gelu", _tanh),
    Known(_TIMM + "QuickGELU", "swish", lambda m: {"beta": QUICK_GELU_BETA}),
    Known(_TIMM + "HardMish", None, why_not="hard mish 0.5 * x * clamp(x + 2, 0, 2) is not a torchinit function"),
    # timm.layers.activations_me (custom autograd: the probe checks the gradient too)
    Known(_TIMM_ME + "SwishMe", "silu"),
    Known(_TIMM_ME + "MishMe", "mish"),
    Known(_TIMM_ME + "HardSigmoidMe", "hardsigmoid"),
    Known(_TIMM_ME + "HardSwishMe", "hardswish"),
    Known(_TIMM_ME + "HardMishMe", None, why_not="hard mish 0.5 * x * clamp(x + 2, 0, 2) is not a torchinit function"),
]}


def qualified_name(cls: type) -> str:
    """``module.qualname`` of a class, e.g. ``"transformers.activations.NewGELUActivation"``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def known(cls: type) -> Known | None:
    """The table entry for exactly this class (by qualified name), else None."""
    return TABLE.get(qualified_name(cls))


# words in a class name (or its module's name) that suggest an activation
_ACT_NAME = re.compile(r"activation|gelu|relu|silu|swish|mish|sigmoid|tanh|softplus|softsign|hardswish|glu|"
                       r"(^|[^a-z])[cs]?elu|^act|act$", re.IGNORECASE)


def looks_like_activation(module: nn.Module) -> bool:
    """A leaf module without parameters or buffers whose class name or module suggests an activation.

    Used to report (never to swap) activation modules no table knows, e.g. a model file's own
    ``class MyGELU(nn.Module)``.
    """
    if any(v is not None for d in (module._modules, module._parameters, module._buffers) for v in d.values()):
        return False
    cls = type(module)
    return bool(_ACT_NAME.search(cls.__name__)) or "activation" in (cls.__module__ or "").lower()


__all__ = ["Known", "TABLE", "known", "qualified_name", "looks_like_activation"]
