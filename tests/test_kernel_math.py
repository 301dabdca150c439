"""The Triton math against exact fp64 formulas at the points where the old forms lost their digits, and the
half-precision entry points chosen where the result is rounded to fp16/bf16 (through Triton's interpreter).

The references are fp64 formulas that do not cancel there (``erfc`` for the erf GELU's left tail, the
exponential form of ``1 + tanh`` for the tanh GELU, ...): torch's own fp64 GELU gives -0.0 at x = -8.4,
where the exact value is -2.3e-16, so it cannot be the reference in the tails.
"""

from __future__ import annotations

import math

import pytest
import torch

import torchinit as ti
from torchinit import opdef

pytestmark = pytest.mark.skipif(not ti.backend.triton_can_run(torch.device("cpu")),
                                reason="Triton's interpreter is not available")

_F32 = lambda v: float(torch.tensor(v, dtype=torch.float32))


def _gelu_erf(x: float) -> float:
    return x * 0.5 * math.erfc(-x / math.sqrt(2.0))


def _gelu_tanh(x: float) -> float:
    u = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)
    return x / (1.0 + math.exp(-2.0 * u))  # 0.5 x (1 + tanh u), without the cancellation of 1 + tanh u


def _star_relu(x: float) -> float:
    return _F32(0.8944) * max(x, 0.0) ** 2 + _F32(-0.4472)


def _ulps(got: float, want: float) -> float:
    spacing = max(float(torch.finfo(torch.float32).tiny) * 2 ** -23, 2.0 ** (math.frexp(abs(want))[1] - 24))
    return abs(got - want) / spacing


# (name, call, exact fp64 forward, x): points of last session's worst errors (benchmarks/accuracy.py)
FORWARD = [
    ("gelu", lambda t: ti.functional.gelu(t), _gelu_erf, -12.77),
    ("gelu", lambda t: ti.functional.gelu(t), _gelu_erf, -8.375),
    ("gelu_tanh", lambda t: ti.functional.gelu(t, approximate="tanh"), _gelu_tanh, -9.16),
    ("silu", ti.functional.silu, lambda x: x / (1.0 + math.exp(-x)), -91.375),
    ("star_relu", ti.functional.star_relu, _star_relu, 0.70703125),
]


@pytest.mark.parametrize("name,call,exact,x", FORWARD, ids=[f"{n}@{x}" for n, _, _, x in FORWARD])
def test_fp32_forward_within_3_ulps_where_old_forms_cancelled(name, call, exact, x):
    xs = torch.tensor([_F32(x)], dtype=torch.float32)
    with ti.use_backend("triton"):
        got = float(call(xs))
    want = exact(float(xs))
    assert _ulps(got, want) <= 3, (name, x, got, want)


def test_fp32_softsign_backward_near_zero():
    x = torch.tensor([8.7e-5], dtype=torch.float32, requires_grad=True)
    with ti.use_backend("triton"):
        (g,) = torch.autograd.grad(ti.functional.softsign(x), x, torch.ones(1))
    want = 1.0 / (1.0 + float(x.detach())) ** 2
    assert _ulps(float(g), want) <= 2


def test_half_entry_points_run_for_half_results_only():
    from torchinit.kernels import math as kmath

    assert opdef.kernel_pair("silu", torch.bfloat16) == (kmath.silu_fwd_half, kmath.silu_bwd_half)
    assert opdef.kernel_pair("silu", torch.float16) == (kmath.silu_fwd_half, kmath.silu_bwd_half)
    assert opdef.kernel_pair("silu", torch.float32) == (kmath.silu_fwd, kmath.silu_bwd)
    assert opdef.kernel_pair("relu", torch.bfloat16) == (kmath.relu_fwd, kmath.relu_bwd)  # none: the plain pair


def test_the_unary_launcher_uses_the_half_pair_for_bf16(monkeypatch):
    from torchinit.kernels import elementwise
    from torchinit.kernels import math as kmath

    seen = []
    real = elementwise.launch_unary_forward
    monkeypatch.setattr(elementwise, "launch_unary_forward", lambda fn, *a, **k: seen.append(fn) or real(fn, *a, **k))
    x = torch.linspace(-4, 4, 64)
    with ti.use_backend("triton"):
        y16 = ti.functional.gelu(x.bfloat16(), approximate="tanh")
        ti.functional.gelu(x, approximate="tanh")
    assert seen == [kmath.gelu_tanh_fwd_half, kmath.gelu_tanh_fwd]
    exact = torch.tensor([_gelu_tanh(float(v)) for v in x.bfloat16().double()], dtype=torch.float64)
    torch.testing.assert_close(y16, exact.bfloat16(), rtol=0, atol=0)  # correctly rounded on this grid


def test_the_fewbit_forward_uses_the_half_pair_and_the_exact_mask_does_not(monkeypatch):
    """Few-bit codes compare x with the fitted bounds, so the forward may take the half pair for a bf16
    result (codes unchanged: equal to the torch path's); the 1-bit mask comes from the derivative, which
    keeps the exact pair."""
    from torchinit.kernels import bits as kbits
    from torchinit.kernels import math as kmath

    seen = []
    real = kbits.launch_pack_forward
    monkeypatch.setattr(kbits, "launch_pack_forward", lambda fwd, *a, **k: seen.append(fwd) or real(fwd, *a, **k))
    x = torch.linspace(-4, 4, 64, dtype=torch.bfloat16).requires_grad_()
    with ti.use_backend("triton"):
        y = ti.functional.gelu_fewbit(x, approximate="tanh", bits=2)
        (g,) = torch.autograd.grad(y, x, torch.ones_like(y))
    with ti.use_backend("torch"):
        y_ref = ti.functional.gelu_fewbit(x, approximate="tanh", bits=2)
        (g_ref,) = torch.autograd.grad(y_ref, x, torch.ones_like(y_ref))
    assert seen == [kmath.gelu_tanh_fwd_half]
    assert torch.equal(g, g_ref)  # the gradient comes from the codes: the same codes
    exact = torch.tensor([_gelu_tanh(float(v)) for v in x.detach().double()], dtype=torch.float64)
    torch.testing.assert_close(y.detach(), exact.bfloat16(), rtol=0, atol=0)  # correctly rounded on this grid
    seen.clear()
    with ti.use_backend("triton"):
        ti.functional.relu_bits(x)
    assert seen == [kmath.relu_fwd]
