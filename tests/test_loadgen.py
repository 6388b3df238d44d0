"""LoadGen drives the queries; gapbench's own clock agrees with LoadGen's on every latency."""

from __future__ import annotations

import time

import numpy as np
import pytest

from harness.errors import UserError

pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is not installed")

from harness.archive.loadgen_summary import parse
from harness.archive.schema import Load
from harness.measure.config import check_load
from harness.measure.loadgen import Minimums, run_load

SERVICE_S = 0.02  # long beside the microseconds two clocks stamp apart: 1% is 200 us


def _serve(indices: list[int], issued_ns: int) -> None:
    time.sleep(SERVICE_S)


@pytest.mark.parametrize(
    ("scenario", "qps", "workers"), [("server", 40.0, 2), ("single-stream", None, 1)]
)
def test_gapbench_s_clock_agrees_with_loadgen_s_from_the_scheduled_time(
    tmp_path, scenario, qps, workers
):
    load = Load(scenario, qps, workers=workers)
    run = run_load(_serve, 16, load, Minimums(1.0, 40), tmp_path)
    samples = run.samples
    assert len(samples) >= 40 and samples["sample_index"].between(0, 15).all()
    assert (samples["issue_delay_ns"] >= 0).all() and (samples["latency_ns"] > 0).all()
    # Every latency holds the service time at least, on both clocks.
    assert (samples["own_latency_ns"] >= SERVICE_S * 1e9 * 0.99).all()
    # The generator's lag on gapbench's clock is LoadGen's issue delay and the few
    # microseconds its callback took to reach Python.
    assert (samples["lag_ns"] >= samples["issue_delay_ns"] - 50_000).all()
    for q in (50, 99):
        own, theirs = (np.percentile(samples[c], q) for c in ("own_latency_ns", "latency_ns"))
        assert own == pytest.approx(theirs, rel=0.01), q
    assert parse(run.summary).latency_ns(50) == pytest.approx(
        np.percentile(samples["latency_ns"], 50), rel=0.01
    )


def test_a_scenario_and_its_numbers_have_ranges():
    for bad in (
        {"scenario": "burst"},
        {"scenario": "server"},  # no rate
        {"scenario": "server", "qps": 0.0},
        {"workers": 0},
        {"qps": float("nan")},
        {"concurrency": 2000},
        {"batch": 0},
    ):
        with pytest.raises(UserError):
            check_load(Load(**{"scenario": "single-stream", **bad}))  # type: ignore[arg-type]


def test_a_stall_shows_in_the_latency_of_every_query_queued_behind_it(tmp_path):
    # One worker; the tenth query stalls 300 ms while Poisson arrivals (50/s) keep coming.
    # Counted from their scheduled times, the queries that arrived during the stall waited
    # for it: a generator that waited for the stall before sending (coordinated omission)
    # would show one slow query and hide the rest.
    served = []
    stall_s = 0.3

    def serve(indices: list[int], issued_ns: int) -> None:
        served.append(indices)
        time.sleep(stall_s if len(served) == 10 else 0.002)

    samples = run_load(serve, 16, Load("server", 50.0), Minimums(1.5, 60), tmp_path).samples
    stalled = samples.iloc[9]
    end = stalled["scheduled_ns"] + stalled["latency_ns"]  # when the stall was over
    behind = samples.iloc[10:][samples["scheduled_ns"].iloc[10:] < end - 50e6]
    assert len(behind) >= 3  # at 50/s, about 15 arrive in 300 ms
    waited = end - behind["scheduled_ns"]  # at least this long, from each one's arrival
    assert (behind["latency_ns"] >= waited).all()
    assert (behind["own_latency_ns"] >= 0.99 * waited).all()
    assert samples["latency_ns"].nlargest(3).min() > 100e6  # more than the one stalled query


def test_offline_hands_every_sample_over_at_once_in_batches(tmp_path):
    groups: list[list[int]] = []

    def serve(indices: list[int], issued_ns: int) -> None:
        groups.append(indices)

    run = run_load(serve, 10, Load("offline", 200.0, batch=8), Minimums(0.0, 50), tmp_path)
    assert sum(map(len, groups)) == len(run.samples) >= 50
    assert max(map(len, groups)) == 8
    # One issue: every sample reached gapbench at the same instant.
    assert run.samples["issued_ns"].nunique() == 1
    assert "Samples per second" in parse(run.summary).numbers
