#!/usr/bin/env bash
# The tests, as CI runs them: lint, format, types, then pytest (slow end-to-end tests
# included), with the interpreter install.sh used. Installs the development tools if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${VIRTUAL_ENV:-$PWD/.venv}/bin
if ! "$bin/python" -c "import pytest, mypy, ruff, hypothesis" 2>/dev/null; then
  bash scripts/install.sh --dev
fi
echo "test: ruff check"
"$bin/python" -m ruff check .
echo "test: ruff format --check"
"$bin/python" -m ruff format --check .
echo "test: mypy harness workloads"
"$bin/python" -m mypy
echo "test: pytest"
exec "$bin/python" -m pytest "$@"
