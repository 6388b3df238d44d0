"""DESIGN.md's accounting invariants, checked on every request when a set is read; each can fail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.analysis.attribution import RequestSplit
from harness.analysis.columns import split_table
from harness.archive.result_set import ResultSet
from harness.record.gpu_timing import ANCHOR
from harness.record.probes import Interval
from harness.record.spans import SpanTree
from harness.words import HARNESS_LAG, Kind, SegmentKind

MAX_REPORTED_VIOLATIONS = 20


@dataclass(frozen=True)
class Invariants:
    """The invariants checked on every successful request of a set, when it is read."""

    requests_checked: int
    violation_count: int
    violations: tuple[str, ...]  # the first MAX_REPORTED_VIOLATIONS


def set_invariants(result: ResultSet) -> Invariants:
    """DESIGN.md's invariants over every successful request of ``result``."""
    table = split_table(result)
    problems: list[str] = []
    # A clean request was split in columns only after passing these same checks there.
    for intervals, split in table.odd:
        problems += check_invariants(intervals, split)
    return Invariants(len(table), len(problems), tuple(problems[:MAX_REPORTED_VIOLATIONS]))


def check_invariants(intervals: Sequence[Interval], split: RequestSplit) -> list[str]:
    """DESIGN.md's invariants for one request; each message names what broke."""
    problems: list[str] = []
    req = split.request
    for iv in intervals:
        if iv.end_ns < iv.start_ns:
            problems.append(f"request {req}: negative time in {iv.kind} {iv.label or iv.stage!r}")
    stage_iv = {iv.stage: iv for iv in intervals if iv.kind == Kind.STAGE.value}
    for iv in intervals:
        if iv.kind in (Kind.PROBE.value, Kind.BRANCH.value):
            outer = stage_iv.get(iv.stage)
            if outer is None or iv.start_ns < outer.start_ns or iv.end_ns > outer.end_ns:
                problems.append(
                    f"request {req}: {iv.kind} {iv.label!r} lies outside stage {iv.stage!r}"
                )
        if iv.kind == Kind.PROBE.value and iv.parent < 0:
            # Its thread did not inherit the stage's context (a pool of the workload's own):
            # the probe is outside every timeline and its time would silently go missing.
            problems.append(
                f"request {req}: probe {iv.label!r} has no enclosing span; "
                "use ctx.fan_out or ctx.gather for concurrency inside a stage"
            )
        # Slices may outlast the request (an async sink's task finishes after its stage span)
        # and device work may outlast its probe: neither is held to the request's window.
        if iv.kind not in (Kind.REQUEST.value, Kind.DEVICE.value, Kind.SLICE.value) and (
            iv.start_ns < split.arrival_ns or iv.end_ns > split.response_ns
        ):
            problems.append(f"request {req}: {iv.kind} {iv.stage or iv.label!r} outside request")
    launched = {iv.span: iv.start_ns for iv in intervals if iv.kind == Kind.PROBE.value}
    anchors = [iv for iv in intervals if iv.kind == Kind.DEVICE.value and iv.label == ANCHOR]
    slack = max((iv.duration_ns for iv in anchors), default=0)
    for iv in intervals:
        # The device cannot start a probe's work before the host launched it: if it seems to
        # (by more than the anchor's own uncertainty), the two clocks are not tied right.
        if iv.kind != Kind.DEVICE.value or iv.label == ANCHOR:
            continue
        if iv.start_ns + slack < launched.get(iv.parent, iv.start_ns):
            problems.append(f"request {req}: device work of {iv.label!r} precedes its launch")
    tree = SpanTree(intervals)
    for node in intervals:
        cursor = node.start_ns
        for child in tree.nested(node):
            # One timeline's probes must nest: siblings never overlap, children stay inside.
            if child.start_ns < cursor or child.end_ns > node.end_ns:
                where = node.label or node.stage or node.kind
                problems.append(f"request {req}: probe {child.label!r} overlaps inside {where!r}")
                break
            cursor = child.end_ns
    for s in split.stages:
        for (category, _), ns in s.by_resource:
            if ns < 0:
                problems.append(f"request {req}: stage {s.stage!r} has negative {category} time")
    recorded = [iv for iv in intervals if iv.kind == Kind.WAIT.value]
    for seg in split.path:
        # Scheduling is measured, not inferred: every wait on the path lies inside a wait the
        # runner recorded for that stage (the lag, for the whole request).
        lag = seg.kind == SegmentKind.LAG.value
        if seg.kind != SegmentKind.STAGE.value and not any(
            (iv.label == HARNESS_LAG if lag else iv.stage == seg.stage)
            and iv.start_ns <= seg.start_ns
            and seg.end_ns <= iv.end_ns
            for iv in recorded
        ):
            problems.append(f"request {req}: unrecorded {seg.kind} wait before {seg.stage!r}")
    cursor = split.arrival_ns
    for seg in split.path:
        if seg.start_ns != cursor or seg.end_ns < seg.start_ns:
            problems.append(
                f"request {req}: critical path not contiguous at {seg.kind} of {seg.stage!r}"
            )
            break
        cursor = seg.end_ns
    else:
        if cursor != split.response_ns:
            problems.append(f"request {req}: critical path ends before the response")
    return problems
