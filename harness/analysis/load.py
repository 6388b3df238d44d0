"""A set measured under load, read: latency by percentile from each query's scheduled arrival,
throughput, the generator's lag, gapbench's clock against LoadGen's, and queue wait measured
beside what M/G/c predicts from the measured service times.

What is judged here is judged when the set is read, never stored: the generator running
behind past a bound, or gapbench's clock disagreeing with LoadGen's, makes the set invalid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.columns import split_table
from harness.analysis.queueing import QueuePrediction, predict_wait
from harness.analysis.stats import sample_floor
from harness.archive.loadgen_summary import LoadGenSummary, parse
from harness.archive.result_set import ResultSet

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
# What each check LoadGen's summary says was not satisfied means, and what changes it.
UNMET = {
    "Performance constraints satisfied": "p99 over the latency bound it judges by "
    "(--p99-bound; its default is 100 ms)",
    "Min duration satisfied": "ran shorter than --min-duration",
    "Min queries satisfied": "fewer queries than --min-requests",
    "Early stopping satisfied": "too few queries to bound the percentile it estimates "
    "(raise --min-requests)",
}
CHECKED = (50.0, 99.0)  # where gapbench's clock is held to LoadGen's
# gapbench's clock agrees with LoadGen's within 1%, or within what the two stamp the same
# instant apart: an issue reaches gapbench once LoadGen's thread holds the interpreter lock,
# which in the scenarios that issue on a completion (single- and multi-stream) is about
# 0.1 ms on a busy 2-vCPU machine (a 5 ms query's 1% is 50 us).
CLOCK_AGREEMENT = 0.01
CLOCK_FLOOR_NS = 150_000
# The generator may run behind by 5% of the p99 latency (at least 1 ms) at its own p99: any
# more, and the latencies measure the generator as much as the system.
LAG_SHARE = 0.05
LAG_FLOOR_NS = 1_000_000
QUEUED = 0.1  # a share of queries waiting for a worker past which the answer says so


def rank_percentile(values: np.ndarray, percentile: float) -> float:
    """The percentile as LoadGen takes it: the sorted value at rank floor(p x n)."""
    ordered = np.sort(np.asarray(values))
    if not len(ordered):
        return math.nan
    return float(ordered[min(len(ordered) - 1, int(percentile / 100 * len(ordered)))])


def _close(ours_ms: float, theirs_ms: float) -> bool:
    apart = abs(ours_ms - theirs_ms)
    return apart <= CLOCK_AGREEMENT * theirs_ms or apart * 1e6 <= CLOCK_FLOOR_NS


@dataclass(frozen=True)
class ClockCheck:
    """One replicate's percentile of latency from the scheduled time, on gapbench's clock
    beside LoadGen's trace and LoadGen's own summary of the same run."""

    replicate: int
    percentile: float
    loadgen_ms: float  # from LoadGen's trace
    gapbench_ms: float
    summary_ms: float | None  # what LoadGen's mlperf_log_summary.txt says (None: not kept)

    @property
    def difference(self) -> float:
        """gapbench's reading apart from LoadGen's summary's (its trace's, lacking one)."""
        theirs = self.summary_ms if self.summary_ms is not None else self.loadgen_ms
        return abs(self.gapbench_ms - theirs) / theirs

    @property
    def agrees(self) -> bool:
        said = self.summary_ms is None or _close(self.gapbench_ms, self.summary_ms)
        return said and _close(self.gapbench_ms, self.loadgen_ms)


@dataclass(frozen=True)
class QueueCheck:
    """Queue wait as measured beside Allen-Cunneen's M/G/c prediction from the measured
    service times (server scenario: Poisson arrivals, one sample a query)."""

    arrival_qps: float  # the rate LoadGen's schedule actually drew
    measured_mean_ms: float
    measured_p_wait: float  # share of queries that found every worker busy on arrival
    predicted: QueuePrediction

    @property
    def predicted_mean_ms(self) -> float:
        return self.predicted.mean_wait_s * 1e3

    @property
    def keeps_up(self) -> bool:
        """The workers serve faster than queries arrive (utilisation under 1): otherwise the
        queue only grows, however long the run."""
        return self.predicted.utilisation < 1


@dataclass(frozen=True)
class LoadReport:
    """What a load run measured, read from its set."""

    scenario: str
    by_loadgen: bool
    target_qps: float | None
    workers: int
    concurrency: int
    queries: int  # LoadGen's samples (offline and multi-stream issue several a query)
    counted: int  # the latencies its percentiles are taken over (multi-stream: whole queries)
    measured_s: float
    throughput_qps: float  # of those answered a second
    drawn_qps: float | None  # the arrival rate LoadGen's schedule drew (None: a closed loop)
    samples_per_s: float
    latency_ms: dict[float, float]  # percentile -> ms, from each query's scheduled arrival
    lag_ms: dict[str, float] = field(default_factory=dict)  # p50, p99, max
    lag_bound_ms: float | None = None
    clocks: tuple[ClockCheck, ...] = ()
    queue: QueueCheck | None = None
    worker_on_cpu: float | None = None  # serving threads' CPU time over their wall time
    loadgen: tuple[LoadGenSummary, ...] = ()  # each replicate's summary
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def load_report(result: ResultSet) -> LoadReport | None:
    """The load report of a set run under a load; None for one run one request at a time."""
    load = result.manifest.execution.load
    replicates = [r for r in result.manifest.replicates if r.load is not None]
    queries = result.queries
    if queries is not None:  # those served: a stopped run answers the rest unserved
        queries = queries[queries["request"] >= 0]
        if not queries.empty:  # a replicate cut short kept no queries: it is left out
            replicates = [r for r in replicates if r.replicate in set(queries["replicate"])]
    if load is None or not replicates:
        return None
    facts = [r.load for r in replicates if r.load is not None]
    measured_s = sum(f.measured_s for f in facts)
    busy = sum(f.worker_busy_s for f in facts)
    on_cpu = sum(f.worker_cpu_s for f in facts) / busy if busy > 0 else None
    ok = result.requests[
        result.requests["ok"] & result.requests["replicate"].isin([r.replicate for r in replicates])
    ]
    samples_per_s = float(ok["samples"].sum()) / measured_s if measured_s > 0 else math.nan
    # What every load report says, whichever way its requests arrived.
    said: dict[str, Any] = {
        "scenario": load.scenario,
        "by_loadgen": load.by_loadgen,
        "target_qps": load.qps,
        "workers": load.workers,
        "concurrency": load.concurrency,
        "measured_s": measured_s,
        "samples_per_s": samples_per_s,
        "worker_on_cpu": on_cpu,
    }
    if not load.by_loadgen or queries is None or queries.empty:
        latency = ok["latency_s"].to_numpy() * 1e3
        lost = (
            (
                "interrupted: LoadGen's schedule and summary were lost, so latency counts from "
                "each query's issue, without the generator's lag",
            )
            if load.by_loadgen
            else ()
        )
        return LoadReport(
            **said,
            queries=len(ok),
            counted=len(ok),
            throughput_qps=len(ok) / measured_s if measured_s > 0 else math.nan,
            drawn_qps=None,
            latency_ms={p: rank_percentile(latency, p) for p in PERCENTILES},
            notes=lost,
        )
    kept = [r for r in result.manifest.replicates if r.load is not None and r.load.loadgen_summary]
    summaries = tuple(parse(r.load.loadgen_summary) for r in kept)  # type: ignore[union-attr]
    whole = as_queries(queries, load.scenario)
    latency_ms = whole["latency_ns"].to_numpy() / 1e6
    p99 = rank_percentile(latency_ms, 99.0)
    lag_ms = queries["lag_ns"].to_numpy() / 1e6
    lag = {
        "p50": rank_percentile(lag_ms, 50.0),
        "p99": rank_percentile(lag_ms, 99.0),
        "max": float(lag_ms.max()),
    }
    bound = max(LAG_FLOOR_NS / 1e6, LAG_SHARE * p99)
    by_replicate = dict(zip((r.replicate for r in kept), summaries, strict=True))
    clocks = _clocks(whole, by_replicate)
    drawn = drawn_rate(queries)
    queue = None
    if load.scenario == "server" and load.batch == 1 and drawn is not None:
        queue = _queue(result, queries, load.workers, drawn)
    problems, notes = [], []
    throughput = len(queries) / measured_s if measured_s > 0 else math.nan
    if queue is not None and not queue.keeps_up:
        behind = (
            f"the server fell behind: queries arrived at {queue.arrival_qps:.2f}/s, "
            f"{queue.predicted.utilisation:.2f}x what its {load.workers} worker(s) serve, so "
            "its queue grew all run and its latency measures the run's length"
        )
        # Over a handful of queries the drawn rate itself is rough: said, not judged.
        if len(queries) >= sample_floor(90.0):
            problems.append(behind)
        else:
            notes.append(f"{behind} (over only {len(queries)} queries)")
    if queue is not None and queue.measured_p_wait >= QUEUED:
        notes.append(
            f"{queue.measured_p_wait:.0%} of queries waited for a worker: the answer's Amdahl "
            "holds that wait fixed, while a faster service would shorten it too"
        )
    if lag["p99"] > bound:
        problems.append(
            f"the load generator ran behind: harness lag {lag['p99']:.2f} ms at p99, past "
            f"its bound of {bound:.2f} ms ({LAG_SHARE:.0%} of p99 latency, at least "
            f"{LAG_FLOOR_NS / 1e6:g} ms)"
        )
    for check in clocks:
        if not check.agrees:
            problems.append(
                f"replicate {check.replicate}: gapbench's clock reads p{check.percentile:g} "
                f"{check.difference:.1%} apart from LoadGen's ({check.gapbench_ms:.3f} ms "
                f"against {check.loadgen_ms:.3f} ms in its trace)"
            )
    for index, summary in enumerate(summaries):
        if summary.valid:
            continue
        hints = "; ".join(f"{check}: {UNMET.get(check, 'no')}" for check in summary.unmet)
        notes.append(f"LoadGen judged replicate {index} INVALID ({hints or 'see its summary'})")
        if "Min duration satisfied" in summary.unmet and load.scenario == "offline":
            problems.append(
                "offline ran shorter than --min-duration: LoadGen issues about --qps x "
                "--min-duration samples, so --qps below what the system answers ends it early"
            )
    return LoadReport(
        **said,
        queries=len(queries),
        counted=len(whole),
        throughput_qps=throughput,
        drawn_qps=drawn,
        latency_ms={p: rank_percentile(latency_ms, p) for p in PERCENTILES},
        lag_ms=lag,
        lag_bound_ms=bound,
        clocks=clocks,
        queue=queue,
        loadgen=summaries,
        problems=tuple(problems),
        notes=tuple(notes),
    )


def as_queries(samples: pd.DataFrame, scenario: str) -> pd.DataFrame:
    """One row per query with its latency, as LoadGen's summary counts them: a multi-stream
    query is its samples, scheduled together, done when the last one is."""
    if scenario != "multi-stream":
        return samples
    keys = ["replicate", "scheduled_at_ns"]
    return samples.groupby(keys, as_index=False)[["latency_ns", "own_latency_ns"]].max()


def _clocks(queries: pd.DataFrame, summaries: dict[int, LoadGenSummary]) -> tuple[ClockCheck, ...]:
    """Each replicate's p50 and p99 on both clocks and in LoadGen's summary of that run."""
    checks = []
    for _, one in queries.groupby("replicate"):
        replicate = int(one["replicate"].iloc[0])
        theirs = one["latency_ns"].to_numpy() / 1e6
        ours = one["own_latency_ns"].to_numpy() / 1e6
        summary = summaries.get(replicate)
        for p in CHECKED:
            said = summary.latency_ns(p) if summary is not None else None
            checks.append(
                ClockCheck(
                    replicate,
                    p,
                    rank_percentile(theirs, p),
                    rank_percentile(ours, p),
                    said / 1e6 if said is not None else None,
                )
            )
    return tuple(checks)


def drawn_rate(queries: pd.DataFrame) -> float | None:
    """The arrival rate LoadGen's schedule drew, over each replicate's span of arrivals."""
    first = queries.groupby("replicate")["scheduled_at_ns"].agg(["min", "max", "size"])
    span_s = float((first["max"] - first["min"]).sum()) / 1e9
    gaps = int((first["size"] - 1).sum())
    return gaps / span_s if span_s > 0 and gaps > 0 else None


def occupancy(result: ResultSet, queries: pd.DataFrame) -> pd.DataFrame:
    """Each served query with when a worker took it up (``picked_ns``) and was free again
    (``done_ns``): the server's own occupancy. Sets that did not keep them read the request's
    first stage start and its response instead, which leave out the worker's own dispatch."""
    if "picked_ns" in queries.columns:
        return queries
    split = split_table(result).requests[["replicate", "request", "queue_ns", "response_ns"]]
    served = queries.merge(split, on=["replicate", "request"])
    return served.assign(
        picked_ns=served["issued_ns"] + served["queue_ns"], done_ns=served["response_ns"]
    )


def _queue(
    result: ResultSet, queries: pd.DataFrame, workers: int, rate: float
) -> QueueCheck | None:
    """Queue wait for a free worker as measured, and M/G/c's from the workers' occupancy,
    over each replicate's queries."""
    served = occupancy(result, queries)
    if served.empty:
        return None
    service_s = (served["done_ns"] - served["picked_ns"]).to_numpy() / 1e9
    waited = []
    for _, one in served.groupby("replicate"):
        began, ended = one["picked_ns"].to_numpy(), one["done_ns"].to_numpy()
        issued = one["issued_ns"].to_numpy()
        # At each arrival, the queries in service: taken before it, not yet answered.
        taken = np.searchsorted(np.sort(began), issued, side="left")
        answered = np.searchsorted(np.sort(ended), issued, side="right")
        waited.append(taken - answered >= workers)
    if (service_s <= 0).any():
        return None
    return QueueCheck(
        arrival_qps=rate,
        measured_mean_ms=float((served["picked_ns"] - served["issued_ns"]).mean()) / 1e6,
        measured_p_wait=float(np.concatenate(waited).mean()),
        predicted=predict_wait(rate, service_s, workers),
    )
