"""Latency against throughput on this machine: a sweep of server runs at given rates, and the
highest rate whose p99 stays under a bound, found by bisecting server runs.

Every step is a real run under LoadGen's server scenario, archived as a set of its own, and
judged by the latency LoadGen measured from each query's scheduled arrival. A p99 over fewer
queries than its floor (662) is indicative, and each step says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from harness.analysis.load import load_report
from harness.analysis.stats import PERCENTILE_FLOORS
from harness.archive.schema import CLOSED_LOOP, Load
from harness.archive.store import Archive
from harness.errors import ArchivedThenInterrupted, UserError, in_range
from harness.machine.fingerprint import Fingerprint
from harness.measure.config import P99_BOUND_MS, STEPS, RunConfig
from harness.measure.replicates import run

PROBE_REQUESTS = 32  # the closed loop that sizes a search's first bracket


@dataclass(frozen=True)
class Step:
    """One server run of a sweep or a search, as its set measured it."""

    target_qps: float
    set_id: str
    queries: int
    throughput_qps: float
    drawn_qps: float  # the arrival rate LoadGen's schedule drew for this step
    utilisation: float  # that rate x the workers' mean occupancy / workers (NaN: unknown)
    p50_ms: float
    p99_ms: float
    queue_ms: float | None  # mean wait for a free worker, measured
    predicted_queue_ms: float | None  # M/G/c's, from the measured occupancy
    lag_p99_ms: float
    wall_s: float  # what the step cost, setup and archiving included
    problems: tuple[str, ...] = ()
    passed: bool | None = None  # under the bound and keeping up (a search's steps only)

    @property
    def failed_because(self) -> str:
        """Why a search's step failed, in a few words ("" if it passed or was not judged)."""
        if self.passed is not False:
            return ""
        if not self.keeps_up:
            return "fell behind"
        if self.problems:
            return "invalid"
        return "p99 > bound"

    @property
    def keeps_up(self) -> bool:
        """Its workers served faster than its queries arrived (utilisation under 1)."""
        return not self.utilisation >= 1  # unknown (NaN): no sign it fell behind

    @property
    def p99_indicative(self) -> bool:
        return self.queries < PERCENTILE_FLOORS[99]


@dataclass(frozen=True)
class Capacity:
    """What a sweep or a search found: its steps in the order run; a search's answer."""

    workload: str
    workers: int
    steps: tuple[Step, ...]
    p99_bound_ms: float | None = None
    max_qps: float | None = None  # the highest rate that passed (None: none did)
    probe_qps: float | None = None  # the closed loop's throughput that sized the search
    wall_s: float = 0.0
    interrupted: bool = False  # Ctrl-C stopped it: the steps are those that finished
    stopped_because: str = ""  # why a search ended before its steps were all run


class Interrupted(Exception):
    """A step was cut short by Ctrl-C: its set is kept ("" if it measured nothing), and no
    further step runs."""

    def __init__(self, set_id: str) -> None:
        super().__init__(set_id)
        self.set_id = set_id


def workers_of(config: RunConfig) -> int:
    return config.load.workers if config.load is not None else 1


Say = Callable[[str], None]


def step(
    config: RunConfig,
    rate: float,
    archive: Archive,
    fingerprint: Fingerprint,
    p99_bound_ms: float | None = None,
) -> Step:
    """One server run at ``rate``, archived, read back into a step; LoadGen judges it by
    ``p99_bound_ms`` too, where one is given."""
    began = time.monotonic()
    load = Load("server", qps=rate, workers=workers_of(config), p99_bound_ms=p99_bound_ms)
    try:
        result = run(replace(config, load=load), archive, fingerprint)
    except ArchivedThenInterrupted as stopped:
        raise Interrupted(stopped.set_id) from None
    except KeyboardInterrupt:  # in setup or warm-up: nothing of this step was measured
        raise Interrupted("") from None
    wall = time.monotonic() - began
    if result.manifest.interrupted:
        raise Interrupted(result.id)
    report = load_report(result)
    if report is None:
        raise UserError(f"{result.id} measured nothing under load (see gapbench show {result.id})")
    queue = report.queue
    finite = queue is not None and math.isfinite(queue.predicted_mean_ms)
    return Step(
        target_qps=rate,
        set_id=result.id,
        queries=report.queries,
        throughput_qps=report.throughput_qps,
        drawn_qps=report.drawn_qps if report.drawn_qps is not None else rate,
        utilisation=queue.predicted.utilisation if queue is not None else math.nan,
        p50_ms=report.latency_ms[50.0],
        p99_ms=report.latency_ms[99.0],
        queue_ms=queue.measured_mean_ms if queue is not None else None,
        predicted_queue_ms=queue.predicted_mean_ms if queue is not None and finite else None,
        lag_p99_ms=report.lag_ms.get("p99", math.nan),
        wall_s=wall,
        problems=report.problems,
    )


def sweep(
    config: RunConfig,
    rates: Sequence[float],
    archive: Archive,
    fingerprint: Fingerprint,
    say: Say = lambda text: None,
) -> Capacity:
    """A server run at each rate, in the order given: the latency-throughput table."""
    began = time.monotonic()
    steps: list[Step] = []
    interrupted = False
    for rate in rates:
        try:
            done = step(config, rate, archive, fingerprint)
        except Interrupted as stopped:
            say(_cut_short(rate, stopped.set_id))
            interrupted = True
            break
        say(_line(done))
        steps.append(done)
    return Capacity(
        config.workload,
        workers_of(config),
        tuple(steps),
        wall_s=time.monotonic() - began,
        interrupted=interrupted,
    )


def find_max_qps(
    config: RunConfig,
    p99_bound_ms: float,
    archive: Archive,
    fingerprint: Fingerprint,
    steps: int = 5,
    say: Say = lambda text: None,
) -> Capacity:
    """The highest rate whose p99 (from the scheduled arrival) stays within the bound while
    the server keeps up, by bisection between none and the rate a closed loop of the workers
    sustains (no server can answer faster than that for long)."""
    in_range("--p99-bound", p99_bound_ms, *P99_BOUND_MS)
    in_range("--steps", steps, *STEPS)
    began = time.monotonic()
    workers = workers_of(config)
    probe = replace(
        config,
        load=Load(CLOSED_LOOP, concurrency=workers),
        measurement=replace(config.measurement, min_requests=PROBE_REQUESTS, min_duration_s=0.0),
        profile=0,
    )
    try:
        sized = run(probe, archive, fingerprint)
    except KeyboardInterrupt as stopped:  # in setup, or once the set was written
        held = stopped.set_id if isinstance(stopped, ArchivedThenInterrupted) else ""
        say(f"the closed loop: {_kept(held)}")
        return Capacity(config.workload, workers, (), p99_bound_ms, interrupted=True)
    if sized.manifest.interrupted:
        say(f"the closed loop: {_kept(sized.id)}")
        return Capacity(config.workload, workers, (), p99_bound_ms, interrupted=True)
    report = load_report(sized)
    if report is None or not report.throughput_qps > 0:
        raise UserError(f"the closed loop that sizes the search answered nothing ({sized.id})")
    ceiling = report.throughput_qps
    say(f"a closed loop of {workers} answered {ceiling:.2f} queries/s ({sized.id})")
    low, high = 0.0, ceiling
    found: list[Step] = []
    best = None
    interrupted = False
    stopped_because = ""
    # A step must bring its minimum of queries within the run's limit: below this rate,
    # Poisson arrivals cannot (RunConfig refuses such a run).
    length = config.measurement
    slowest = length.min_requests / min(length.max_duration_s, config.timeout_s or math.inf)
    for _ in range(steps):
        rate = (low + high) / 2
        if rate < slowest:
            stopped_because = (
                f"the next rate, {rate:.3g} qps, cannot bring {length.min_requests} queries "
                f"within the run's limit: the search stops here"
            )
            say(stopped_because)
            break
        try:
            done = step(config, rate, archive, fingerprint, p99_bound_ms)
        except Interrupted as stopped:
            say(_cut_short(rate, stopped.set_id))
            interrupted = True
            break
        passed = done.p99_ms <= p99_bound_ms and done.keeps_up and not done.problems
        done = replace(done, passed=passed)
        say(_line(done))
        found.append(done)
        if passed:
            low, best = rate, rate
        else:
            high = rate
    return Capacity(
        config.workload,
        workers,
        tuple(found),
        p99_bound_ms=p99_bound_ms,
        max_qps=best,
        probe_qps=ceiling,
        wall_s=time.monotonic() - began,
        interrupted=interrupted,
        stopped_because=stopped_because,
    )


def _kept(set_id: str) -> str:
    return (
        f"interrupted; what finished is archived as {set_id}"
        if set_id
        else ("interrupted; nothing of it was archived")
    )


def _cut_short(rate: float, set_id: str) -> str:
    return f"{rate:.2f} qps: {_kept(set_id)}"


def _line(done: Step) -> str:
    verdict = "" if done.passed is None else (" pass" if done.passed else " fail")
    rough = "~" if done.p99_indicative else ""
    return (
        f"{done.target_qps:.2f} qps: answered {done.throughput_qps:.2f}/s, p50 "
        f"{done.p50_ms:.1f} ms, p99 {rough}{done.p99_ms:.1f} ms over {done.queries} queries "
        f"({done.wall_s:.0f} s){verdict} ({done.set_id})"
    )
