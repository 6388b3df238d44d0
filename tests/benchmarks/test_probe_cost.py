"""What one probe costs, beside the cheapest possible timing and an OpenTelemetry span.

Run with `python -m pytest tests/benchmarks --benchmark-enable`; in the normal suite each
benchmark runs once, as a test that it still works. Target: 1 us or less per probe.
"""

from __future__ import annotations

import time

import pytest

from harness.record.probes import Recorder
from harness.workload import SetupContext, StageContext

PROBES = 1_000  # per round, so the timer's own resolution does not matter


@pytest.fixture
def ctx() -> StageContext:
    return StageContext(SetupContext(), Recorder(0), "bench", 0)


def test_full_probe(benchmark, ctx):
    """A movement probe with bytes, label, category and resource: the most a probe records."""

    def probes() -> None:
        ctx.recorder.rows.clear()
        for _ in range(PROBES):
            with ctx.movement(nbytes=4096, label="copy"):
                pass

    benchmark.extra_info["probes_per_round"] = PROBES
    benchmark(probes)
    assert len(ctx.recorder.rows) == PROBES


def test_two_clock_reads(benchmark):
    """The floor: two perf_counter_ns reads and nothing kept."""

    def reads() -> None:
        clock = time.perf_counter_ns
        for _ in range(PROBES):
            clock()
            clock()

    benchmark.extra_info["probes_per_round"] = PROBES
    benchmark(reads)


def test_opentelemetry_span(benchmark):
    """For reference: one span of the OpenTelemetry SDK (no exporter)."""
    trace = pytest.importorskip("opentelemetry.sdk.trace")
    tracer = trace.TracerProvider().get_tracer("gapbench-benchmark")

    def spans() -> None:
        for _ in range(PROBES):
            with tracer.start_as_current_span("copy", attributes={"gapbench.bytes": 4096}):
                pass

    benchmark.extra_info["probes_per_round"] = PROBES
    benchmark(spans)
