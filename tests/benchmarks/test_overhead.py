"""What probing adds end to end: the RAG pipeline with probes on and off, interleaved."""

from __future__ import annotations

import pytest

from harness.driver import RequestDriver
from harness.overhead import interleaved, probe_cost_ns
from harness.workload import RunContext
from workloads.rag import Rag

pytestmark = pytest.mark.slow


def test_probes_on_against_off(benchmark):
    workload, run = Rag(), RunContext(size="quick")
    workload.setup(run)
    stream = workload.requests(run)
    drivers = {on: RequestDriver(workload, run, probes=on) for on in (True, False)}
    for driver in drivers.values():
        driver(-1, stream[0])  # warm-up

    def block(probes_on: bool) -> list[float]:
        driver = drivers[probes_on]
        outcomes = [driver(i, stream[i % len(stream)]) for i in range(3)]
        return [(o.response_ns - o.arrival_ns) / 1e9 for o in outcomes]

    check = benchmark.pedantic(interleaved, args=(block,), kwargs={"blocks": 6}, rounds=1)
    for driver in drivers.values():
        driver.close()
    benchmark.extra_info.update(
        on_p50_ms=check.on_p50_ms,
        off_p50_ms=check.off_p50_ms,
        difference=check.difference,
        interval=check.interval,
        probe_cost_ns=probe_cost_ns(),
    )
    low, high = check.interval
    assert low <= check.difference <= high
