"""torch's own OpInfo samples, in bf16 and fp16, through the Triton kernels (interpreted on CPU): within one
ulp of torch, forward and backward.

The samples, the ops and the reference results are torch's (``common_methods_invocations.op_db``); the
kernels round every result to nearest even as the GPU does (``kernels/rounding.py``), so an interpreted
half-precision result is what a GPU would store.

Where torch itself is more than one ulp from the exact value (it computes some ops in the half dtype, or
rounds intermediates: log_softmax, softsign's and glu's backward, tanhshrink, prelu's weight gradient), a
result within one ulp of torch is impossible for a correctly rounded one; there the result is held to one
ulp of the exact value instead (and torch's distance to it must exceed one ulp, or the first test applies).
"Exact" is torch's own op in fp64 on the same input, rounded once; for the ops whose torch backward is a
function of the saved *output* (sigmoid, tanh, the softmax family), torch's own backward op in fp64 on the
output the kernels saved (an exact backward cannot know more than that output).
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():  # before the kernels are imported: Triton reads it when decorating
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torchinit as ti  # noqa: E402
import torchinit.functional as F  # noqa: E402
from torchinit.backend import triton_can_run  # noqa: E402

common_methods_invocations = pytest.importorskip("torch.testing._internal.common_methods_invocations")

pytestmark = pytest.mark.skipif(not triton_can_run(torch.device("cpu")), reason="Triton's interpreter is not available")
aten = torch.ops.aten

# OpInfo name -> the torchinit function with the same signature
OPS = {
    "nn.functional.relu": F.relu, "nn.functional.relu6": F.relu6, "nn.functional.leaky_relu": F.leaky_relu,
    "nn.functional.prelu": F.prelu, "nn.functional.elu": F.elu, "nn.functional.celu": F.celu,
    "nn.functional.selu": F.selu, "nn.functional.gelu": F.gelu, "nn.functional.silu": F.silu,
    "nn.functional.mish": F.mish, "sigmoid": F.sigmoid, "tanh": F.tanh, "nn.functional.softplus": F.softplus,
    "nn.functional.hardswish": F.hardswish, "nn.functional.hardsigmoid": F.hardsigmoid,
    "nn.functional.hardtanh": F.hardtanh, "nn.functional.softsign": F.softsign,
    "nn.functional.logsigmoid": F.logsigmoid, "nn.functional.tanhshrink": F.tanhshrink,
    "nn.functional.glu": F.glu, "softmax": F.softmax, "log_softmax": F.log_softmax,
    "nn.functional.softmin": F.softmin,
}
# torch's backward of these ops reads the saved output (derivatives.yaml: ``result``): (grad, output, *args)
BACKWARD_FROM_OUTPUT = {
    "sigmoid": lambda g, y: aten.sigmoid_backward(g, y),
    "tanh": lambda g, y: aten.tanh_backward(g, y),
    "softmax": lambda g, y, dim: aten._softmax_backward_data(g, y, dim, y.dtype),
    "log_softmax": lambda g, y, dim: aten._log_softmax_backward_data(g, y, dim, y.dtype),
    "nn.functional.softmin": lambda g, y, dim: -aten._softmax_backward_data(g, y, dim, y.dtype),
}
SAMPLES_PER_OP = 6  # every op's samples with the most elements first: a handful covers each op's cases
DTYPES = [torch.bfloat16, torch.float16]


def _op_infos():
    found = {(op.name, op.variant_test_name): op for op in common_methods_invocations.op_db}
    return [found[(name, "")] for name in OPS]


def ulp_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per element, how many representable values of the (16-bit) dtype lie between ``a`` and ``b``.

    Both zeros count as one value; two NaNs are 0 apart; a NaN against a number is infinitely far.
    """
    def ordered(t):
        bits = t.contiguous().view(torch.int16).to(torch.int32)
        magnitude = bits & 0x7FFF
        return torch.where(bits < 0, -magnitude, magnitude)

    d = (ordered(a) - ordered(b)).abs().to(torch.float64)
    nan_a, nan_b = a.isnan(), b.isnan()
    d = torch.where(nan_a & nan_b, 0.0, d)
    return torch.where(nan_a ^ nan_b, float("inf"), d)


def _largest_samples(op, dtype):
    samples = list(op.sample_inputs("cpu", dtype, requires_grad=True))
    samples.sort(key=lambda s: -s.input.numel())
    return samples[:SAMPLES_PER_OP]


def _tensors(sample):
    return [sample.input] + [a for a in sample.args if torch.is_tensor(a)] + \
        [v for v in sample.kwargs.values() if torch.is_tensor(v)]


def _forward_and_grads(fn, sample, grad_out=None):
    """``fn``'s output on the sample and its gradients w.r.t. every tensor that requires grad (``grad_out``
    drawn fresh when not given); returns ``(y, grads, grad_out)``."""
    y = fn(sample.input, *sample.args, **sample.kwargs)
    if grad_out is None:
        grad_out = torch.randn(y.shape, dtype=torch.float64).to(y.dtype)
    diff = [t for t in _tensors(sample) if t.requires_grad]
    grads = torch.autograd.grad(y, diff, grad_out, allow_unused=True) if y.numel() else [None] * len(diff)
    return y.detach(), list(grads), grad_out


def _exact(op, sample, grad_out, y_saved):
    """torch's op in fp64 on the sample (forward and gradients, not yet rounded); the input gradient from
    torch's fp64 backward op on ``y_saved`` where torch's backward reads the output."""
    def up(t):
        return t.detach().double().requires_grad_(t.requires_grad) if torch.is_tensor(t) else t

    wide = type(sample)(up(sample.input), args=tuple(up(a) for a in sample.args),
                        kwargs={k: up(v) for k, v in sample.kwargs.items()})
    y, grads, _ = _forward_and_grads(op.op, wide, grad_out.double())
    if op.name in BACKWARD_FROM_OUTPUT and y.numel():
        grads[0] = BACKWARD_FROM_OUTPUT[op.name](grad_out.double(), y_saved.double(), *sample.args)
    return y, grads


def _check(name, got, torch_result, exact, where, own_saved=False):
    """One ulp of torch, or one ulp of the exact value: where torch is further than one ulp from it, or
    (``own_saved``) where ``exact`` is the backward of the output this kernel saved, which is not torch's."""
    if got.numel() == 0:
        return
    assert got.dtype == torch_result.dtype and got.shape == torch_result.shape, where
    exact = exact.to(got.dtype)
    exact_allowed = True if own_saved else ulp_distance(torch_result, exact) > 1
    bad = (ulp_distance(got, torch_result) > 1) & ~(exact_allowed & (ulp_distance(got, exact) <= 1))
    assert not bad.any(), (f"{name}: {where}: {int(bad.sum())} elements more than 1 ulp from torch "
                           f"(and from the exact value): got {got[bad][:5].tolist()}, torch "
                           f"{torch_result[bad][:5].tolist()}, exact {exact[bad][:5].tolist()}")


def _check_sample(op, fn, sample, dtype, gradients=True):
    y_ref, grads_ref, grad_out = _forward_and_grads(op.op, sample)
    with ti.use_backend("triton"):
        y, grads, _ = _forward_and_grads(fn, sample, grad_out)
    y_exact, grads_exact = _exact(op, sample, grad_out, y)
    where = f"{dtype} input {tuple(sample.input.shape)} args {sample.args} kwargs {sample.kwargs}"
    _check("forward", y, y_ref, y_exact, where)
    if not gradients:
        return
    for k, (gx, gx_ref, gx_exact) in enumerate(zip(grads, grads_ref, grads_exact)):
        if gx_ref is not None:
            assert gx is not None, where
            _check(f"gradient {k}", gx, gx_ref, gx_exact, where, own_saved=k == 0 and op.name in BACKWARD_FROM_OUTPUT)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", _op_infos(), ids=lambda op: op.name)
def test_opinfo_samples_within_one_ulp_of_torch(op, dtype):
    """Forward and every input gradient within one ulp of torch on its own samples (``grad_out`` fresh)."""
    fn = OPS[op.name]
    samples = _largest_samples(op, dtype)
    for sample in samples:
        _check_sample(op, fn, sample, dtype)
