"""What measuring costs: a probe's own time, and what probing adds to end-to-end latency.

Two independent figures: an estimate (probes per request x the cost of one probe, measured in
the same process) and a check (the same requests with probes on and off, interleaved in blocks
so that drift on a shared machine hits both alike, with a bootstrap interval on the difference).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.record.probes import Kind, Recorder
from harness.workload import RunContext, StageContext


def probe_cost_ns(probes: int = 2_000, blocks: int = 5) -> float:
    """Median cost of one full-featured probe (a movement with bytes and a label), in ns."""
    ctx = StageContext(RunContext(), Recorder(0), "calibrate", 0)
    per_block = []
    for _ in range(blocks):
        ctx.recorder.rows.clear()
        start = time.perf_counter_ns()
        for _ in range(probes):
            with ctx.movement(nbytes=64, label="probe cost"):
                pass
        per_block.append((time.perf_counter_ns() - start) / probes)
    return statistics.median(per_block)


def probes_per_request(intervals: pd.DataFrame) -> float:
    """Median number of intervals a request records: probes, stages, branches, waits, itself.

    Device intervals and asyncio slices are left out: they are not probes the code opens.
    """
    counted = intervals[~intervals["kind"].isin((Kind.DEVICE.value, Kind.SLICE.value))]
    per = counted.groupby(["replicate", "request"]).size()
    return float(per.median()) if len(per) else 0.0


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
    """Alternate ``run_block(probes_on)`` (latencies in seconds) and compare the two sides.

    Each block's median is one sample: requests inside a block are not independent, blocks
    nearly are, and alternating them spreads drift over both sides evenly.
    """
    on: list[float] = []
    off: list[float] = []
    for i in range(blocks):
        for probes_on in (i % 2 == 0, i % 2 != 0):  # on-off, then off-on: no side always first
            (on if probes_on else off).append(float(np.median(run_block(probes_on))))
    on_a, off_a = np.array(on), np.array(off)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, blocks, size=(2_000, blocks))
    diffs = np.median(on_a[picks], axis=1) / np.median(off_a[picks], axis=1) - 1
    low, high = np.percentile(diffs, [2.5, 97.5])
    return OverheadCheck(
        blocks=blocks,
        on_p50_ms=float(np.median(on_a)) * 1e3,
        off_p50_ms=float(np.median(off_a)) * 1e3,
        difference=float(np.median(on_a) / np.median(off_a) - 1),
        interval=(float(low), float(high)),
    )


def estimate(facts: Sequence[dict[str, Any]], intervals: pd.DataFrame, p50_s: float) -> dict:
    """Probes per request x probe cost, as a share of the median request."""
    costs = [f["probe_cost_ns"] for f in facts if f.get("probe_cost_ns")]
    if not costs or not p50_s or np.isnan(p50_s):
        return {}
    per_request = probes_per_request(intervals)
    cost_ns = float(np.median(costs))
    return {
        "probes_per_request": per_request,
        "probe_cost_ns": cost_ns,
        "share_of_p50": per_request * cost_ns / (p50_s * 1e9),
    }
