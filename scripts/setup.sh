#!/usr/bin/env bash
# Create or reuse the project's environment in .venv (re-installs only when pyproject changes).
# torch comes first, pinned to the CPU build this machine keeps on disk; set LOSSPLUG_TORCH to
# another requirement (e.g. "torch" for your platform's CUDA build) to override.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
stamp=.venv/.lossplug-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setting up .venv (first run takes a minute or two)..." >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "${LOSSPLUG_TORCH:-torch==2.13.0}"
  .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi
