"""How probes time an asynchronous device: synchronize at their edges, or CUDA events.

`synchronize-at-edge` charges queued kernels to the probe that launched them, at the price of
serialising host and device. `events` leaves the device running: each compute or movement probe
records a start and an end event on the stream current at its edges (the stream actually used,
not the default one), and once the request is done the events are turned into device intervals
on the host clock through an anchor event recorded right after a synchronize. Result sets of
different modes measure different things and are never compared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.probes import Category, Kind, Probe, Recorder, Resource

SYNC = "synchronize-at-edge"
EVENTS = "events"
HOST = "host"  # no device to wait for
MODES = (SYNC, EVENTS)

_TIMED = (Category.COMPUTE.value, Category.MOVEMENT.value)


class SyncAtEdge:
    """Synchronize the device at the edges of stages and of compute and movement probes."""

    mode = SYNC

    def __init__(self, synchronize: Callable[[], Any]) -> None:
        self._synchronize = synchronize

    def enter(self, probe: Probe) -> None:
        if probe.kind is Kind.STAGE or probe.category in _TIMED:
            self._synchronize()

    exit = enter

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
        self._pending: dict[int, tuple[Any, Any, Any]] = {}  # span -> (stream, start, end)
        self._anchor_ns, self._anchor = self._new_anchor()

    def _new_anchor(self) -> tuple[int, Any]:
        # With the device idle, an event recorded now completes at once: its device time is
        # this host instant, give or take the launch latency (a few microseconds).
        self._synchronize()
        anchor = self._event()
        host_ns = self._clock()
        anchor.record(self._stream())
        self._synchronize()
        return host_ns, anchor

    def enter(self, probe: Probe) -> None:
        if probe.kind is Kind.PROBE and probe.category in _TIMED:
            stream = self._stream()
            start = self._event()
            start.record(stream)
            self._pending[probe.span] = (stream, start, None)

    def exit(self, probe: Probe) -> None:
        entry = self._pending.get(probe.span)
        if entry is not None:
            end = self._event()
            end.record(entry[0])
            self._pending[probe.span] = (entry[0], entry[1], end)

    def resolve(self, recorder: Recorder) -> None:
        """Add the device interval of every probe of this request (waits for the device once)."""
        self._synchronize()
        probes = {iv.span: iv for iv in recorder.intervals if iv.span in self._pending}
        for span, (stream, start, end) in sorted(self._pending.items()):
            probe = probes.get(span)
            if probe is None or end is None:
                continue
            recorder.add(
                Kind.DEVICE,
                self._device_ns(start),
                self._device_ns(end),
                stage=probe.stage,
                category=probe.category,
                resource=Resource.LINK.value
                if probe.resource == Resource.LINK.value
                else Resource.DEVICE.value,
                label=probe.label,
                parent=span,
                thread=int(getattr(stream, "cuda_stream", 0)),
            )
        self._pending.clear()

    def _device_ns(self, event: Any) -> int:
        return self._anchor_ns + round(self._anchor.elapsed_time(event) * 1e6)


def device_timer(
    device: str, mode: str, clock: Callable[[], int]
) -> SyncAtEdge | EventTimer | None:
    """The timer for ``device`` in ``mode`` (None on the host, where nothing runs ahead)."""
    if device == "cpu":
        return None
    if mode == EVENTS:
        return EventTimer(clock)
    import torch

    return SyncAtEdge(torch.cuda.synchronize)
