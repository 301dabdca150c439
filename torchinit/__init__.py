"""torchinit: weight initialisation and fast, exact activation functions for PyTorch.

``torchinit.nn`` holds drop-in replacements for ``torch.nn`` activations, ``torchinit.functional``
their functional forms; :func:`use_backend` chooses the Triton kernels or the pure-torch path.
"""

from . import backend, functional, nn, ops  # noqa: F401  (ops registers the torch.library operators)
from .backend import get_backend, use_backend, use_kernels_in_compile

__version__ = "0.1.0"

__all__ = ["backend", "functional", "nn", "get_backend", "use_backend", "use_kernels_in_compile", "__version__"]
