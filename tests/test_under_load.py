"""Requests under a load, for real: LoadGen's server and offline scenarios and a closed loop,
their sets, and the queue they build held to queueing theory."""

from __future__ import annotations

import heapq

import numpy as np
import pytest
from conftest import measured_set

pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is not installed")

from harness.analysis.columns import split_table
from harness.analysis.load import load_report
from harness.analysis.queueing import erlang_c
from harness.analysis.summary import summarize
from harness.archive.result_set import ResultSet
from harness.archive.schema import CLOSED_LOOP, Load, RunLength
from harness.cli import main
from harness.errors import UserError
from harness.measure.config import RunConfig, plan

BATCHER = """
import time
from harness.workload import Stage, Workload


class Batcher(Workload):
    name = "batcher"
    stages = (Stage("infer", layer="inference"),)

    def requests(self, ctx):
        return [{"id": i} for i in range(12)]

    def batch(self, payloads):
        return list(payloads)

    def samples(self, payload):
        return len(payload) if isinstance(payload, list) else 1

    def infer(self, ctx, payload):
        with ctx.compute(label="forward"):
            time.sleep(0.002 + 0.0005 * self.samples(payload))  # a batch costs less a sample
        return payload


class Broken(Batcher):
    name = "broken"

    def infer(self, ctx, payload):
        time.sleep(0.005)
        raise RuntimeError("no model")


class Alone(Batcher):
    name = "alone"
    concurrent = False

    batch = Workload.batch
"""


def _run(tmp_path, workload: str, load: Load, length: RunLength, **params) -> ResultSet:
    return measured_set(tmp_path / "results", workload, length, load, **params)


@pytest.fixture
def batcher(tmp_path) -> str:
    plugin = tmp_path / "batcher.py"
    plugin.write_text(BATCHER)
    return str(plugin)


def _replayed_waits(issued: np.ndarray, service: np.ndarray, servers: int) -> np.ndarray:
    """Each query's wait in a first-come-first-served queue of ``servers``, given when each
    arrived and how long each was served: the queue the measured one should be."""
    free = [int(issued[0])] * servers
    waits = np.zeros(len(issued))
    for i in np.argsort(issued, kind="stable"):
        start = max(int(issued[i]), heapq.heappop(free))
        waits[i] = start - issued[i]
        heapq.heappush(free, start + int(service[i]))
    return waits


def _mm2_runs(rate: float, mean_s: float, n: int, runs: int) -> tuple[np.ndarray, np.ndarray]:
    """What M/M/2 itself gives over ``n`` customers from an empty queue, ``runs`` times: each
    run's mean wait (ms) and share of customers that waited."""
    rng = np.random.default_rng(0)
    means, shares = np.empty(runs), np.empty(runs)
    for run_ in range(runs):
        arrivals = np.cumsum(rng.exponential(1 / rate, n))
        services = rng.exponential(mean_s, n)
        free = [0.0, 0.0]
        waits = np.empty(n)
        for i in range(n):
            start = max(arrivals[i], heapq.heappop(free))
            waits[i] = start - arrivals[i]
            heapq.heappush(free, start + services[i])
        means[run_], shares[run_] = waits.mean() * 1e3, (waits > 0).mean()
    return means, shares


def test_server_queue_wait_is_m_m_c_s_on_exponential_service(tmp_path):
    # The calibration workload planting exponential service of 20 ms, two workers, Poisson
    # arrivals at 60/s: utilisation about 0.65, where M/M/2 is exact. Over 900 queries from
    # an empty queue, M/M/2's own mean wait still varies by a factor of two either way (busy
    # periods span dozens of queries, so batch means understate it): the tolerance is the
    # range M/M/2 itself gives, 2,000 simulated runs of as many queries at the rate LoadGen
    # drew and the measured mean service, from its 0.1st to its 99.9th percentile. A correct
    # queue falls outside it (its mean wait or its share that waited) about one run in 250;
    # one off by a factor of two, mostly outside.
    load = Load("server", qps=60.0, workers=2)
    length = RunLength(warmup=5, min_requests=900, min_duration_s=8.0)
    result = _run(tmp_path, "calibration", load, length, service_ms=20.0)
    report = load_report(result)
    assert report is not None and report.queue is not None
    queue = report.queue
    queries = result.queries.sort_values("issued_ns")
    measured = (queries["picked_ns"] - queries["issued_ns"]).to_numpy() / 1e6
    assert queue.measured_mean_ms == pytest.approx(measured.mean())
    predicted = queue.predicted
    assert predicted.service_cv2 == pytest.approx(1.0, abs=0.35)  # exponential, as planted
    rate, mean_s = queue.arrival_qps, predicted.service_mean_s
    assert predicted.p_wait == pytest.approx(erlang_c(2, rate * mean_s))
    means, shares = _mm2_runs(rate, mean_s, len(queries), 2_000)
    low, high = np.quantile(means, [0.001, 0.999])
    assert low <= queue.measured_mean_ms <= high, (queue.measured_mean_ms, low, high)
    low, high = np.quantile(shares, [0.001, 0.999])
    assert low <= queue.measured_p_wait <= high, (queue.measured_p_wait, low, high)
    # And the measured queue is the one its own arrivals and occupancy make: replayed through
    # a two-server queue, the same mean wait within 5%, plus half a millisecond for a worker's
    # waking to a query that arrived while it was idle (a busy machine's scheduler).
    issued = queries["issued_ns"].to_numpy()
    service = (queries["done_ns"] - queries["picked_ns"]).to_numpy()
    replayed = _replayed_waits(issued, service, 2) / 1e6
    assert abs(measured.mean() - replayed.mean()) <= 0.05 * replayed.mean() + 0.5
    # Each request's own queue wait runs from the issue to its first stage: the wait for a
    # worker, and the worker's dispatch.
    split = split_table(result).requests.merge(queries, on=["replicate", "request"])
    assert (split["queue_ns"] >= split["picked_ns"] - split["issued_ns"]).all()


def test_a_server_set_keeps_every_query_and_its_clock_agrees_with_loadgen_s(tmp_path):
    # 20 ms a query: 1% of a latency is 200 us, far above the microseconds between the two
    # clocks' stamps of one completion; 120 queries, so p99 is not merely the maximum.
    load = Load("server", qps=30.0, workers=2)
    result = _run(tmp_path, "calibration", load, RunLength(2, 120, 1.5), service_ms=20.0)
    queries, requests = result.queries, result.requests
    assert queries is not None and len(queries) >= 120
    assert len(requests) == len(queries)  # one sample a query, one query a request
    assert sorted(queries["request"]) == sorted(requests["request"])
    assert (queries["lag_ns"] >= 0).all() and (queries["latency_ns"] > 0).all()
    # Served from the issue: a request's own latency never exceeds LoadGen's of its query.
    joined = queries.merge(requests, on=["replicate", "request"])
    assert (joined["latency_s"] * 1e9 <= joined["own_latency_ns"] + 1).all()
    assert result.manifest.execution.load == load
    assert result.manifest.execution.scenario == "server"
    report = load_report(result)
    assert report is not None and [c.percentile for c in report.clocks] == [50.0, 99.0]
    assert report.drawn_qps == pytest.approx(30.0, rel=0.5)  # Poisson over ~4 s
    assert all(c.agrees for c in report.clocks), report.clocks
    assert all(c.summary_ms == pytest.approx(c.loadgen_ms, rel=1e-6) for c in report.clocks)
    assert report.loadgen and "Completed samples per second" in report.loadgen[0].numbers
    said = summarize(result).to_dict()["load"]
    assert said["scenario"] == "server" and said["latency_ms"]["p99"] > 0


def test_offline_batches_the_samples_for_a_workload_that_batches(tmp_path, batcher):
    load = Load("offline", qps=400.0, workers=2, batch=8)
    result = _run(tmp_path, f"{batcher}:Batcher", load, RunLength(1, 64, 0.0))
    queries, requests = result.queries, result.requests
    assert queries is not None and len(queries) >= 64
    assert requests["samples"].sum() == len(queries) and requests["samples"].max() == 8
    # Every sample LoadGen issued was served in exactly one request, as one of its batch.
    per_request = queries.groupby("request").size()
    served = requests.set_index("request")["samples"]
    assert (per_request == served.loc[per_request.index]).all()
    report = load_report(result)
    assert report is not None and report.samples_per_s > report.throughput_qps / 8


def test_a_closed_loop_keeps_its_clients_busy_and_no_more(tmp_path):
    load = Load(CLOSED_LOOP, concurrency=3)
    result = _run(tmp_path, "calibration", load, RunLength(1, 30, 0.0), service_ms=20.0)
    requests = result.requests.sort_values("arrival_ns")
    assert result.queries is None and len(requests) >= 30
    edges = np.concatenate([requests["arrival_ns"], requests["response_ns"]])
    steps = np.concatenate([np.ones(len(requests)), -np.ones(len(requests))])
    in_flight = np.cumsum(steps[np.lexsort((steps, edges))])
    assert in_flight.max() == 3  # three clients, each with one request out at a time
    report = load_report(result)
    assert report is not None and report.concurrency == 3 and not report.by_loadgen
    facts = result.manifest.replicates[0].load
    assert facts is not None and 0 < facts.worker_cpu_s <= facts.worker_busy_s


def test_a_load_a_workload_cannot_take_is_refused_before_it_runs(tmp_path, batcher):
    with pytest.raises(UserError, match="one request at a time"):
        plan([f"{batcher}:Alone"], RunConfig("", load=Load(CLOSED_LOOP, concurrency=2)))
    with pytest.raises(UserError, match="cannot batch"):
        plan(["calibration"], RunConfig("", load=Load("offline", batch=4)))


@pytest.mark.parametrize(
    "options",
    [
        ["--qps", "5"],  # no scenario
        ["--scenario", "server"],  # no rate
        ["--scenario", "server", "--qps", "0"],
        ["--scenario", "server", "--qps", "nan"],
        ["--scenario", "server", "--qps", "5", "--batch", "4"],
        ["--scenario", "single-stream", "--qps", "5"],
        ["--concurrency", "2", "--scenario", "server"],
        ["--concurrency", "0"],
        ["--scenario", "offline", "--workers", "5000"],
        ["--scenario", "offline", "--batch", "4"],  # calibration cannot batch
        ["--scenario", "server", "--qps", "0.001", "--min-requests", "40"],  # 11 hours
        ["--scenario", "offline", "--p99-bound", "50"],
    ],
)
def test_a_load_that_means_nothing_is_one_line_and_exit_2(tmp_path, capsys, options):
    status = main(["run", "calibration", "--results", str(tmp_path), *options])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("gapbench: "), err


@pytest.mark.parametrize(
    "load", [Load("server", qps=100.0, workers=2), Load(CLOSED_LOOP, concurrency=2)]
)
def test_a_workload_whose_first_requests_all_fail_stops_being_served(tmp_path, batcher, load):
    result = _run(tmp_path, f"{batcher}:Broken", load, RunLength(0, 400, 2.0))
    facts = result.manifest.replicates[0]
    assert facts.failed_fast and not result.requests["ok"].any()
    # The twentieth failure stops serving (those in flight still finish): far short of the
    # 400 requests and 2 s asked for.
    assert 20 <= len(result.requests) < 100
