"""CUDA-event bookkeeping without a GPU: fake events on a fake device clock."""

from __future__ import annotations

from conftest import FakeClock

from harness.attribution import split_request
from harness.gpu_timing import EventTimer
from harness.invariants import check_invariants
from harness.probes import Kind, Recorder
from harness.workload import RunContext, Stage, StageContext

DEVICE_LAG = 7  # the device starts each queued piece of work 7 ns after the host records it


class FakeStream:
    cuda_stream = 0xBEEF


class FakeEvent:
    """Records the fake device time at which it would complete."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.at: int | None = None

    def record(self, stream: FakeStream) -> None:
        assert isinstance(stream, FakeStream)
        self.at = self.clock() + DEVICE_LAG

    def elapsed_time(self, other: FakeEvent) -> float:
        return (other.at - self.at) / 1e6  # milliseconds, as torch reports


def test_events_become_device_intervals_on_the_host_clock(clock: FakeClock):
    syncs: list[int] = []
    timer = EventTimer(
        clock,
        event=lambda: FakeEvent(clock),
        current_stream=FakeStream,
        synchronize=lambda: syncs.append(clock()),
    )
    assert len(syncs) == 2  # the anchor is recorded between two synchronizes
    anchor_host = clock()
    clock.advance(100)
    rec = Recorder(0, clock=clock, timer=timer)
    ctx = StageContext(RunContext(device="cuda"), rec, "s", 0)
    rec.add(Kind.WAIT, clock(), clock(), stage="s", category="scheduling", label="queue wait")
    with rec.span(Kind.STAGE, stage="s"):
        with ctx.transfer(64, label="h2d"):
            clock.advance(3)
        with ctx.compute(label="kernel"):
            clock.advance(5)
        with ctx.wait(label="lock"):  # waits are not device work
            clock.advance(2)
    rec.add(Kind.REQUEST, anchor_host + 100, clock())
    assert len(syncs) == 2  # no synchronize at probe edges in events mode
    timer.resolve(rec)
    assert len(syncs) == 3  # one per request, after its response
    device = sorted(
        (
            (iv.label, iv.resource, iv.start_ns, iv.end_ns, iv.thread)
            for iv in rec.intervals
            if iv.kind == "device"
        ),
        key=lambda row: row[2],
    )
    # The anchor event completed DEVICE_LAG after its host instant, and so did every other
    # event: the lag cancels and device intervals land exactly on the probes' host times.
    start = anchor_host + 100
    assert device == [
        ("h2d", "link", start, start + 3, 0xBEEF),
        ("kernel", "device", start + 3, start + 8, 0xBEEF),
    ]
    probes = {iv.label: iv for iv in rec.intervals if iv.kind == "probe"}
    parents = {iv.label: iv.parent for iv in rec.intervals if iv.kind == "device"}
    assert parents == {"h2d": probes["h2d"].span, "kernel": probes["kernel"].span}
    split = split_request(rec.intervals, (Stage("s", "inference"),))
    assert check_invariants(rec.intervals, split) == []


def test_device_work_before_its_launch_breaks_an_invariant(clock: FakeClock):
    rec = Recorder(0, clock=clock)
    ctx = StageContext(RunContext(device="cuda"), rec, "s", 0)
    rec.add(Kind.WAIT, clock(), clock(), stage="s", category="scheduling", label="queue wait")
    with rec.span(Kind.STAGE, stage="s"), ctx.compute(label="kernel") as probe:
        clock.advance(5)
    rec.add(Kind.DEVICE, 990, 1_004, stage="s", category="compute", parent=probe.span)
    rec.add(Kind.REQUEST, 1_000, clock())
    split = split_request(rec.intervals, (Stage("s", "inference"),))
    assert any("precedes its launch" in p for p in check_invariants(rec.intervals, split))
