#!/usr/bin/env bash
# The whole test suite: lint, then pytest for NumPy/torch/Hydra/recipes, then the Keras tests once
# per backend, each in its own process (KERAS_BACKEND is fixed per process).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -m "not keras" "$@"
for backend in tensorflow jax torch; do
  echo "== Keras tests, KERAS_BACKEND=$backend"
  KERAS_BACKEND=$backend .venv/bin/python -m pytest -m keras "$@"
done
