"""The serialisation-loss finder: independent work that ran in turn, found, and replayed
overlapped on a model of the machine, with exact expectations on hand-built requests."""

from __future__ import annotations

import pytest
from conftest import interval
from test_attribution import probe_iv, stage_iv, wait_iv
from test_projection import result_set

from harness.projection.serialisation import losses
from harness.words import QUEUE_WAIT, Kind
from harness.workload import Stage

ONE = (Stage("s", "tools"),)
DIAMOND = (
    Stage("a", "ingress"),
    Stage("b", "tools", after=("a",)),
    Stage("c", "tools", after=("a",)),
    Stage("d", "assembly", after=("b", "c")),
)


def in_turn(first: str, second: str) -> list:
    """Stage s joins two branches that ran in turn on its own thread: 40 ns of ``first``, then
    40 ns of ``second`` (a category; compute on the CPU, waits on `wait`), 1 ns of tail, 2 ns
    of glue."""

    def work(category, start, span, parent):
        resource = "wait" if category == "scheduling" else "host-cpu"
        return probe_iv("s", category, start, start + 40, span, parent, resource=resource)

    return [
        interval(Kind.REQUEST, 0, 83),
        wait_iv("s", 0, 0, QUEUE_WAIT),
        stage_iv("s", 0, 83, span=1),
        probe_iv("s", "scheduling", 0, 81, span=2, parent=1, resource="wait"),
        interval(Kind.BRANCH, 0, 40, stage="s", span=3, parent=2, label="branch 0"),
        work(first, 0, 4, 3),
        interval(Kind.BRANCH, 40, 80, stage="s", span=5, parent=2, label="branch 1"),
        work(second, 40, 6, 5),
    ]


@pytest.mark.parametrize(
    ("first", "second", "threads", "overlapped"),
    [
        ("scheduling", "scheduling", 2, 43),  # two waits overlap whole, whatever the cores
        ("compute", "scheduling", 2, 43),  # CPU work beside a wait: the wait hides
        ("compute", "compute", 1, 43),  # one thread each on two cores: they halve
        ("compute", "compute", 2, 83),  # two threads each on two cores: nothing to gain
    ],
)
def test_branches_run_in_turn_are_overlapped_on_the_machine_s_cores(
    first, second, threads, overlapped
):
    found = losses(result_set(in_turn(first, second), ONE, cores=2, stage_threads={"s": threads}))
    assert [(f.where, f.requests) for f in found.findings] == [("s: 2 branches of '' in turn", 1)]
    assert found.measured.value_ms * 1e6 == pytest.approx(83)
    assert found.overlapped.value_ms * 1e6 == pytest.approx(overlapped)


def test_the_bound_takes_the_cpu_work_in_turn_and_still_overlaps_the_waits():
    both = losses(result_set(in_turn("compute", "compute"), ONE, cores=2, stage_threads={"s": 1}))
    assert both.one_lock.value_ms * 1e6 == pytest.approx(83)  # in turn again: no gain
    mixed = losses(result_set(in_turn("compute", "scheduling"), ONE, cores=2))
    assert mixed.one_lock.value_ms * 1e6 == pytest.approx(43)  # the wait needs no lock


def diamond_in_turn() -> list:
    """a; then b and c (independent) in turn on thread 1, 30 ns of waiting each; then d."""
    return [
        interval(Kind.REQUEST, 0, 75),
        wait_iv("a", 0, 0, QUEUE_WAIT),
        stage_iv("a", 0, 10, span=1),
        probe_iv("a", "compute", 0, 10, span=11, parent=1),
        wait_iv("b", 10, 10),
        stage_iv("b", 10, 40, span=2),
        probe_iv("b", "scheduling", 10, 40, span=21, parent=2, resource="wait"),
        wait_iv("c", 10, 40),
        stage_iv("c", 40, 70, span=3),
        probe_iv("c", "scheduling", 40, 70, span=31, parent=3, resource="wait"),
        wait_iv("d", 70, 70),
        stage_iv("d", 70, 75, span=4),
        probe_iv("d", "compute", 70, 75, span=41, parent=4),
    ]


def test_independent_stages_run_in_turn_are_found_and_overlapped():
    found = losses(result_set(diamond_in_turn(), DIAMOND, cores=2))
    assert [f.where for f in found.findings] == ["stages b and c"]
    # c starts when a ends, beside b: 10 + 30 + 5.
    assert found.overlapped.value_ms * 1e6 == pytest.approx(45)


def test_work_that_overlapped_already_is_no_finding():
    from test_projection import fan_out

    found = losses(result_set(fan_out(a_end=52, b_end=40), ONE))
    assert found.findings == () and found.requests == 0
    assert found.overlapped == found.measured


def test_compare_sets_the_prediction_beside_a_candidate_that_overlapped():
    from test_projection import fan_out

    from harness.projection.compare import overlap_check

    base = losses(result_set(in_turn("compute", "scheduling"), ONE, cores=2))
    check = overlap_check(base, result_set(fan_out(a_end=40, b_end=44), ONE))
    assert check is not None and check.pairs == ((0, 43e-6, 47e-6),)
    assert check.error == pytest.approx(47 / 43 - 1)
    assert check.pair_errors() == [pytest.approx(47 / 43 - 1)]
    nothing = losses(result_set(fan_out(a_end=40, b_end=44), ONE))
    assert overlap_check(nothing, result_set(fan_out(a_end=40, b_end=44), ONE)) is None


def test_a_set_without_a_successful_request_has_no_losses_and_no_error():
    from dataclasses import replace

    from harness.archive.result_set import ResultSet

    built = result_set(in_turn("compute", "scheduling"), ONE)
    failed = ResultSet.of(
        built.manifest, built.intervals, built.requests.assign(ok=False), built.telemetry
    )
    found = losses(failed)
    assert found.findings == () and found.replayed == 0
    assert replace(found).to_dict()["findings"] == []


def test_a_pool_thread_taking_a_second_branch_is_no_finding():
    """Branches spread over threads ran beside each other, even where one thread took two."""
    ivs = [
        interval(Kind.REQUEST, 0, 83),
        wait_iv("s", 0, 0, QUEUE_WAIT),
        stage_iv("s", 0, 83, span=1),
        probe_iv("s", "scheduling", 0, 81, span=2, parent=1, resource="wait"),
        interval(Kind.BRANCH, 0, 40, stage="s", span=3, parent=2, thread=2),
        probe_iv("s", "compute", 0, 40, 4, 3, thread=2),
        interval(Kind.BRANCH, 40, 80, stage="s", span=5, parent=2, thread=2),
        probe_iv("s", "compute", 40, 80, 6, 5, thread=2),
        interval(Kind.BRANCH, 0, 80, stage="s", span=7, parent=2, thread=3),
        probe_iv("s", "scheduling", 0, 80, 8, 7, resource="wait", thread=3),
    ]
    assert losses(result_set(ivs, ONE)).findings == ()
