#!/usr/bin/env bash
# The main job. Until the recipes land: the cross-framework parity report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/lossplug check "$@"
