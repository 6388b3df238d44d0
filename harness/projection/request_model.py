"""A recorded request as a model of the machine: timelines of steps on pools, ready to replay.

Every stage and every fan-out branch is a timeline of steps taken from the recorded pieces
(innermost probe wins). A step runs on a pool: host work (compute on the CPU, copies in host
memory, glue code) shares the machine's cores; device kernels share the device and copies the
link; waits are fixed. A step's *work* is what it would take alone: its recorded time with the
contention it met taken out (the integral of its share of the pool over the recorded interval).
``harness.projection.replay`` runs the model again.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from harness.analysis.request_intervals import request_intervals
from harness.archive.result_set import ResultSet
from harness.record.probes import Interval
from harness.record.remote import REPLY, REQUEST, SERVER_SUFFIX
from harness.record.spans import SpanTree, charges, walk
from harness.words import Category, Kind, Resource
from harness.workload import Stage

CPU, DEVICE, LINK = "cpu", "device", "link"
FIXED = ""  # a wait: neither a pool nor contention
# What a stretch of time runs on, by its resource (unattributed glue runs on the CPU). A tool
# server gapbench starts runs on this machine, so its work asks the same cores.
POOLS = {
    Resource.HOST_CPU.value: CPU,
    Resource.HOST_MEMORY.value: CPU,
    Resource.REMOTE.value: CPU,
    "": CPU,
    Resource.DEVICE.value: DEVICE,
    Resource.LINK.value: LINK,
}


# Each side of a tool server's connection handles its messages on one event loop thread, one
# at a time: the JSON-RPC request and reply on the client's, the server's handling on its own.
CLIENT_LOOP, SERVER_LOOP = "client loop", "server loop"


def _pool(category: str, resource: str, label: str) -> str:
    if category == Category.SCHEDULING.value:
        return FIXED
    if label in (REQUEST, REPLY):
        return CLIENT_LOOP
    if resource == Resource.REMOTE.value and label.endswith(SERVER_SUFFIX):
        return SERVER_LOOP
    return POOLS.get(resource, FIXED)


@dataclass
class Step:
    """A stretch of one timeline: work on a pool, a fixed wait, or a join on branches."""

    start_ns: int
    end_ns: int
    stage: str
    category: str
    resource: str
    label: str
    pool: str = FIXED
    demand: float = 1.0  # cores (or devices) while it runs alone
    work: float = 0.0  # ns it takes alone, at full speed
    branches: list[list[Timeline]] = field(default_factory=list)  # a join: per thread, in order
    # The event-loop thread an asyncio task's host work needs to itself (None: a thread's own)
    slot: int | None = None

    @property
    def ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass
class Timeline:
    """What one thread did inside a stage or a branch, step by step."""

    steps: list[Step]
    start_ns: int
    end_ns: int
    task: bool = False  # an asyncio task's: it waits for its loop thread, not for a fixed gap
    gap_ns: int = 0  # a task's: from the join's start, the part of its delay no task ran in


@dataclass
class StageNode:
    name: str
    after: tuple[str, ...]  # what must end before it may start: parents, same-thread stages
    delay_ns: int  # from the last of those (or the request's arrival) to its start, fixed
    timeline: Timeline


@dataclass
class Model:
    """One request ready to replay: stages, when it arrived, how many cores and devices."""

    arrival_ns: int
    stages: list[StageNode]
    capacity: dict[str, float]


def request_models(
    result: ResultSet, rows: Sequence[int] | np.ndarray | None = None
) -> Iterator[tuple[int, Model]]:
    """The replay model of the successful requests at ``rows`` of the set's split table (every
    one when None), each with its row, on the set's cores with the intra-op threads each stage
    saw in its replicate."""
    manifest = result.manifest
    for row, replicate, intervals in request_intervals(result, rows):
        facts = manifest.replicate(replicate)
        threads = facts.stage_threads if facts is not None else {}
        yield row, build(intervals, manifest.stages, manifest.fingerprint.cores, threads)


def build(
    intervals: Sequence[Interval],
    stages: Sequence[Stage],
    cores: float,
    stage_threads: dict[str, int] | None = None,
    devices: int = 1,
) -> Model:
    """The replay model of one request from its raw intervals."""
    threads = stage_threads or {}
    request = next(i for i in intervals if i.kind == Kind.REQUEST.value)
    spans = {i.stage: i for i in intervals if i.kind == Kind.STAGE.value}
    tree = SpanTree(intervals)
    capacity = {CPU: float(cores), DEVICE: float(devices), LINK: float(devices)}
    capacity |= {CLIENT_LOOP: 1.0, SERVER_LOOP: 1.0}

    def demand(stage: str, pool: str, category: str) -> float:
        if pool == CPU and category == Category.COMPUTE.value:
            return float(min(max(threads.get(stage, 1), 1), cores))  # intra-op threads
        return 1.0

    nodes = []
    for stage in stages:
        span = spans.get(stage.name)
        if span is None:
            continue
        timeline = _timeline(span, span.start_ns, span.end_ns, tree, demand)
        # A parent that did not run (a skipped stage) is nothing to wait for.
        before = {a for a in stage.after if a in spans} | {
            name
            for name, other in spans.items()
            if other.thread == span.thread and name != stage.name and other.end_ns <= span.start_ns
        }
        ready = max((spans[n].end_ns for n in before if n in spans), default=request.start_ns)
        nodes.append(StageNode(stage.name, tuple(sorted(before)), span.start_ns - ready, timeline))
    model = Model(request.start_ns, nodes, capacity)
    _take_out_contention(model)
    return model


def _timeline(
    node: Interval,
    start: int,
    end: int,
    tree: SpanTree,
    demand: Callable[[str, str, str], float],
    slot: int | None = None,
) -> Timeline:
    """``node``'s own timeline over [start, end] as steps, from the one walk of the span tree
    (innermost probe first); a stretch that joined branches becomes a join on them.
    ``slot``: the loop thread of an asyncio task."""
    steps: list[Step] = []
    for stretch in walk(node, start, end, tree):
        owner, lo, hi = stretch.owner, stretch.start_ns, stretch.end_ns
        if hi <= lo:
            continue
        branches = tree.branches(owner)
        if branches:
            steps.append(_join(owner, lo, hi, branches, tree, demand))
            continue
        for c_lo, c_hi, category, resource, label in charges(owner, lo, hi, tree):
            pool = _pool(category, resource, label)
            step = Step(
                c_lo,
                c_hi,
                owner.stage,
                category,
                resource,
                label,
                pool,
                demand(owner.stage, pool, category),
            )
            step.slot = slot if pool == CPU else None
            steps.append(step)
    return Timeline(steps, start, end)


def _join(
    owner: Interval,
    start: int,
    end: int,
    branches: list[Interval],
    tree: SpanTree,
    demand: Callable[[str, str, str], float],
) -> Step:
    """A join: its own time is waiting for the branches, which run on their threads.

    A lane is what ran one after another: a pool thread's branches, or one asyncio task.
    Gathered tasks share their loop thread: each waits at its awaits, not for the others, but
    only one at a time runs host work on it (first come, first served).
    """
    by_thread: dict[tuple[int, str], list[Interval]] = defaultdict(list)
    for branch in branches:
        by_thread[(branch.thread, branch.task)].append(branch)
    lanes = []
    for (thread, task), lane in by_thread.items():
        loop = thread if task else None
        timelines = []
        for b in sorted(lane, key=_start):
            timeline = _timeline(b, b.start_ns, b.end_ns, tree, demand, loop)
            timeline.task = bool(task)
            timelines.append(timeline)
        lanes.append(timelines)
    _task_gaps(lanes, start)
    step = Step(start, end, owner.stage, owner.category, owner.resource, owner.label)
    step.branches = lanes
    return step


def _start(iv: Interval) -> int:
    return iv.start_ns


def _task_gaps(lanes: list[list[Timeline]], join_start: int) -> None:
    """A task that began late because other tasks held its loop thread waits for the thread
    in the replay; only the rest of its delay (the caller still running) is a fixed gap."""
    tasks = [t for lane in lanes for t in lane if t.task]
    for task in tasks:
        slot = next((s.slot for s in task.steps if s.slot is not None), None)
        busy = sorted(
            (max(s.start_ns, join_start), min(s.end_ns, task.start_ns))
            for other in tasks
            if other is not task
            for s in other.steps
            if s.slot is not None and s.slot == slot and s.start_ns < task.start_ns
        )
        held, reach = 0, join_start
        for lo, hi in busy:
            if hi > max(lo, reach):
                held += hi - max(lo, reach)
                reach = hi
        task.gap_ns = max(task.start_ns - join_start - held, 0)


def all_steps(timeline: Timeline) -> list[Step]:
    """Every step of a timeline, and inside its joins, its branches'."""
    out = []
    for step in timeline.steps:
        out.append(step)
        for lane in step.branches:
            for branch in lane:
                out.extend(all_steps(branch))
    return out


def steps(model: Model) -> list[Step]:
    """Every step of a model: its stages' and, inside joins, their branches'."""
    return [step for node in model.stages for step in all_steps(node.timeline)]


def _take_out_contention(model: Model) -> None:
    """Each pooled step's work: its recorded time, at the share of its pool it had then."""
    every = steps(model)
    for pool, capacity in model.capacity.items():
        pooled = [s for s in every if s.pool == pool and not s.branches]
        edges = sorted({t for s in pooled for t in (s.start_ns, s.end_ns)})
        for step in pooled:
            step.work = 0.0
        for lo, hi in itertools.pairwise(edges):
            running = [s for s in pooled if s.start_ns <= lo and s.end_ns >= hi]
            asked = sum(s.demand for s in running)
            share = min(1.0, capacity / asked) if asked else 1.0
            for step in running:
                step.work += (hi - lo) * share
