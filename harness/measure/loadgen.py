"""MLPerf's LoadGen as the load generator: gapbench is its system under test and its sample
library, so a run's arrivals, minimums and percentiles are LoadGen's own.

LoadGen calls ``issue`` on its own thread at each query's scheduled time; the work is handed to
``workers`` threads, each completing its query with ``QuerySamplesComplete``. A query's latency
counts from its *scheduled* time (no coordinated omission). The schedule is read back from
LoadGen's trace, where each sample carries its scheduled time, its issue delay (the generator
running behind) and its latency, and gapbench's own clock is checked against it.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import UserError, in_range

SCENARIOS = ("single-stream", "multi-stream", "server", "offline")
SUMMARY = "mlperf_log_summary.txt"
TRACE = "mlperf_log_trace.json"
WORKERS = (1, 1024)
QPS = (0.001, 1_000_000.0)


@dataclass(frozen=True)
class LoadSettings:
    """A LoadGen scenario and its minimums (LoadGen stops when both are met)."""

    scenario: str = "single-stream"
    qps: float | None = None  # the server's Poisson rate, or offline's expected throughput
    min_duration_s: float = 10.0
    min_queries: int = 100
    seed: int = 0  # LoadGen's schedule, sample-index and sample-library seeds
    workers: int = 1  # threads serving queries at once

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise UserError(f"--scenario {self.scenario!r}: one of {', '.join(SCENARIOS)}")
        if self.scenario == "server" and self.qps is None:
            raise UserError("--scenario server needs --qps, the rate of Poisson arrivals")
        if self.qps is not None:
            in_range("--qps", self.qps, *QPS)
        in_range("--workers", self.workers, *WORKERS)
        in_range("--min-duration", self.min_duration_s, 0.0, 86_400.0)
        in_range("--min-queries", self.min_queries, 1, 10_000_000)
        in_range("--seed", self.seed, 0, 2**32 - 1)


@dataclass(frozen=True)
class LoadRun:
    """What LoadGen scheduled and measured, beside gapbench's own clock.

    ``samples`` holds one row per sample in the order LoadGen issued them: ``sample_index``
    (into the library), ``scheduled_ns`` (from the test's start), ``issue_delay_ns`` (scheduled
    to issued: the generator's lag), ``latency_ns`` (LoadGen's, scheduled to complete) and
    ``own_latency_ns`` (the same span on gapbench's clock)."""

    samples: pd.DataFrame
    summary: dict[str, float]
    valid: bool
    log_dir: Path


def run_load(
    serve: Callable[[int], object], count: int, settings: LoadSettings, log_dir: Path
) -> LoadRun:
    """Drive ``serve(sample_index)`` for a library of ``count`` samples under ``settings``."""
    import mlperf_loadgen as lg

    in_range("sample count", count, 1, 10_000_000)
    log_dir.mkdir(parents=True, exist_ok=True)
    pending: queue.Queue[tuple[int, Any] | None] = queue.Queue()
    issued: list[int] = []  # gapbench's clock at each issue, in issue order
    done: dict[int, int] = {}
    failures: list[BaseException] = []

    def issue(samples: list[Any]) -> None:
        now = time.monotonic_ns()
        for sample in samples:
            pending.put((len(issued), sample))
            issued.append(now)

    def work() -> None:
        while (item := pending.get()) is not None:
            seq, sample = item
            try:
                serve(sample.index)
            except BaseException as exc:  # said after the run; the query still completes
                failures.append(exc)
            done[seq] = time.monotonic_ns()
            lg.QuerySamplesComplete([lg.QuerySampleResponse(sample.id, 0, 0)])

    threads = [threading.Thread(target=work, daemon=True) for _ in range(settings.workers)]
    for thread in threads:
        thread.start()
    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(count, count, lambda indices: None, lambda indices: None)
    try:
        lg.StartTestWithLogSettings(sut, qsl, _test_settings(lg, settings), _logs(lg, log_dir))
    finally:
        for _ in threads:
            pending.put(None)
        for thread in threads:
            thread.join()
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    if failures:
        raise UserError(f"a query failed under load: {type(failures[0]).__name__}: {failures[0]}")
    samples = read_trace(log_dir / TRACE)
    summary, valid = read_summary(log_dir / SUMMARY)
    return LoadRun(_own_latency(samples, issued, done), summary, valid, log_dir)


def _test_settings(lg: Any, settings: LoadSettings) -> Any:
    test = lg.TestSettings()
    test.scenario = {
        "single-stream": lg.TestScenario.SingleStream,
        "multi-stream": lg.TestScenario.MultiStream,
        "server": lg.TestScenario.Server,
        "offline": lg.TestScenario.Offline,
    }[settings.scenario]
    test.mode = lg.TestMode.PerformanceOnly
    if settings.qps is not None:
        test.server_target_qps = settings.qps
        test.offline_expected_qps = settings.qps
    test.min_duration_ms = int(settings.min_duration_s * 1000)
    test.min_query_count = settings.min_queries
    test.qsl_rng_seed = test.sample_index_rng_seed = test.schedule_rng_seed = settings.seed
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


_STAT = re.compile(r"^(?P<key>[A-Za-z0-9 .()]+?)\s*:\s*(?P<value>-?[0-9.]+)\s*$")


def read_summary(path: Path) -> tuple[dict[str, float], bool]:
    """The numbers of ``mlperf_log_summary.txt`` by their label, and whether LoadGen judged the
    run valid (its minimums met, early stopping satisfied)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"LoadGen's summary {path} is unreadable: {exc.strerror}") from None
    stats = {
        m["key"].strip(): float(m["value"])
        for line in text.splitlines()
        if (m := _STAT.match(line.strip()))
    }
    return stats, "Result is : VALID" in text


def _own_latency(samples: pd.DataFrame, issued: list[int], done: dict[int, int]) -> pd.DataFrame:
    # gapbench's clock and LoadGen's meet at the first issue: LoadGen says how long after its
    # scheduled time that came, gapbench when it came. Each later schedule is LoadGen's.
    if len(samples) != len(issued):
        raise UserError(f"LoadGen's trace holds {len(samples)} samples, {len(issued)} were issued")
    first = samples.iloc[0]
    start = issued[0] - int(first["issue_delay_ns"]) - int(first["scheduled_ns"])
    completed = np.array([done[i] for i in range(len(issued))], dtype=np.int64)
    own = completed - (start + samples["scheduled_ns"].to_numpy(np.int64))
    return samples.assign(own_latency_ns=own)
