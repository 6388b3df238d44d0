#!/usr/bin/env bash
# Install gapbench into the active virtualenv, or into ./.venv (created if needed).
# Usage: scripts/install.sh [--dev]   (--dev: the test, lint and type-check tools too)
# torch is pinned first so a CPU machine takes the small CPU build instead of the CUDA stack;
# set TORCH_SPEC (e.g. TORCH_SPEC="torch" or a CUDA index build) to choose another.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
case "${1:-}" in
  --dev) extra="[dev]" ;;
  "") ;;
  *) echo "install.sh: unknown option ${1} (use --dev or nothing)" >&2; exit 2 ;;
esac
if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    echo "install: creating ./.venv"
    python3 -m venv .venv
  fi
  python=.venv/bin/python
else
  python="$VIRTUAL_ENV/bin/python"
fi
step() { echo "install: $*"; }
step "pip itself"
"$python" -m pip install --quiet --upgrade pip
torch_spec="${TORCH_SPEC:-torch==2.13.0}"
step "$torch_spec (the model stages' framework; the largest part)"
"$python" -m pip install --quiet "$torch_spec"
step "gapbench${extra} and the rest: onnxruntime, onnx, pandas, pyarrow, psutil, rich, ..."
"$python" -m pip install --quiet -e ".${extra}"
step "done: gapbench in $("$python" -c 'import sys; print(sys.prefix)')"
