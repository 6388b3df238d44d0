"""CUDA-event bookkeeping without a GPU: fake events on a fake device clock."""

from __future__ import annotations

import threading

from conftest import FakeClock

from harness.analysis.attribution import split_request
from harness.analysis.invariants import check_invariants
from harness.record.gpu_timing import EventTimer
from harness.record.probes import Recorder
from harness.words import Kind
from harness.workload import SetupContext, Stage, StageContext


class FakeStream:
    cuda_stream = 0xBEEF


class FakeDevice:
    """Hands each recorded event the device time it will complete at, in recording order."""

    def __init__(self, clock: FakeClock, times: list[int]) -> None:
        self.clock, self.times, self.syncs = clock, iter(times), 0

    def event(self) -> FakeEvent:
        return FakeEvent(self)

    def synchronize(self) -> None:
        self.syncs += 1


class FakeEvent:
    def __init__(self, device: FakeDevice) -> None:
        self.device = device
        self.at: int | None = None

    def record(self, stream: FakeStream) -> None:
        assert isinstance(stream, FakeStream)
        self.at = next(self.device.times)

    def elapsed_time(self, other: FakeEvent) -> float:
        return (other.at - self.at) / 1e6  # milliseconds, as torch reports


def test_device_time_replaces_host_time_while_the_device_runs_the_request(clock: FakeClock):
    # host: copy in [1000, 1003], launch a kernel [1003, 1005], copy back [1005, 1030] (blocked
    # until the kernel is done); device: copy [1001, 1003], kernel [1004, 1025], copy [1025,
    # 1029]; the anchor is recorded at the host's 1030 on an idle device.
    device = FakeDevice(clock, [1001, 1003, 1004, 1025, 1025, 1029, 1030])
    timer = EventTimer(
        clock, event=device.event, current_stream=FakeStream, synchronize=device.synchronize
    )
    rec = Recorder(0, clock=clock, timer=timer)
    ctx = StageContext(SetupContext(device="cuda"), rec, "s", 0)
    rec.add(Kind.WAIT, clock(), clock(), stage="s", category="scheduling", label="queue wait")
    with rec.span(Kind.STAGE, stage="s"):
        with ctx.movement(8, label="parse"):  # host memory: no events
            pass
        with ctx.transfer(64, label="h2d"):
            clock.advance(3)
        with ctx.compute(label="kernel"):
            clock.advance(2)
        with ctx.wait(label="lock"):  # waits are host-only: no events
            pass
        with ctx.transfer(64, label="d2h"):
            clock.advance(25)
    rec.add(Kind.REQUEST, 1_000, clock())
    assert device.syncs == 0  # nothing waits for the device at probe edges in events mode
    timer.resolve(rec)
    assert device.syncs == 2  # once to drain, once to tie the anchor to the host clock
    ivs = rec.intervals
    on_device = {
        iv.label: (iv.start_ns, iv.end_ns, iv.resource, iv.thread)
        for iv in ivs
        if iv.kind == "device"
    }
    assert on_device == {
        "h2d": (1001, 1003, "link", 0xBEEF),
        "kernel": (1004, 1025, "device", 0xBEEF),
        "d2h": (1025, 1029, "link", 0xBEEF),
        "clock anchor": (1030, 1030, "device", threading.get_ident()),
    }
    split = split_request(ivs, (Stage("s", "inference"),))
    # Host time alone would say 28 ns of copying and 2 of compute: the kernel ran 21.
    assert dict(split.stage("s").by_resource) == {
        ("movement", "link"): 1 + 2 + 4 + 1,
        ("compute", "device"): 1 + 1 + 20,
    }
    assert check_invariants(ivs, split) == []


def test_device_work_before_its_launch_breaks_an_invariant(clock: FakeClock):
    rec = Recorder(0, clock=clock)
    ctx = StageContext(SetupContext(device="cuda"), rec, "s", 0)
    rec.add(Kind.WAIT, clock(), clock(), stage="s", category="scheduling", label="queue wait")
    with rec.span(Kind.STAGE, stage="s"), ctx.compute(label="kernel") as probe:
        clock.advance(5)
    rec.add(Kind.DEVICE, 990, 1_004, stage="s", category="compute", parent=probe.span)
    rec.add(Kind.REQUEST, 1_000, clock())
    split = split_request(rec.intervals, (Stage("s", "inference"),))
    assert any("precedes its launch" in p for p in check_invariants(rec.intervals, split))


class TickingClock(FakeClock):
    """Moves one nanosecond on every read, so the order of reads shows in the times."""

    def __call__(self) -> int:
        self.now += 1
        return self.now


class IdleDevice(FakeDevice):
    """An idle device: each event runs the moment the host records it."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock, [])

    def event(self) -> FakeEvent:
        event = FakeEvent(self)
        event.record = lambda stream: setattr(event, "at", self.clock())  # type: ignore[method-assign]
        return event


def test_on_an_idle_device_a_probe_s_events_fall_inside_its_host_edges():
    clock = TickingClock(1_000)
    device = IdleDevice(clock)
    timer = EventTimer(
        clock, event=device.event, current_stream=FakeStream, synchronize=device.synchronize
    )
    rec = Recorder(0, clock=clock, timer=timer)
    ctx = StageContext(SetupContext(device="cuda"), rec, "s", 0)
    with rec.span(Kind.STAGE, stage="s"), ctx.compute(label="kernel"):
        pass
    timer.resolve(rec)
    probe = next(iv for iv in rec.intervals if iv.kind == "probe")
    work = next(iv for iv in rec.intervals if iv.kind == "device" and iv.label == "kernel")
    assert probe.start_ns <= work.start_ns <= work.end_ns <= probe.end_ns
