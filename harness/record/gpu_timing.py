"""How probes time an asynchronous device: synchronize at their edges, or CUDA events.

`synchronize-at-edge` charges queued kernels to the probe that launched them, at the price of
serialising host and device. `events` leaves the device running: each compute or movement probe
on the device or the link records a start and an end event on the stream current inside its
edges (the stream actually used, not the default one), and once the request is done the events
are turned into device intervals on the host clock through an anchor event recorded right after
a synchronize. Result sets of different modes measure different things and are never compared.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from harness.record.probes import Probe, Recorder
from harness.words import Category, Kind, Resource

SYNC = "synchronize-at-edge"
ANCHOR = "clock anchor"  # a device interval bounding when the anchor event ran
EVENTS = "events"
HOST = "host"  # no device to wait for
MODES = (SYNC, EVENTS)

_TIMED = (Category.COMPUTE.value, Category.MOVEMENT.value)
_ON_DEVICE = (Resource.DEVICE.value, Resource.LINK.value)


class SyncAtEdge:
    """Synchronize the device at the edges of stages and of compute and movement probes."""

    mode = SYNC

    def __init__(self, synchronize: Callable[[], Any]) -> None:
        self._synchronize = synchronize

    def enter(self, probe: Probe) -> None:
        if probe.kind is Kind.STAGE or probe.category in _TIMED:
            self._synchronize()

    exit = enter

    def started(self, probe: Probe) -> None:
        """The device was drained before the start time: nothing more to do."""

    def resolve(self, recorder: Recorder) -> None:
        """Nothing is pending: every edge already waited for the device."""


class EventTimer:
    """CUDA events around compute and movement probes, anchored to the host clock.

    ``event``, ``current_stream`` and ``synchronize`` default to torch's; tests pass fakes.
    """

    mode = EVENTS

    def __init__(
        self,
        clock: Callable[[], int],
        *,
        event: Callable[[], Any] | None = None,
        current_stream: Callable[[], Any] | None = None,
        synchronize: Callable[[], Any] | None = None,
    ) -> None:
        if event is None or current_stream is None or synchronize is None:
            import torch

            event = event or (lambda: torch.cuda.Event(enable_timing=True))
            current_stream = current_stream or torch.cuda.current_stream
            synchronize = synchronize or torch.cuda.synchronize
        self._clock, self._event = clock, event
        self._stream, self._synchronize = current_stream, synchronize
        # (request, span) -> [start event, end event, stream id]: one timer serves every request
        self._pending: dict[tuple[int, int], list[Any]] = {}
        self._lock = threading.Lock()

    def enter(self, probe: Probe) -> None:
        """Nothing before the start time: the start event is recorded after it."""

    def started(self, probe: Probe) -> None:
        # Recorded after the host's start time, so on an idle device the event cannot seem to
        # run before its launch; host-only probes (parsing, tokenizing) launch no device work.
        if probe.kind is Kind.PROBE and probe.category in _TIMED and probe.resource in _ON_DEVICE:
            start, stream = self._event(), self._stream()
            start.record(stream)
            stream_id = int(getattr(stream, "cuda_stream", 0))
            with self._lock:
                self._pending[(probe.request, probe.span)] = [start, None, stream_id]

    def exit(self, probe: Probe) -> None:
        with self._lock:
            entry = self._pending.get((probe.request, probe.span))
        if entry is not None:
            end = self._event()
            end.record(self._stream())  # the stream current now: the probe may have switched
            entry[1] = end

    def resolve(self, recorder: Recorder) -> None:
        """Add the device interval of every probe of this request, on the host clock.

        The device is synchronized once, then an anchor event is recorded on the idle device
        between two host readings: every event's time is read back from the anchor over a
        short span (float32 milliseconds stay exact to well under a microsecond), and the two
        readings bound the anchor's own error, stored as a `clock anchor` interval.
        """
        with self._lock:
            mine = {k: v for k, v in self._pending.items() if k[0] == recorder.request}
            for key in mine:
                del self._pending[key]
        self._synchronize()
        anchor = self._event()
        before = self._clock()
        anchor.record(self._stream())
        self._synchronize()
        after = self._clock()
        recorder.add(Kind.DEVICE, before, after, label=ANCHOR, resource=Resource.DEVICE.value)
        probes = {iv.span: iv for iv in recorder.intervals if iv.kind == Kind.PROBE.value}
        for (_, span), (start, end, stream_id) in sorted(mine.items()):
            probe = probes.get(span)
            if probe is None or end is None:
                continue
            start_ns = before - round(start.elapsed_time(anchor) * 1e6)
            link = probe.resource == Resource.LINK.value
            recorder.add(
                Kind.DEVICE,
                start_ns,
                start_ns + round(start.elapsed_time(end) * 1e6),
                stage=probe.stage,
                category=probe.category,
                resource=Resource.LINK.value if link else Resource.DEVICE.value,
                label=probe.label,
                parent=span,
                thread=stream_id,
            )


def device_timer(
    device: str, mode: str, clock: Callable[[], int]
) -> SyncAtEdge | EventTimer | None:
    """The timer for ``device`` in ``mode`` (None on the host, where nothing runs ahead)."""
    if device == "cpu":
        return None
    if mode == EVENTS:
        return EventTimer(clock)
    import torch

    # torch.cuda.synchronize() wraps this call in Python that costs more than the wait on an
    # idle device; a probe pays for it at both edges.
    return SyncAtEdge(getattr(torch._C, "_cuda_synchronize", torch.cuda.synchronize))
