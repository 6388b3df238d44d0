"""Drive one request through a workload's stage DAG, recording stages and the waits between them.

Scheduling is the runner's, so it must not invent waits: a stage starts as soon as its inputs
are ready. The thread that finishes a stage goes straight on with one stage it made ready (a
chain costs no thread handoff) and hands any others to the pool at once.
"""

from __future__ import annotations

import inspect
import threading
import time
import traceback
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from harness.record.probes import Clock, DeviceTimer, Probe, Recorder
from harness.record.slices import Loops, current_recorder
from harness.words import HANDOFF_WAIT, HARNESS_LAG, QUEUE_WAIT, Category, Kind, Resource
from harness.workload import (
    FAN_OUT_THREADS,
    SetupContext,
    Stage,
    StageContext,
    Workload,
    topological_order,
)


@dataclass
class RequestOutcome:
    recorder: Recorder
    arrival_ns: int
    response_ns: int
    error: str = ""
    response: Any = None


@dataclass
class RequestDriver:
    """Runs requests through the stage DAG; one driver serves a whole measurement."""

    workload: Workload
    setup: SetupContext
    clock: Clock = time.perf_counter_ns
    timer: DeviceTimer | None = None
    fan_out_workers: int = 8
    in_flight: int = 1  # requests driven at once (by several serving threads)
    probes: bool = True  # off only to measure the probes' own cost on end-to-end latency
    order: list[Stage] = field(init=False)
    pool: ThreadPoolExecutor = field(init=False)
    fan_out_pool: ThreadPoolExecutor = field(init=False)
    loops: Loops = field(init=False, default_factory=Loops)
    # Intra-op threads as each stage saw them on its own thread (the setting is per thread):
    # parallel branches times these threads can oversubscribe the cores.
    stage_threads: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        import torch  # here, not on a request's path: the first import takes a second

        self._threads = torch.get_num_threads
        self.order = topological_order(type(self.workload).stages)
        # Threads start lazily: a chain never starts one, a DAG starts as many as it needs.
        self.pool = ThreadPoolExecutor(
            len(self.order) * self.in_flight, thread_name_prefix="gapbench-stage"
        )
        # Separate from the stage pool, so a stage blocked on its branches never starves them.
        self.fan_out_pool = ThreadPoolExecutor(
            self.fan_out_workers * self.in_flight, thread_name_prefix=FAN_OUT_THREADS
        )

    def close(self) -> None:
        self.pool.shutdown()
        self.fan_out_pool.shutdown()
        self.loops.close()

    def __call__(
        self,
        request_id: int,
        payload: Any,
        scheduled_ns: int | None = None,
        issued_ns: int | None = None,
    ) -> RequestOutcome:
        """Drive one request; latency counts from ``scheduled_ns`` when a schedule gave one.

        A load generator that sends late has lag, recorded apart from the request's queue wait
        so that its own slowness is never taken for the system's (no coordinated omission).
        A request handed over at ``issued_ns`` and only now served waited that long in the
        system's queue: its root stages' queue wait counts from then.
        """
        recorder = Recorder(request_id, clock=self.clock, timer=self.timer)
        sent = self.clock() if issued_ns is None else issued_ns
        arrival = sent if scheduled_ns is None else min(scheduled_ns, sent)
        if arrival < sent:
            recorder.add(
                Kind.WAIT,
                arrival,
                sent,
                category=Category.SCHEDULING.value,
                resource=Resource.WAIT.value,
                label=HARNESS_LAG,
            )
        state = _RequestState(self, recorder, payload, sent)
        state.start()
        sink = self.order[-1].name
        ok = sink in state.outputs and not state.error
        response_ns = state.ends[sink] if ok else self.clock()
        recorder.add(Kind.REQUEST, arrival, response_ns)
        if self.timer is not None:
            self.timer.resolve(recorder)  # after the response: the device is waited for once
        return RequestOutcome(recorder, arrival, response_ns, state.error, state.outputs.get(sink))

    def run_stage(self, recorder: Recorder, stage: Stage, args: list[Any], span: Probe) -> Any:
        """Run one stage method inside ``span`` (an ``async def`` one on this thread's loop)."""
        if stage.name not in self.stage_threads:
            self.stage_threads[stage.name] = self._threads()
        ctx = StageContext(
            self.setup, recorder, stage.name, recorder.request, self.fan_out_pool, self.probes
        )
        method = getattr(self.workload, stage.name)
        token = current_recorder.set(recorder)
        try:
            if inspect.iscoroutinefunction(method):
                return self.loops.run(_in_span(span, method(ctx, *args)))
            with span:
                return method(ctx, *args)
        finally:
            current_recorder.reset(token)


class _RequestState:
    """One request in flight: which stages are done, ready, running; shared by its threads."""

    def __init__(self, driver: RequestDriver, recorder: Recorder, payload: Any, sent: int):
        self.driver, self.recorder, self.payload, self.sent = driver, recorder, payload, sent
        self.outputs: dict[str, Any] = {}
        self.ends: dict[str, int] = {}
        self.pending = list(driver.order)
        self.running = 0
        self.error = ""
        self.done = threading.Condition()

    def start(self) -> None:
        with self.done:
            ready = self._take_ready()
        self._continue(ready)
        with self.done:
            self.done.wait_for(lambda: self.running == 0)

    def _take_ready(self) -> list[tuple[Stage, int]]:
        """Stages whose inputs are all in, with when they became ready (caller holds the lock)."""
        if self.error:
            return []
        ready = [s for s in self.pending if all(p in self.outputs for p in s.after)]
        for stage in ready:
            self.pending.remove(stage)
        self.running += len(ready)
        return [(s, max((self.ends[p] for p in s.after), default=self.sent)) for s in ready]

    def _continue(self, ready: list[tuple[Stage, int]]) -> None:
        """Run the first ready stage on this thread and the others on the pool, then go on."""
        while ready:
            for other in ready[1:]:
                self.driver.pool.submit(self._continue, [other])
            stage, ready_at = ready[0]
            ready = self._run(stage, ready_at)

    def _run(self, stage: Stage, ready_at: int) -> list[tuple[Stage, int]]:
        args = [self.outputs[p] for p in stage.after] if stage.after else [self.payload]
        span = self.recorder.span(Kind.STAGE, stage=stage.name)
        error, result = "", None
        try:
            result = self.driver.run_stage(self.recorder, stage, args, span)
        except KeyboardInterrupt:
            raise  # Ctrl-C stops the run, not a request
        except BaseException as exc:  # anything else, an exit too, fails this request only
            error = describe(stage.name, exc)
        if span.start_ns >= 0:
            self.recorder.add(
                Kind.WAIT,
                ready_at,
                span.start_ns,
                stage=stage.name,
                category=Category.SCHEDULING.value,
                resource=Resource.WAIT.value,
                label=HANDOFF_WAIT if stage.after else QUEUE_WAIT,
            )
        with self.done:
            self.running -= 1
            if error:
                self.error = self.error or error
            else:
                self.outputs[stage.name] = result
            self.ends[stage.name] = span.end_ns if span.end_ns >= 0 else self.driver.clock()
            ready = self._take_ready()
            self.done.notify_all()
        return ready


async def _in_span(span: Probe, coro: Coroutine) -> Any:
    # The stage span opens inside the stage's task, so its own time follows that task's slices.
    with span:
        return await coro


def describe(stage: str, exc: BaseException) -> str:
    """One line saying where a stage (or a hook) failed, for the request's error column."""
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}" if where else ""
    if isinstance(exc, MemoryError):  # often without a message: say what it means
        return f"{stage}: ran out of memory (MemoryError{f': {exc}' if str(exc) else ''}){at}"
    return f"{stage}: {type(exc).__name__}: {exc}{at}"
