#!/usr/bin/env bash
# The GPU checks in one run (sized for a lent GPU machine: at most 8 minutes; on an H200 the tests took
# 65 s with 8 workers, the recipes 29-46 s beside them, the benchmark over 290 s): the test suite's CUDA
# tests (pytest -m gpu), the segmentation recipe on the GPU in each framework (Lightning, Keras on
# JAX, and Lightning in bf16-mixed), then the benchmark's CUDA mode alone on the machine. Each part
# runs under its own time limit, so a slow one leaves the others' results; everything lands in $OUT:
#   machine.txt  tests.log  recipes.tgz (each run's directory and log)  bench.log  bench/benchmarks-cuda.*
# (benchmarks-cuda.partial.json where the benchmark was cut short).
#   OUT=build/gpu-checks PYTHON=.venv/bin/python bash scripts/gpu_checks.sh
# A CPU dry run of the script itself:
#   TRAINER=cpu RECIPE_ARGS=debug=fast BENCH_ARGS="--quick --cpu --no-keras" bash scripts/gpu_checks.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-build/gpu-checks}
TRAINER=${TRAINER:-gpu}
RECIPE_ARGS=${RECIPE_ARGS:-}
BENCH_ARGS=${BENCH_ARGS:---cuda --no-keras}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RUNS=$(mktemp -d)
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 LOSSPLUG_LOG_DIR="$RUNS"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX shares the GPU with torch's processes

{ date -u; nvidia-smi 2>&1 | head -15
  $PY -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__,
torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')"; } > "$OUT/machine.txt" 2>&1

# 1. tests and recipes side by side (both mostly compile, on the CPU cores)
timeout "${T_TESTS:-120}" $PY -m pytest -m gpu tests/test_gpu.py tests/test_torch_integration.py \
  -q -n "${TEST_WORKERS:-8}" -p no:cacheprovider > "$OUT/tests.log" 2>&1 &
tests=$!
recipe() {  # name, then overrides
  local name=$1; shift
  timeout "${T_RECIPES:-120}" $PY -m recipes.train task=segmentation_multiclass loss=dice_ce "$@" \
    $RECIPE_ARGS hydra.run.dir="$RUNS/$name" > "$RUNS/$name.log" 2>&1
  echo "$name: exit $?" >> "$RUNS/exits.txt"
}
recipe torch framework=torch trainer="$TRAINER" &
KERAS_BACKEND=jax recipe keras-jax framework=keras &
recipe torch-bf16 framework=torch trainer="$TRAINER" trainer.precision=bf16-mixed &
wait $tests
echo "tests: exit $?" >> "$RUNS/exits.txt"
wait
tar czf "$OUT/recipes.tgz" -C "$RUNS" --exclude='*.ckpt' --exclude='*.keras' .

# 2. the benchmark, alone
# shellcheck disable=SC2086
timeout "${T_BENCH:-360}" $PY -u -m benchmarks $BENCH_ARGS --out "$OUT/bench" > "$OUT/bench.log" 2>&1
echo "benchmark: exit $?" >> "$RUNS/exits.txt"
cat "$RUNS/exits.txt" >> "$OUT/machine.txt"

echo "== machine"; cat "$OUT/machine.txt"
echo "== tests"; tail -25 "$OUT/tests.log"
echo "== recipes"; grep -h "^\[\|Dice\|Error" "$RUNS"/*.log | tail -12
echo "== benchmark"; grep -A14 "^## Targets" "$OUT"/bench/benchmarks*.md 2>/dev/null || tail -5 "$OUT/bench.log"
