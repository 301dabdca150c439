"""benchmarks/gpu_check.sh: its dry run on a machine without CUDA, and the prediction-vs-measurement pairing."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script runs the whole GPU check")
def test_gpu_check_without_cuda_says_so_and_exits_0():
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no CUDA device" in proc.stdout
    assert not list((ROOT / "benchmarks" / "results").glob("gpu_check_*cpu*"))


def test_compare_pairs_static_rows_with_measured_torchinit_results():
    from benchmarks.static_cost import compare

    static = [{"kernel": "unary_fwd/tanh/bf16", "arch": "sm_90", "H100": {"predicted_share_of_copy_bandwidth": 0.8}},
              {"kernel": "unary_bwd/tanh/bf16", "arch": "sm_80"},
              {"kernel": "gated_fwd/glu/bf16", "arch": "sm_90", "H100": {"predicted_share_of_copy_bandwidth": 1.0}}]
    run = {"results": [
        {"op": "tanh", "pass": "fwd", "dtype": "bfloat16", "impl": "torchinit", "numel": 1 << 27, "frac_copy": 0.6},
        {"op": "tanh", "pass": "fwd", "dtype": "bfloat16", "impl": "torchinit", "numel": 16, "frac_copy": 0.01},
        {"op": "tanh", "pass": "fwd", "dtype": "bfloat16", "impl": "eager", "numel": 1 << 27, "frac_copy": 0.9},
        {"op": "tanh", "pass": "fwd", "dtype": "float32", "impl": "torchinit", "numel": 1 << 27, "frac_copy": 0.7}]}
    (row,) = compare(static, run, "H100")
    assert row["kernel"] == "unary_fwd/tanh/bf16" and row["measured_share"] == 0.6
    assert row["measured_over_predicted"] == pytest.approx(0.75)


def test_compare_uses_the_half_row_where_half_dtypes_run_it():
    from benchmarks.static_cost import compare

    share = lambda s: {"H100": {"predicted_share_of_copy_bandwidth": s}, "arch": "sm_90"}  # noqa: E731
    static = [{"kernel": "unary_fwd/gelu/bf16", **share(0.6)}, {"kernel": "unary_fwd/gelu_half/bf16", **share(1.0)},
              {"kernel": "unary_fwd/gelu/fp32", **share(0.9)}]
    run = {"results": [
        {"op": "gelu", "pass": "fwd", "dtype": "bfloat16", "impl": "torchinit", "numel": 1 << 27, "frac_copy": 0.8},
        {"op": "gelu", "pass": "fwd", "dtype": "float32", "impl": "torchinit", "numel": 1 << 27, "frac_copy": 0.9}]}
    rows = {r["kernel"]: r for r in compare(static, run, "H100")}
    assert set(rows) == {"unary_fwd/gelu_half/bf16", "unary_fwd/gelu/fp32"}
    assert rows["unary_fwd/gelu_half/bf16"]["measured_over_predicted"] == pytest.approx(0.8)
