"""Requests under a load: a LoadGen scenario, or clients in a closed loop, served by threads.

Several requests are in flight at once here, so every finished one goes through one lock to
its row, its intervals and the progress bar. What the serving threads cost the interpreter is
measured as it happens: their wall time on requests beside their own CPU time (a thread that
waits for the interpreter lock is on neither the CPU nor a stage's probe).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.archive.schema import Load, LoadFacts, RunLength
from harness.archive.tables import QUERY_COLUMNS, QUERY_OCCUPANCY
from harness.errors import UserError
from harness.measure.config import FAIL_FAST
from harness.measure.driver import RequestDriver, RequestOutcome
from harness.measure.loadgen import Busy, Minimums, run_load
from harness.record.probes import Clock
from harness.workload import Workload

RequestRow = Callable[[Workload, int, Any, RequestOutcome], dict[str, Any]]


class Sink:
    """Where finished requests go from any serving thread: rows, spooled intervals, progress.

    A serving thread only hands its request over; a thread of the sink's own builds the row,
    spools the intervals and draws the bar. Done on the serving thread, that bookkeeping would
    keep a worker from its next query and show up as the system's queue wait.
    """

    def __init__(
        self,
        workload: Workload,
        row: RequestRow,
        spool: Any,
        length: RunLength,
        clock: Clock,
        progress: Callable[[int, float], None] | None,
    ) -> None:
        self.workload, self.row, self.spool, self.length = workload, row, spool, length
        self.clock, self.progress = clock, progress
        self.rows: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.begin = clock()
        self.started = 0  # request ids handed out
        self.progress_ns = 0
        # Ctrl-C, or a broken workload: nothing more is served
        self.stopped = threading.Event()
        self.failed_fast = False  # its first FAIL_FAST requests all failed
        self._handed: queue.SimpleQueue[tuple[int, Any, RequestOutcome] | None] = (
            queue.SimpleQueue()
        )
        self._keeper = threading.Thread(target=self._keep, name="gapbench-sink", daemon=True)
        self._keeper.start()

    def next_id(self) -> int:
        with self.lock:
            self.started += 1
            return self.started - 1

    def take(self, request: int, payload: Any, outcome: RequestOutcome) -> None:
        """Hand a finished request over (from any thread); kept by the sink's thread."""
        self._handed.put((request, payload, outcome))

    def close(self) -> None:
        """Keep every request handed over so far; ``rows`` is then whole."""
        if self._keeper.is_alive():
            self._handed.put(None)
            self._keeper.join()

    def _keep(self) -> None:
        while (item := self._handed.get()) is not None:
            request, payload, outcome = item
            row = self.row(self.workload, request, payload, outcome)
            self.rows.append(row)
            self.spool.add(outcome.recorder)
            if len(self.rows) == FAIL_FAST and not any(r["ok"] for r in self.rows):
                self.failed_fast = True  # a broken workload: no use going on
                self.stopped.set()
            if self.progress is not None:
                drawn = time.perf_counter_ns()
                self.progress(len(self.rows), self.elapsed_s())
                self.progress_ns += time.perf_counter_ns() - drawn

    def partial_facts(self) -> LoadFacts:
        """What a run stopped midway still knows of its load: how long it served (LoadGen's
        schedule, trace and summary are lost with the test that did not finish)."""
        return LoadFacts(
            measured_s=self.elapsed_s(), worker_busy_s=0.0, worker_cpu_s=0.0, process_cpu_s=0.0
        )

    def elapsed_s(self) -> float:
        return (self.clock() - self.begin) / 1e9

    def more(self) -> bool:
        """Whether a closed loop sends another request: LoadGen's rule of both minimums,
        stopping at the safety maximum and the request cap."""
        with self.lock:
            n = self.started
        return not self.stopped.is_set() and self.length.wants_more(n, self.elapsed_s())


@dataclass(frozen=True)
class Served:
    """What serving under a load measured beside the requests' rows."""

    facts: LoadFacts
    queries: pd.DataFrame | None  # each query LoadGen scheduled (None: a closed loop)


def serve(
    load: Load,
    driver: RequestDriver,
    stream: Sequence[Any],
    sink: Sink,
    log_dir: Path,
    seed: int,
) -> Served:
    """Serve ``stream`` under ``load`` until its minimums are met; rows go to ``sink``, which
    has kept every one when this returns or raises."""
    try:
        if load.by_loadgen:
            return _under_loadgen(load, driver, stream, sink, log_dir, seed)
        return _closed_loop(load, driver, stream, sink)
    finally:
        sink.close()


def _payload(workload: Workload, stream: Sequence[Any], indices: list[int]) -> Any:
    payloads = [stream[i % len(stream)] for i in indices]
    return payloads[0] if len(payloads) == 1 else workload.batch(payloads)


def _under_loadgen(
    load: Load, driver: RequestDriver, stream: Sequence[Any], sink: Sink, log_dir: Path, seed: int
) -> Served:
    def one(indices: list[int], issued_ns: int) -> int:
        request = sink.next_id()
        payload = _payload(sink.workload, stream, indices)
        # The request counts from its issue: the wait for a free worker is its queue wait.
        sink.take(request, payload, driver(request, payload, issued_ns=issued_ns))
        return request

    length = sink.length
    minimums = Minimums(length.min_duration_s, length.min_requests, length.max_duration_s)
    cpu = time.process_time_ns()
    ran = run_load(one, len(stream), load, minimums, log_dir, seed, sink.clock, sink.stopped)
    cpu = time.process_time_ns() - cpu
    samples = ran.samples
    span = samples["done_ns"].max() - samples["issued_ns"].min()  # first issue to last answer
    facts = LoadFacts(
        measured_s=float(span) / 1e9,
        worker_busy_s=ran.worker_busy_ns / 1e9,
        worker_cpu_s=ran.worker_cpu_ns / 1e9,
        process_cpu_s=cpu / 1e9,
        loadgen_summary=ran.summary,
    )
    queries = samples.rename_axis("query").reset_index()[QUERY_COLUMNS + QUERY_OCCUPANCY]
    return Served(facts, queries)


def _closed_loop(load: Load, driver: RequestDriver, stream: Sequence[Any], sink: Sink) -> Served:
    busy = Busy()
    failures: list[BaseException] = []

    def client() -> None:
        spent = Busy()
        try:
            while sink.more():
                request = sink.next_id()
                payload = stream[request % len(stream)]
                began, cpu = sink.clock(), time.thread_time_ns()
                sink.take(request, payload, driver(request, payload))
                spent.add(sink.clock() - began, time.thread_time_ns() - cpu)
        except BaseException as exc:  # said once every client has stopped
            failures.append(exc)
        with sink.lock:
            busy.add(spent.wall_ns, spent.cpu_ns)

    cpu = time.process_time_ns()
    clients = [
        threading.Thread(target=client, name=f"gapbench-client-{i}", daemon=True)
        for i in range(load.concurrency)
    ]
    for thread in clients:
        thread.start()
    try:
        for thread in clients:
            while thread.is_alive():  # joined in slices: Ctrl-C reaches this thread meanwhile
                thread.join(0.1)
    except BaseException:
        sink.stopped.set()  # each client stops after the request it is serving
        for thread in clients:
            thread.join()
        raise
    if failures:
        raise UserError(f"a client failed: {type(failures[0]).__name__}: {failures[0]}")
    facts = LoadFacts(
        measured_s=sink.elapsed_s(),
        worker_busy_s=busy.wall_ns / 1e9,
        worker_cpu_s=busy.cpu_ns / 1e9,
        process_cpu_s=(time.process_time_ns() - cpu) / 1e9,
    )
    return Served(facts, None)
