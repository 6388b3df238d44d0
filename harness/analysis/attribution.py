"""Split a request's recorded intervals into compute, movement, scheduling and unattributed time.

The rules are DESIGN.md's: on one thread the innermost probe wins; a stage's wall time that no
probe covers is `unattributed`, never scheduling; a request's end-to-end split is taken along its
critical path through the stage DAG, and what ran beside that path counts as overlap. The
load generator running behind schedule is `harness lag`, apart from queue wait.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.analysis.timeline import Walk, device_overlay, pieces
from harness.record.probes import Interval
from harness.record.spans import SpanTree
from harness.words import (
    BUCKETS,
    HARNESS_LAG,
    SEGMENT_WAITS,
    UNATTRIBUTED,
    Category,
    Kind,
    Resource,
    SegmentKind,
)
from harness.workload import Stage

Key = tuple[str, str]  # (category, resource)

_STAGE, _LAG, _QUEUE, _HANDOFF = (
    SegmentKind.STAGE.value,
    SegmentKind.LAG.value,
    SegmentKind.QUEUE.value,
    SegmentKind.HANDOFF.value,
)


@dataclass(frozen=True)
class StageSplit:
    """One stage of one request, split along its own critical timeline.

    A join on fan-out branches is replaced by the branch that ended last; the other branches
    ran beside it (``overlap_ns``). ``cpu_ns`` is the thread CPU time of the stage and its
    branches (-1 where not read): far below the wall time, the work was waiting for a core.
    """

    stage: str
    start_ns: int
    end_ns: int
    by_resource: tuple[tuple[Key, int], ...]  # `unattributed` included
    waits: tuple[tuple[str, int], ...] = ()  # scheduling ns by the wait's label
    nbytes: int = 0
    overlap_ns: int = 0
    cpu_ns: int = -1

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
    """One piece of the critical path: a stage, or the wait before one."""

    kind: str  # a SegmentKind: "lag", "queue", "handoff" or "stage"
    stage: str
    start_ns: int
    end_ns: int

    @property
    def ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True)
class RequestSplit:
    """A request's end-to-end time along its critical path, with every stage's split."""

    replicate: int
    request: int
    arrival_ns: int  # scheduled arrival: latency counts from here, not from the send
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
        return tuple(seg.stage for seg in self.path if seg.kind == _STAGE)

    @property
    def overlap_ns(self) -> int:
        """Time that ran beside the critical path (other stages, other branches): not added."""
        on_path = set(self.critical_stages)
        off_path = sum(s.wall_ns for s in self.stages if s.stage not in on_path)
        return off_path + sum(s.overlap_ns for s in self.stages if s.stage in on_path)

    def wait_ns(self, kind: str) -> int:
        """Lag, queue or handoff wait on the critical path (``kind``: a SegmentKind value)."""
        return sum(seg.ns for seg in self.path if seg.kind == kind)

    def by_resource(self) -> dict[Key, int]:
        """End-to-end ns per (category, resource) along the critical path, waits included."""
        totals: dict[Key, int] = defaultdict(int)
        for seg in self.path:
            if seg.kind == _STAGE:
                for key, ns in self.stage(seg.stage).by_resource:
                    totals[key] += ns
            elif seg.kind == _LAG:
                totals[(HARNESS_LAG, "")] += seg.ns
            else:
                totals[(Category.SCHEDULING.value, Resource.WAIT.value)] += seg.ns
        return dict(totals)

    def by_category(self) -> dict[str, int]:
        """End-to-end ns per bucket (the categories, `unattributed`, `harness lag`)."""
        totals = dict.fromkeys(BUCKETS, 0)
        for (category, _), ns in self.by_resource().items():
            totals[category] += ns
        return totals

    def waits(self) -> dict[str, int]:
        """Scheduling (and lag) along the critical path by kind: queue, handoff, each wait."""
        totals: dict[str, int] = defaultdict(int)
        for seg in self.path:
            if seg.kind == _STAGE:
                for label, ns in self.stage(seg.stage).waits:
                    totals[label] += ns
            else:
                totals[SEGMENT_WAITS[seg.kind]] += seg.ns
        return dict(totals)


def split_stage(stage: Interval, tree: SpanTree, intervals: Iterable[Interval] = ()) -> StageSplit:
    """The split of one stage along its critical timeline (innermost probe wins)."""
    walked = Walk()
    by_resource: dict[Key, int] = defaultdict(int)
    waits: dict[str, int] = defaultdict(int)
    host = list(pieces(stage, stage.start_ns, stage.end_ns, tree, walked))
    for piece in device_overlay(host, tree.device):
        by_resource[(piece.category, piece.resource)] += piece.ns
        if piece.category == Category.SCHEDULING.value:
            waits[piece.label or "wait"] += piece.ns
    own = [iv for iv in intervals if iv.stage == stage.stage]
    # On-CPU time along the critical timeline: the stage's thread, plus the critical branches
    # that ran on other threads (a branch run inline is already in its thread's time).
    others = [b for b in walked.critical if b.thread != stage.thread]
    cpu = [stage.cpu_ns, *(b.cpu_ns for b in others)]
    return StageSplit(
        stage=stage.stage,
        start_ns=stage.start_ns,
        end_ns=stage.end_ns,
        by_resource=tuple(sorted(by_resource.items())),
        waits=tuple(sorted(waits.items())),
        nbytes=sum(max(iv.nbytes, 0) for iv in own if iv.kind == Kind.PROBE.value),
        overlap_ns=walked.overlap_ns,
        cpu_ns=sum(cpu) if cpu and min(cpu) >= 0 else -1,
    )


def critical_path(
    stages: Sequence[Stage],
    splits: dict[str, StageSplit],
    threads: dict[str, int],
    arrival_ns: int,
    sent_ns: int,
) -> tuple[Segment, ...]:
    """Walk back from the last stage to the arrival, through whatever let each stage start.

    A stage starts once its inputs are ready and a worker is free, so the stage that enabled it is
    the latest to end among its parents and the stages that ran before it on the same thread.
    """
    after = {stage.name: stage.after for stage in stages}
    sink = max(splits.values(), key=lambda s: s.end_ns)
    segments: list[Segment] = []
    current: StageSplit | None = sink
    walked: set[str] = set()
    # Corrupt data (zero-length stages at one instant on one thread) could enable each other
    # in a circle: a stage is walked once.
    while current is not None and current.stage not in walked:
        walked.add(current.stage)
        segments.append(Segment(_STAGE, current.stage, current.start_ns, current.end_ns))
        candidates = [splits[name] for name in after[current.stage] if name in splits]
        candidates += [
            other
            for name, other in splits.items()
            if threads[name] == threads[current.stage]
            and name != current.stage
            and other.end_ns <= current.start_ns
        ]
        enabler = max(candidates, key=lambda s: s.end_ns, default=None)
        if enabler is None:
            segments.append(Segment(_QUEUE, current.stage, sent_ns, current.start_ns))
            if sent_ns != arrival_ns:
                segments.append(Segment(_LAG, current.stage, arrival_ns, sent_ns))
        else:
            segments.append(Segment(_HANDOFF, current.stage, enabler.end_ns, current.start_ns))
        current = enabler
    return tuple(reversed(segments))


def split_request(
    intervals: Sequence[Interval], stages: Sequence[Stage], replicate: int = 0
) -> RequestSplit:
    """The full split of one request of ``replicate`` from its raw intervals."""
    request = next(i for i in intervals if i.kind == Kind.REQUEST.value)
    stage_intervals = {i.stage: i for i in intervals if i.kind == Kind.STAGE.value}
    lag = [i for i in intervals if i.kind == Kind.WAIT.value and i.label == HARNESS_LAG]
    tree = SpanTree(intervals)
    splits = {name: split_stage(iv, tree, intervals) for name, iv in stage_intervals.items()}
    threads = {name: iv.thread for name, iv in stage_intervals.items()}
    sent = lag[0].end_ns if lag else request.start_ns
    path = critical_path(stages, splits, threads, request.start_ns, sent)
    return RequestSplit(
        replicate=replicate,
        request=request.request,
        arrival_ns=request.start_ns,
        response_ns=request.end_ns,
        stages=tuple(splits[s.name] for s in stages if s.name in splits),
        path=path,
    )


def table_rows(
    row: int, split: RequestSplit, intervals: Sequence[Interval]
) -> tuple[tuple, list[tuple], list[tuple], list[tuple]]:
    """One request's rows of the split table (``harness.analysis.columns``), from its split:
    the request's, and per stage its own, its charges and its waits."""
    critical = set(split.critical_stages)
    stages, charges, waits = [], [], []
    for s in split.stages:
        on = s.stage in critical
        thread = next(
            iv.thread for iv in intervals if iv.kind == Kind.STAGE.value and iv.stage == s.stage
        )
        stages.append(
            (row, s.stage, s.start_ns, s.end_ns, s.wall_ns, s.compute_ns, s.movement_ns,
             s.scheduling_ns, s.unattributed_ns, s.nbytes, s.overlap_ns, s.cpu_ns, thread, on)
        )  # fmt: skip
        charges += [(row, s.stage, c, r, ns, on) for (c, r), ns in s.by_resource if ns]
        waits += [(row, s.stage, label, ns, on) for label, ns in s.waits if ns]
    request = (
        row,
        split.arrival_ns,
        split.response_ns,
        split.wait_ns(SegmentKind.LAG.value),
        split.wait_ns(SegmentKind.QUEUE.value),
        split.wait_ns(SegmentKind.HANDOFF.value),
        split.overlap_ns,
        " > ".join(split.critical_stages),
    )
    return request, stages, charges, waits
