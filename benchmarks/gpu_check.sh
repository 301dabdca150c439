#!/usr/bin/env bash
# One command for a lent GPU (H100/H200; sized for <= 8 minutes): install, `pytest -m gpu`, the core benchmark
# against eager torch and torch.compile with the copy bandwidth measured in the same run, the static cost
# model's predictions set against the measurements, and one JSON under benchmarks/results/ named with the
# date and the GPU. On a machine without CUDA it says so and exits 0.
#
#   bash benchmarks/gpu_check.sh            (PYTHON=... to choose the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device on this machine: nothing to check (exit 0)"
    exit 0
fi
unset TRITON_INTERPRET
gpu=$("$PY" -c "import re, torch; print(re.sub(r'[^A-Za-z0-9]+', '-', torch.cuda.get_device_name(0)).strip('-'))")
model=H100
case "$gpu" in *H200*) model=H200 ;; esac
stamp=$(date -u +%Y-%m-%d)
name="gpu_check_${stamp}_${gpu}"
work=$(mktemp -d)
echo "gpu_check: $gpu (static predictions for $model), outputs in $work, result benchmarks/results/$name.json"

"$PY" -m pip install --quiet --no-build-isolation --no-deps -e . || { echo "gpu_check: install failed"; exit 1; }

# 1. the GPU tests
timeout 240 "$PY" -m pytest -q -m gpu tests -p no:cacheprovider 2>&1 | tee "$work/pytest.log"
pytest_rc=${PIPESTATUS[0]}

# 2. the core benchmark at 256 MB per input: every activation, GLU family, bias_act, softmax (forward and
# backward, fp32 and bf16) against eager torch and torch.compile; copy bandwidth measured in the same run
timeout 420 "$PY" -m benchmarks.run --device cuda --sizes 256MB --dtypes float32,bfloat16 --passes fwd,bwd \
    --warmup-ms 10 --rep-ms 40 --overhead-numel 0 --no-init --no-plots --no-progress \
    --out "$work" --name bench 2>&1 | tail -n 40
bench_rc=${PIPESTATUS[0]}

# 3. the static predictions (committed JSON, newest) against the measurements
static=$(ls benchmarks/results/static_cost_*.json 2>/dev/null | sort | tail -n 1)
if [ -f "$work/bench.json" ] && [ -n "$static" ]; then
    "$PY" -m benchmarks.static_cost --from-json "$static" --compare "$work/bench.json" --gpu "$model" \
        --json "$work/compare.json"
fi

"$PY" - "$work" "benchmarks/results/$name.json" "$pytest_rc" "$bench_rc" "$static" <<'PY'
import json, os, sys
work, out, pytest_rc, bench_rc, static = sys.argv[1:]
def load(name):
    path = os.path.join(work, name)
    return json.load(open(path)) if os.path.exists(path) else None
log = open(os.path.join(work, "pytest.log")).read().strip().splitlines()
json.dump({"pytest_gpu": {"returncode": int(pytest_rc), "summary": log[-1] if log else ""},
           "benchmark_returncode": int(bench_rc), "benchmark": load("bench.json"),
           "static_cost_json": static, "predicted_vs_measured": load("compare.json")}, open(out, "w"), indent=1)
print(f"gpu_check: wrote {out}")
PY
[ "$pytest_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
