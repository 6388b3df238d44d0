"""How the views write a time: one rule for every table."""

from __future__ import annotations

import math


def ms(value: float | None, indicative: bool = False) -> str:
    """Milliseconds as the tables show them: two decimals, ``-`` for none (or a wait without
    bound), ``~`` for an indicative figure."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{'~' if indicative else ''}{value:.2f}"
