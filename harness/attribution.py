"""Split a request's recorded intervals into compute, movement, scheduling and unattributed time.

The rules are DESIGN.md's: on one thread the innermost probe wins; a stage's wall time that no
probe covers is `unattributed`, never scheduling; a request's end-to-end split is taken along its
critical path through the stage DAG, and stages that ran beside that path count as overlap.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from harness.probes import Category, Interval, Kind, Resource
from harness.workload import Stage

UNATTRIBUTED = "unattributed"
CATEGORIES = (Category.COMPUTE.value, Category.MOVEMENT.value, Category.SCHEDULING.value)


@dataclass(frozen=True)
class StageSplit:
    """One stage of one request: its wall time split by (category, resource) along its own
    critical timeline, where a join on fan-out branches is replaced by the branch that ended
    last; the other branches ran beside it and are overlap."""

    stage: str
    start_ns: int
    end_ns: int
    # ((category, resource), ns) for every piece of the timeline, `unattributed` included
    by_resource: tuple[tuple[tuple[str, str], int], ...]
    nbytes: int = 0
    overlap_ns: int = 0

    @property
    def wall_ns(self) -> int:
        return self.end_ns - self.start_ns

    def category_ns(self, category: str) -> int:
        return sum(ns for (cat, _), ns in self.by_resource if cat == category)

    @property
    def compute_ns(self) -> int:
        return self.category_ns(Category.COMPUTE.value)

    @property
    def movement_ns(self) -> int:
        return self.category_ns(Category.MOVEMENT.value)

    @property
    def scheduling_ns(self) -> int:
        return self.category_ns(Category.SCHEDULING.value)

    @property
    def unattributed_ns(self) -> int:
        """Time no probe covered: interpreter and glue code, never counted as scheduling."""
        return self.category_ns(UNATTRIBUTED)

    @property
    def measured_ns(self) -> int:
        return self.compute_ns + self.movement_ns + self.scheduling_ns

    @property
    def coverage(self) -> float:
        return self.measured_ns / self.wall_ns if self.wall_ns > 0 else 1.0


@dataclass(frozen=True)
class Segment:
    """One piece of the critical path: a stage, or a scheduling wait before one."""

    kind: str  # "queue", "handoff" or "stage"
    stage: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True)
class RequestSplit:
    """A request's end-to-end time along its critical path, with every stage's split."""

    request: int
    arrival_ns: int
    response_ns: int
    stages: tuple[StageSplit, ...]
    path: tuple[Segment, ...]

    @property
    def latency_ns(self) -> int:
        return self.response_ns - self.arrival_ns

    def stage(self, name: str) -> StageSplit:
        return next(s for s in self.stages if s.stage == name)

    @property
    def critical_stages(self) -> tuple[str, ...]:
        return tuple(seg.stage for seg in self.path if seg.kind == "stage")

    @property
    def overlap_ns(self) -> int:
        """Time that ran beside the critical path (other stages, other branches): not added."""
        on_path = set(self.critical_stages)
        off_path = sum(s.wall_ns for s in self.stages if s.stage not in on_path)
        return off_path + sum(s.overlap_ns for s in self.stages if s.stage in on_path)

    def wait_ns(self, kind: str) -> int:
        """Queue or handoff wait on the critical path."""
        return sum(seg.end_ns - seg.start_ns for seg in self.path if seg.kind == kind)

    def by_resource(self) -> dict[tuple[str, str], int]:
        """End-to-end ns per (category, resource) along the critical path, waits included."""
        totals: dict[tuple[str, str], int] = defaultdict(int)
        for seg in self.path:
            if seg.kind == "stage":
                for key, ns in self.stage(seg.stage).by_resource:
                    totals[key] += ns
            else:
                totals[(Category.SCHEDULING.value, Resource.WAIT.value)] += (
                    seg.end_ns - seg.start_ns
                )
        return dict(totals)

    def by_category(self) -> dict[str, int]:
        """End-to-end ns per category along the critical path; sums to the latency."""
        totals = dict.fromkeys((*CATEGORIES, UNATTRIBUTED), 0)
        for (category, _), ns in self.by_resource().items():
            totals[category] += ns
        return totals


class SpanTree:
    """The intervals of one request indexed by span: who encloses whom."""

    def __init__(self, intervals: Iterable[Interval]) -> None:
        self.children: dict[int, list[Interval]] = defaultdict(list)
        for iv in intervals:
            if iv.kind in (Kind.PROBE.value, Kind.BRANCH.value) and iv.parent >= 0:
                self.children[iv.parent].append(iv)
        for kids in self.children.values():
            kids.sort(key=lambda iv: (iv.start_ns, -iv.end_ns))

    def nested(self, node: Interval) -> list[Interval]:
        """Probes nested in ``node`` on its own timeline (branches are timelines of their own)."""
        return [iv for iv in self.children[node.span] if iv.kind == Kind.PROBE.value]

    def branches(self, node: Interval) -> list[Interval]:
        return [iv for iv in self.children[node.span] if iv.kind == Kind.BRANCH.value]


def _key(node: Interval) -> tuple[str, str]:
    if node.kind == Kind.PROBE.value:
        return (node.category, node.resource)
    return (UNATTRIBUTED, "")  # a stage's or branch's own code outside any probe


def _timeline(
    node: Interval, start: int, end: int, tree: SpanTree, overlap: list[int]
) -> Iterator[tuple[int, int, tuple[str, str]]]:
    """Pieces (start, end, key) of ``node``'s timeline within [start, end], innermost first.

    Time the node spends outside its nested probes is its own; if the node joined branches,
    that time is the last-ending branch's timeline, and the others' time goes to ``overlap``.
    """
    branches = tree.branches(node)
    critical = max(branches, key=lambda b: b.end_ns, default=None)
    overlap.append(sum(b.duration_ns for b in branches if b is not critical))
    cursor = start
    for child in tree.nested(node):
        lo, hi = max(child.start_ns, start), min(child.end_ns, end)
        if hi <= lo:
            continue
        yield from _own(node, cursor, lo, critical, tree, overlap)
        yield from _timeline(child, lo, hi, tree, overlap)
        cursor = max(cursor, hi)
    yield from _own(node, cursor, end, critical, tree, overlap)


def _own(
    node: Interval,
    start: int,
    end: int,
    critical: Interval | None,
    tree: SpanTree,
    overlap: list[int],
) -> Iterator[tuple[int, int, tuple[str, str]]]:
    if end < start:  # a child began before its older sibling ended: broken nesting
        yield (start, end, _key(node))
        return
    if critical is None:
        if end > start:
            yield (start, end, _key(node))
        return
    lo, hi = max(start, critical.start_ns), min(end, critical.end_ns)
    if hi <= lo:
        yield (start, end, _key(node))
        return
    if lo > start:
        yield (start, lo, _key(node))
    yield from _timeline(critical, lo, hi, tree, overlap)
    if end > hi:
        yield (hi, end, _key(node))


def split_stage(stage: Interval, tree: SpanTree, probes: Iterable[Interval] = ()) -> StageSplit:
    """The split of one stage along its critical timeline (innermost probe wins)."""
    overlap: list[int] = []
    by_resource: dict[tuple[str, str], int] = defaultdict(int)
    for start, end, key in _timeline(stage, stage.start_ns, stage.end_ns, tree, overlap):
        by_resource[key] += end - start
    return StageSplit(
        stage=stage.stage,
        start_ns=stage.start_ns,
        end_ns=stage.end_ns,
        by_resource=tuple(sorted(by_resource.items())),
        nbytes=sum(p.nbytes for p in probes),
        overlap_ns=sum(overlap),
    )


def critical_path(
    stages: Sequence[Stage], splits: dict[str, StageSplit], threads: dict[str, int], arrival_ns: int
) -> tuple[Segment, ...]:
    """Walk back from the last stage to the arrival, through whatever let each stage start.

    A stage starts once its inputs are ready and a worker is free, so the stage that enabled it is
    the latest to end among its parents and the stages that ran before it on the same thread.
    """
    after = {stage.name: stage.after for stage in stages}
    sink = max(splits.values(), key=lambda s: s.end_ns)
    segments: list[Segment] = []
    current: StageSplit | None = sink
    while current is not None:
        segments.append(Segment("stage", current.stage, current.start_ns, current.end_ns))
        candidates = [splits[name] for name in after[current.stage]]
        candidates += [
            other
            for name, other in splits.items()
            if threads[name] == threads[current.stage]
            and name != current.stage
            and other.end_ns <= current.start_ns
        ]
        enabler = max(candidates, key=lambda s: s.end_ns, default=None)
        if enabler is None:
            segments.append(Segment("queue", current.stage, arrival_ns, current.start_ns))
        else:
            segments.append(Segment("handoff", current.stage, enabler.end_ns, current.start_ns))
        current = enabler
    return tuple(reversed(segments))


def split_request(intervals: Sequence[Interval], stages: Sequence[Stage]) -> RequestSplit:
    """The full split of one request from its raw intervals."""
    request = next(i for i in intervals if i.kind == Kind.REQUEST.value)
    stage_intervals = {i.stage: i for i in intervals if i.kind == Kind.STAGE.value}
    probes: dict[str, list[Interval]] = defaultdict(list)
    for interval in intervals:
        if interval.kind == Kind.PROBE.value and interval.stage:
            probes[interval.stage].append(interval)
    tree = SpanTree(intervals)
    splits = {name: split_stage(iv, tree, probes[name]) for name, iv in stage_intervals.items()}
    threads = {name: iv.thread for name, iv in stage_intervals.items()}
    path = critical_path(stages, splits, threads, request.start_ns)
    return RequestSplit(
        request=request.request,
        arrival_ns=request.start_ns,
        response_ns=request.end_ns,
        stages=tuple(splits[s.name] for s in stages if s.name in splits),
        path=path,
    )


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
        if iv.kind != Kind.REQUEST.value and (
            iv.start_ns < split.arrival_ns or iv.end_ns > split.response_ns
        ):
            problems.append(f"request {req}: {iv.kind} {iv.stage or iv.label!r} outside request")
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
    recorded = {
        (iv.stage, iv.start_ns, iv.end_ns) for iv in intervals if iv.kind == Kind.WAIT.value
    }
    for seg in split.path:
        # Scheduling is measured, not inferred: every wait on the path lies inside a wait the
        # runner recorded for that stage.
        if seg.kind != "stage" and not any(
            stage == seg.stage and start <= seg.start_ns and seg.end_ns <= end
            for stage, start, end in recorded
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
