"""Fused and memory-lean activations: the GLU family, bias + activation, learnable units, bit-packed backward.

Functions (each with its eager torch composite in :data:`TORCH_COMPOSITES`, for benchmarks):

* :func:`swiglu`, :func:`geglu` (erf or tanh), :func:`reglu`, :func:`gated` (any activation):
  ``act(gate) * up``; one-tensor form ``swiglu(x, dim=-1)`` gates the **first** half
  (``torchinit.functional.glu``, like torch's ``F.glu``, gates the *second* half).
* :func:`bias_act`: ``act(x + bias)``, bias broadcast along ``dim``, grad_bias reduced in-kernel.
* :func:`rational`: the Padé unit ``P(x) / Q(x)`` (module :class:`torchinit.nn.Rational`).
* :func:`relu_bits`, :func:`relu6_bits`, :func:`leaky_relu_bits`, :func:`hardtanh_bits`,
  :func:`prelu_bits`: a 1-bit packed mask saved for backward, exactly torch's gradient.
* :func:`gelu_fewbit`, :func:`silu_fewbit`, :func:`mish_fewbit`: an approximate few-bit backward.

PReLU's and Swish's (and StarReLU's) parameter gradients are reduced inside their backward kernel
by the core functions themselves (``torch.ops.torchinit.<formula>_backward_params``).

Byte model: memory traffic per pass in units of ``N e`` (``N`` elements of ``e`` bytes), each tensor
read or written once per kernel, parameters/bias vectors neglected; masks and codes in bytes.
"Eager" is the composite a user writes (:data:`TORCH_COMPOSITES`), one kernel per torch op.

==================  =====================  ===========================================  ============================
op                  torchinit fwd / bwd    eager fwd / bwd                              kept for backward
==================  =====================  ===========================================  ============================
swiglu(gate, up)    3 / 5                  silu 2 + mul 3 = 5 / mul-bwd 6 + silu-bwd 3  gate, up (2N) vs gate, up,
                                           = 9                                          silu(gate) (3N)
bias_act(x, b)      2 / 3                  add 2 + act 2 = 4 / act-bwd 3 + bias sum 1   x, or y for output-saving
                                           = 4                                          acts (N) vs x + b (N)
prelu (weight grad) 2 / 3                  2 / 5 (torch writes a per-element weight     x (N) vs x (N)
                                           gradient, then sums it)
swish (beta grad)   2 / 3                  mul 2 + sigmoid 2 + mul 3 = 7 / about 18     x (N) vs x, sigmoid (2N)
rational (m, n)     2 / 3                  about 2(m + n) + 3 kernels of 2-3 each way   x (N) vs about m + n tensors
relu_bits           2 + 1/8e / 2 + 1/8e    2 / 3                                        N/8 bytes vs y (N e)
gelu_fewbit (b)     2 + b/8e / 2 + b/8e    2 / 3                                        bN/8 bytes vs x (N e)
==================  =====================  ===========================================  ============================

These are counts, not timings: no GPU was available when this was written, so no speed is claimed.

Few-bit backward error: the relative L2 error of the input gradient, measured on 10**6 N(0, 1) inputs,
is about 29% (1 bit), 13-14% (2 bits) and 3-4% (4 bits, the default) for gelu, silu and mish
(``torchinit.fused.bits.FEWBIT_ERROR``; re-measured by ``tests/test_fused_memory.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as TF

from . import bias_act as _bias_act_ops  # noqa: F401  (registers the operators)
from . import bits as _bits_ops  # noqa: F401
from . import gated as _gated_ops  # noqa: F401
from . import rational as _rational_ops  # noqa: F401
from .functions import (bias_act, geglu, gated, gelu_fewbit, hardtanh_bits, leaky_relu_bits, mish_fewbit,
                        prelu_bits, rational, reglu, relu6_bits, relu_bits, silu_fewbit, swiglu)
from .rational import torch_rational


def _bias_view(bias: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
    shape = [1] * x.dim()
    shape[dim] = -1
    return bias.reshape(shape)


def _eager_bias_act(x, bias, act, dim=-1, **act_kwargs):
    fn = getattr(TF, act) if act not in ("sigmoid", "tanh") else getattr(torch, act)
    return fn(x + _bias_view(bias, x, dim), **act_kwargs)


def _eager_gated(act):
    def composite(gate, up=None, dim=-1, **kw):
        if up is None:
            gate, up = gate.chunk(2, dim)
        return act(gate, **kw) * up

    return composite


#: op name -> the eager torch composite a user would write, with the same call signature.
TORCH_COMPOSITES = {
    "swiglu": _eager_gated(TF.silu),
    "geglu": _eager_gated(TF.gelu),
    "reglu": _eager_gated(TF.relu),
    "gated": lambda gate, up=None, act="silu", dim=-1, **kw: _eager_gated(getattr(TF, act))(gate, up, dim, **kw),
    "bias_act": _eager_bias_act,
    "rational": torch_rational,
    "relu_bits": TF.relu,
    "relu6_bits": TF.relu6,
    "leaky_relu_bits": TF.leaky_relu,
    "hardtanh_bits": TF.hardtanh,
    "prelu_bits": TF.prelu,
    "gelu_fewbit": lambda x, approximate="none", bits=4: TF.gelu(x, approximate=approximate),
    "silu_fewbit": lambda x, bits=4: TF.silu(x),
    "mish_fewbit": lambda x, bits=4: TF.mish(x),
}

__all__ = ["swiglu", "geglu", "reglu", "gated", "bias_act", "rational", "relu_bits", "relu6_bits", "leaky_relu_bits",
           "hardtanh_bits", "prelu_bits", "gelu_fewbit", "silu_fewbit", "mish_fewbit"]
