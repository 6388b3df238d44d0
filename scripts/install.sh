#!/usr/bin/env bash
# Install gapbench and its test tools into the active virtualenv, or into ./.venv (created if
# needed). torch is pinned first so a CPU machine takes the small CPU build instead of the CUDA
# stack; set TORCH_SPEC (e.g. TORCH_SPEC="torch" or a CUDA index build) to choose another.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  python=.venv/bin/python
else
  python="$VIRTUAL_ENV/bin/python"
fi
"$python" -m pip install --quiet --upgrade pip
"$python" -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}" -e ".[dev]"
echo "installed gapbench into $("$python" -c 'import sys; print(sys.prefix)')"
