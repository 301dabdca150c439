"""Activation names from model configs mapped to torchinit modules: ``get("gelu_new")`` -> a module class.

The table covers the names of timm's activation factory (``timm.layers.create_act``), of Hugging
Face's ``ACT2CLS`` (``transformers.activations``) and this project's own module names, each with its
source's meaning (the table lives in :mod:`torchinit.nn`, beside the classes it names; ``torchinit.nn.get``
is this ``get``):

* ``"gelu"``, ``"gelu_python"``: exact GELU (erf).
* ``"gelu_tanh"`` (timm), ``"gelu_new"``, ``"gelu_pytorch_tanh"``, ``"gelu_python_tanh"``,
  ``"gelu_fast"``, ``"gelu_accurate"`` (Hugging Face): GELU's tanh approximation
  ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``. Hugging Face writes it several ways
  (``gelu_fast`` rounds sqrt(2/pi) to 0.7978845608); they agree to well below fp32 resolution.
* ``"gelu_10"``: exact GELU clipped to [-10, 10] (Hugging Face's ``ClippedGELUActivation``).
* ``"quick_gelu"``: ``x * sigmoid(1.702 x)``, i.e. :class:`~torchinit.nn.Swish` with beta = 1.702.
* ``"silu"``, ``"swish"``: ``x * sigmoid(x)`` (``"swish"`` gives :class:`~torchinit.nn.Swish`, whose
  default beta = 1 is SiLU and which also takes other betas).
* ``"relu2"`` (Hugging Face), ``"squared_relu"``: ``relu(x) ** 2``; ``"star_relu"``: StarReLU.
* ``"hard_swish"``/``"hardswish"``, ``"hard_sigmoid"``/``"hardsigmoid"``: torch's hard variants.
* ``"linear"``, ``"identity"``: ``torch.nn.Identity`` (which accepts and ignores any arguments).
* ``"softmax"``, ``"log_softmax"``, ``"softmin"``: the output activations of :mod:`torchinit.softmax`.
* the rest (``"relu"``, ``"relu6"``, ``"leaky_relu"``, ``"prelu"``, ``"elu"``, ``"celu"``, ``"selu"``,
  ``"mish"``, ``"sigmoid"``, ``"tanh"``, ``"softplus"``, ``"glu"``, ...): the module of the same name.

Every class accepts ``inplace`` (timm and torchvision call ``act_layer(inplace=True)``), and takes
its source's default arguments when called with none. Names with no torchinit formula (timm's
``hard_mish``; Hugging Face's ``laplace``, ``xielu``, ``sqrtsoftplus``) are not in the table.
"""

from __future__ import annotations

# defined in torchinit.nn beside the classes they name (so nn does not import this module back)
from .nn import QUICK_GELU_BETA, ClippedGELU, Factory, GELUTanh, QuickGELU, get, names  # noqa: F401

# QUICK_GELU_BETA and Factory stay importable from here, as before
__all__ = ["ClippedGELU", "GELUTanh", "QuickGELU", "get", "names"]
