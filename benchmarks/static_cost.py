"""Static cost of the Triton kernels on a GPU, computed without one: compile, disassemble, count, predict.

Every kernel specialisation listed by :func:`specs` is compiled ahead of time for ``sm_80`` and ``sm_90``
(``triton.compile`` on an ``ASTSource`` with a ``GPUTarget``; Triton's package carries ptxas and cuobjdump,
so no GPU or driver is needed). From the cubin: registers per thread (``cuobjdump -res-usage``), ptxas's
register-spill bytes (``ptxas -v`` on the kernel's PTX), local-memory instructions (``LDL``/``STL``) and the SASS
instructions per element
(static count of the kernel body, up to its last ``EXIT``, over the elements each thread handles).

The prediction (a model, never a measurement) for an H100/H200 SXM: 132 SMs at ~1.75 GHz, 4 schedulers
per SM issuing one warp-instruction per clock each, MUFU (exp2, rcp, ...) at 16 lanes per clock per SM;
copy bandwidth H100 ~3.0 TB/s, H200 ~4.3 TB/s (the copy bandwidths measured in this workplace, from
shared/notes/gpu-without-gpu.md; not measured by this script). Per element the kernel needs
``bytes / BW`` seconds of memory time, ``instructions / (SMs * 4 * 32 * clock)`` of issue time and
``mufu / (SMs * 16 * clock)`` of MUFU time; the predicted time is the largest of the three and the
predicted share of copy bandwidth is memory time over predicted time. Static counts over-count branchy
code (libdevice's fast and slow paths are both counted) and ignore latency: the share is a guide.

Rows named ``<formula>_half`` are the ``_half`` entry points of ``kernels/math.py`` (the same formula without the
steps only fp32 outputs can see), compiled for fp16/bf16 tensors: what a launcher that picks them for half dtypes
would run.

Run ``python -m benchmarks.static_cost`` (the representative subset), ``--all`` (every specialisation;
fails on any compile error or spill in fp32/bf16/fp16) and ``--json PATH`` to write the results;
``--from-json STATIC.json --markdown`` prints the README table, ``--from-json STATIC.json --compare RUN.json``
sets the predictions against a GPU run of ``benchmarks.run`` (``benchmarks/gpu_check.sh`` does that).
Compiled kernels are cached by Triton (``TRITON_CACHE_DIR``). TRITON_INTERPRET must be unset.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

ARCHS = (80, 90)
GPUS = {  # SMs, clock (GHz), copy bandwidth (TB/s, measured in this workplace: see the module docstring)
    "H100": {"sms": 132, "ghz": 1.75, "copy_tbps": 3.0},
    "H200": {"sms": 132, "ghz": 1.75, "copy_tbps": 4.3},
}
HALF_DTYPES = ("fp32", "bf16", "fp16")  # the dtypes that must not spill
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp64": 8}


@dataclass
class Spec:
    """One kernel specialisation: what to compile and how many elements / bytes one program handles."""

    name: str  # e.g. "unary_fwd/tanh/bf16"
    kernel: object
    signature: dict
    constexprs: dict
    num_warps: int
    elements: int  # elements per program
    bytes_per_element: int  # bytes a program moves per element (each input read once, each output written once)
    dtype: str
    aligned: tuple = ()  # names of arguments divisible by 16
    countable: bool = True  # a static count per element is meaningful (no loop over a row)
    tags: set = field(default_factory=set)
    options: dict = field(default_factory=dict)  # extra compile options (the launcher's)


def _tl_dtype(name: str):
    import triton.language as tl

    return {"fp32": tl.float32, "bf16": tl.bfloat16, "fp16": tl.float16, "fp64": tl.float64}[name]


def _compute(dtype: str):
    return _tl_dtype("fp64" if dtype == "fp64" else "fp32")


def _unary(formula: str, kernel_name: str, direction: str, dtype: str, p_mode: int = 0, variant: str = "") -> Spec:
    from torchinit.kernels import elementwise as ew
    from torchinit.kernels import math as km

    fn = getattr(km, f"{kernel_name}_{direction}{variant}")
    pbuf = "fp64" if dtype == "fp64" else "fp32"
    tensors = ["x_ptr", "y_ptr"] if direction == "fwd" else ["g_ptr", "s_ptr", "dx_ptr"]
    sig = {t: f"*{dtype}" for t in tensors}
    sig.update({"n": "i32", "params_ptr": f"*{pbuf}", "w0_ptr": f"*{dtype}", "w1_ptr": f"*{dtype}",
                "channel_stride": "i32", "channels": "i32"})
    const = {"FN": fn, "P0_MODE": p_mode, "P1_MODE": 0, "COMPUTE": _compute(dtype), "BLOCK": ew.BLOCK_CUDA,
             "WIDE": False}
    sig.update({k: "constexpr" for k in const})
    kernel = ew._unary_forward_kernel if direction == "fwd" else ew._unary_backward_kernel
    return Spec(f"unary_{direction}/{formula}{variant}/{dtype}" + (f"/p{p_mode}" if p_mode else ""), kernel, sig, const, 4,
                ew.BLOCK_CUDA, BYTES[dtype] * len(tensors), dtype, tuple(tensors) + ("n", "params_ptr"),
                tags={"activation", direction})


def _gated(name: str, kernel_name: str, saves_output: bool, direction: str, dtype: str, variant: str = "") -> Spec:
    from torchinit.kernels import gated
    from torchinit.kernels import math as km

    fwd, bwd = getattr(km, kernel_name + "_fwd" + variant), getattr(km, kernel_name + "_bwd" + variant)
    pbuf = "fp64" if dtype == "fp64" else "fp32"
    if direction == "fwd":
        tensors = ["gate_ptr", "up_ptr", "out_ptr"]
        const = {"FN": fwd, "ROUND_ACT": True, "COMPUTE": _compute(dtype), "BLOCK": gated.BLOCK_CUDA,
                 "WIDE": False, "ONE_ROW": False}
        kernel = gated._gated_forward_kernel
    else:
        tensors = ["g_ptr", "gate_ptr", "up_ptr", "dgate_ptr", "dup_ptr"]
        const = {"FWD": fwd, "BWD": bwd, "SAVES_OUTPUT": saves_output, "ROUND_ACT": True,
                 "COMPUTE": _compute(dtype), "BLOCK": gated.BLOCK_CUDA, "WIDE": False, "ONE_ROW": False}
        kernel = gated._gated_backward_kernel
    sig = {t: f"*{dtype}" for t in tensors}
    sig.update({"n": "i32", "inner": "i32", "row_stride": "i32", "params_ptr": f"*{pbuf}"})
    sig.update({k: "constexpr" for k in const})
    return Spec(f"gated_{direction}/{name}{variant}/{dtype}", kernel, sig, const, 4, gated.BLOCK_CUDA,
                BYTES[dtype] * len(tensors), dtype, tuple(tensors) + ("n", "inner", "row_stride", "params_ptr"),
                tags={"gated", direction})


def _bias_act(formula: str, kernel_name: str, dtype: str, variant: str = "") -> Spec:
    """bias_act's forward for a bias along the contiguous last dim, C a multiple of 1024 (``INNER_ONE``: the
    launcher's (rows, channel tiles) grid of 1024-channel tiles; C divisible by 16, as those launches specialise;
    every lane of a tile valid)."""
    from torchinit.kernels import channel_reduce as cr
    from torchinit.kernels import math as km

    pbuf = "fp64" if dtype == "fp64" else "fp32"
    const = {"FN": getattr(km, kernel_name + "_fwd" + variant), "Z_DTYPE": _tl_dtype(dtype), "COMPUTE": _compute(dtype),
             "BLOCK": 1024, "WIDE": False, "INNER_ONE": True}
    sig = {"x_ptr": f"*{dtype}", "b_ptr": f"*{dtype}", "y_ptr": f"*{dtype}", "n": "i32", "C": "i32", "inner": "i32",
           "params_ptr": f"*{pbuf}", "inner_magic": "i32", "inner_shift": "i32", "c_magic": "i32", "c_shift": "i32"}
    sig.update({k: "constexpr" for k in const})
    return Spec(f"bias_act_fwd/{formula}{variant}/{dtype}", cr._bias_act_forward_kernel, sig, const, 4, 1024,
                BYTES[dtype] * 2, dtype, ("x_ptr", "b_ptr", "y_ptr", "n", "C", "params_ptr"), tags={"bias_act", "fwd"})


def _bias_act_bwd(formula: str, kernel_name: str, saves_output: bool, dtype: str, channels: int = 768,
                  variant: str = "") -> Spec:
    """bias_act's backward (``dx`` and the bias-gradient partial sums in one pass) for a bias along the
    contiguous last dim of ``channels``, as after a Linear; the tile walk loops ``ITERS`` times, so the
    static count (prologue and epilogue included) over one iteration's elements is an upper bound."""
    from torchinit.kernels import channel_reduce as cr
    from torchinit.kernels import math as km

    acc = "fp64" if dtype == "fp64" else "fp32"
    block_c = min(triton_next_pow2(channels), 64)
    block_j = cr.BLOCK_CUDA // block_c
    bwd = getattr(km, kernel_name + "_bwd" + variant)
    sig = {"g_ptr": f"*{dtype}", "s_ptr": f"*{dtype}", "b_ptr": f"*{dtype}", "w0_ptr": f"*{dtype}",
           "w1_ptr": f"*{dtype}", "dx_ptr": f"*{dtype}", "part_ptr": f"*{acc}", "params_ptr": f"*{acc}",
           "J": "i32", "C": "i32", "inner": "constexpr", "n_programs_j": "i32", "ITERS": "i32"}
    const = {"inner": 1, "BWD": bwd, "PGRAD": bwd, "BIAS": True, "SAVES_OUTPUT": saves_output, "W0_MODE": 0,
             "W1_MODE": 0, "N_PART": 0, "Z_DTYPE": _tl_dtype(dtype), "COMPUTE": _compute(dtype),
             "BLOCK_J": block_j, "BLOCK_C": block_c}
    sig.update({k: "constexpr" for k in const})
    sig = {a: sig[a] for a in cr._channel_backward_kernel.arg_names}
    return Spec(f"bias_act_bwd/{formula}{variant}/{dtype}", cr._channel_backward_kernel, sig, const, 4, block_j * block_c,
                BYTES[dtype] * 3, dtype, ("g_ptr", "s_ptr", "b_ptr", "dx_ptr", "part_ptr", "params_ptr", "C"),
                tags={"bias_act", "bwd"})


def _softmax(direction: str, n: int, dtype: str, log: bool = False) -> Spec:
    from torchinit.kernels import softmax as sm

    one_pass = n <= (sm.SINGLE_PASS_MAX_CUDA if direction == "fwd" else sm.SINGLE_PASS_MAX_BACKWARD_CUDA)
    block = triton_next_pow2(n if one_pass else sm.CHUNK_CUDA)
    rows = max(1, sm.TILE_CUDA // block)
    warps = min(32, triton_next_pow2(max(1, block * rows // 1024)))
    if direction == "fwd":
        tensors, strides = ["x_ptr", "y_ptr"], ["xs0", "xs1", "ys0", "ys1"]
        const = {"LOG": log, "ROUND_IN": False, "COMPUTE": _compute(dtype), "ROWS": rows, "BLOCK": block}
        kernel = sm._softmax_fwd_one_pass if one_pass else sm._softmax_fwd_online
        unit = ("xsn", "ysn")
    else:
        tensors, strides = ["g_ptr", "y_ptr", "dx_ptr"], ["gs0", "gs1", "ys0", "ys1", "ds0", "ds1"]
        const = {"LOG": log, "ROUND_OUT": False, "COMPUTE": _compute(dtype), "ROWS": rows, "BLOCK": block}
        kernel = sm._softmax_bwd_one_pass if one_pass else sm._softmax_bwd_online
        unit = ("gsn", "ysn", "dsn")
    sig = {t: f"*{dtype}" for t in tensors}
    sig.update({"rows": "i32", "n": "i32", "b1": "constexpr"})
    sig.update({s: "i32" for s in strides})
    sig.update({u: "constexpr" for u in unit})
    const.update({"b1": 1, **{u: 1 for u in unit}})
    sig.update({k: "constexpr" for k in const})
    # the kernel's parameter order matters for ASTSource: rebuild the signature in the function's order
    order = kernel.arg_names
    sig = {a: sig[a] for a in order}
    name = ("log_softmax" if log else "softmax") + f"_{direction}/n={n}/{dtype}"
    return Spec(name, kernel, sig, const, warps, block * rows, BYTES[dtype] * len(tensors), dtype,
                tuple(tensors) + ("n", "rows") + tuple(strides), countable=one_pass, tags={"softmax", direction})


def _softmax_strided(direction: str, n: int, dtype: str) -> Spec:
    """Softmax over a non-last dim (rows strided, two batch groups): every stride a runtime argument."""
    spec = _softmax(direction, n, dtype)
    for name in ("b1", "xsn", "ysn", "gsn", "dsn"):
        if name in spec.constexprs:
            del spec.constexprs[name]
            spec.signature[name] = "i32"
    spec.name = spec.name.replace("_" + direction + "/", "_" + direction + "/strided/")
    spec.countable = False  # strided loads: the per-element count is not a bandwidth figure
    return spec


def _bits(direction: str, kernel_name: str, saves_output: bool, dtype: str, bits: int, fewbit: bool) -> Spec:
    """The packed-code kernels (1-bit exact mask, or few-bit codes) of ``kernels/bits.py``."""
    from torchinit.kernels import bits as kb
    from torchinit.kernels import math as km

    pbuf = "fp64" if dtype == "fp64" else "fp32"
    fwd, bwd = getattr(km, kernel_name + "_fwd"), getattr(km, kernel_name + "_bwd")
    if fewbit and dtype in ("bf16", "fp16"):  # as launched (fused/bits.py): few-bit codes do not use the derivative
        fwd = getattr(km, kernel_name + "_fwd_half", fwd)
    per = kb.BYTES_CUDA * (8 // bits)
    if direction == "fwd":
        sig = {"x_ptr": f"*{dtype}", "y_ptr": f"*{dtype}", "code_ptr": "*u8", "n": "i32", "n_bytes": "i32",
               "params_ptr": f"*{pbuf}", "w_ptr": f"*{dtype}", "channel_stride": "i32", "channels": "i32",
               "surrogate_ptr": f"*{pbuf}", "bounds_ptr": f"*{pbuf}"}
        const = {"FWD": fwd, "BWD": bwd, "SAVES_OUTPUT": saves_output, "W_MODE": 0, "FEWBIT": fewbit, "BITS": bits,
                 "N_BOUNDS": (1 << bits) - 1 if fewbit else 0, "COMPUTE": _compute(dtype), "BYTES": kb.BYTES_CUDA}
        kernel, moved = kb._pack_forward_kernel, 2 * BYTES[dtype] + bits / 8
    else:
        sig = {"g_ptr": f"*{dtype}", "code_ptr": "*u8", "dx_ptr": f"*{dtype}", "n": "i32", "params_ptr": f"*{pbuf}",
               "w_ptr": f"*{dtype}", "channel_stride": "i32", "channels": "i32", "surrogate_ptr": f"*{pbuf}",
               "levels_ptr": f"*{pbuf}"}
        const = {"BWD": bwd, "W_MODE": 0, "FEWBIT": fewbit, "BITS": bits, "COMPUTE": _compute(dtype),
                 "BYTES": kb.BYTES_CUDA}
        kernel, moved = kb._unpack_backward_kernel, 2 * BYTES[dtype] + bits / 8
    sig.update({k: "constexpr" for k in const})
    mode = f"fewbit{bits}" if fewbit else "bit"
    return Spec(f"bits_{direction}/{kernel_name}/{mode}/{dtype}", kernel, sig, const, 4, per, moved, dtype,
                tuple(k for k in sig if k.endswith("_ptr")) + ("n",), tags={"bits", direction})


def _rational(direction: str, dtype: str, m: int = 5, n_den: int = 4) -> Spec:
    """The rational (Pade) unit of ``kernels/rational.py`` with an (m, n) = (5, 4) polynomial pair."""
    from torchinit.kernels import rational as kr

    if direction == "fwd":
        sig = {"x_ptr": f"*{dtype}", "a_ptr": f"*{dtype}", "b_ptr": f"*{dtype}", "y_ptr": f"*{dtype}", "n": "i32"}
        kernel, countable = kr._rational_forward_kernel, True
    else:
        sig = {"g_ptr": f"*{dtype}", "x_ptr": f"*{dtype}", "a_ptr": f"*{dtype}", "b_ptr": f"*{dtype}",
               "dx_ptr": f"*{dtype}", "part_ptr": f"*{'fp64' if dtype == 'fp64' else 'fp32'}", "n": "i32",
               "ITERS": "i32"}
        kernel, countable = kr._rational_backward_kernel, False
    const = {"M": m, "N": n_den, "COMPUTE": _compute(dtype), "BLOCK": kr.BLOCK_CUDA}
    sig.update({k: "constexpr" for k in const})
    tensors = [k for k in sig if k.endswith("_ptr") and k not in ("a_ptr", "b_ptr", "part_ptr")]
    return Spec(f"rational_{direction}/{m}x{n_den}/{dtype}", kernel, sig, const, 4, kr.BLOCK_CUDA,
                BYTES[dtype] * len(tensors), dtype, tuple(tensors) + ("n",), countable=countable,
                tags={"rational", direction})


def _sampler(kind: str, dtype: str) -> Spec:
    """The one-pass init sampler of ``kernels/sampling.py`` (uniform, normal, truncated normal)."""
    from torchinit.kernels import sampling as ks

    sig = {"out_ptr": f"*{dtype}", "seed": "i64", "start": "i64", "n": "i64", "g_first": "i64",
           **{k: "fp32" for k in ("s0", "s1", "p_lo", "p_span", "zlo", "zhi", "lo_clip", "hi_clip")}}
    const = {"KIND": ks._KIND[kind], "BLOCK": ks._BLOCK}
    sig.update({k: "constexpr" for k in const})
    # 4 elements per Philox counter; only the output is written
    return Spec(f"sampler/{kind}/{dtype}", ks._sample_kernel, sig, const, ks.NUM_WARPS_CUDA, 4 * ks._BLOCK,
                BYTES[dtype], dtype,
                ("out_ptr",), tags={"sampler"}, options={"enable_fp_fusion": False})


def triton_next_pow2(n: int) -> int:
    """The smallest power of two >= n."""
    return 1 << max(0, (n - 1).bit_length())


GATED = [("glu", "sigmoid", True), ("swiglu", "silu", False), ("geglu", "gelu", False),
         ("geglu_tanh", "gelu_tanh", False), ("reglu", "relu", True)]
HALF = "_half"  # kernels/math.py's entry points for fp16/bf16 tensors (``<kernel>_fwd_half``), where a formula has them


def has_half(kernel_name: str) -> bool:
    """Whether ``kernels/math.py`` has ``_half`` entry points for this formula."""
    from torchinit.kernels import math as km

    return hasattr(km, kernel_name + "_fwd" + HALF) and hasattr(km, kernel_name + "_bwd" + HALF)


def specs(full: bool = False, dtypes=None) -> list[Spec]:
    """The specialisations to compile: ``full`` = every formula x dtype x direction (and fp64, parameter
    modes, gated/bias_act for every formula, softmax rows of 1k/32k/131k); else a representative subset.
    ``dtypes`` narrows the storage dtypes (default: all four with ``full``, fp32 and bf16 without)."""
    from torchinit.activations import FORMULAS

    out: list[Spec] = []
    dtypes = dtypes or (("fp32", "bf16", "fp16", "fp64") if full else ("fp32", "bf16"))
    formulas = [(k, f.kernel_name, f.saves == "output") for k, f in FORMULAS.items()]
    if not full:
        keep = {"relu", "sigmoid", "tanh", "silu", "mish", "gelu", "gelu_tanh", "elu", "softplus"}
        formulas = [f for f in formulas if f[0] in keep]
    halves = [d for d in dtypes if d in ("bf16", "fp16")]
    for name, kernel_name, _ in formulas:
        for dtype in dtypes:
            for direction in ("fwd", "bwd"):
                out.append(_unary(name, kernel_name, direction, dtype))
        for dtype in halves if has_half(kernel_name) else ():
            for direction in ("fwd", "bwd"):
                out.append(_unary(name, kernel_name, direction, dtype, variant=HALF))
    if full:
        for dtype in dtypes:
            out.append(_unary("prelu", "prelu", "fwd", dtype, p_mode=2))
            out.append(_unary("prelu", "prelu", "bwd", dtype, p_mode=2))
    for name, kernel_name, saves_output in (GATED if full else GATED[:2]):
        for dtype in dtypes:
            for direction in ("fwd", "bwd"):
                out.append(_gated(name, kernel_name, saves_output, direction, dtype))
        for dtype in halves if has_half(kernel_name) else ():
            for direction in ("fwd", "bwd"):
                out.append(_gated(name, kernel_name, saves_output, direction, dtype, variant=HALF))
    bias = formulas if full else [f for f in formulas if f[0] in ("gelu_tanh", "relu")]
    for name, kernel_name, saves_output in bias:
        for dtype in dtypes:
            out.append(_bias_act(name, kernel_name, dtype))
            out.append(_bias_act_bwd(name, kernel_name, saves_output, dtype))
        for dtype in halves if has_half(kernel_name) else ():
            out.append(_bias_act(name, kernel_name, dtype, variant=HALF))
            out.append(_bias_act_bwd(name, kernel_name, saves_output, dtype, variant=HALF))
    for n in ((1024, 32768, 131072) if full else (1024, 32768)):
        for dtype in dtypes:
            for direction in ("fwd", "bwd"):
                out.append(_softmax(direction, n, dtype))
    if full:
        for dtype in dtypes:
            for direction in ("fwd", "bwd"):
                out.append(_softmax_strided(direction, 1024, dtype))
                out.append(_bits(direction, "relu", True, dtype, 1, False))
                out.append(_bits(direction, "gelu", False, dtype, 2, True))
                out.append(_rational(direction, dtype))
            for kind in ("uniform", "normal", "trunc_normal"):
                out.append(_sampler(kind, dtype))
    return out


def gate_specs() -> list[Spec]:
    """The compile gate's representative subset (tests/test_compile_gate.py): one kernel of each family, the
    libdevice-heavy formulas, each half dtype, fp64 through the typed libdevice calls (gelu's fma with fp64
    constants), and the softmax sizes that used to spill."""
    return [_unary("tanh", "tanh", "fwd", "bf16"), _unary("mish", "mish", "bwd", "fp16"),
            _unary("gelu", "gelu", "fwd", "fp64"), _gated("geglu_tanh", "gelu_tanh", False, "bwd", "fp64"),
            _unary("gelu_tanh", "gelu_tanh", "bwd", "fp32"), _unary("prelu", "prelu", "bwd", "bf16", p_mode=2),
            _gated("swiglu", "silu", False, "bwd", "bf16"), _bias_act("gelu", "gelu", "fp16"),
            _softmax("bwd", 32768, "fp32"), _softmax("fwd", 32768, "bf16")]


# ---------------------------------------------------------------------------------------------
# compile and read the cubin
# ---------------------------------------------------------------------------------------------


def _tool(name: str) -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def compile_spec(spec: Spec, arch: int):
    """The compiled kernel of ``spec`` for ``sm_<arch>`` (Triton's cache makes a repeat cheap)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = list(spec.signature)
    attrs = {(names.index(a),): [["tt.divisibility", 16]] for a in spec.aligned if a in names}
    src = ASTSource(fn=spec.kernel, signature=spec.signature, constexprs=spec.constexprs, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": spec.num_warps, **spec.options})


_RES = re.compile(r"REG:(\d+).*?STACK:(\d+).*?LOCAL:(\d+)")


_SPILLS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def ptxas_spills(ptx: str) -> dict:
    """ptxas's own report for the kernel's PTX: stack frame and register-spill bytes per thread."""
    target = re.search(r"^\.target\s+(\w+)", ptx, re.MULTILINE).group(1)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        out = subprocess.run([_tool("ptxas"), f"-arch={target}", "-v", path, "-o", os.path.join(d, "k.cubin")],
                             capture_output=True, text=True, check=True)
    m = _SPILLS.search(out.stdout + out.stderr)
    stack, stores, loads = (int(v) for v in m.groups()) if m else (0, 0, 0)
    return {"stack_frame_bytes": stack, "spill_store_bytes": stores, "spill_load_bytes": loads}


def cubin_facts(cubin: bytes) -> dict:
    """Registers, stack and local bytes per thread, and the SASS instruction mix of a cubin."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        res = subprocess.run([_tool("cuobjdump"), "-res-usage", f.name], capture_output=True, text=True, check=True)
        sass = subprocess.run([_tool("cuobjdump"), "-sass", f.name], capture_output=True, text=True, check=True)
    m = _RES.search(res.stdout)
    regs, stack, local = (int(v) for v in m.groups()) if m else (0, 0, 0)
    ops = [line.split(";")[0].split("*/")[-1].strip() for line in sass.stdout.splitlines()
           if re.match(r"\s*/\*[0-9a-f]{4}\*/", line)]
    last_exit = max((i for i, op in enumerate(ops) if re.search(r"\bEXIT\b", op)), default=len(ops) - 1)
    body = [op for op in ops[:last_exit + 1] if not op.startswith("NOP")]
    opcodes = [re.sub(r"^@!?U?P\w+\s+", "", op).split()[0] for op in body if op]
    return {
        "registers": regs, "stack_bytes": stack, "local_bytes": local,
        "local_memory_instructions": sum(1 for o in opcodes if o.startswith(("LDL", "STL"))),
        "instructions": len(opcodes), "mufu": sum(1 for o in opcodes if o.startswith("MUFU")),
    }


def predict(instr_per_el: float, mufu_per_el: float, bytes_per_el: float, gpu: dict) -> dict:
    """The model of the module docstring for one element: times (ns per 1e6 elements) and predicted share."""
    clock = gpu["ghz"] * 1e9
    t_mem = bytes_per_el / (gpu["copy_tbps"] * 1e12)
    t_issue = instr_per_el / (gpu["sms"] * 4 * 32 * clock)
    t_mufu = mufu_per_el / (gpu["sms"] * 16 * clock)
    t = max(t_mem, t_issue, t_mufu)
    return {"predicted_share_of_copy_bandwidth": round(t_mem / t, 3), "issue_utilisation_at_copy_bandwidth":
            round(t_issue / t_mem, 3), "bound": "memory" if t == t_mem else "issue" if t == t_issue else "mufu"}


def analyse(spec: Spec, arch: int) -> dict:
    """Compile ``spec`` for ``sm_<arch>`` and return its facts and (for sm_90) the H100/H200 prediction."""
    kernel = compile_spec(spec, arch)
    facts = {**cubin_facts(kernel.asm["cubin"]), **ptxas_spills(kernel.asm["ptx"])}
    row = {"kernel": spec.name, "arch": f"sm_{arch}", "dtype": spec.dtype, "num_warps": spec.num_warps, **facts}
    if spec.countable:
        per_thread = spec.elements / (spec.num_warps * 32)
        row["instructions_per_element"] = round(facts["instructions"] / per_thread, 2)
        row["mufu_per_element"] = round(facts["mufu"] / per_thread, 2)
        row["bytes_per_element"] = spec.bytes_per_element
        if arch == 90:
            for gpu, params in GPUS.items():
                row[gpu] = predict(row["instructions_per_element"], row["mufu_per_element"],
                                   spec.bytes_per_element, params)
    return row


def spill_free(row: dict) -> bool:
    """No register spills (ptxas's spill stores/loads). Local memory that is not a spill, such as the stack
    array of libdevice's sin/cos slow-path argument reduction in the normal sampler, is allowed."""
    return row["spill_store_bytes"] == 0 and row["spill_load_bytes"] == 0


def run(full: bool, archs=ARCHS, only: str | None = None, dtypes=None, log=print) -> list[dict]:
    """Analyse every spec (optionally those whose name contains ``only``) for every arch."""
    rows = []
    for spec in (gate_specs() if full == "gate" else specs(full, dtypes)):
        if only and only not in spec.name:
            continue
        for arch in archs:
            row = analyse(spec, arch)
            rows.append(row)
            log(f"{row['kernel']:<40} {row['arch']}  regs {row['registers']:>3}  local {row['local_bytes']:>5}  "
                f"instr/el {row.get('instructions_per_element', '-')}")
    return rows


def markdown_table(rows: list[dict]) -> str:
    """README table from the sm_90 rows with a prediction: per kernel, SASS instructions per element and the
    predicted share of copy bandwidth on H100 / H200, fp32 and bf16 side by side, and the bf16 figures of the
    formula's ``_half`` entry points where it has them."""
    table: dict[str, dict] = {}
    for r in rows:
        if r["arch"] != "sm_90" or "H100" not in r or r["dtype"] not in ("fp32", "bf16"):
            continue
        name = r["kernel"].rsplit("/", 1)[0] if r["kernel"].endswith("/" + r["dtype"]) else r["kernel"]
        key = r["dtype"]
        if name.endswith(HALF):
            name, key = name[: -len(HALF)], "half"
        table.setdefault(name, {})[key] = r

    def cell(entry, key):
        if entry is None:
            return "-"
        if key == "instr":
            return f"{entry['instructions_per_element']:.0f}"
        return f"{entry[key]['predicted_share_of_copy_bandwidth']:.0%}"

    lines = [("| kernel | instr/el fp32 | bf16 | predicted H100 fp32 | bf16 | predicted H200 fp32 | bf16 "
              "| bf16 as launched (`_half`): instr/el | H100 | H200 |"),
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, by in table.items():
        f32, b16, half = by.get("fp32"), by.get("bf16"), by.get("half")
        lines.append(f"| {name} | {cell(f32, 'instr')} | {cell(b16, 'instr')} | {cell(f32, 'H100')} | "
                     f"{cell(b16, 'H100')} | {cell(f32, 'H200')} | {cell(b16, 'H200')} | {cell(half, 'instr')} | "
                     f"{cell(half, 'H100')} | {cell(half, 'H200')} |")
    return "\n".join(lines)


_DTYPE_NAMES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "float64": "fp64"}


def compare(static_rows: list[dict], run: dict, gpu: str) -> list[dict]:
    """Predicted against measured share of copy bandwidth: each sm_90 unary activation row of the static JSON
    against ``benchmarks.run``'s torchinit result for the op of the same name, pass and dtype (largest size).

    ``gpu`` ("H100" or "H200") picks the prediction. Rows without a measurement are left out.
    """
    measured = {}
    for r in run["results"]:
        if r["impl"] != "torchinit" or r["pass"] not in ("fwd", "bwd") or r.get("frac_copy") is None:
            continue
        key = (r["op"], r["pass"], _DTYPE_NAMES.get(r["dtype"], r["dtype"]))
        if key not in measured or r["numel"] > measured[key]["numel"]:
            measured[key] = r
    out = []
    launched = {r["kernel"] for r in static_rows}
    for row in static_rows:
        if row["arch"] != "sm_90" or gpu not in row or not row["kernel"].startswith("unary_"):
            continue
        kind, formula, dtype = row["kernel"].split("/")[:3]
        if f"{kind}/{formula}{HALF}/{dtype}" in launched:
            continue  # half dtypes run the formula's _half pair (opdef.kernel_pair): that row is the prediction
        m = measured.get((formula.removesuffix(HALF), kind.split("_")[1], dtype))
        if m is None:
            continue
        predicted = row[gpu]["predicted_share_of_copy_bandwidth"]
        out.append({"kernel": row["kernel"], "predicted_share": predicted, "measured_share": round(m["frac_copy"], 3),
                    "measured_over_predicted": round(m["frac_copy"] / predicted, 3), "numel": m["numel"]})
    return out


def main(argv=None) -> int:
    """Command line: analyse, print, optionally write JSON; exit 1 on a spill in fp32/bf16/fp16."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("static_cost: unset TRITON_INTERPRET (kernels must be compiled, not interpreted)", file=sys.stderr)
        return 2
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--all", action="store_true", help="every specialisation (else a representative subset)")
    p.add_argument("--gate", action="store_true", help="only the compile gate's subset (tests/test_compile_gate.py)")
    p.add_argument("--only", help="only kernels whose name contains this")
    p.add_argument("--arch", type=int, action="append", help="compute capability (repeatable; default 80 and 90)")
    p.add_argument("--dtype", action="append", help="storage dtype (repeatable: fp32 bf16 fp16 fp64)")
    p.add_argument("--json", help="write the rows and the model to this path")
    p.add_argument("--markdown", action="store_true", help="print the README table from --from-json or the run")
    p.add_argument("--from-json", help="read rows from this JSON instead of compiling")
    p.add_argument("--compare", help="a benchmarks.run JSON measured on a GPU: print predicted vs measured share")
    p.add_argument("--gpu", default="H100", choices=sorted(GPUS), help="which prediction --compare uses")
    args = p.parse_args(argv)
    if args.compare:
        with open(args.from_json) as f:
            static_rows = json.load(f)["rows"]
        with open(args.compare) as f:
            rows = compare(static_rows, json.load(f), args.gpu)
        for r in rows:
            print(f"{r['kernel']:<36} predicted {r['predicted_share']:6.0%}  measured {r['measured_share']:6.0%}  "
                  f"ratio {r['measured_over_predicted']:.2f}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"gpu_model": args.gpu, "rows": rows}, f, indent=1)
        return 0
    if args.from_json:
        with open(args.from_json) as f:
            rows = json.load(f)["rows"]
    else:
        rows = run("gate" if args.gate else args.all, archs=tuple(args.arch or ARCHS), only=args.only, dtypes=args.dtype)
    if args.json:
        import triton

        with open(args.json, "w") as f:
            json.dump({"date": datetime.date.today().isoformat(), "triton": triton.__version__,
                       "model": {"gpus": GPUS, "schedulers_per_sm": 4, "mufu_lanes_per_clock_per_sm": 16,
                                 "note": "predicted from static SASS counts, not measured"},
                       "rows": rows}, f, indent=1)
    if args.markdown:
        print(markdown_table(rows))
    bad = [r for r in rows if r["dtype"] in HALF_DTYPES and not spill_free(r)]
    for r in bad:
        print(f"SPILL: {r['kernel']} {r['arch']}: {r['spill_store_bytes']} B stored, {r['spill_load_bytes']} B loaded")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
