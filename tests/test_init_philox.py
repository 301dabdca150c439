"""Philox-4x32-10 in torch integer ops against an independent pure-Python reference, and the
counter layout of the samplers (any subset of elements equals the same elements of the whole)."""

import math

import pytest
import torch

from torchinit.init import philox
from torchinit.init.sampling import Dist, counter_sample, derive_key, sample

M = 0xFFFFFFFF


def philox_ref(c0, c1, c2, c3, k0, k1, rounds=10):
    """Salmon et al. (2011) Philox-4x32 written with Python integers, as a reference."""
    for _ in range(rounds):
        p0 = 0xD2511F53 * c0
        p1 = 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & M, p1 & M, ((p0 >> 32) ^ c3 ^ k1) & M, p0 & M
        k0 = (k0 + 0x9E3779B9) & M
        k1 = (k1 + 0xBB67AE85) & M
    return c0, c1, c2, c3


def test_philox_matches_python_reference():
    keys = [0, 1, 0x123456789ABCDEF0 >> 1, (1 << 63) - 1]
    offsets = torch.tensor([0, 1, 2, 3, 1 << 31, (1 << 32) - 1, 1 << 32, (1 << 40) + 12345, (1 << 62) + 7])
    for key in keys:
        got = philox.randint4x(key, offsets)
        for j, off in enumerate(offsets.tolist()):
            ref = philox_ref(off & M, (off >> 32) & M, 0, 0, key & M, key >> 32)
            assert tuple(int(w[j]) for w in got) == ref, (key, off)


def test_known_answer_vector():
    # Random123's published known-answer test for philox4x32-10: counter 0, key 0.
    assert philox_ref(0, 0, 0, 0, 0, 0) == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)
    got = philox.randint4x(0, torch.tensor([0]))
    assert tuple(int(w[0]) for w in got) == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)


def test_uint_to_uniform_float_edges():
    x = torch.tensor([0, 1, (1 << 31) - 1, 1 << 31, M])
    u = philox.uint_to_uniform_float(x)
    assert u.dtype == torch.float32
    assert u.min() >= 0 and u.max() < 1
    # Triton folds negatives (as int32) with ~x: 0xFFFFFFFF -> 0, 2**31 -> 2**31 - 1
    assert u[4] == 0 and u[3] == u[2]


@pytest.mark.parametrize("kind", ["uniform", "normal", "trunc_normal"])
def test_subsets_equal_whole(kind):
    d = {"uniform": Dist("uniform", a=-1, b=2), "normal": Dist("normal", 0.5, 3.0),
         "trunc_normal": Dist("trunc_normal", 0.0, 1.0, -1.0, 2.0)}[kind]
    key = derive_key(7, "layer.weight")
    whole = counter_sample(d, key, 1001)
    for start, n in [(0, 1), (1, 5), (3, 998), (500, 501), (1000, 1)]:
        assert torch.equal(counter_sample(d, key, n, start), whole[start:start + n])
    idx = torch.tensor([999, 0, 17, 18, 19, 20, 4, 1000])
    assert torch.equal(counter_sample(d, key, 0, index=idx), whole[idx])


def test_keys_depend_on_seed_and_name_only():
    assert derive_key(0, "a.weight") == derive_key(0, "a.weight")
    keys = {derive_key(s, n) for s in range(3) for n in ("a.weight", "b.weight", "a.bias")}
    assert len(keys) == 9
    assert all(0 <= k < 1 << 63 for k in keys)
    with pytest.raises(TypeError, match="seed must be an int"):
        derive_key("0", "a")


def test_low_precision_is_rounded_from_fp32():
    key = derive_key(1, "w")
    d = Dist("normal", 0.0, 1e-3)
    ref = counter_sample(d, key, 4096)
    for dt in (torch.bfloat16, torch.float16):
        got = sample(d, (64, 64), dt, "cpu", key=key)
        assert got.dtype == dt
        assert torch.equal(got.reshape(-1), ref.to(dt))


def test_uniform_is_uniform():
    from scipy import stats

    u = counter_sample(Dist("uniform", a=0.0, b=1.0), derive_key(3, "x"), 1 << 18)
    assert abs(float(u.double().mean()) - 0.5) < 6 * math.sqrt(1 / 12 / u.numel())
    assert stats.kstest(u.double().numpy(), "uniform").pvalue > 1e-4
    counts = torch.bincount((u * 256).long(), minlength=256).double()
    chi2 = float(((counts - counts.mean()) ** 2 / counts.mean()).sum())
    assert stats.chi2.sf(chi2, 255) > 1e-4


def test_workspace_allocates_on_first_use():
    ws = philox.Workspace(1000)
    assert "words" not in ws.__dict__  # a fill served by the C sampler never touches the buffers
    key, counters = derive_key(4, "w"), torch.arange(10, 1010)
    u = philox.uniform_block(ws, key, counters)
    assert ws.words.shape == (1000, 4)
    assert torch.equal(u, torch.stack(philox.rand4x(key, counters), 1))
    with pytest.raises(AttributeError):
        ws.not_a_buffer  # noqa: B018
