"""Split a request's recorded intervals into compute, movement, scheduling and unattributed time.

The rules are DESIGN.md's: on one thread the innermost probe wins; a stage's wall time that no
probe covers is `unattributed`, never scheduling; a request's end-to-end split is taken along its
critical path through the stage DAG, and stages that ran beside that path count as overlap.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.probes import Category, Interval, Kind, Resource
from harness.workload import Stage

UNATTRIBUTED = "unattributed"
CATEGORIES = (Category.COMPUTE.value, Category.MOVEMENT.value, Category.SCHEDULING.value)


@dataclass(frozen=True)
class StageSplit:
    """One stage of one request: its wall time split by category (and by resource)."""

    stage: str
    start_ns: int
    end_ns: int
    compute_ns: int
    movement_ns: int
    scheduling_ns: int
    nbytes: int
    # ((category, resource), exclusive ns) for every probed pair, sorted
    by_resource: tuple[tuple[tuple[str, str], int], ...]

    @property
    def wall_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def measured_ns(self) -> int:
        return self.compute_ns + self.movement_ns + self.scheduling_ns

    @property
    def unattributed_ns(self) -> int:
        """Wall time no probe covered: interpreter and glue code, reported apart by definition."""
        return self.wall_ns - self.measured_ns

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
        """Wall time of stages off the critical path: ran beside it, so not added end to end."""
        on_path = set(self.critical_stages)
        return sum(s.wall_ns for s in self.stages if s.stage not in on_path)

    def wait_ns(self, kind: str) -> int:
        """Queue or handoff wait on the critical path."""
        return sum(seg.end_ns - seg.start_ns for seg in self.path if seg.kind == kind)

    def by_resource(self) -> dict[tuple[str, str], int]:
        """End-to-end ns per (category, resource) along the critical path, waits included."""
        totals: dict[tuple[str, str], int] = defaultdict(int)
        for seg in self.path:
            if seg.kind == "stage":
                split = self.stage(seg.stage)
                for key, ns in split.by_resource:
                    totals[key] += ns
                totals[(UNATTRIBUTED, "")] += split.unattributed_ns
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


def split_stage(stage: Interval, probes: Iterable[Interval]) -> StageSplit:
    """Innermost-wins split of one stage, from the probes on the stage's own thread."""
    own = [p for p in probes if p.thread == stage.thread]
    child_ns: dict[int, int] = defaultdict(int)
    for probe in own:
        child_ns[probe.parent] += probe.duration_ns
    by_resource: dict[tuple[str, str], int] = defaultdict(int)
    nbytes = 0
    for probe in own:
        by_resource[(probe.category, probe.resource)] += probe.duration_ns - child_ns[probe.span]
        nbytes += probe.nbytes
    by_category = dict.fromkeys(CATEGORIES, 0)
    for (category, _), ns in by_resource.items():
        by_category[category] += ns
    return StageSplit(
        stage=stage.stage,
        start_ns=stage.start_ns,
        end_ns=stage.end_ns,
        compute_ns=by_category[Category.COMPUTE.value],
        movement_ns=by_category[Category.MOVEMENT.value],
        scheduling_ns=by_category[Category.SCHEDULING.value],
        nbytes=nbytes,
        by_resource=tuple(sorted(by_resource.items())),
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
    splits = {name: split_stage(iv, probes[name]) for name, iv in stage_intervals.items()}
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
        if iv.kind == Kind.PROBE.value and iv.stage:
            outer = stage_iv.get(iv.stage)
            if outer is None or iv.start_ns < outer.start_ns or iv.end_ns > outer.end_ns:
                problems.append(
                    f"request {req}: probe {iv.label!r} lies outside stage {iv.stage!r}"
                )
        if iv.kind != Kind.REQUEST.value and (
            iv.start_ns < split.arrival_ns or iv.end_ns > split.response_ns
        ):
            problems.append(f"request {req}: {iv.kind} {iv.stage or iv.label!r} outside request")
    for s in split.stages:
        if s.measured_ns > s.wall_ns:
            problems.append(
                f"request {req}: stage {s.stage!r} measured {s.measured_ns} > wall {s.wall_ns} ns"
            )
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
