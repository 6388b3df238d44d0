"""What probing adds end to end: the RAG pipeline with probes on and off, interleaved."""

from __future__ import annotations

import os

import numpy as np
import pytest

from harness.experiments.probes_on_off import interleaved
from harness.measure.driver import RequestDriver
from harness.measure.probe_cost import probe_cost_ns
from harness.workload import SetupContext
from workloads.rag import Rag

pytestmark = pytest.mark.slow

# Small by default so the suite stays fast; GAPBENCH_OVERHEAD_BLOCKS=20 for a figure worth quoting.
BLOCKS = int(os.environ.get("GAPBENCH_OVERHEAD_BLOCKS", "6"))
REQUESTS = int(os.environ.get("GAPBENCH_OVERHEAD_REQUESTS", "3"))


def test_probes_on_against_off(benchmark):
    workload, run = Rag(), SetupContext(size="quick")
    workload.setup(run)
    stream = workload.requests(run)
    drivers = {on: RequestDriver(workload, run, probes=on) for on in (True, False)}
    for driver in drivers.values():
        driver(-1, stream[0])  # warm-up

    recorded: list[int] = []

    def block(probes_on: bool) -> list[float]:
        driver = drivers[probes_on]
        outcomes = [driver(i, stream[i % len(stream)]) for i in range(REQUESTS)]
        if probes_on:
            recorded.extend(len(o.recorder.rows) for o in outcomes)
        return [(o.response_ns - o.arrival_ns) / 1e9 for o in outcomes]

    kwargs = {"blocks": BLOCKS}
    check = benchmark.pedantic(interleaved, args=(block,), kwargs=kwargs, rounds=1)
    for driver in drivers.values():
        driver.close()
    cost_ns = probe_cost_ns()
    estimate = float(np.median(recorded)) * cost_ns / (check.on_p50_ms * 1e6)
    benchmark.extra_info.update(
        blocks=BLOCKS,
        requests_per_block=REQUESTS,
        on_p50_ms=check.on_p50_ms,
        off_p50_ms=check.off_p50_ms,
        difference=check.difference,
        interval=check.interval,
        probe_cost_ns=cost_ns,
        estimate=estimate,
    )
    # The estimate (intervals a request records x one probe's cost) must fall inside what
    # switching the probes off actually changed; a probe far costlier in place than in
    # isolation would put it outside.
    low, high = check.interval
    if not benchmark.disabled:  # a few blocks in the plain suite say nothing about drift
        assert low <= estimate <= high, (estimate, check)
