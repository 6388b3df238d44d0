"""asyncio stages: an event loop whose tasks record when they held their thread (slices).

On one thread, asyncio tasks interleave: a probe open across an ``await`` spans time in which
other tasks ran. Each task's coroutine is wrapped so every step it takes (one ``send`` or
``throw``) is recorded as a slice; the analysis then charges a probe only for its own task's
slices, and the time its task sat suspended as a wait.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any

from harness.record.probes import Recorder
from harness.words import Kind

# The recorder of the request whose stage is running; tasks inherit it with their context.
current_recorder: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar(
    "gapbench_recorder", default=None
)


class SlicedCoroutine(collections.abc.Coroutine):
    """A coroutine that records each of its steps as a slice of the running task."""

    __slots__ = ("_coro",)

    def __init__(self, coro: Coroutine) -> None:
        self._coro = coro

    def send(self, value: Any) -> Any:
        return self._step(self._coro.send, value)

    def throw(self, *args: Any) -> Any:
        return self._step(self._coro.throw, *args)

    def close(self) -> None:
        self._coro.close()

    def __await__(self):
        return self._coro.__await__()

    def _step(self, step, *args: Any) -> Any:
        recorder = current_recorder.get()
        if recorder is None:
            return step(*args)
        start = recorder.clock()
        try:
            return step(*args)
        finally:
            recorder.add(Kind.SLICE, start, recorder.clock())


def _task_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task:
    return asyncio.Task(SlicedCoroutine(coro), loop=loop, **kwargs)


class Loops:
    """One recording event loop per thread, reused across requests (creating one costs ~ms)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[asyncio.AbstractEventLoop] = []
        self._lock = threading.Lock()

    def run(self, coro: Coroutine) -> Any:
        loop = getattr(self._local, "loop", None)
        if loop is None:
            loop = asyncio.new_event_loop()
            loop.set_task_factory(_task_factory)
            self._local.loop = loop
            with self._lock:
                self._all.append(loop)
        return loop.run_until_complete(coro)

    def close(self) -> None:
        with self._lock:
            for loop in self._all:
                loop.close()
            self._all.clear()
