"""Timing probes: record raw intervals with a category and a resource, nothing derived."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from harness.words import Kind

Clock = Callable[[], int]
"""A monotonic clock returning integer nanoseconds (``time.perf_counter_ns`` by default)."""


@dataclass(frozen=True, slots=True)
class Interval:
    """One timed span, as stored: times are ns on the recording process's clock."""

    request: int
    span: int
    parent: int  # span id of the enclosing open interval on the same task, -1 for none
    kind: str
    stage: str  # "" for the request interval
    category: str  # "" for request and stage intervals
    resource: str
    label: str
    start_ns: int
    end_ns: int
    nbytes: int
    thread: int
    task: str
    # Thread CPU time used during the interval, read inside its wall-clock edges (so it never
    # falls short of the wall time by the cost of reading it); -1 where not read (requests,
    # waits, and the probes of sets from before probes read it).
    cpu_ns: int = -1

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


# The innermost open span of the current thread or asyncio task; resetting a probe's token
# restores its parent, so the ContextVar's own history is the stack. A ContextVar rather than a
# thread-local so each asyncio task (and each copied context) nests on its own.
_open_span: contextvars.ContextVar[int] = contextvars.ContextVar("gapbench_open_span", default=-1)


_MISSING = contextvars.Token.MISSING
_get_ident = threading.get_ident
_running_loop = asyncio._get_running_loop  # None outside a loop, and cheap: no raise


def _task_name() -> str:
    # Checked first because asyncio.current_task() raises outside a loop, and a raise costs more
    # than the rest of a probe.
    loop = asyncio._get_running_loop()
    if loop is None:
        return ""
    task = asyncio.current_task(loop)
    return task.get_name() if task is not None else ""


class DeviceTimer(Protocol):
    """What probes call at their edges on an asynchronous device (see harness.record.gpu_timing)."""

    mode: str

    def enter(self, probe: Probe) -> None:
        """Before the probe reads its start time (a synchronize belongs here)."""

    def started(self, probe: Probe) -> None:
        """After the probe read its start time (an event marking where its work begins)."""

    def exit(self, probe: Probe) -> None:
        """Before the probe reads its end time."""

    def resolve(self, recorder: Recorder) -> None: ...


class TimerChain:
    """A probe hook around a device timer (or none): forwards every edge to it; subclasses add
    their own work at the edges they care about."""

    def __init__(self, inner: DeviceTimer | None = None) -> None:
        self._inner = inner
        self.mode = inner.mode if inner is not None else "host"

    def enter(self, probe: Probe) -> None:
        if self._inner is not None:
            self._inner.enter(probe)

    def started(self, probe: Probe) -> None:
        if self._inner is not None:
            self._inner.started(probe)

    def exit(self, probe: Probe) -> None:
        if self._inner is not None:
            self._inner.exit(probe)

    def resolve(self, recorder: Recorder) -> None:
        if self._inner is not None:
            self._inner.resolve(recorder)


class Recorder:
    """Collects the intervals of one request; safe to use from several threads at once.

    ``timer`` is called at the edges of every span when the device runs asynchronously (CUDA),
    so device work is charged to the probe that launched it.
    """

    __slots__ = ("_ids", "clock", "cpu_clock", "request", "rows", "timer", "tokens")

    def __init__(
        self,
        request: int,
        clock: Clock = time.perf_counter_ns,
        timer: DeviceTimer | None = None,
        cpu_clock: Clock = time.thread_time_ns,
    ) -> None:
        self.request = request
        self.clock = clock
        self.cpu_clock = cpu_clock
        self.timer = timer
        # Tuples in Interval's field order, or a finished probe itself: building a frozen
        # dataclass, or even the whole tuple, costs more than the rest of a probe, so Interval
        # objects are made only when someone reads them.
        self.rows: list[Row] = []
        self._ids = itertools.count()  # next() on a count is atomic too
        self.tokens: list[int] = []  # when each output token existed (StageContext.token)

    def token(self, count: int = 1) -> None:
        """Mark ``count`` output tokens as existing now."""
        self.tokens.extend([self.clock()] * count)

    def add(
        self,
        kind: Kind,
        start_ns: int,
        end_ns: int,
        *,
        stage: str = "",
        category: str = "",
        resource: str = "",
        label: str = "",
        nbytes: int = 0,
        parent: int = -1,
        span: int | None = None,
        cpu_ns: int = -1,
        thread: int | None = None,
    ) -> None:
        """Store an interval whose edges were read elsewhere (runner waits, merged clocks)."""
        row = (
            self.request,
            next(self._ids) if span is None else span,
            parent,
            kind.value,
            stage,
            category,
            resource,
            label,
            start_ns,
            end_ns,
            nbytes,
            threading.get_ident() if thread is None else thread,
            _task_name(),
            cpu_ns,
        )
        self.rows.append(row)

    @property
    def intervals(self) -> list[Interval]:
        """What was recorded so far, as Interval objects."""
        return [Interval(*row) for row in self.tuples()]

    def tuples(self) -> list[tuple]:
        """What was recorded so far, each interval as a tuple in Interval's field order."""
        return [row if isinstance(row, tuple) else row._row() for row in list(self.rows)]

    def span(
        self,
        kind: Kind,
        *,
        stage: str = "",
        category: str = "",
        resource: str = "",
        label: str = "",
        nbytes: int = 0,
    ) -> Probe:
        """A context manager that records one interval around its body."""
        if kind is Kind.PROBE:
            return Probe(self, stage, category, resource, label, nbytes)
        return _Span(self, kind, stage, category, resource, label, nbytes)


class Probe:
    """Times its ``with`` body and records it as the innermost open span of this task."""

    # Class-level for a probe, per instance for other spans (`_Span`): no work per probe.
    kind = Kind.PROBE
    # Read the thread's CPU time too: wall less CPU is time the thread was off the CPU, which
    # a compute probe must not call compute (harness.record.spans.SpanTree.off_cpu).
    _cpu = True

    __slots__ = (
        "_cpu_ns",
        "_cpu_start",
        "_end",
        "_recorder",
        "_span",
        "_start",
        "_task",
        "_thread",
        "_token",
        "category",
        "label",
        "nbytes",
        "resource",
        "stage",
    )

    def __init__(
        self,
        recorder: Recorder,
        stage: str,
        category: str,
        resource: str,
        label: str,
        nbytes: int,
    ) -> None:
        self._recorder = recorder
        self.stage = stage
        self.category = category
        self.resource = resource
        self.label = label
        self.nbytes = nbytes

    @property
    def request(self) -> int:
        return self._recorder.request

    @property
    def span(self) -> int:
        """This probe's span id (valid once entered)."""
        return self._span

    @property
    def parent(self) -> int:
        """The enclosing span's id (-1 for none); valid once entered."""
        old = self._token.old_value
        return -1 if old is _MISSING else old

    @property
    def start_ns(self) -> int:
        """When the body began; -1 before it was entered."""
        return getattr(self, "_start", -1)

    @property
    def end_ns(self) -> int:
        """When the body ended; -1 before it was exited."""
        return getattr(self, "_end", -1)

    def __enter__(self) -> Probe:
        recorder = self._recorder
        self._span = span = next(recorder._ids)
        timer = recorder.timer
        if timer is not None:
            timer.enter(self)
        self._token = _open_span.set(span)
        if self._cpu:
            self._cpu_start = recorder.cpu_clock()
        self._start = recorder.clock()
        if timer is not None:
            timer.started(self)
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        recorder = self._recorder
        try:
            if recorder.timer is not None:
                recorder.timer.exit(self)  # may raise (a device error surfacing at a sync)
        finally:
            self._end = recorder.clock()
            if self._cpu:
                self._cpu_ns = recorder.cpu_clock() - self._cpu_start
            token = self._token
            _open_span.reset(token)
            self._token = token.old_value  # the enclosing span; the token itself can go
            self._thread = _get_ident()
            self._task = _task_name() if _running_loop() is not None else ""
            # The hot path keeps the probe itself; the interval's tuple is built when someone
            # reads `Recorder.intervals`.
            recorder.rows.append(self)  # atomic: no lock needed

    def _row(self) -> tuple:
        parent = self._token
        return (
            self._recorder.request,
            self._span,
            -1 if parent is _MISSING else parent,
            self.kind._value_,
            self.stage,
            self.category,
            self.resource,
            self.label,
            self._start,
            self._end,
            self.nbytes,
            self._thread,
            self._task,
            self._cpu_ns if self._cpu else -1,
        )


class _Span(Probe):
    """A span other than a probe; of those, stages and branches read the thread's CPU time."""

    __slots__ = ("_cpu", "kind")

    def __init__(
        self,
        recorder: Recorder,
        kind: Kind,
        stage: str,
        category: str,
        resource: str,
        label: str,
        nbytes: int,
    ) -> None:
        super().__init__(recorder, stage, category, resource, label, nbytes)
        self.kind = kind
        self._cpu = kind is Kind.STAGE or kind is Kind.BRANCH


Row = tuple | Probe  # one recorded interval: its fields, or the finished probe that has them
