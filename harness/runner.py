"""Drive a workload's requests through its stage DAG: warm-up, then measured repetitions."""

from __future__ import annotations

import hashlib
import inspect
import json
import random
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.environment import CpuTimes, cpu_times
from harness.errors import UserError
from harness.gpu_timing import SYNC, device_timer
from harness.probes import (
    HANDOFF_WAIT,
    LAG_WAIT,
    QUEUE_WAIT,
    Category,
    Clock,
    DeviceTimer,
    Interval,
    Kind,
    Probe,
    Recorder,
    Resource,
)
from harness.tasks import Loops, current_recorder
from harness.workload import RunContext, Stage, StageContext, Workload, topological_order


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


@dataclass
class RequestOutcome:
    recorder: Recorder
    arrival_ns: int
    response_ns: int
    error: str = ""
    response: Any = None


@dataclass
class RequestDriver:
    """Runs one request through the stage DAG, recording stage spans and the waits between them.

    Ready stages beyond the first go to a thread pool so independent branches overlap; the first
    runs on the calling thread, so a chain of stages costs no thread handoffs.
    """

    workload: Workload
    run: RunContext
    clock: Clock = time.perf_counter_ns
    timer: DeviceTimer | None = None
    fan_out_workers: int = 8
    order: list[Stage] = field(init=False)
    pool: ThreadPoolExecutor | None = field(init=False, default=None)
    fan_out_pool: ThreadPoolExecutor = field(init=False)
    loops: Loops = field(init=False, default_factory=Loops)
    # Intra-op threads as each stage saw them on its own thread (the setting is per thread):
    # parallel branches times these threads can oversubscribe the cores.
    stage_threads: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.order = topological_order(type(self.workload).stages)
        roots = sum(1 for s in self.order if not s.after)
        fan = max(sum(1 for o in self.order if s.name in o.after) for s in self.order)
        if roots > 1 or fan > 1:
            # Threads start lazily, so sizing for the widest possible antichain costs nothing.
            workers = len(self.order) - 1
            self.pool = ThreadPoolExecutor(workers, thread_name_prefix="gapbench-stage")
        # Separate from the stage pool, so a stage blocked on its branches never starves them;
        # threads start only when a workload first fans out.
        self.fan_out_pool = ThreadPoolExecutor(
            self.fan_out_workers, thread_name_prefix="gapbench-fan-out"
        )

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        self.fan_out_pool.shutdown()
        self.loops.close()

    def __call__(
        self, request_id: int, payload: Any, scheduled_ns: int | None = None
    ) -> RequestOutcome:
        """Drive one request; latency counts from ``scheduled_ns`` when a schedule gave one.

        A load generator that sends late has lag, recorded apart from the request's queue wait
        so that its own slowness is never taken for the system's (no coordinated omission).
        """
        recorder = Recorder(request_id, clock=self.clock, timer=self.timer)
        sent = self.clock()
        arrival = sent if scheduled_ns is None else min(scheduled_ns, sent)
        if arrival < sent:
            recorder.add(
                Kind.WAIT,
                arrival,
                sent,
                category=Category.SCHEDULING.value,
                resource=Resource.WAIT.value,
                label=LAG_WAIT,
            )
        outputs: dict[str, Any] = {}
        ready_at: dict[str, int] = {}
        ends: dict[str, int] = {}
        pending = list(self.order)
        running: dict[Future, Stage] = {}
        error = ""
        while True:
            for future in [f for f in running if f.done()]:
                stage = running.pop(future)
                try:
                    outputs[stage.name] = future.result()
                except Exception as exc:
                    error = error or _describe(stage.name, exc)
            ready = [] if error else [s for s in pending if all(p in outputs for p in s.after)]
            for stage in ready:
                pending.remove(stage)
                ready_at[stage.name] = max((ends[p] for p in stage.after), default=sent)
            if ready:
                for stage in ready[1:]:
                    future = self.pool.submit(  # type: ignore[union-attr]
                        self._stage, recorder, stage, payload, outputs, ready_at, ends
                    )
                    running[future] = stage
                first = ready[0]
                try:
                    outputs[first.name] = self._stage(
                        recorder, first, payload, outputs, ready_at, ends
                    )
                except Exception as exc:
                    error = _describe(first.name, exc)
            elif running:
                wait(list(running), return_when=FIRST_COMPLETED)
            else:
                break
        sink = self.order[-1].name
        response_ns = ends[sink] if sink in outputs else self.clock()
        recorder.add(Kind.REQUEST, arrival, response_ns)
        if self.timer is not None:
            self.timer.resolve(recorder)  # after the response: the device is waited for once
        return RequestOutcome(recorder, arrival, response_ns, error, outputs.get(sink))

    def _stage(
        self,
        recorder: Recorder,
        stage: Stage,
        payload: Any,
        outputs: dict[str, Any],
        ready_at: dict[str, int],
        ends: dict[str, int],
    ) -> Any:
        args = [outputs[p] for p in stage.after] if stage.after else [payload]
        if stage.name not in self.stage_threads:
            import torch

            self.stage_threads[stage.name] = torch.get_num_threads()
        ctx = StageContext(self.run, recorder, stage.name, recorder.request, self.fan_out_pool)
        method = getattr(self.workload, stage.name)
        span = recorder.span(Kind.STAGE, stage=stage.name)
        token = current_recorder.set(recorder)
        try:
            if inspect.iscoroutinefunction(method):
                result = self.loops.run(_in_span(span, method(ctx, *args)))
            else:
                with span:
                    result = method(ctx, *args)
        finally:
            current_recorder.reset(token)
            ends[stage.name] = span.end_ns
        label = HANDOFF_WAIT if stage.after else QUEUE_WAIT
        recorder.add(
            Kind.WAIT,
            ready_at[stage.name],
            span.start_ns,
            stage=stage.name,
            category=Category.SCHEDULING.value,
            resource=Resource.WAIT.value,
            label=label,
        )
        return result


async def _in_span(span: Probe, coro: Coroutine) -> Any:
    # The stage span opens inside the stage's task, so its own time follows that task's slices.
    with span:
        return await coro


def _describe(stage: str, exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}" if where else ""
    return f"{stage}: {type(exc).__name__}: {exc}{at}"


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
) -> ProcessResult:
    """Set up, warm up (discarded), then measure until both minimums are met.

    ``phase(name)`` announces setup, warm-up and measurement; ``progress(requests_done,
    seconds_elapsed)`` is called after each measured request. A failed request keeps its
    error, is counted, and the run goes on. Ctrl-C stops measuring and returns what finished.
    ``timing`` says how probes time an asynchronous device (harness.gpu_timing).
    """
    import torch

    announce = phase or (lambda name: None)
    facts: dict[str, Any] = {"threads": torch.get_num_threads()}
    facts["interop_threads"] = torch.get_num_interop_threads()
    seed_everything(run.seed)
    announce("setup")
    started = clock()
    workload.setup(run)
    facts["model_load_s"] = (clock() - started) / 1e9
    stream: Sequence[Any] = workload.requests(run)
    if not stream:
        raise UserError(f"workload {type(workload).name!r} produced no requests")
    facts["work"] = dict(workload.work())
    facts["distinct_requests"] = len(stream)
    facts["inputs_sha256"] = inputs_digest(list(stream))
    driver = RequestDriver(workload, run, clock, device_timer(run.device, timing, clock))
    rows: list[dict[str, Any]] = []
    intervals: list[Interval] = []
    interrupted = False
    try:
        announce("warm-up")
        for i in range(measurement.warmup):
            outcome = driver(-1 - i, stream[i % len(stream)])
            if i == 0:
                facts["first_request_s"] = (outcome.response_ns - outcome.arrival_ns) / 1e9
        if run.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        announce("measuring")
        ticks_before = cpu_times()
        begin = clock()
        elapsed = 0.0
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
                progress(n, elapsed)
        facts["hit_max_duration"] = elapsed >= measurement.max_duration_s
        facts["measured_s"] = elapsed
        facts["cpu_steal_fraction"] = _steal(ticks_before, cpu_times())
    except KeyboardInterrupt:
        interrupted = True
    finally:
        driver.close()
    facts["stage_threads"] = dict(driver.stage_threads)
    facts["requests_measured"] = len(rows)
    facts["requests_failed"] = sum(1 for row in rows if not row["ok"])
    facts["peak_rss_bytes"] = peak_rss_bytes()
    if run.device == "cuda":
        facts["gpu_peak_bytes"] = torch.cuda.max_memory_allocated()
    workload.teardown()
    requests = pd.DataFrame(rows, columns=REQUEST_COLUMNS)
    return ProcessResult(intervals_frame(intervals), requests, facts, interrupted)


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
            error = _describe("outputs", exc)
    try:
        samples = int(workload.samples(payload))
    except Exception as exc:
        error, samples = error or _describe("samples", exc), 1
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
