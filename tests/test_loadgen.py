"""LoadGen drives the queries; gapbench's own clock agrees with LoadGen's on every latency."""

from __future__ import annotations

import time

import numpy as np
import pytest

from harness.errors import UserError

pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is not installed")

from harness.measure.loadgen import LoadSettings, read_summary, run_load

SERVICE_S = 0.02  # long beside the microseconds two clocks stamp apart: 1% is 200 us


def _serve(index: int) -> None:
    time.sleep(SERVICE_S)


@pytest.mark.parametrize(
    ("scenario", "qps", "workers"), [("server", 40.0, 2), ("single-stream", None, 1)]
)
def test_gapbench_s_clock_agrees_with_loadgen_s_from_the_scheduled_time(
    tmp_path, scenario, qps, workers
):
    settings = LoadSettings(scenario, qps, min_duration_s=1.0, min_queries=40, workers=workers)
    run = run_load(_serve, 16, settings, tmp_path)
    samples = run.samples
    assert len(samples) >= 40 and samples["sample_index"].between(0, 15).all()
    assert (samples["issue_delay_ns"] >= 0).all() and (samples["latency_ns"] > 0).all()
    # Every latency holds the service time at least, on both clocks.
    assert (samples["own_latency_ns"] >= SERVICE_S * 1e9 * 0.99).all()
    for q in (50, 99):
        own, theirs = (np.percentile(samples[c], q) for c in ("own_latency_ns", "latency_ns"))
        assert own == pytest.approx(theirs, rel=0.01), q
    stats, _ = read_summary(tmp_path / "mlperf_log_summary.txt")
    assert stats["50.00 percentile latency (ns)"] == pytest.approx(
        np.percentile(samples["latency_ns"], 50), rel=0.01
    )


def test_a_scenario_and_its_numbers_have_ranges():
    for bad in (
        {"scenario": "burst"},
        {"scenario": "server"},  # no rate
        {"scenario": "server", "qps": 0.0},
        {"workers": 0},
        {"min_duration_s": float("nan")},
    ):
        with pytest.raises(UserError):
            LoadSettings(**bad)  # type: ignore[arg-type]
