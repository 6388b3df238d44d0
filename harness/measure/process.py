"""Measure a workload in this process: set up, warm up (discarded), then measured requests."""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from harness.measure.driver import RequestDriver, RequestOutcome, describe
from harness.machine.environment import CpuTimes, cpu_times
from harness.errors import UserError
from harness.record.gpu_timing import SYNC, device_timer
from harness.measure.overhead import probe_cost_ns
from harness.record.probes import Clock, Interval
from harness.measure.profiling import Profile, profile_requests
from harness.measure.telemetry import Sampler
from harness.record.virtual import Spinner, Virtual
from harness.workload import RunContext, Workload

TELEMETRY_INTERVAL_S = 0.5


@dataclass(frozen=True)
class Measurement:
    """How long to measure: both a minimum request count and a minimum time (LoadGen style)."""

    warmup: int = 20
    min_requests: int = 700
    min_duration_s: float = 60.0
    # A safety stop so a slow machine still finishes; a run that stops here says so.
    max_duration_s: float = 1800.0

    @classmethod
    def for_size(cls, size: str) -> Measurement:
        # quick: enough for p90 (64 samples), not for p99 (662): its p99 is indicative.
        return cls(warmup=5, min_requests=64, min_duration_s=3.0) if size == "quick" else cls()


@dataclass(frozen=True)
class ProcessResult:
    """What one process measured: raw intervals and per-request rows, plus run facts."""

    intervals: pd.DataFrame
    requests: pd.DataFrame
    facts: dict[str, Any]
    interrupted: bool = False
    profile: Profile | None = None
    telemetry: pd.DataFrame | None = None


def _steal(before: CpuTimes | None, after: CpuTimes | None) -> float | None:
    """Share of the machine's CPU time the hypervisor gave to others while we measured."""
    if before is None or after is None:
        return None
    return after.since(before).steal_fraction


def peak_rss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # Windows has no getrusage
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators, for plugins that use them."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def measure(
    workload: Workload,
    run: RunContext,
    measurement: Measurement,
    *,
    clock: Clock = time.perf_counter_ns,
    progress: Callable[[int, float], None] | None = None,
    phase: Callable[[str], None] | None = None,
    timing: str = SYNC,
    profile: int = 0,
    virtual: Virtual | None = None,
) -> ProcessResult:
    """Set up, warm up (discarded), then measure until both minimums are met.

    ``phase(name)`` announces setup, warm-up and measurement; ``progress(requests_done,
    seconds_elapsed)`` is called after each measured request. A failed request keeps its
    error, is counted, and the run goes on. Ctrl-C stops measuring and returns what finished.
    ``timing`` says how probes time an asynchronous device (harness.record.gpu_timing). ``profile``
    requests more run afterwards under a profiler (torch's, or the backend's own), apart from
    the timed ones.
    """
    import torch

    announce = phase or (lambda name: None)
    facts: dict[str, Any] = {"threads": torch.get_num_threads()}
    facts["interop_threads"] = torch.get_num_interop_threads()
    seed_everything(run.seed)
    facts["probe_cost_ns"] = probe_cost_ns()  # in this process, before the workload loads
    announce("setup")
    started = clock()
    workload.setup(run)
    facts["model_load_s"] = (clock() - started) / 1e9
    facts["execution"] = dict(workload.execution())
    facts.update(workload.setup_facts())
    facts["agreement"] = dict(workload.agreement())
    stream: Sequence[Any] = workload.requests(run)
    if not stream:
        raise UserError(f"workload {type(workload).name!r} produced no requests")
    facts["work"] = dict(workload.work())
    facts["distinct_requests"] = len(stream)
    facts["inputs_sha256"] = inputs_digest(list(stream))
    timer = device_timer(run.device, timing, clock)
    if virtual is not None:
        timer = Spinner(virtual, timer)  # everything but one stage stretched (harness.record.virtual)
    driver = RequestDriver(workload, run, clock, timer)
    rows: list[dict[str, Any]] = []
    intervals: list[Interval] = []
    interrupted = False
    profiled = None
    # A light thread sampling utilisation, clocks, memory and energy while requests are timed.
    sampler = Sampler(interval_s=TELEMETRY_INTERVAL_S, clock=clock)
    try:
        announce("warm-up")
        for i in range(measurement.warmup):
            outcome = driver(-1 - i, stream[i % len(stream)])
            if i == 0:
                facts["first_request_s"] = (outcome.response_ns - outcome.arrival_ns) / 1e9
        if run.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        announce("measuring")
        sampler.start()
        ticks_before = cpu_times()
        begin = clock()
        elapsed = 0.0
        progress_ns = 0
        n = 0
        while (
            n < measurement.min_requests or elapsed < measurement.min_duration_s
        ) and elapsed < measurement.max_duration_s:
            payload = stream[n % len(stream)]
            outcome = driver(n, payload)
            if n == 0 and measurement.warmup == 0:
                facts["first_request_s"] = (outcome.response_ns - outcome.arrival_ns) / 1e9
            rows.append(_request_row(workload, n, payload, outcome))
            intervals.extend(outcome.recorder.intervals)
            n += 1
            elapsed = (clock() - begin) / 1e9
            if progress is not None:
                # Between requests, never inside one; its cost is still the harness's to count.
                drawn = time.perf_counter_ns()
                progress(n, elapsed)
                progress_ns += time.perf_counter_ns() - drawn
        facts["hit_max_duration"] = elapsed >= measurement.max_duration_s
        facts["measured_s"] = elapsed
        facts["progress_s"] = progress_ns / 1e9
        facts["cpu_steal_fraction"] = _steal(ticks_before, cpu_times())
        sampler.stop()
        if profile:
            announce("profiling")
            try:
                profiled = profile_requests(driver, stream, profile, workload.profiler())
            except Exception as exc:  # the timed requests are done: keep them, say why
                facts["profile_error"] = describe("profiling", exc)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        sampler.stop()
        driver.close()
    facts["telemetry_cost"] = asdict(sampler.cost())
    facts["telemetry_notes"] = list(sampler.notes)
    facts["stage_threads"] = dict(driver.stage_threads)
    facts["requests_measured"] = len(rows)
    facts["requests_failed"] = sum(1 for row in rows if not row["ok"])
    facts["peak_rss_bytes"] = peak_rss_bytes()
    if run.device == "cuda":
        facts["gpu_peak_bytes"] = torch.cuda.max_memory_allocated()
    workload.teardown()
    requests = pd.DataFrame(rows, columns=REQUEST_COLUMNS)
    return ProcessResult(
        intervals_frame(intervals), requests, facts, interrupted, profiled, sampler.samples()
    )


REQUEST_COLUMNS = [
    "request",
    "ok",
    "error",
    "arrival_ns",
    "response_ns",
    "latency_s",
    "samples",
    "outputs",
]


def _request_row(workload: Workload, n: int, payload: Any, outcome: RequestOutcome) -> dict:
    error, outputs = outcome.error, "{}"
    if not error:
        # A plugin's output hook failing is that request's failure, not the run's.
        try:
            outputs = json.dumps(workload.outputs(outcome.response), sort_keys=True, default=str)
        except Exception as exc:
            error = describe("outputs", exc)
    try:
        samples = int(workload.samples(payload))
    except Exception as exc:
        error, samples = error or describe("samples", exc), 1
    return {
        "request": n,
        "ok": not error,
        "error": error,
        "arrival_ns": outcome.arrival_ns,
        "response_ns": outcome.response_ns,
        "latency_s": (outcome.response_ns - outcome.arrival_ns) / 1e9,
        "samples": samples,
        "outputs": outputs,
    }


def inputs_digest(payloads: list[Any]) -> str:
    """A checksum of the request stream, so two sets can be shown to have had the same inputs."""
    digest = hashlib.sha256()
    for payload in payloads:
        if isinstance(payload, str):
            payload = payload.encode()
        elif not isinstance(payload, bytes | bytearray):
            payload = json.dumps(payload, sort_keys=True, default=repr).encode()
        digest.update(len(payload).to_bytes(8, "little"))
        digest.update(payload)
    return digest.hexdigest()


INTERVAL_COLUMNS = list(Interval.__dataclass_fields__)


def intervals_frame(intervals: Sequence[Interval]) -> pd.DataFrame:
    """Raw intervals as a DataFrame (the stored table), one row per interval."""
    frame = pd.DataFrame([_as_row(i) for i in intervals], columns=INTERVAL_COLUMNS)
    return frame.astype({"thread": "int64", "start_ns": "int64", "end_ns": "int64"})


def _as_row(interval: Interval) -> tuple:
    return tuple(getattr(interval, name) for name in INTERVAL_COLUMNS)


def frame_intervals(frame: pd.DataFrame) -> list[Interval]:
    """The inverse of :func:`intervals_frame`."""
    columns = [frame[name].tolist() for name in INTERVAL_COLUMNS]
    return [Interval(*values) for values in zip(*columns, strict=True)]
