"""fp32 accuracy of every activation's Triton math, forward and backward, against torch in fp64.

Measured in Triton's interpreter (CPU): the kernels' formulas, with ``kernels/libm.py``'s primitives
(numpy in fp64, rounded once, standing in for libdevice), fp32 arithmetic as numpy does it (IEEE division).
That is the *formula* error; on a GPU libdevice's own error (1-2 ulp, documented) and ``div.full.f32``
(up to 2 ulp) come on top, which only a GPU run can measure.

Grid: every 2**13-th fp32 bit pattern of each sign (about 524k points from the smallest subnormal to the
largest finite value), so every binade is covered uniformly. Error of a result ``y`` against the fp64 value
``r``: ``|y - r| / ulp(r)`` with ``ulp`` the fp32 spacing at ``r``. Points whose fp64 value is below the
smallest normal fp32 (2**-126) are counted apart: there fp32 has fewer digits (and GPUs may flush).
Backward uses ``grad_out = 1``; for activations that save their output, backward reads the fp32 output, so
its error includes that output's rounding (as torch's own backward does). Special values (inf, NaN, +-0,
huge, the branch points) are checked separately: equal to fp64's value rounded to fp32, NaN for NaN.

``python -m benchmarks.accuracy [--json PATH]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before the kernels are imported

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

STRIDE = 1 << 13
SPECIAL = [0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e30, -1e30, 1e-30, -1e-30, 3e38, -3e38]


def _gelu64(x):
    # torch's fp64 gelu is 0.5 x (1 + erf(x / sqrt 2)): from x = -6 on, 1 + erf cancels even in fp64
    return 0.5 * x * torch.special.erfc(-x / 2 ** 0.5)


def _gelu_tanh64(x):
    # 0.5 (1 + tanh(u)) = sigmoid(2u) (torch's fp64 1 + tanh(u) cancels in the left tail)
    return x * torch.sigmoid(2 * 0.7978845608028654 * (x + 0.044715 * x ** 3))


def _tanhshrink64(x):
    # torch's fp64 x - tanh(x) cancels for tiny x (at 3e-8 it is off by a third); below 0.01 the series'
    # first four terms are exact to fp64, above it fp64 keeps 38 of its 53 bits, well past fp32's 24
    x2 = x * x
    series = x * x2 * (1 / 3 + x2 * (-2 / 15 + x2 * (17 / 315 + x2 * (-62 / 2835))))
    return torch.where(x.abs() < 0.01, series, x - torch.tanh(x))


def cases():
    """(label, torchinit function, fp64 reference) for every activation variant; a reference is torch's fp64
    function (differentiated by autograd) or, where torch's fp64 formula itself cancels, a pair
    (function, derivative) or a cancellation-free fp64 form."""
    import torchinit.functional as F

    return [
        ("relu", F.relu, TF.relu), ("relu6", F.relu6, TF.relu6), ("leaky_relu", F.leaky_relu, TF.leaky_relu),
        ("elu", F.elu, TF.elu), ("elu(alpha=-0.5)", lambda x: F.elu(x, alpha=-0.5), lambda x: TF.elu(x, alpha=-0.5)),
        ("celu(alpha=2)", lambda x: F.celu(x, alpha=2.0), lambda x: TF.celu(x, alpha=2.0)), ("selu", F.selu, TF.selu),
        ("gelu", F.gelu, _gelu64),
        ("gelu(tanh)", lambda x: F.gelu(x, approximate="tanh"), _gelu_tanh64),
        ("silu", F.silu, TF.silu), ("mish", F.mish, TF.mish), ("sigmoid", F.sigmoid, torch.sigmoid),
        ("tanh", F.tanh, torch.tanh), ("softplus", F.softplus, TF.softplus),
        ("softplus(beta=2,threshold=5)", lambda x: F.softplus(x, beta=2.0, threshold=5.0),
         lambda x: TF.softplus(x, beta=2.0, threshold=5.0)),
        ("hardswish", F.hardswish, TF.hardswish), ("hardsigmoid", F.hardsigmoid, TF.hardsigmoid),
        ("hardtanh", F.hardtanh, TF.hardtanh), ("softsign", F.softsign, (TF.softsign, lambda x: 1 / (1 + x.abs()) ** 2)),
        ("logsigmoid", F.logsigmoid, TF.logsigmoid), ("tanhshrink", F.tanhshrink, (_tanhshrink64, lambda x: torch.tanh(x) ** 2)),
        ("swish(beta=1.702)", lambda x: F.swish(x, beta=1.702), lambda x: x * torch.sigmoid(1.702 * x)),
        ("squared_relu", F.squared_relu, lambda x: torch.relu(x) ** 2),
        ("star_relu", F.star_relu, lambda x: 0.8944 * torch.relu(x) ** 2 - 0.4472),
    ]


def grid() -> torch.Tensor:
    """Every ``STRIDE``-th finite fp32 bit pattern, both signs."""
    bits = np.arange(0, 0x7F800000, STRIDE, dtype=np.int64).astype(np.uint32)
    pos = bits.view(np.float32)
    return torch.from_numpy(np.concatenate([pos, -pos]))


def _value_and_grad(fn, x):
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    (g,) = torch.autograd.grad(y, x, torch.ones_like(y))
    return y.detach(), g.detach()


def _reference(ref, x64):
    if isinstance(ref, tuple):
        fn, derivative = ref
        return fn(x64), derivative(x64)
    return _value_and_grad(ref, x64)


def ulp_errors(got: torch.Tensor, ref64: torch.Tensor) -> tuple[float, float, int]:
    """(max ulp error over normal-range references, max over subnormal references, count of mismatched
    non-finite values) of fp32 ``got`` against fp64 ``ref64``."""
    g = got.double().numpy()
    r = ref64.numpy()
    finite = np.isfinite(r)
    nonfinite_bad = int(np.sum(~finite & ~((np.isnan(r) & np.isnan(g)) | (r == g))))
    # an fp64 value beyond fp32's range rounds to inf: then got must be that inf (counted above)
    r32 = r.astype(np.float32)
    finite &= np.isfinite(r32)
    nonfinite_bad += int(np.sum(np.isfinite(r) & ~np.isfinite(r32) & (g != r32.astype(np.float64))))
    ulp = np.spacing(np.abs(r32[finite])).astype(np.float64)
    err = np.abs(g[finite] - r[finite]) / ulp
    err = np.where(np.isnan(err), np.inf, err)
    normal = np.abs(r[finite]) >= 2.0 ** -126
    return (float(err[normal].max(initial=0.0)), float(err[~normal].max(initial=0.0)), nonfinite_bad)


def special_mismatches(fn, ref, x: torch.Tensor) -> list[str]:
    """Special points (inf, NaN, +-0, huge, tiny) where the fp32 result is not torch's fp64 value rounded to
    fp32: NaN for NaN, the same infinity, a zero of the same sign, else within 2 ulp."""
    import torchinit as ti

    with ti.use_backend("triton"):
        y, g = _value_and_grad(fn, x)
    # torch's own fp64 function here (not a cancellation-free stand-in): its special values are the contract
    torch_fn = ref[0] if isinstance(ref, tuple) else ref
    torch_fn = TF.tanhshrink if torch_fn is _tanhshrink64 else torch_fn
    y64, g64 = _value_and_grad(torch_fn, x.double())
    bad = []
    for what, a, b in (("fwd", y, y64.float()), ("bwd", g, g64.float())):
        close = torch.tensor([ulp_errors(a[i:i + 1], b[i:i + 1].double())[0] <= 2 for i in range(len(a))])
        finite = a.isfinite() & b.isfinite() & (a != 0) & (b != 0)
        same = (a.isnan() & b.isnan()) | ((a == b) & (a.signbit() == b.signbit())) | (finite & close)
        bad += [f"{what}({x[i].item()}): {a[i].item()} vs {b[i].item()}" for i in range(len(x)) if not same[i]]
    return bad


def measure() -> list[dict]:
    """One row per activation: max ulp error forward/backward (normal and subnormal range), special values."""
    import torchinit as ti

    x = grid()
    special = torch.tensor(SPECIAL, dtype=torch.float32)
    rows = []
    for label, fn, ref in cases():
        with ti.use_backend("triton"):
            y, g = _value_and_grad(fn, x)
        y64, g64 = _reference(ref, x.double())
        fwd, fwd_sub, fwd_nf = ulp_errors(y, y64)
        bwd, bwd_sub, bwd_nf = ulp_errors(g, g64)
        rows.append({"activation": label, "fwd_max_ulp": fwd, "bwd_max_ulp": bwd,
                     "fwd_max_ulp_subnormal_results": fwd_sub, "bwd_max_ulp_subnormal_results": bwd_sub,
                     "nonfinite_mismatches": fwd_nf + bwd_nf,
                     "special_value_mismatches": special_mismatches(fn, ref, special)})
        print(f"{label:<30} fwd {fwd:8.2f} ulp  bwd {bwd:10.2f} ulp  (subnormal results: {fwd_sub:.0f} / "
              f"{bwd_sub:.0f})  non-finite mismatches {fwd_nf + bwd_nf}  special mismatches "
              f"{len(rows[-1]['special_value_mismatches'])}", flush=True)
    return rows


def main(argv=None) -> int:
    """Command line: print the table; ``--json PATH`` writes it."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="write the rows to this path")
    args = p.parse_args(argv)
    rows = measure()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": datetime.date.today().isoformat(), "where": "Triton interpreter (CPU), fp32",
                       "grid": f"every {STRIDE}-th fp32 bit pattern, both signs", "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
