#!/usr/bin/env bash
# Run the test suite (slow end-to-end tests included) with the interpreter install.sh used.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${VIRTUAL_ENV:-$PWD/.venv}/bin
exec "$bin/python" -m pytest "$@"
