"""The accounting rules, proven on hand-built intervals and under a fake clock: exact splits."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from conftest import FakeClock, interval

from harness.analysis.attribution import split_request
from harness.analysis.invariants import check_invariants
from harness.record.probes import Recorder
from harness.words import HANDOFF_WAIT, QUEUE_WAIT, Kind
from harness.workload import Stage

CHAIN = (Stage("a", "ingress"), Stage("b", "inference", after=("a",)))
DIAMOND = (
    Stage("a", "ingress"),
    Stage("b", "retrieval", after=("a",)),
    Stage("c", "tools", after=("a",)),
    Stage("d", "assembly", after=("b", "c")),
)


def stage_iv(name, start, end, thread=1, span=100):
    return interval(Kind.STAGE, start, end, stage=name, thread=thread, span=span)


def wait_iv(name, start, end, label=HANDOFF_WAIT, thread=1):
    kw = {"category": "scheduling", "resource": "wait"}
    return interval(Kind.WAIT, start, end, stage=name, label=label, thread=thread, **kw)


def probe_iv(stage, category, start, end, span, parent, resource="host-cpu", thread=1, nbytes=0):
    return interval(
        Kind.PROBE,
        start,
        end,
        stage=stage,
        category=category,
        resource=resource,
        span=span,
        parent=parent,
        thread=thread,
        nbytes=nbytes,
    )


def test_innermost_probe_wins_and_the_rest_is_unattributed():
    ivs = [
        interval(Kind.REQUEST, 0, 100),
        wait_iv("a", 0, 0, QUEUE_WAIT),
        stage_iv("a", 0, 100, span=1),
        probe_iv("a", "compute", 10, 60, span=2, parent=1),
        probe_iv("a", "movement", 20, 30, span=3, parent=2, resource="host-memory", nbytes=64),
        probe_iv("a", "scheduling", 70, 80, span=4, parent=1, resource="wait"),
    ]
    split = split_request(ivs, (Stage("a", "ingress"),))
    a = split.stage("a")
    assert (a.compute_ns, a.movement_ns, a.scheduling_ns, a.unattributed_ns) == (40, 10, 10, 40)
    assert a.coverage == 0.6
    assert a.nbytes == 64
    assert dict(a.by_resource) == {
        ("compute", "host-cpu"): 40,
        ("movement", "host-memory"): 10,
        ("scheduling", "wait"): 10,
        ("unattributed", ""): 40,
    }
    assert split.by_category() == {
        "compute": 40,
        "movement": 10,
        "scheduling": 10,
        "unattributed": 40,
        "harness lag": 0,
    }
    assert check_invariants(ivs, split) == []


def chain_request():
    return [
        interval(Kind.REQUEST, 0, 100),
        wait_iv("a", 0, 5, QUEUE_WAIT),
        stage_iv("a", 5, 50, span=1),
        probe_iv("a", "compute", 5, 45, span=2, parent=1),
        wait_iv("b", 50, 53),
        stage_iv("b", 53, 100, span=3),
        probe_iv("b", "movement", 60, 70, span=4, parent=3, resource="link"),
    ]


def test_queue_and_handoff_waits_lie_on_the_critical_path():
    ivs = chain_request()
    split = split_request(ivs, CHAIN)
    assert [(s.kind, s.stage, s.start_ns, s.end_ns) for s in split.path] == [
        ("queue", "a", 0, 5),
        ("stage", "a", 5, 50),
        ("handoff", "b", 50, 53),
        ("stage", "b", 53, 100),
    ]
    assert split.wait_ns("queue") == 5 and split.wait_ns("handoff") == 3
    assert split.by_resource() == {
        ("compute", "host-cpu"): 40,
        ("movement", "link"): 10,
        ("scheduling", "wait"): 8,
        ("unattributed", ""): 5 + 37,
    }
    assert split.latency_ns == 100
    assert check_invariants(ivs, split) == []


def diamond(c_end: int):
    """a -> (b on thread 1, c on thread 2) -> d, with c ending at ``c_end``."""
    d_start = max(40, c_end) + 1
    return [
        interval(Kind.REQUEST, 0, d_start + 9),
        wait_iv("a", 0, 0, QUEUE_WAIT),
        stage_iv("a", 0, 10, span=1),
        wait_iv("b", 10, 12),
        stage_iv("b", 12, 40, span=2),
        wait_iv("c", 10, 11, thread=2),
        stage_iv("c", 11, c_end, thread=2, span=3),
        wait_iv("d", max(40, c_end), d_start),
        stage_iv("d", d_start, d_start + 9, span=4),
    ]


def test_parallel_branch_off_the_path_is_overlap_not_added():
    ivs = diamond(c_end=30)
    split = split_request(ivs, DIAMOND)
    assert split.critical_stages == ("a", "b", "d")
    assert split.overlap_ns == 30 - 11
    assert split.wait_ns("handoff") == 2 + 1
    assert check_invariants(ivs, split) == []


def test_a_branch_that_runs_longer_becomes_critical():
    ivs = diamond(c_end=45)
    split = split_request(ivs, DIAMOND)
    assert split.critical_stages == ("a", "c", "d")
    assert split.overlap_ns == 40 - 12
    assert [(s.kind, s.start_ns, s.end_ns) for s in split.path][:3] == [
        ("queue", 0, 0),
        ("stage", 0, 10),
        ("handoff", 10, 11),
    ]
    assert check_invariants(ivs, split) == []


def test_branches_run_one_after_another_are_all_critical():
    # b and c could overlap but ran on one thread: c waited for b, not for its input.
    ivs = [
        interval(Kind.REQUEST, 0, 40),
        wait_iv("a", 0, 0, QUEUE_WAIT),
        stage_iv("a", 0, 10, span=1),
        wait_iv("b", 10, 11),
        stage_iv("b", 11, 20, span=2),
        wait_iv("c", 10, 21),
        stage_iv("c", 21, 30, span=3),
        wait_iv("d", 30, 31),
        stage_iv("d", 31, 40, span=4),
    ]
    split = split_request(ivs, DIAMOND)
    assert split.critical_stages == ("a", "b", "c", "d")
    assert split.overlap_ns == 0
    assert split.wait_ns("handoff") == 1 + 1 + 1
    assert check_invariants(ivs, split) == []


def fan_out_request(b0_end: int):
    """Stage a: compute, then a join on two branches on threads 7 and 8, then glue."""
    branch = {"category": "", "resource": ""}
    return [
        interval(Kind.REQUEST, 0, 100),
        wait_iv("a", 0, 0, QUEUE_WAIT),
        stage_iv("a", 0, 100, span=1),
        probe_iv("a", "compute", 0, 10, span=2, parent=1),
        probe_iv("a", "scheduling", 10, 90, span=3, parent=1, resource="wait"),
        interval(Kind.BRANCH, 12, b0_end, stage="a", span=4, parent=3, thread=7, **branch),
        probe_iv("a", "compute", 15, 55, span=5, parent=4, thread=7),
        interval(Kind.BRANCH, 13, 85, stage="a", span=6, parent=3, thread=8, **branch),
        probe_iv("a", "movement", 20, 80, span=7, parent=6, resource="link", thread=8, nbytes=99),
    ]


def test_a_join_is_replaced_by_its_last_branch_and_the_others_overlap():
    ivs = fan_out_request(b0_end=60)
    split = split_request(ivs, (Stage("a", "orchestration"),))
    a = split.stage("a")
    assert dict(a.by_resource) == {
        ("compute", "host-cpu"): 10,
        ("scheduling", "wait"): 3 + 5,  # before branch 1 started, after it ended
        ("movement", "link"): 60,
        ("unattributed", ""): 7 + 5 + 10,  # branch 1's glue, then the stage's own
    }
    assert a.overlap_ns == split.overlap_ns == 60 - 12
    assert a.nbytes == 99
    assert check_invariants(ivs, split) == []


def test_a_branch_that_ends_last_becomes_the_critical_one():
    ivs = fan_out_request(b0_end=88)
    a = split_request(ivs, (Stage("a", "orchestration"),)).stage("a")
    assert dict(a.by_resource) == {
        ("compute", "host-cpu"): 10 + 40,
        ("scheduling", "wait"): 2 + 2,
        ("unattributed", ""): 3 + 33 + 10,
    }
    assert a.overlap_ns == 85 - 13


def test_each_invariant_can_fail():
    base = chain_request()
    stages = CHAIN

    def problems(ivs):
        return check_invariants(ivs, split_request(ivs, stages))

    assert problems(base) == []
    negative = [*base, probe_iv("b", "compute", 80, 75, span=9, parent=3)]
    assert any("negative time" in p for p in problems(negative))
    outside = [*base, probe_iv("b", "compute", 95, 120, span=9, parent=3)]
    assert any("outside stage" in p for p in problems(outside))
    overfull = [*base, probe_iv("b", "compute", 65, 90, span=9, parent=3)]  # crosses span 4
    assert any("overlaps inside" in p for p in problems(overfull))
    unrecorded = [iv for iv in base if iv.label != HANDOFF_WAIT]
    assert any("unrecorded handoff" in p for p in problems(unrecorded))
    early = [iv if iv.stage != "b" or iv.kind != "stage" else stage_iv("b", 40, 100) for iv in base]
    assert any("not contiguous" in p for p in problems(early))
    late = [iv if iv.kind != "request" else interval(Kind.REQUEST, 0, 90) for iv in base]
    assert any("outside request" in p for p in problems(late))


def test_recorder_nests_per_thread_under_a_fake_clock(clock: FakeClock):
    rec = Recorder(0, clock=clock)
    with rec.span(Kind.STAGE, stage="s"):
        clock.advance(5)
        with rec.span(Kind.PROBE, stage="s", category="compute", resource="host-cpu"):
            clock.advance(20)
            with rec.span(Kind.PROBE, stage="s", category="movement", resource="link"):
                clock.advance(7)
            clock.advance(3)
        clock.advance(11)
    by_kind = {(iv.kind, iv.category): iv for iv in rec.intervals}
    stage = by_kind[("stage", "")]
    compute = by_kind[("probe", "compute")]
    movement = by_kind[("probe", "movement")]
    assert (stage.start_ns, stage.end_ns) == (1_000, 1_046)
    assert compute.parent == stage.span and movement.parent == compute.span
    rec.add(Kind.REQUEST, 1_000, 1_046)
    rec.add(Kind.WAIT, 1_000, 1_000, stage="s", category="scheduling", label=QUEUE_WAIT)
    split = split_request(rec.intervals, (Stage("s", "ingress"),))
    assert split.by_category() == {
        "compute": 23,
        "movement": 7,
        "scheduling": 0,
        "unattributed": 16,
        "harness lag": 0,
    }


def test_asyncio_tasks_nest_on_their_own_stacks(clock: FakeClock):
    rec = Recorder(0, clock=clock)

    async def branch(name: str) -> None:
        with rec.span(Kind.PROBE, stage="s", category="compute", label=name):
            await asyncio.sleep(0)
            with rec.span(Kind.PROBE, stage="s", category="movement", label=name + "-copy"):
                await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(branch("x"), branch("y"))

    asyncio.run(main())
    by_label = {iv.label: iv for iv in rec.intervals}
    assert by_label["x-copy"].parent == by_label["x"].span
    assert by_label["y-copy"].parent == by_label["y"].span
    assert by_label["x"].parent == -1 and by_label["y"].parent == -1
    assert by_label["x"].task != by_label["y"].task


def test_branches_queued_on_one_thread_form_a_chain_on_the_critical_path():
    branch = {"category": "", "resource": ""}
    ivs = [
        interval(Kind.REQUEST, 0, 100),
        wait_iv("a", 0, 0, QUEUE_WAIT),
        stage_iv("a", 0, 100, span=1),
        probe_iv("a", "scheduling", 10, 90, span=2, parent=1, resource="wait"),
        interval(Kind.BRANCH, 12, 30, stage="a", span=3, parent=2, thread=7, **branch),
        probe_iv("a", "compute", 12, 30, span=4, parent=3, thread=7),
        interval(Kind.BRANCH, 31, 60, stage="a", span=5, parent=2, thread=7, **branch),
        probe_iv("a", "compute", 31, 60, span=6, parent=5, thread=7),
        interval(Kind.BRANCH, 61, 85, stage="a", span=7, parent=2, thread=7, **branch),
        probe_iv("a", "compute", 61, 85, span=8, parent=7, thread=7),
    ]
    a = split_request(ivs, (Stage("a", "orchestration"),)).stage("a")
    # one worker ran the three in turn: all of it was on the path, none of it beside it
    assert dict(a.by_resource) == {
        ("compute", "host-cpu"): 18 + 29 + 24,
        ("scheduling", "wait"): 2 + 1 + 1 + 5,
        ("unattributed", ""): 10 + 10,
    }
    assert a.overlap_ns == 0


def test_on_cpu_time_follows_the_critical_timeline():
    branch = {"category": "", "resource": ""}
    ivs = fan_out_request(b0_end=60)  # branch 1 (thread 8) is the critical one
    cpu = {1: 5, 4: 30, 6: 20}  # the stage's thread, branch 0, branch 1
    ivs = [
        iv if iv.span not in cpu or iv.kind == "probe" else replace(iv, cpu_ns=cpu[iv.span])
        for iv in ivs
    ]
    a = split_request(ivs, (Stage("a", "orchestration"),)).stage("a")
    assert a.cpu_ns == 5 + 20  # branch 0 ran beside the path: its CPU time is not the stage's
    inline = [*ivs[:5], interval(Kind.BRANCH, 12, 60, stage="a", span=4, parent=3, **branch)]
    inline = [
        replace(iv, cpu_ns=cpu.get(iv.span, -1)) if iv.kind != "probe" else iv for iv in inline
    ]
    assert split_request(inline, (Stage("a", "orchestration"),)).stage("a").cpu_ns == 5


def test_a_probe_outside_every_span_is_flagged():
    ivs = [*chain_request(), probe_iv("b", "compute", 60, 70, span=9, parent=-1, thread=9)]
    split = split_request(ivs, CHAIN)
    assert any("no enclosing span" in p for p in check_invariants(ivs, split))
