"""What probing adds to end-to-end latency: the same requests with probes on and off.

Blocks of requests alternate on and off (on-off, then off-on), so drift on a shared machine hits
both sides alike; each block's median is one sample, and the interval is a bootstrap over
blocks. The estimate beside it (probes per request x one probe's cost) is the analysis's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from harness.analysis.stats import bootstrap_ratio, median_ratio


@dataclass(frozen=True)
class OverheadCheck:
    """Probes on against probes off over the same requests, interleaved in blocks."""

    blocks: int
    on_p50_ms: float
    off_p50_ms: float
    difference: float  # (on - off) / off, at the median of per-block medians
    interval: tuple[float, float]  # 95% bootstrap over blocks


def interleaved(
    run_block: Callable[[bool], Sequence[float]], blocks: int = 10, seed: int = 0
) -> OverheadCheck:
    """Alternate ``run_block(probes_on)`` (latencies in seconds) and compare the two sides."""
    on: list[float] = []
    off: list[float] = []
    for i in range(blocks):
        for probes_on in (i % 2 == 0, i % 2 != 0):  # on-off, then off-on: no side always first
            (on if probes_on else off).append(float(np.median(run_block(probes_on))))
    on_a, off_a = np.array(on), np.array(off)
    # Block i's on and off ran back to back: a pair, resampled together.
    low, high = bootstrap_ratio(on_a, off_a, paired=True, seed=seed)
    return OverheadCheck(
        blocks=blocks,
        on_p50_ms=float(np.median(on_a)) * 1e3,
        off_p50_ms=float(np.median(off_a)) * 1e3,
        difference=median_ratio(on_a, off_a) - 1,
        interval=(low - 1, high - 1),
    )
