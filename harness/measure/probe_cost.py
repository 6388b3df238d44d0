"""What one probe costs, measured in the measuring process before its workload loads."""

from __future__ import annotations

import statistics
import time

from harness.record.probes import Recorder
from harness.workload import SetupContext, StageContext


def probe_cost_ns(probes: int = 2_000, blocks: int = 5) -> float:
    """Median cost of one full-featured probe (a movement with bytes and a label), in ns."""
    ctx = StageContext(SetupContext(), Recorder(0), "calibrate", 0)
    per_block = []
    for _ in range(blocks):
        ctx.recorder.rows.clear()
        start = time.perf_counter_ns()
        for _ in range(probes):
            with ctx.movement(nbytes=64, label="probe cost"):
                pass
        per_block.append((time.perf_counter_ns() - start) / probes)
    return statistics.median(per_block)
