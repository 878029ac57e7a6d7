#!/usr/bin/env bash
# The whole test suite: lint, then pytest for NumPy/torch/Hydra/recipes, and the Keras tests once
# per backend, each in its own process (KERAS_BACKEND is fixed per process).
#
# The four pytest runs go side by side: the non-Keras part over pytest-xdist workers (-n 2
# --dist loadfile: each test file on one worker, in its own order, so a module's fixtures and the
# kernels it compiles are made once), the three Keras backends as three more processes. (xdist's
# loadgroup does not group under pytest 9.2: it renames nodes through an attribute pytest no
# longer reads.)
# Each part's output goes to a log, printed whole, part by part, once all have ended; the script
# fails if any part fails (pytest's exit 5, nothing collected, included).
#   LOSSPLUG_TEST_WORKERS  xdist workers for the non-Keras part (default 2; 0 = no xdist)
#   LOSSPLUG_TEST_SERIAL=1 the parts one after another, printed as they run
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .

workers=${LOSSPLUG_TEST_WORKERS:-2}
xdist=()
if [ "$workers" != "0" ]; then
  xdist=(-n "$workers" --dist loadfile)
fi
backends=(tensorflow jax torch)

if [ "${LOSSPLUG_TEST_SERIAL:-0}" = "1" ]; then
  .venv/bin/python -m pytest -m "not keras" "${xdist[@]}" "$@"
  for backend in "${backends[@]}"; do
    echo "== Keras tests, KERAS_BACKEND=$backend"
    KERAS_BACKEND=$backend .venv/bin/python -m pytest -m keras "$@"
  done
  exit 0
fi

logs=$(mktemp -d "${TMPDIR:-/tmp}/lossplug-tests.XXXXXX")
names=("pytest -m \"not keras\" ${xdist[*]}")
pids=()
start=$SECONDS
.venv/bin/python -m pytest -m "not keras" "${xdist[@]}" "$@" >"$logs/0.log" 2>&1 &
pids+=($!)
for backend in "${backends[@]}"; do
  names+=("KERAS_BACKEND=$backend pytest -m keras")
  KERAS_BACKEND=$backend .venv/bin/python -m pytest -m keras "$@" >"$logs/${#pids[@]}.log" 2>&1 &
  pids+=($!)
done
# the parts end when they end; a Ctrl-C or a kill of this script ends them too
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
echo "running ${#pids[@]} pytest parts side by side (logs in $logs) ..."

codes=()
for i in "${!pids[@]}"; do
  code=0
  wait "${pids[$i]}" || code=$?
  codes+=("$code")
done

failed=0
for i in "${!pids[@]}"; do
  echo
  echo "======== ${names[$i]}: exit ${codes[$i]}"
  cat "$logs/$i.log"
  [ "${codes[$i]}" = "0" ] || failed=1
done
echo
echo "======== summary ($((SECONDS - start)) s):"
for i in "${!pids[@]}"; do
  echo "  ${names[$i]}: exit ${codes[$i]}$([ "${codes[$i]}" = "5" ] && echo ' (no tests collected)')"
done
rm -rf "$logs"
exit "$failed"
