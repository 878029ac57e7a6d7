#!/usr/bin/env bash
# The main job: train the default recipe (regression on scikit-learn's bundled diabetes data, MSE,
# Lightning) and print where its summary, per-epoch metrics and training curves are.
# Arguments are Hydra overrides, e.g.:  bash scripts/run.sh task=segmentation loss=dice framework=keras
# The cross-framework parity report is `.venv/bin/lossplug check`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec .venv/bin/python -m recipes.train "$@"
