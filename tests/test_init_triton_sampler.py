"""The one-pass Triton sampler (kernels/sampling.py) against the torch sampler, through Triton's interpreter.

TRITON_INTERPRET must be set before any @triton.jit decorator runs, so the checks run in a fresh
subprocess. Tensors are small: the interpreter costs milliseconds per program instance.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

SCRIPT = textwrap.dedent(
    """
    import json, os
    assert os.environ["TRITON_INTERPRET"] == "1"
    import torch
    from torchinit.init.sampling import Dist, counter_sample, derive_key
    from torchinit.kernels import sampling as ks
    from torchinit.init import philox
    import triton, triton.language as tl
    from torchinit import backend

    @triton.jit
    def raw(out_ptr, seed, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        u = tl.rand(seed, offs.to(tl.int64) + 4294967296)
        tl.store(out_ptr + offs, u, mask=m)

    res = {}
    key = derive_key(0, "blocks.3.mlp.fc1.weight")
    n = 3000
    out = torch.empty(n)
    raw[(triton.cdiv(n, 1024),)](out, key, n, BLOCK=1024)
    ref = philox.rand4x(key, torch.arange(n, dtype=torch.int64) + 4294967296)[0]
    res["tl_rand"] = bool(torch.equal(out, ref))
    dists = {"uniform": Dist("uniform", a=-0.25, b=0.75), "normal": Dist("normal", 0.1, 0.02),
             "trunc": Dist("trunc_normal", 0.0, 1.0, -2.0, 2.0), "trunc_tail": Dist("trunc_normal", 0.0, 1.0, 0.5, 4.0)}
    for name, d in dists.items():
        for start, size in [(0, 0), (0, 1), (5, 2), (3, 4099), ((1 << 33) + 1, 77)]:
            buf = torch.empty(size)
            ks.fill(buf, d, key, start)
            want = counter_sample(d, key, size, start)
            tag = f"{name}:{start}:{size}"
            res[tag] = {"equal": bool(torch.equal(buf, want)),
                        "maxulp": float(((buf - want).abs() / torch.finfo(torch.float32).eps
                                         / want.abs().clamp(min=1e-3)).max()) if size else 0.0}
    for name, d in dists.items():  # whole blocks (the unmasked vector-store path) and tails, small blocks
        for start, size, block in [(0, 4099, 1024), (8, 600, 32), (4, 256, 16)]:
            buf = torch.empty(size)
            ks.fill(buf, d, key, start, block=block)
            want = counter_sample(d, key, size, start)
            res[f"blocks:{name}:{start}:{size}"] = float(((buf - want).abs() / torch.finfo(torch.float32).eps
                                                         / want.abs().clamp(min=1e-3)).max())
    @triton.jit
    def sincos(u_ptr, s_ptr, c_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        s, c = ks._sincos_turn(6.283185307179586 * tl.load(u_ptr + offs, mask=m, other=0.0))
        tl.store(s_ptr + offs, s, mask=m)
        tl.store(c_ptr + offs, c, mask=m)

    n = 1 << 20  # every multiple of 2**-20 in [0, 1), as Box-Muller's angle 2 pi u in fp32
    u = (torch.arange(n, dtype=torch.float64) / n).float()
    s, c = torch.empty(n), torch.empty(n)
    sincos[(16,)](u, s, c, n, BLOCK=n // 16)
    th = (u * torch.tensor(6.283185307179586, dtype=torch.float32)).double()
    for name, got, want in (("sin", s, torch.sin(th)), ("cos", c, torch.cos(th))):
        ulp = torch.ldexp(torch.ones_like(want), torch.frexp(want.float())[1] - 24)  # fp32 ulp of the true value
        res["sincos_ulp_" + name] = float(((got.double() - want).abs() / ulp).max())
    for dt in (torch.bfloat16, torch.float16):
        buf = torch.empty(2048, dtype=dt)
        ks.fill(buf, dists["uniform"], key, 0)
        res[f"uniform:{dt}"] = bool(torch.equal(buf, counter_sample(dists["uniform"], key, 2048).to(dt)))
    # apply_init routes CPU tensors through the kernel when the backend is forced to "triton"
    import torch.nn as nn
    import torchinit.init as ti
    lin = nn.Linear(40, 30)
    with backend.use_backend("triton"):
        ti.apply_init(lin, "kaiming_uniform", seed=5)
        w_triton = lin.weight.detach().clone()
    with backend.use_backend("torch"):
        ti.apply_init(lin, "kaiming_uniform", seed=5)
    res["apply_init_triton_equals_torch"] = bool(torch.equal(w_triton, lin.weight))
    print("RESULT" + json.dumps(res))
    """
)


@pytest.fixture(scope="module")
def results():
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                          timeout=900)  # a hang guard only: a busy CI machine is slow
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def test_torch_philox_equals_tl_rand(results):
    assert results["tl_rand"]


def test_uniform_bit_for_bit(results):
    tags = [k for k in results if k.startswith("uniform:") and ":" in k[8:]]
    assert tags
    for k in tags:
        assert results[k]["equal"], k


def test_uniform_low_precision_bit_for_bit(results):
    assert results["uniform:torch.bfloat16"] and results["uniform:torch.float16"]


@pytest.mark.parametrize("name", ["normal", "trunc", "trunc_tail"])
def test_normal_and_truncated_within_ulps(results, name):
    tags = [k for k in results if k.startswith(name + ":")]
    assert len(tags) == 5
    for k in tags:
        assert results[k]["maxulp"] <= 8, (k, results[k])


def test_whole_blocks_and_tails(results):
    """Outputs of several whole blocks (stored unmasked, four words interleaved) and a tail: uniform bit for
    bit, normal and truncated normal within the same ulps as above."""
    tags = [k for k in results if k.startswith("blocks:")]
    assert len(tags) == 12
    for k in tags:
        assert results[k] <= (0.0 if k.startswith("blocks:uniform:") else 8), (k, results[k])


def test_box_muller_angle_sin_cos_within_2_ulp(results):
    """The normal sampler's own sin/cos of the angle 2 pi u (a Cody-Waite reduction and Cephes polynomials,
    without libdevice's huge-argument path): within 2 ulp of the fp64 value on a dense grid of [0, 2 pi)."""
    assert results["sincos_ulp_sin"] <= 2 and results["sincos_ulp_cos"] <= 2, results


def test_apply_init_through_kernel(results):
    assert results["apply_init_triton_equals_torch"]


SPECIALISATION_SCRIPT = textwrap.dedent(
    """
    import json, random, torch
    from triton.backends.nvidia.compiler import CUDABackend
    from triton.runtime.jit import create_function_from_signature
    from torchinit.init.sampling import Dist
    from torchinit.kernels import sampling as ks

    k = ks._sample_kernel
    binder = create_function_from_signature(k.signature, k.params, CUDABackend)  # what JITFunction.run keys on
    res = {}
    for kind, d in {"uniform": Dist("uniform", a=-1.0, b=1.0), "normal": Dist("normal"),
                    "trunc_normal": Dist("trunc_normal", 0.0, 1.0, -2.0, 2.0)}.items():
        # torchinit/init/apply.py _prepare_in_place's warm-up: key=1, start=3 on 7 elements
        _, args, kwargs = ks.launch_args(torch.empty(7), d, key=1, start=3)
        warm = binder(*args, **kwargs)[1]
        real = []
        for key, start, n in [(random.Random(0).getrandbits(63), 0, 768 * 3072), ((1 << 62) + 16, 0, 4096),
                              (12345678901234567, 1 << 33, 77)]:
            _, args, kwargs = ks.launch_args(torch.empty(n), d, key=key, start=start)
            real.append(binder(*args, **kwargs)[1])
        res[kind] = {"warm": repr(warm), "real": [repr(r) for r in real]}
    print("RESULT" + json.dumps(res))
    """
)


def test_warm_up_compiles_the_specialisation_real_keys_use():
    """The sampler's seed and element range are typed i64 and not specialised (Triton specialises ints equal to
    1 or divisible by 16): apply_init's warm-up launch (key=1, start=3, 7 elements) has the same specialisation
    key as real launches with 63-bit keys, any start and size, so it compiles the kernel they run (one per
    dtype and kind; the old kernel keyed key=1 as a constant and real keys as i64)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", SPECIALISATION_SCRIPT], check=False, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1][len("RESULT"):])
    for kind, r in res.items():
        assert all(real == r["warm"] for real in r["real"]), (kind, r)
