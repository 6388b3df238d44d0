"""Real what-if runs on this machine: `gapbench validate` and what it measures."""
