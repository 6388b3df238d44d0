"""The projection arithmetic on hand-built requests: Amdahl, overlap, a moving path, contention."""

from __future__ import annotations

import signal
from dataclasses import replace

import pandas as pd
import pytest
from conftest import interval, make_manifest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_attribution import probe_iv, stage_iv, wait_iv

from harness.archive.migrations import migrate_fingerprint
from harness.archive.result_set import ResultSet
from harness.archive.tables import intervals_frame
from harness.errors import UserError
from harness.projection.claims import from_arguments
from harness.projection.project import project
from harness.projection.replay import replay
from harness.projection.request_model import build, steps
from harness.record.probes import Interval
from harness.words import QUEUE_WAIT, Kind
from harness.workload import Stage

ONE = (Stage("s", "inference"),)
LATE = 86_400 * 10**9 + 7  # a day and 7 ns, in ns
DIAMOND = (
    Stage("a", "ingress"),
    Stage("b", "retrieval", after=("a",)),
    Stage("c", "tools", after=("a",)),
    Stage("d", "assembly", after=("b", "c")),
)


def result_set(intervals, stages, cores=4, stage_threads=None) -> ResultSet:
    frame = intervals_frame(intervals).assign(replicate=0)
    latency = next(iv.duration_ns for iv in intervals if iv.kind == Kind.REQUEST.value)
    requests = pd.DataFrame(
        {"request": [0], "ok": [True], "latency_s": [latency / 1e9], "replicate": [0]}
    )
    manifest = make_manifest(stages, cores=cores, stage_threads=stage_threads)
    return ResultSet.of(manifest, frame, requests)


def branch_iv(start, end, span, parent, thread):
    return interval(Kind.BRANCH, start, end, stage="s", span=span, parent=parent, thread=thread)


def fan_out(a_end, b_end, b_resource="host-memory"):
    """Stage s on thread 1 joins two branches: A computes on thread 2, B moves on thread 3."""
    stage_end = max(a_end, b_end) + 3
    return [
        interval(Kind.REQUEST, 0, stage_end),
        wait_iv("s", 0, 0, QUEUE_WAIT),
        stage_iv("s", 0, stage_end, span=1),
        probe_iv("s", "scheduling", 0, max(a_end, b_end) + 1, span=2, parent=1, resource="wait"),
        branch_iv(0, a_end, span=3, parent=2, thread=2),
        probe_iv("s", "compute", 0, a_end, span=4, parent=3, thread=2),
        branch_iv(0, b_end, span=5, parent=2, thread=3),
        probe_iv("s", "movement", 0, b_end, span=6, parent=5, resource=b_resource, thread=3),
    ]


def test_the_seed_s_arithmetic_a_quarter_sped_up_by_15_percent():
    ivs = [
        interval(Kind.REQUEST, 0, 100),
        wait_iv("s", 0, 0, QUEUE_WAIT),
        stage_iv("s", 0, 100, span=1),
        probe_iv("s", "compute", 0, 25, span=2, parent=1),
        probe_iv("s", "movement", 25, 100, span=3, parent=1, resource="host-memory"),
    ]
    p = project(result_set(ivs, ONE), from_arguments(["compute=1.15"]))
    assert p.matched_share == 0.25
    for model in ("naive", "replay"):
        assert p.speedup(model) == pytest.approx(100 / (75 + 25 / 1.15))
        assert round(p.speedup(model), 3) == 1.034
    assert p.surviving() == pytest.approx((1.034 - 1) / 0.15, abs=0.01)


def test_an_identity_claim_projects_what_was_measured():
    ivs = fan_out(a_end=52, b_end=40)
    p = project(result_set(ivs, ONE), from_arguments(["host-cpu.compute=1"]))
    assert p.measured["p50"] == p.naive["p50"] == p.replay["p50"]
    assert p.replay_identity_error == 0.0


def diamond(c_compute_end, c_end):
    """a -> (b: 40 ns of compute on thread 1, c: compute then movement on thread 2) -> d."""
    d_start = max(52, c_end) + 1
    return [
        interval(Kind.REQUEST, 0, d_start + 9),
        wait_iv("a", 0, 0, QUEUE_WAIT),
        stage_iv("a", 0, 10, span=1),
        probe_iv("a", "compute", 0, 10, span=11, parent=1),
        wait_iv("b", 10, 12),
        stage_iv("b", 12, 52, span=2),
        probe_iv("b", "compute", 12, 52, span=21, parent=2),
        wait_iv("c", 10, 11, thread=2),
        stage_iv("c", 11, c_end, thread=2, span=3),
        probe_iv("c", "compute", 11, c_compute_end, span=31, parent=3, thread=2),
        probe_iv("c", "movement", c_compute_end, c_end, 32, 3, resource="host-memory", thread=2),
        wait_iv("d", max(52, c_end), d_start),
        stage_iv("d", d_start, d_start + 9, span=4),
        probe_iv("d", "compute", d_start, d_start + 9, span=41, parent=4),
    ]


def test_the_critical_path_moves_to_the_other_branch():
    # c (30 ns compute + 20 ns movement) is critical; 10x faster movement makes it 32 ns, so
    # b's 40 ns becomes the path. Amdahl on the recorded path does not see that.
    ivs = diamond(c_compute_end=41, c_end=61)
    p = project(result_set(ivs, DIAMOND), from_arguments(["movement=10"]))
    assert p.measured["p50"].value_ms * 1e6 == pytest.approx(71)
    assert p.naive["p50"].value_ms * 1e6 == pytest.approx(71 - 18)
    # b ends at 52, d starts 1 ns later (its recorded handoff) and runs 9 ns
    assert p.replay["p50"].value_ms * 1e6 == pytest.approx(62)


def test_an_overlapped_window_shrinks_to_its_longest_part():
    # A (compute, 52 ns) and B (movement, 40 ns) run side by side; A halved leaves B longest.
    ivs = fan_out(a_end=52, b_end=40)
    p = project(result_set(ivs, ONE), from_arguments(["compute=2"]))
    assert p.naive["p50"].value_ms * 1e6 == pytest.approx(55 - 26)  # the path's A, halved
    assert p.replay["p50"].value_ms * 1e6 == pytest.approx(40 + 1 + 2)  # B, then the join's tail


def test_branches_that_contended_for_one_core_are_freed_by_a_faster_one():
    # On one core, A and B each ran at half speed for 100 ns: 50 ns of work each. A at 2x
    # needs 25: both share the core until A is done at 50, then B finishes its last 25 alone.
    ivs = fan_out(a_end=100, b_end=100)
    p = project(result_set(ivs, ONE, cores=1), from_arguments(["compute=2"]))
    assert p.replay["p50"].value_ms * 1e6 == pytest.approx(75 + 3)
    # with a core each there was no contention: B's 100 ns stay, the join gains nothing
    roomy = project(result_set(ivs, ONE, cores=2), from_arguments(["compute=2"]))
    assert roomy.replay["p50"].value_ms * 1e6 == pytest.approx(103)


def test_intra_op_threads_count_against_the_cores():
    # A's compute used 2 threads: with B, 3 cores were asked of 2. Alone it would have
    # taken 100 * 2/3 ns.
    ivs = fan_out(a_end=100, b_end=100)
    model = build(ivs, ONE, cores=2, stage_threads={"s": 2})
    a_work = next(s.work for s in steps(model) if s.category == "compute")
    assert a_work == pytest.approx(100 * 2 / 3)
    assert replay(model)[0] == pytest.approx(103)


def test_the_harness_s_own_waits_are_never_scaled():
    ivs = diamond(c_compute_end=41, c_end=61)
    p = project(result_set(ivs, DIAMOND), from_arguments(["scheduling=100", "wait=100"]))
    assert p.naive["p50"] == p.measured["p50"] == p.replay["p50"]


def test_which_key_matched_what_is_reported():
    ivs = diamond(c_compute_end=41, c_end=61)
    claim = from_arguments(["compute=1.5", "stage:c/host-cpu.compute=3", "layer:tools/movement=2"])
    p = project(result_set(ivs, DIAMOND), claim)
    by_key = {m.key: m for m in p.matches}
    assert by_key["stage:c/host-cpu.compute"].where == ("c (compute, host-cpu)",)
    assert by_key["layer:tools/movement"].where == ("c (movement, host-memory)",)
    assert set(by_key["compute"].where) == {"a (compute, host-cpu)", "d (compute, host-cpu)"}
    assert by_key["compute"].share == pytest.approx((10 + 9) / 71)


# A chain of stages on one thread, each a run of pieces: (category, resource, ns).
PIECE = st.tuples(
    st.sampled_from([("compute", "host-cpu"), ("movement", "host-memory"), ("scheduling", "wait")]),
    st.integers(1, 1_000),
)
CHAINS = st.lists(st.lists(PIECE, min_size=1, max_size=4), min_size=1, max_size=4)
FACTORS = st.floats(0.5, 8.0)


def chain(stages_pieces, gap=3):
    stages = tuple(
        Stage(f"s{i}", "inference", after=(f"s{i - 1}",) if i else ())
        for i in range(len(stages_pieces))
    )
    ivs, cursor, span = [], 0, 1
    ivs.append(wait_iv("s0", 0, 0, QUEUE_WAIT))
    for i, pieces in enumerate(stages_pieces):
        if i:
            ivs.append(wait_iv(f"s{i}", cursor, cursor + gap))
            cursor += gap
        start, stage_span = cursor, span
        span += 1
        for (category, resource), ns in pieces:
            ivs.append(probe_iv(f"s{i}", category, cursor, cursor + ns, span, stage_span, resource))
            cursor += ns
            span += 1
        ivs.append(stage_iv(f"s{i}", start, cursor, span=stage_span))
    ivs.append(interval(Kind.REQUEST, 0, cursor))
    return ivs, stages


@settings(max_examples=60, deadline=None)
@given(CHAINS, FACTORS, FACTORS)
def test_on_a_chain_the_replay_is_amdahl(stages_pieces, compute, movement):
    ivs, stages = chain(stages_pieces)
    claim = from_arguments([f"compute={compute}", f"movement={movement}"])
    p = project(result_set(ivs, stages, cores=1), claim)
    assert p.replay["p50"].value_ms == pytest.approx(p.naive["p50"].value_ms, rel=1e-9)
    expected = sum(
        ns / {"compute": compute, "movement": movement}.get(category, 1.0)
        for pieces in stages_pieces
        for (category, _), ns in pieces
    ) + 3 * (len(stages_pieces) - 1)
    assert p.naive["p50"].value_ms * 1e6 == pytest.approx(expected)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 200), st.integers(1, 200), st.integers(1, 4), FACTORS, st.integers(1, 3))
def test_fan_out_replay_without_a_claim_is_the_recording(a_end, b_end, cores, factor, threads):
    ivs = fan_out(a_end, b_end)
    model = build(ivs, ONE, cores=cores, stage_threads={"s": threads})
    latency, _ = replay(model)
    assert latency == pytest.approx(max(a_end, b_end) + 3)
    # a faster part never makes the request slower, and never faster than the part allows
    faster, _ = replay(model, lambda stage, label, category, resource: max(factor, 1.0))
    assert faster <= latency + 1e-6
    assert faster >= latency / max(factor, 1.0) - 1e-6


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 2000), st.integers(1, 2000), st.integers(1, 3), FACTORS)
def test_a_replay_is_the_same_whenever_the_request_arrived(a_end, b_end, threads, factor):
    # A day of uptime puts perf_counter near 1e14 ns, where a float steps in 0.016 ns: a
    # replay on that clock could never finish a step's last fraction of a nanosecond.
    def shifted(iv: Interval) -> Interval:
        return replace(iv, start_ns=iv.start_ns + LATE, end_ns=iv.end_ns + LATE)

    def stalled(signum, frame):
        raise TimeoutError("the replay's clock stopped advancing")

    signal.signal(signal.SIGALRM, stalled)
    signal.alarm(10)  # a stall is a failure, not a hang
    try:
        _same_replay_early_and_late(a_end, b_end, threads, factor, shifted)
    finally:
        signal.alarm(0)


def _same_replay_early_and_late(a_end, b_end, threads, factor, shifted):
    ivs = fan_out(a_end, b_end)
    scale = lambda stage, label, category, resource: factor  # noqa: E731
    early = replay(build(ivs, ONE, cores=1, stage_threads={"s": threads}), scale)
    model = build([shifted(iv) for iv in ivs], ONE, cores=1, stage_threads={"s": threads})
    late = replay(model, scale)
    assert late[0] == early[0]  # to the last bit: the clock runs from the arrival
    for stage, end in late[1].items():  # stage ends are given on the recording's clock
        assert end - LATE == pytest.approx(early[1][stage], abs=0.05)


def test_gathered_asyncio_tasks_on_one_thread_are_lanes_of_their_own():
    # Two tool calls awaited side by side from one loop thread: each is its own lane.
    def task_branch(start, end, span, task):
        return replace(branch_iv(start, end, span=span, parent=2, thread=1), task=task)

    def call(start, end, span, parent, task):
        return replace(
            probe_iv("s", "scheduling", start, end, span, parent, resource="remote"), task=task
        )

    ivs = [
        interval(Kind.REQUEST, 0, 155),
        wait_iv("s", 0, 0, QUEUE_WAIT),
        stage_iv("s", 0, 155, span=1),
        probe_iv("s", "scheduling", 0, 152, span=2, parent=1, resource="wait"),
        task_branch(5, 150, span=3, task="Task-2"),
        call(5, 150, 4, 3, "Task-2"),
        task_branch(5, 140, span=5, task="Task-3"),
        call(5, 140, 6, 5, "Task-3"),
    ]
    latency, _ = replay(build(ivs, ONE, cores=2))
    assert latency == pytest.approx(155)


def test_more_threads_ask_more_cores_only_of_the_claimed_work():
    ivs = diamond(c_compute_end=41, c_end=61)
    claim = from_arguments(["stage:a/compute=1"], threads=2)
    p = project(result_set(ivs, DIAMOND, cores=2), claim)
    assert p.replay["p50"] == p.measured["p50"]  # a alone: two cores free for its threads


def test_a_join_s_own_waiting_is_scaled_alike_by_both_models():
    p = project(result_set(fan_out(a_end=52, b_end=40), ONE), from_arguments(["scheduling=100"]))
    assert p.replay["p50"].value_ms == pytest.approx(p.naive["p50"].value_ms)
    assert p.naive["p50"].value_ms * 1e6 == pytest.approx(52 + 0.01 + 2)


def test_a_claim_scoped_to_a_stage_the_set_lacks_is_refused():
    with pytest.raises(UserError, match="no stage 'embd'"):
        project(result_set(fan_out(10, 10), ONE), from_arguments(["stage:embd/compute=2"]))


def gathered_compute():
    """Two CPU-bound tasks gathered on one loop thread: the second waits for the first."""

    def task_iv(kind_iv, task):
        return replace(kind_iv, task=task)

    return [
        interval(Kind.REQUEST, 0, 43),
        wait_iv("s", 0, 0, QUEUE_WAIT),
        stage_iv("s", 0, 43, span=1),
        probe_iv("s", "scheduling", 0, 41, span=2, parent=1, resource="wait"),
        task_iv(branch_iv(0, 20, span=3, parent=2, thread=1), "Task-2"),
        task_iv(probe_iv("s", "compute", 0, 20, 4, 3), "Task-2"),
        task_iv(branch_iv(20, 40, span=5, parent=2, thread=1), "Task-3"),
        task_iv(probe_iv("s", "compute", 20, 40, 6, 5), "Task-3"),
    ]


def test_gathered_tasks_take_turns_on_their_loop_thread():
    result = result_set(gathered_compute(), ONE, cores=2)
    assert project(result, from_arguments(["compute=1"])).replay_identity_error == 0.0
    faster = project(result, from_arguments(["compute=2"]))
    # the second task no longer waits 20 ns for the thread: 10 + 10, the tail, the stage's own
    assert faster.replay["p50"].value_ms * 1e6 == pytest.approx(23)
    assert faster.naive["p50"].value_ms * 1e6 == pytest.approx(23)
    # a claim on waits does not make the compute shorter
    waits = project(result, from_arguments(["scheduling=100"]))
    assert waits.replay["p50"].value_ms * 1e6 == pytest.approx(40 + 0.01 + 2)


def test_cores_are_capped_by_affinity_and_quota():
    # A version 1 fingerprint kept those limits only in its checks' text: read back once.
    fingerprint = {
        "schema_version": 1,
        "host": {"host_processor_vcpu_count": 16},
        "environment": [
            {"name": "cpu_affinity", "value": "4 of unknown CPUs"},
            {"name": "cpu_quota", "value": "2.5 CPUs"},
        ],
    }
    assert migrate_fingerprint(fingerprint)["usable_cores"] == 2.5
    plain = {"schema_version": 1, "host": {"host_processor_vcpu_count": 16}}
    assert migrate_fingerprint(plain)["usable_cores"] == 16
    result = result_set(fan_out(10, 10), ONE, cores=2.5)
    assert project(result, from_arguments(["compute=2"])).cores == 2.5


def test_a_set_without_a_successful_request_is_one_line():
    result = result_set(fan_out(10, 10), ONE)
    result.requests["ok"] = False
    with pytest.raises(UserError, match="no successful request to project"):
        project(result, from_arguments(["compute=2"]))


def test_a_set_run_with_a_virtual_speedup_is_no_baseline():
    plain = result_set(fan_out(10, 10), ONE)
    manifest = make_manifest(ONE, execution={"virtual_speedup": "s=1.5"})
    result = ResultSet.of(manifest, plain.intervals, plain.requests)
    with pytest.raises(UserError, match="virtual speedup"):
        project(result, from_arguments(["compute=2"]))
