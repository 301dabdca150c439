"""torchinit's operators, gathered: importing this module registers every ``torchinit::`` operator.

Each job has its own module:

* :mod:`torchinit.layout` -- layout helpers (dense layouts, output allocation, the channel dim);
* :mod:`torchinit.opdef` -- the one way to define an operator (schema, kernel-or-torch implementation,
  fake, vmap, sharding, autograd) and its autograd Function;
* :mod:`torchinit.activation_ops` -- ``torchinit::<formula>``, ``<formula>_`` and ``<formula>_backward``
  for every formula of the activation table;
* :mod:`torchinit.param_ops` -- ``<formula>_backward_params`` of the learnable formulas, and one call's
  backward (:func:`~torchinit.param_ops.activation_backward`);
* :mod:`torchinit.activation_autograd` -- their autograd (``register_autograd`` and
  :class:`ActivationFunction`);
* :mod:`torchinit.entry` -- the entry points of :mod:`torchinit.functional`;
* :mod:`torchinit.fused.gated` -- ``glu`` (the gated-split operator with the gate in the second half) and
  the GLU family; the other fused families in :mod:`torchinit.fused`.

The names below stay importable from here for the modules that import them from this one.
"""

from __future__ import annotations

from . import activation_ops, param_ops  # noqa: F401  (register the operators)
from .activation_autograd import ActivationFunction
from .activations import channel_view
from .entry import check_input, check_tensor, run_activation, run_glu, torch_twin
from .layout import empty_like
from .param_ops import PARAM_FORMULAS, activation_backward


from .fused.gated import GluFunction  # noqa: E402  (after the names above: the fused modules import them)

__all__ = ["ActivationFunction", "GluFunction", "PARAM_FORMULAS", "activation_backward", "channel_view", "check_input",
           "check_tensor", "empty_like", "run_activation", "run_glu", "torch_twin"]
