"""The runner: DAG execution, waits it records, failures, and the stopping rule, on a fake clock."""

from __future__ import annotations

import asyncio
import threading

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import FakeClock

from harness.analysis.attribution import split_request
from harness.analysis.invariants import check_invariants
from harness.archive.schema import RunLength
from harness.archive.tables import frame_intervals, intervals_frame
from harness.errors import UserError
from harness.measure.config import QUICK_CAP, run_length
from harness.measure.driver import RequestDriver
from harness.measure.process import measure
from harness.measure.spool import IntervalSpool
from harness.record.gpu_timing import SyncAtEdge
from harness.record.probes import Recorder
from harness.words import HANDOFF_WAIT, QUEUE_WAIT, Kind
from harness.workload import SetupContext, Stage, StageContext, Workload


class Timed(Workload):
    """Each stage advances the shared fake clock by known amounts inside and outside probes."""

    name = "timed"
    stages = (
        Stage("parse", "ingress"),
        Stage("infer", "inference", after=("parse",)),
        Stage("reply", "assembly", after=("infer",)),
    )

    def __init__(self, clock: FakeClock, fail_on: int | None = None) -> None:
        self.clock = clock
        self.fail_on = fail_on

    def requests(self, ctx):
        return list(range(4))

    def outputs(self, response):
        return {"value": response}

    def parse(self, ctx, payload):
        with ctx.movement(nbytes=10, label="json"):
            self.clock.advance(3)
        self.clock.advance(1)  # glue: unattributed
        if payload == self.fail_on:
            raise ValueError("bad payload")
        return payload

    def infer(self, ctx, x):
        with ctx.compute(label="model"):
            self.clock.advance(50)
            with ctx.movement(nbytes=4, label="copy"):
                self.clock.advance(5)
        with ctx.wait(label="lock"):
            self.clock.advance(2)
        return x * 2

    def reply(self, ctx, y):
        self.clock.advance(4)  # un-probed
        return y + 1


def test_driver_records_exact_splits_on_a_fake_clock(clock: FakeClock):
    wl = Timed(clock)
    driver = RequestDriver(wl, SetupContext(), clock=clock)
    outcome = driver(0, 3)
    assert outcome.error == "" and outcome.response == 7
    ivs = outcome.recorder.intervals
    split = split_request(ivs, Timed.stages)
    assert split.latency_ns == 3 + 1 + 55 + 2 + 4
    assert {
        s.stage: (s.compute_ns, s.movement_ns, s.scheduling_ns, s.unattributed_ns)
        for s in split.stages
    } == {
        "parse": (0, 3, 0, 1),
        "infer": (50, 5, 2, 0),
        "reply": (0, 0, 0, 4),
    }
    # No clock reading between stages advanced the fake clock: the waits are exactly zero,
    # and they were recorded, not inferred.
    assert [iv.label for iv in ivs if iv.kind == "wait"] == [QUEUE_WAIT, HANDOFF_WAIT, HANDOFF_WAIT]
    assert split.by_category() == {
        "compute": 50,
        "movement": 8,
        "scheduling": 2,
        "unattributed": 5,
        "harness lag": 0,
    }
    assert check_invariants(ivs, split) == []


def test_failed_request_keeps_its_error_and_the_run_goes_on(clock: FakeClock):
    wl = Timed(clock, fail_on=2)
    m = RunLength(warmup=0, min_requests=8, min_duration_s=0)
    result = measure(wl, SetupContext(), m, clock=clock)
    rows = result.requests
    assert len(rows) == 8
    failed = rows.loc[~rows["ok"]]
    assert list(failed["request"]) == [2, 6]
    assert failed["error"].str.startswith("parse: ValueError: bad payload").all()
    assert result.facts.requests_failed == 2
    # the failed request's later stages never ran
    intervals = pd.read_parquet(result.intervals)
    stages = set(intervals.loc[intervals["request"] == 2, "stage"])
    assert "infer" not in stages


def test_measurement_meets_both_minimums(clock: FakeClock):
    class Slow(Timed):
        def reply(self, ctx, y):
            self.clock.advance(250_000_000)  # 0.25 s a request
            return y

    by_count = measure(
        Slow(clock), SetupContext(), RunLength(0, 10, 0.5, 100), clock=clock
    ).requests
    assert len(by_count) == 10
    by_time = measure(Slow(clock), SetupContext(), RunLength(0, 1, 2.0, 100), clock=clock)
    assert len(by_time.requests) == 8  # 8 x 0.25 s reaches 2 s
    capped = measure(Slow(clock), SetupContext(), RunLength(0, 100, 0, 1.0), clock=clock)
    assert len(capped.requests) == 4 and capped.facts.hit_max_duration


def test_a_request_cap_stops_a_fast_run_and_says_so(clock: FakeClock):
    class Quick(Timed):
        def reply(self, ctx, y):
            self.clock.advance(1_000_000)  # 1 ms a request: 3 s would be 3,000 of them
            return y

    capped = measure(Quick(clock), SetupContext(), RunLength(0, 5, 3.0, 100, 50), clock=clock)
    assert len(capped.requests) == 50 and capped.facts.hit_max_requests
    # The cap never undercuts the requests asked for.
    asked = measure(Quick(clock), SetupContext(), RunLength(0, 80, 0.0, 100, 50), clock=clock)
    assert len(asked.requests) == 80 and not asked.facts.hit_max_requests
    assert run_length("quick").request_cap == QUICK_CAP
    assert run_length("quick", min_requests=5_000).request_cap == 5_000
    assert run_length("default").request_cap == float("inf")


def test_the_spool_gives_back_what_it_took_block_by_block(clock: FakeClock, tmp_path):
    driver = RequestDriver(Timed(clock), SetupContext(), clock=clock)
    spool = IntervalSpool(tmp_path / "spool.parquet", block_rows=7)
    recorded = []
    for i in range(12):
        outcome = driver(i, 1)
        spool.add(outcome.recorder)
        recorded += outcome.recorder.intervals
    assert spool.blocks >= 2  # written as it went, not held to the end
    frame = pd.read_parquet(spool.finish())
    assert pq.ParquetFile(spool.path).num_row_groups == spool.blocks
    pd.testing.assert_frame_equal(frame, intervals_frame(recorded))
    assert frame_intervals(frame) == recorded
    empty = IntervalSpool(tmp_path / "empty.parquet").finish()
    assert pd.read_parquet(empty).empty


def test_interval_table_round_trips(clock: FakeClock):
    outcome = RequestDriver(Timed(clock), SetupContext(), clock=clock)(0, 1)
    frame = intervals_frame(outcome.recorder.intervals)
    assert frame_intervals(frame) == outcome.recorder.intervals


class Fork(Workload):
    """Two independent branches: the runner runs them on two threads."""

    name = "fork"
    stages = (
        Stage("start", "ingress"),
        Stage("left", "retrieval", after=("start",)),
        Stage("right", "tools", after=("start",)),
        Stage("join", "assembly", after=("left", "right")),
    )
    barrier = threading.Barrier(2, timeout=5)

    def requests(self, ctx):
        return [0]

    def start(self, ctx, payload):
        return payload

    def left(self, ctx, x):
        self.barrier.wait()  # only returns if `right` runs at the same time
        return "l"

    def right(self, ctx, x):
        self.barrier.wait()
        return "r"

    def join(self, ctx, left, right):
        with ctx.compute():
            return left + right


def test_independent_stages_run_in_parallel():
    driver = RequestDriver(Fork(), SetupContext())
    outcome = driver(0, 0)
    driver.close()
    assert outcome.error == "" and outcome.response == "lr"
    threads = {iv.stage: iv.thread for iv in outcome.recorder.intervals if iv.kind == "stage"}
    assert threads["left"] != threads["right"]
    split = split_request(outcome.recorder.intervals, Fork.stages)
    assert check_invariants(outcome.recorder.intervals, split) == []


class FanOut(Workload):
    name = "fan-out"
    stages = (Stage("plan", "orchestration"),)

    def requests(self, ctx):
        return [3]

    def plan(self, ctx, n):
        def call(i):
            with ctx.compute(label=f"tool {i}"):
                return i * i

        return ctx.fan_out(call, range(n))


def test_fan_out_branches_nest_under_their_stage_on_other_threads():
    wl = FanOut()
    driver = RequestDriver(wl, SetupContext())
    outcome = driver(0, 3)
    driver.close()
    assert outcome.response == [0, 1, 4]
    ivs = outcome.recorder.intervals
    stage = next(iv for iv in ivs if iv.kind == "stage")
    join = next(iv for iv in ivs if iv.label == "fan-out join")
    assert join.parent == stage.span and join.thread == stage.thread
    branches = {iv.span: iv for iv in ivs if iv.kind == "branch"}
    assert len(branches) == 3 and all(b.parent == join.span for b in branches.values())
    tools = [iv for iv in ivs if iv.label.startswith("tool")]
    assert len(tools) == 3 and all(branches[t.parent].thread == t.thread for t in tools)
    assert all(iv.thread != stage.thread for iv in tools)
    split = split_request(ivs, FanOut.stages)
    assert check_invariants(ivs, split) == []
    assert split.stage("plan").compute_ns > 0  # the last branch's work, not a bare wait


def test_empty_request_stream_is_refused():
    class Empty(Timed):
        def requests(self, ctx):
            return []

    with pytest.raises(UserError, match="no requests"):
        measure(Empty(FakeClock()), SetupContext(), RunLength(0, 1, 0))


def test_device_sync_at_stage_compute_and_movement_edges_not_waits(clock: FakeClock):
    calls: list[int] = []
    rec = Recorder(0, clock=clock, timer=SyncAtEdge(lambda: calls.append(clock())))
    ctx = StageContext(SetupContext(), rec, "s", 0)
    with rec.span(Kind.STAGE, stage="s"):
        with ctx.compute():
            clock.advance(1)
        with ctx.wait():
            clock.advance(1)
        with ctx.transfer(8):
            clock.advance(1)
    # stage enter, compute enter/exit, transfer enter/exit, stage exit
    assert calls == [1_000, 1_000, 1_001, 1_002, 1_003, 1_003]


def test_a_late_send_is_harness_lag_apart_from_queue_wait(clock: FakeClock):
    wl = Timed(clock)
    driver = RequestDriver(wl, SetupContext(), clock=clock)
    scheduled = clock() - 30  # the generator is 30 ns behind its schedule
    outcome = driver(0, 3, scheduled_ns=scheduled)
    ivs = outcome.recorder.intervals
    split = split_request(ivs, Timed.stages)
    assert split.arrival_ns == scheduled and split.latency_ns == 30 + 65
    assert split.path[0].kind == "lag" and split.wait_ns("lag") == 30
    assert split.wait_ns("queue") == 0
    assert split.by_category() == {
        "compute": 50,
        "movement": 8,
        "scheduling": 2,
        "unattributed": 5,
        "harness lag": 30,
    }
    assert split.waits() == {"harness lag": 30, "queue wait": 0, "handoff wait": 0, "lock": 2}
    assert check_invariants(ivs, split) == []
    without_lag = [iv for iv in ivs if iv.label != "harness lag"]
    assert any("unrecorded lag" in p for p in check_invariants(without_lag, split))


class AsyncPlanner(Workload):
    """An async stage that gathers two tool calls which interleave on one thread."""

    name = "async-planner"
    stages = (Stage("plan", "orchestration"),)

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def requests(self, ctx):
        return [0]

    async def plan(self, ctx, payload):
        async def call(i: int, work: int) -> int:
            with ctx.compute(label=f"tool {i}"):
                self.clock.advance(work)
                await asyncio.sleep(0)  # suspended: the other tool runs meanwhile
                self.clock.advance(work)
            return i

        with ctx.compute(label="prep"):
            self.clock.advance(5)
        return await ctx.gather(call(0, 10), call(1, 20))


def test_a_probe_spanning_an_await_claims_only_its_own_task_time(clock: FakeClock):
    driver = RequestDriver(AsyncPlanner(clock), SetupContext(), clock=clock)
    outcome = driver(0, 0)
    driver.close()
    assert outcome.error == "" and outcome.response == [0, 1]
    ivs = outcome.recorder.intervals
    split = split_request(ivs, AsyncPlanner.stages)
    plan = split.stage("plan")
    # tool 1 ends last, so it replaces the join; its probe spans 50 ns of which its task
    # ran 40: the 10 ns tool 0 used are tool 1's await, not its compute.
    assert dict(plan.by_resource) == {("compute", "host-cpu"): 5 + 40, ("scheduling", "wait"): 20}
    assert dict(plan.waits) == {"gather join": 10, "await": 10}
    assert plan.overlap_ns == 40  # tool 0's branch, beside the critical one
    assert check_invariants(ivs, split) == []
    tasks = {iv.task for iv in ivs if iv.kind == "slice"}
    assert len(tasks) == 3  # the stage's task and the two tools


class TwoChains(Workload):
    """a -> (b -> d, c -> e) -> f, where b cannot finish until e has started."""

    name = "two-chains"
    stages = (
        Stage("a", "ingress"),
        Stage("b", "retrieval", after=("a",)),
        Stage("c", "tools", after=("a",)),
        Stage("d", "inference", after=("b",)),
        Stage("e", "inference", after=("c",)),
        Stage("f", "assembly", after=("d", "e")),
    )

    def __init__(self) -> None:
        self.e_started = threading.Event()

    def requests(self, ctx):
        return [0]

    def a(self, ctx, payload):
        return payload

    def b(self, ctx, x):
        with ctx.wait(label="for e"):
            return self.e_started.wait(timeout=5)

    def c(self, ctx, x):
        return x

    def d(self, ctx, x):
        return x

    def e(self, ctx, x):
        self.e_started.set()
        return x

    def f(self, ctx, d, e):
        return d


def test_a_stage_starts_when_its_inputs_are_ready_not_when_a_sibling_chain_is_done():
    driver = RequestDriver(TwoChains(), SetupContext())
    outcome = driver(0, 0)
    driver.close()
    assert outcome.error == ""
    assert outcome.response is True  # e ran while b was still running: no invented wait
    split = split_request(outcome.recorder.intervals, TwoChains.stages)
    assert check_invariants(outcome.recorder.intervals, split) == []


class NestedFanOut(Workload):
    name = "nested-fan-out"
    stages = (Stage("plan", "orchestration"),)

    def requests(self, ctx):
        return [2]

    def plan(self, ctx, n):
        def inner(i):
            with ctx.compute(label=f"inner {i}"):
                return i

        def outer(i):
            return sum(ctx.fan_out(inner, range(n)))

        return ctx.fan_out(outer, range(n))


def test_nested_fan_out_on_a_small_pool_finishes():
    driver = RequestDriver(NestedFanOut(), SetupContext(), fan_out_workers=2)
    done = []
    worker = threading.Thread(target=lambda: done.append(driver(0, 2)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    driver.close()
    assert done and done[0].error == "" and done[0].response == [1, 1]
    split = split_request(done[0].recorder.intervals, NestedFanOut.stages)
    assert check_invariants(done[0].recorder.intervals, split) == []


class AsyncSink(Workload):
    name = "async-sink"
    stages = (Stage("first", "ingress"), Stage("last", "assembly", after=("first",)))

    def requests(self, ctx):
        return [1]

    def first(self, ctx, x):
        return x

    async def last(self, ctx, x):
        with ctx.compute():
            await asyncio.sleep(0)
        return x


def test_an_async_sink_keeps_every_invariant_on_a_real_clock():
    driver = RequestDriver(AsyncSink(), SetupContext())
    outcomes = [driver(i, 1) for i in range(20)]
    driver.close()
    for outcome in outcomes:
        split = split_request(outcome.recorder.intervals, AsyncSink.stages)
        assert check_invariants(outcome.recorder.intervals, split) == []


class Offloaded(Workload):
    """Compute handed to an executor and awaited: the loop idles, the compute is real."""

    name = "offloaded"
    stages = (Stage("work", "inference"),)

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def requests(self, ctx):
        return [0]

    async def work(self, ctx, payload):
        with ctx.compute(label="offloaded"):
            await asyncio.get_running_loop().run_in_executor(None, self.clock.advance, 50)


def test_awaiting_an_idle_loop_keeps_the_probe_category(clock: FakeClock):
    driver = RequestDriver(Offloaded(clock), SetupContext(), clock=clock)
    outcome = driver(0, 0)
    driver.close()
    work = split_request(outcome.recorder.intervals, Offloaded.stages).stage("work")
    assert dict(work.by_resource) == {("compute", "host-cpu"): 50}
