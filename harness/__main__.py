"""`python -m harness` is the `gapbench` command."""

import sys

from harness.cli import main

sys.exit(main())
