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
its error includes that output's rounding (as torch's own backward does): ``bwd_max_ulp`` for sigmoid and tanh is
that design's error (where the output rounds to 1 the gradient is 0), and ``bwd_max_ulp_given_saved_output``
is the backward formula's own error, against the fp64 derivative written in terms of the saved fp32 output.
Special values (inf, NaN, +-0, huge, the branch points) are checked separately: equal to fp64's value rounded
to fp32, NaN for NaN.

Parameters: the fp32 kernels receive their parameters rounded to fp32 (swish's beta = 1.702 arrives as
1.70200002193...), as torch's fp32 kernels do, so the references use the fp32-rounded values; otherwise an
exp of beta * x at |beta x| = 88 would show 44 "ulp" that are the parameter's rounding, not the formula's.

Derivatives with a zero (silu', swish', mish', gelu', gelu_tanh' near x = -1.28, -0.75, -1.19, -0.75, -0.75):
there the derivative is the difference of two terms of size T (silu': s and x s (1 - s), T = s ~ 0.22) that
cancel, and near the zero the exact fp64 value is tiny (3e-5 at the grid point next to silu''s zero). Each
term, even correctly rounded in fp32, carries up to half an ulp of T, so no fp32 evaluation short of
double-float arithmetic for the terms themselves (exp included) gets a small *relative* error there: the
"4481 ulp" of silu' at -1.2783 is 1.4e-8, 0.6 ulp of T. So, and only where cancellation loses a bit or more
(``|f'(x)| < T(x) / 2``, a window of about +-0.3 around each zero; the JSON gives it), the error is measured in
ulps of T (absolute error relative to the typical magnitude of the result there): ``bwd_max_ulp`` excludes those windows,
``bwd_max_ulp_near_zero`` is the error there in ulps of T, and ``bwd_max_ulp_raw`` is the plain figure.

The ``_half`` entry points of ``kernels/math.py`` (the same formulas without the steps only fp32 outputs can
see) are measured where they are meant to run: on bf16 and fp16 tensors (every bf16 value of the grid, every
finite fp16 value), forward and backward through the generic kernels, in ulps of that dtype against fp64,
side by side with the exact entry points on the same inputs (``half_rows``): a correctly rounded result is
within 0.5 ulp, and the exact entry points' fp32 math is within 0.5 ulp plus a sliver.

``python -m benchmarks.accuracy [--json PATH] [--only LABEL] [--no-half]``.
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


def _f32(v: float) -> float:
    """A parameter as the fp32 kernels receive it."""
    return float(np.float32(v))


def _softplus64(x):
    return torch.where(x > 20, x, torch.log1p(torch.exp(torch.clamp(x, max=20))))


# the typical magnitude T(x) of the terms of each derivative that has a zero (see the module docstring)
ROOT_TERMS = {
    "gelu": lambda x: 0.5 * torch.special.erfc(-x / 2 ** 0.5),
    "gelu(tanh)": lambda x: torch.sigmoid(2 * 0.7978845608028654 * (x + 0.044715 * x ** 3)),
    "silu": torch.sigmoid,
    "mish": lambda x: torch.tanh(_softplus64(x)),
    "swish(beta=1.702)": lambda x: torch.sigmoid(_f32(1.702) * x),
}

# the fp64 derivative of the activations that save their output, written in terms of that output
FROM_OUTPUT = {
    "sigmoid": lambda y: y * (1 - y),
    "tanh": lambda y: 1 - y * y,
}


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
        ("swish(beta=1.702)", lambda x: F.swish(x, beta=1.702), lambda x: x * torch.sigmoid(_f32(1.702) * x)),
        ("squared_relu", F.squared_relu, lambda x: torch.relu(x) ** 2),
        ("star_relu", F.star_relu, lambda x: _f32(0.8944) * torch.relu(x) ** 2 + _f32(-0.4472)),
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


def ulp_errors(got: torch.Tensor, ref64: torch.Tensor, unit64: torch.Tensor | None = None,
               where: np.ndarray | None = None) -> tuple[float, float, int, float]:
    """(max ulp error over normal-range references, max over subnormal references, count of mismatched
    non-finite values, x index of the normal-range maximum) of fp32 ``got`` against fp64 ``ref64``.

    ``unit64`` replaces the reference as the magnitude whose fp32 ulp is the unit (the derivative-zero windows);
    ``where`` restricts the maxima to those points."""
    g = got.double().numpy()
    r = ref64.numpy()
    finite = np.isfinite(r)
    nonfinite_bad = int(np.sum(~finite & ~((np.isnan(r) & np.isnan(g)) | (r == g))))
    # an fp64 value beyond fp32's range rounds to inf: then got must be that inf (counted above)
    r32 = r.astype(np.float32)
    finite &= np.isfinite(r32)
    nonfinite_bad += int(np.sum(np.isfinite(r) & ~np.isfinite(r32) & (g != r32.astype(np.float64))))
    u = r if unit64 is None else unit64.numpy()
    ulp = np.spacing(np.abs(u.astype(np.float32))).astype(np.float64)
    with np.errstate(invalid="ignore"):
        err = np.where(finite, np.abs(g - r) / ulp, 0.0)
    err = np.where(np.isnan(err), np.inf, err)
    normal = finite & (np.abs(u) >= 2.0 ** -126)
    if where is not None:
        normal &= where
        finite &= where
    normal_err = np.where(normal, err, 0.0)
    worst = int(np.argmax(normal_err))
    return (float(normal_err.max(initial=0.0)), float(np.where(finite & ~normal, err, 0.0).max(initial=0.0)),
            nonfinite_bad, worst)


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


def measure(only=None) -> list[dict]:
    """One row per activation (or those labelled in ``only``): max ulp error forward/backward (normal and
    subnormal range, with the worst x), the derivative-zero windows and the saved-output figures, special values."""
    import torchinit as ti

    x = grid()
    xs = x.double().numpy()
    special = torch.tensor(SPECIAL, dtype=torch.float32)
    rows = []
    for label, fn, ref in cases():
        if only and label not in only:
            continue
        with ti.use_backend("triton"):
            y, g = _value_and_grad(fn, x)
        y64, g64 = _reference(ref, x.double())
        fwd, fwd_sub, fwd_nf, fwd_at = ulp_errors(y, y64)
        row = {"activation": label, "fwd_max_ulp": fwd, "fwd_worst_x": float(xs[fwd_at])}
        raw, bwd_sub, bwd_nf, raw_at = ulp_errors(g, g64)
        if label in ROOT_TERMS:
            terms = ROOT_TERMS[label](x.double()).abs()
            window = (g64.abs() < terms / 2).numpy()
            bwd, _, _, bwd_at = ulp_errors(g, g64, where=~window)
            near, _, _, near_at = ulp_errors(g, g64, unit64=terms, where=window)
            lo, hi = xs[window].min(initial=np.inf), xs[window].max(initial=-np.inf)
            row.update({"bwd_max_ulp": bwd, "bwd_worst_x": float(xs[bwd_at]), "bwd_max_ulp_raw": raw,
                        "bwd_max_ulp_near_zero": near, "bwd_near_zero_worst_x": float(xs[near_at]),
                        "bwd_near_zero_window": [float(lo), float(hi)]})
        else:
            row.update({"bwd_max_ulp": raw, "bwd_worst_x": float(xs[raw_at])})
        if label in FROM_OUTPUT:
            with ti.use_backend("triton"):
                y_saved = fn(x)
            formula, _, _, f_at = ulp_errors(g, FROM_OUTPUT[label](y_saved.double()))
            row.update({"bwd_max_ulp_given_saved_output": formula, "bwd_given_saved_output_worst_x": float(xs[f_at])})
        row.update({"fwd_max_ulp_subnormal_results": fwd_sub, "bwd_max_ulp_subnormal_results": bwd_sub,
                    "nonfinite_mismatches": fwd_nf + bwd_nf,
                    "special_value_mismatches": special_mismatches(fn, ref, special)})
        rows.append(row)
        extra = "".join(f"  {k.replace('bwd_max_ulp_', '')} {row[k]:.2f}" for k in
                        ("bwd_max_ulp_near_zero", "bwd_max_ulp_given_saved_output") if k in row)
        print(f"{label:<30} fwd {fwd:8.2f} ulp (x={row['fwd_worst_x']:.4g})  bwd {row['bwd_max_ulp']:10.2f} ulp "
              f"(x={row['bwd_worst_x']:.4g}){extra}  (subnormal results: {fwd_sub:.0f} / {bwd_sub:.0f})  "
              f"non-finite mismatches {fwd_nf + bwd_nf}  special mismatches "
              f"{len(row['special_value_mismatches'])}", flush=True)
    return rows


# label -> (kernel_name, scalars, fp64 reference) for the formulas with ``_half`` entry points
HALF_CASES = {
    "silu": ("silu", (0.0, 0.0, 0.0), TF.silu),
    "swish(beta=1.702)": ("swish", (1.702, 0.0, 0.0), lambda x: x * torch.sigmoid(_f32(1.702) * x)),
    "mish": ("mish", (0.0, 0.0, 0.0), TF.mish),
    "gelu": ("gelu", (0.0, 0.0, 0.0), _gelu64),
    "gelu(tanh)": ("gelu_tanh", (0.0, 0.0, 0.0), _gelu_tanh64),
    "elu": ("elu_from_input", (1.0, 1.0, 1.0), TF.elu),
    "softplus": ("softplus", (1.0, 20.0, 0.0), TF.softplus),
    "logsigmoid": ("logsigmoid", (0.0, 0.0, 0.0), TF.logsigmoid),
    "tanhshrink": ("tanhshrink", (0.0, 0.0, 0.0), _tanhshrink64),
}


def _half_grid(dtype: torch.dtype) -> torch.Tensor:
    """Every finite value of ``dtype`` (bf16: the fp32 grid rounded to bf16, deduplicated)."""
    if dtype == torch.float16:
        bits = torch.arange(0, 0x7C00, dtype=torch.int32).to(torch.int16).view(torch.float16)
        return torch.cat([bits, -bits])
    return torch.unique(grid().to(torch.bfloat16).float()).to(torch.bfloat16)


def _dtype_ulp_errors(got: torch.Tensor, ref64: torch.Tensor, unit64: torch.Tensor, dtype: torch.dtype) -> float:
    """Max error of ``got`` (in ``dtype``) against ``ref64`` in ulps of ``dtype`` at ``unit64`` (normal range)."""
    info = torch.finfo(dtype)
    g, r, u = got.double(), ref64, unit64.abs()
    ok = torch.isfinite(r) & (r.abs() <= info.max) & (u >= info.tiny)
    exponent = torch.floor(torch.log2(u.clamp(min=info.tiny)))
    ulp = torch.exp2(exponent - (info.nmant if hasattr(info, "nmant") else {torch.bfloat16: 7, torch.float16: 10}[dtype]))
    err = ((g - r).abs() / ulp)[ok]
    return float(torch.nan_to_num(err, nan=float("inf")).max()) if err.numel() else 0.0


def _same_specials(a: torch.Tensor, b: torch.Tensor) -> list[str]:
    """Points where two results of the same dtype differ in NaN-ness, infinity, zero sign or by more than 1 ulp."""
    a64, b64 = a.double(), b.double()
    finite = a64.isfinite() & b64.isfinite() & (a64 != 0) & (b64 != 0)
    close = finite & ((a64 - b64).abs() <= torch.maximum(a64.abs(), b64.abs()) * torch.finfo(a.dtype).eps)
    same = (a64.isnan() & b64.isnan()) | ((a64 == b64) & (a64.signbit() == b64.signbit())) | close
    return [f"{a64[i].item()} vs {b64[i].item()}" for i in range(len(a)) if not same[i]]


def half_rows() -> list[dict]:
    """Exact and ``_half`` entry points on bf16 and fp16 tensors: max error in ulps of the dtype, forward and
    backward (backward in ulps of the derivative's terms inside the derivative-zero windows, as for fp32), and
    the special values (SPECIAL and the exp overflow points) where the two entry points disagree."""
    from torchinit.kernels import elementwise as ew
    from torchinit.kernels import math as km

    rows = []
    for label, (kernel, scalars, ref) in HALF_CASES.items():
        for dtype in (torch.bfloat16, torch.float16):
            x = _half_grid(dtype)
            y64, g64 = _value_and_grad(ref, x.double())
            unit_bwd = g64
            if label in ROOT_TERMS:
                terms = ROOT_TERMS[label](x.double()).abs()
                unit_bwd = torch.where(g64.abs() < terms / 2, terms, g64)
            row = {"activation": label, "dtype": str(dtype).replace("torch.", "")}
            special = torch.tensor(SPECIAL + [88.0, -88.0, 89.0, -89.0, -104.0, 20.0, -20.0, 1e-8, -1e-8], dtype=dtype)
            outs = {}
            for variant in ("", "_half"):
                fwd, bwd = getattr(km, kernel + "_fwd" + variant), getattr(km, kernel + "_bwd" + variant)
                y = ew.launch_unary_forward(fwd, x, torch.empty_like(x), scalars)
                g = ew.launch_unary_backward(bwd, torch.ones_like(x), x, torch.empty_like(x), scalars)
                name = "half" if variant else "exact"
                row[f"{name}_fwd_max_ulp"] = _dtype_ulp_errors(y, y64, y64, dtype)
                row[f"{name}_bwd_max_ulp"] = _dtype_ulp_errors(g, g64, unit_bwd, dtype)
                outs[name] = (ew.launch_unary_forward(fwd, special, torch.empty_like(special), scalars),
                              ew.launch_unary_backward(bwd, torch.ones_like(special), special,
                                                       torch.empty_like(special), scalars))
            row["special_value_differences"] = (_same_specials(outs["half"][0], outs["exact"][0])
                                                + _same_specials(outs["half"][1], outs["exact"][1]))
            rows.append(row)
            print(f"{label:<20} {row['dtype']:<9} exact fwd {row['exact_fwd_max_ulp']:.3f} bwd {row['exact_bwd_max_ulp']:.3f}"
                  f"   _half fwd {row['half_fwd_max_ulp']:.3f} bwd {row['half_bwd_max_ulp']:.3f}  ({row['dtype']} ulps)"
                  f"  special values differing: {len(row['special_value_differences'])}",
                  flush=True)
    return rows


def main(argv=None) -> int:
    """Command line: print the table; ``--json PATH`` writes it."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="write the rows to this path")
    p.add_argument("--only", action="append", help="only this activation label (repeatable)")
    p.add_argument("--no-half", action="store_true", help="skip the bf16/fp16 check of the _half entry points")
    args = p.parse_args(argv)
    rows = measure(args.only)
    halves = [] if args.no_half or args.only else half_rows()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": datetime.date.today().isoformat(), "where": "Triton interpreter (CPU), fp32",
                       "grid": f"every {STRIDE}-th fp32 bit pattern, both signs", "rows": rows,
                       "half_rows": halves}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
