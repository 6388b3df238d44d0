#!/usr/bin/env bash
# Set up on a fresh machine and run the quick suite, archiving a result set under ./results.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bin=${VIRTUAL_ENV:-$PWD/.venv}/bin
"$bin/gapbench" detect
"$bin/gapbench" run --quick "$@"
