"""MLPerf's LoadGen as the load generator: gapbench is its system under test and its sample
library, so a run's arrivals, minimums and percentiles are LoadGen's own.

LoadGen calls ``issue`` on its own thread at each query's scheduled time; the work is handed to
``workers`` threads, each completing its query with ``QuerySamplesComplete``. A query's latency
counts from its *scheduled* time (no coordinated omission); from the issue on, the wait for a
free worker is the system's queue wait, and the time from schedule to issue the generator's
lag. The schedule is read back from LoadGen's trace, where each sample carries its scheduled
time, its issue delay (the generator running behind) and its latency, and gapbench's own clock
is checked against it.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.archive.schema import Load
from harness.errors import UserError, in_range
from harness.measure.config import check_load

TEST_THREAD = "gapbench-loadgen"
STOP_S = 30.0  # after Ctrl-C, how long each worker may take to finish its request
SUMMARY = "mlperf_log_summary.txt"
TRACE = "mlperf_log_trace.json"


@dataclass(frozen=True)
class Minimums:
    """LoadGen stops when both minimums are met, or at the maximum duration."""

    duration_s: float
    queries: int
    max_duration_s: float = 1800.0


@dataclass(frozen=True)
class LoadRun:
    """What LoadGen scheduled and measured, beside gapbench's own clock.

    ``samples`` holds one row per sample in the order LoadGen issued them: ``sample_index``
    (into the library), ``scheduled_ns`` (LoadGen's, from the test's start),
    ``issue_delay_ns`` (scheduled to issued, by LoadGen's clock), ``latency_ns`` (LoadGen's,
    scheduled to complete), ``issued_ns`` (gapbench's clock when the query reached it),
    ``scheduled_at_ns`` (the scheduled time on gapbench's clock), ``lag_ns`` (from it to the
    issue: the generator running behind), ``own_latency_ns`` (scheduled to complete, on
    gapbench's clock), ``request`` (what ``serve`` said served it), ``picked_ns`` (when a
    worker took it up) and ``done_ns`` (when that worker was free again)."""

    samples: pd.DataFrame
    summary: str  # LoadGen's mlperf_log_summary.txt (harness.archive.loadgen_summary reads it)
    log_dir: Path
    worker_busy_ns: int  # wall time the worker threads spent serving, summed
    worker_cpu_ns: int  # their own CPU time meanwhile


# Serves samples (their indices, gapbench's clock at their issue); says which request did.
Serve = Callable[[list[int], int], int | None]


def run_load(
    serve: Serve,
    count: int,
    load: Load,
    minimums: Minimums,
    log_dir: Path,
    seed: int = 0,
    clock: Callable[[], int] = time.perf_counter_ns,
    stop: threading.Event | None = None,
) -> LoadRun:
    """Drive ``serve`` for a library of ``count`` samples under ``load``.

    Samples LoadGen issues together (offline's all, multi-stream's query) reach ``serve`` in
    groups of up to ``load.batch``; a lone sample alone. ``clock`` must be the monotonic clock
    LoadGen's steady clock reads (perf_counter_ns on Linux and macOS). Once ``stop`` is set,
    nothing more is served: LoadGen's queries complete at once until its schedule ends."""
    import mlperf_loadgen as lg

    check_load(load)
    in_range("sample count", count, 1, 10_000_000)
    log_dir.mkdir(parents=True, exist_ok=True)
    pending: queue.Queue[tuple[list[int], list[Any], int] | None] = queue.Queue()
    issued: list[int] = []  # gapbench's clock at each sample's issue, in issue order
    completed: dict[int, int] = {}  # gapbench's clock as each sample's answer went back
    freed: dict[int, int] = {}  # and as its worker was ready for the next one
    served_by: dict[int, int] = {}
    picked: dict[int, int] = {}  # when a worker took each sample up
    # Ctrl-C, or the caller's stop: what is still issued completes at once, unserved
    stopped = stop or threading.Event()
    failures: list[BaseException] = []
    busy = Busy()
    lock = threading.Lock()

    def issue(samples: list[Any]) -> None:
        now = clock()
        first = len(issued)
        issued.extend([now] * len(samples))
        if stopped.is_set():
            seqs = range(first, first + len(samples))
            with lock:  # kept as unserved (request -1), answered at their issue
                completed.update(dict.fromkeys(seqs, now))
                freed.update(dict.fromkeys(seqs, now))
                picked.update(dict.fromkeys(seqs, now))
                served_by.update(dict.fromkeys(seqs, -1))
            lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in samples])
            return
        for at in range(0, len(samples), load.batch):
            group = samples[at : at + load.batch]
            pending.put((list(range(first + at, first + at + len(group))), group, now))

    def work() -> None:
        while (item := pending.get()) is not None:
            seqs, group, at = item
            began, cpu, request = clock(), time.thread_time_ns(), None
            try:
                if not stopped.is_set():
                    request = serve([s.index for s in group], at)
            except BaseException as exc:  # said after the run; the queries still complete
                failures.append(exc)
            responses = [lg.QuerySampleResponse(s.id, 0, 0) for s in group]
            # Stamped just before LoadGen stamps the same completion: nothing between the two.
            end = clock()
            lg.QuerySamplesComplete(responses)
            with lock:
                busy.add(end - began, time.thread_time_ns() - cpu)
                completed.update(dict.fromkeys(seqs, end))
                picked.update(dict.fromkeys(seqs, began))
                served_by.update(dict.fromkeys(seqs, -1 if request is None else request))
            # What a worker does between answering and taking the next query is its own
            # occupancy too: a query waiting for it waits through that as well.
            freed.update(dict.fromkeys(seqs, clock()))

    threads = [threading.Thread(target=work, daemon=True) for _ in range(load.workers)]
    settings = _test_settings(lg, load, minimums, seed)
    logs = _logs(lg, log_dir)
    for thread in threads:
        thread.start()
    sut = qsl = None
    finished = False
    try:
        sut = lg.ConstructSUT(issue, lambda: None)
        qsl = lg.ConstructQSL(count, count, lambda indices: None, lambda indices: None)
        test = threading.Thread(
            target=lg.StartTestWithLogSettings,
            args=(sut, qsl, settings, logs),
            name=TEST_THREAD,
            daemon=True,
        )
        test.start()
        while test.is_alive():  # joined in slices: Ctrl-C reaches this thread meanwhile
            test.join(0.1)
        finished = True
    finally:
        # Interrupted, LoadGen cannot be stopped: it runs out its schedule with nothing
        # served, owning its SUT and sample library until it does (a daemon thread, never
        # waited for). The workers finish the request each is serving, then stop.
        stopped.set()
        for _ in threads:
            pending.put(None)
        deadline = time.monotonic() + STOP_S
        for thread in threads:
            thread.join(None if finished else max(0.0, deadline - time.monotonic()))
        if finished:
            lg.DestroyQSL(qsl)
            lg.DestroySUT(sut)
    if failures:
        raise UserError(f"a query failed under load: {type(failures[0]).__name__}: {failures[0]}")
    samples = read_trace(log_dir / TRACE)
    try:
        summary = (log_dir / SUMMARY).read_text()
    except OSError as exc:
        raise UserError(f"LoadGen's summary in {log_dir} is unreadable: {exc.strerror}") from None
    own = _own_clock(samples, issued, picked, completed, freed, served_by)
    return LoadRun(own, summary, log_dir, busy.wall_ns, busy.cpu_ns)


@dataclass
class Busy:
    """Serving threads' wall time on requests and their own CPU time meanwhile, summed."""

    wall_ns: int = 0
    cpu_ns: int = 0

    def add(self, wall_ns: int, cpu_ns: int) -> None:
        self.wall_ns += wall_ns
        self.cpu_ns += cpu_ns


def _test_settings(lg: Any, load: Load, minimums: Minimums, seed: int) -> Any:
    test = lg.TestSettings()
    test.scenario = {
        "single-stream": lg.TestScenario.SingleStream,
        "multi-stream": lg.TestScenario.MultiStream,
        "server": lg.TestScenario.Server,
        "offline": lg.TestScenario.Offline,
    }[load.scenario]
    test.mode = lg.TestMode.PerformanceOnly
    if load.qps is not None:
        test.server_target_qps = load.qps
        test.offline_expected_qps = load.qps
    test.multi_stream_samples_per_query = load.samples_per_query
    if load.p99_bound_ms is not None:  # LoadGen's verdict and early stopping judge this bound
        test.server_target_latency_ns = round(load.p99_bound_ms * 1e6)
        test.server_target_latency_percentile = 0.99
    test.min_duration_ms = round(minimums.duration_s * 1000)
    test.max_duration_ms = round(minimums.max_duration_s * 1000)
    test.min_query_count = minimums.queries
    test.qsl_rng_seed = test.sample_index_rng_seed = test.schedule_rng_seed = seed
    return test


def _logs(lg: Any, log_dir: Path) -> Any:
    output = lg.LogOutputSettings()
    output.outdir = str(log_dir)
    output.copy_summary_to_stdout = False
    logs = lg.LogSettings()
    logs.log_output = output
    logs.enable_trace = True  # the only record of each sample's scheduled time
    return logs


def read_trace(path: Path) -> pd.DataFrame:
    """Each sample LoadGen issued, in issue order, from its Chrome-format trace.

    The trace is one event a line, but not JSON as a whole (6.0 writes some keys with their
    quotes doubled): only the lines of samples' begin events are read."""
    try:
        lines = path.read_text().splitlines()
        events = [
            json.loads(line.rstrip().rstrip(","))
            for line in lines
            if line.startswith('{"name":"Sample"') and '"ph":"b"' in line
        ]
        rows = [
            (
                e["args"]["sample_seq"],
                e["args"]["sample_idx"],
                round(e["ts"] * 1000),
                e["args"]["issue_start_ns"],
                e["args"]["complete_ns"],
            )
            for e in events
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"LoadGen's trace {path} is unreadable: {exc}") from None
    columns = ["sample_seq", "sample_index", "scheduled_ns", "issue_delay_ns", "latency_ns"]
    frame = pd.DataFrame(rows, columns=columns).sort_values("sample_seq", kind="stable")
    return frame.drop(columns="sample_seq").reset_index(drop=True)


def _own_clock(
    samples: pd.DataFrame,
    issued: list[int],
    picked: dict[int, int],
    completed: dict[int, int],
    freed: dict[int, int],
    served_by: dict[int, int],
) -> pd.DataFrame:
    # gapbench's clock and LoadGen's meet at an issue: LoadGen says how long after its
    # scheduled time that came, gapbench when it came. Each schedule is LoadGen's.
    if len(samples) != len(issued):
        raise UserError(f"LoadGen's trace holds {len(samples)} samples, {len(issued)} were issued")
    at = np.array(issued, dtype=np.int64)
    # Each issue reached gapbench a little after LoadGen stamped it (its callback had to take
    # the interpreter lock): the least of those gaps is the best reading of where LoadGen's
    # test began on gapbench's clock.
    theirs = samples["scheduled_ns"].to_numpy(np.int64) + samples["issue_delay_ns"].to_numpy(
        np.int64
    )
    start = int((at - theirs).min())
    scheduled = start + samples["scheduled_ns"].to_numpy(np.int64)
    seqs = range(len(issued))
    answered = np.array([completed[i] for i in seqs], dtype=np.int64)
    return samples.assign(
        request=np.array([served_by[i] for i in seqs], dtype=np.int64),
        issued_ns=at,
        picked_ns=np.array([picked[i] for i in seqs], dtype=np.int64),
        done_ns=np.array([freed[i] for i in seqs], dtype=np.int64),
        scheduled_at_ns=scheduled,
        lag_ns=at - scheduled,
        own_latency_ns=answered - scheduled,
    )


def loadgen_left_running() -> bool:
    """Whether a LoadGen test this process started still runs (Ctrl-C left it to run out its
    schedule): the process must then leave without its interpreter's finalisation, during
    which LoadGen's C++ side aborts on the thread it still holds."""
    return any(t.name == TEST_THREAD and t.is_alive() for t in threading.enumerate())
