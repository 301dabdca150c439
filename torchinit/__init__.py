"""torchinit: weight initialisation and fast, exact activation functions for PyTorch.

* ``torchinit.apply_init(model, scheme_or_rules, seed=...)`` initialises a whole model (``torchinit.init``
  holds every scheme as a ``torch.nn.init``-style function, the presets and the data-dependent inits).
* ``torchinit.nn`` holds drop-in replacements for ``torch.nn`` activations and ``torchinit.functional``
  their functional forms; :func:`use_backend` chooses the Triton kernels or the pure-torch path.
"""

from . import backend, functional, fused, init, nn, ops  # noqa: F401  (ops registers the torch.library operators)
from .backend import get_backend, use_backend, use_kernels_in_compile
from .init import InitError, InitReport, Rule, Scheme, apply_init, calculate_gain
from .swap import TORCH, SwapError, SwapReport, swap_activations
from .diagnose import DiagnosisReport, LayerStats, compare_inits, diagnose, plot_reports
from .fused import bias_act  # act(x + bias) along dim: ti.bias_act(y, conv.bias, "relu", dim=1)

__version__ = "0.1.0"

__all__ = [
    "backend", "functional", "fused", "bias_act", "init", "nn", "get_backend", "use_backend", "use_kernels_in_compile",
    "apply_init", "Rule", "calculate_gain", "InitReport", "InitError", "Scheme",
    "swap_activations", "SwapReport", "SwapError", "TORCH",
    "diagnose", "compare_inits", "plot_reports", "DiagnosisReport", "LayerStats", "__version__",
]
