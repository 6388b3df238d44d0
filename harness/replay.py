"""Replay a recorded request on a model of the machine: its stage DAG, its threads, its cores.

Every stage and every fan-out branch is a timeline of steps taken from the recorded pieces
(innermost probe wins). A step runs on a pool: host work (compute on the CPU, copies in host
memory, glue code) shares the machine's cores; device kernels share the device and copies the
link; waits are fixed. While the steps running on a pool ask for more than it has, each gets its
share (processor sharing): two CPU-bound branches on two cores each run at half speed.

A step's *work* is what it would take alone: its recorded time with the contention it met taken
out (the integral of its share over the recorded interval). Scaling the work by a claim and
replaying gives the projected request: a stretch that overlapped shrinks to its longest part,
contention falls away as steps get shorter, and the critical path may move to another branch.
Replayed without scaling, the model gives back the recorded times.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from harness.probes import Category, Interval, Kind, Resource
from harness.timeline import UNATTRIBUTED, SpanTree
from harness.workload import Stage

CPU, DEVICE, LINK = "cpu", "device", "link"
FIXED = ""  # a wait: neither a pool nor contention
# What a stretch of time runs on, by its resource (unattributed glue runs on the CPU).
POOLS = {
    Resource.HOST_CPU.value: CPU,
    Resource.HOST_MEMORY.value: CPU,
    "": CPU,
    Resource.DEVICE.value: DEVICE,
    Resource.LINK.value: LINK,
}

Scale = Callable[[str, str, str, str], float]  # (stage, label, category, resource) -> factor
Match = Callable[[str, str, str, str], bool]  # (stage, label, category, resource) -> claimed?


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
        before = set(stage.after) | {
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
    """``node``'s own timeline over [start, end]: nested probes innermost first; a probe that
    joined branches becomes a join on them. ``slot``: the loop thread of an asyncio task."""
    steps: list[Step] = []
    stage = node.stage

    def own(lo: int, hi: int) -> None:
        if hi <= lo:
            return
        if node.kind == Kind.PROBE.value:
            category, resource, label = node.category, node.resource, node.label
        else:
            category, resource, label = UNATTRIBUTED, "", ""
        pool = FIXED if category == Category.SCHEDULING.value else POOLS.get(resource, FIXED)
        step = Step(lo, hi, stage, category, resource, label, pool, demand(stage, pool, category))
        step.slot = slot if pool == CPU else None
        steps.append(step)

    branches = tree.branches(node)
    if branches:
        # The join: its own time is waiting for the branches, which run on their threads.
        # A lane is what ran one after another: a pool thread's branches, or one asyncio task.
        # Gathered tasks share their loop thread: each waits at its awaits, not for the others,
        # but only one at a time runs host work on it (first come, first served).
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
        steps.append(Step(start, end, stage, node.category, node.resource, node.label))
        steps[-1].branches = lanes
        return Timeline(steps, start, end)
    cursor = start
    for child in tree.nested(node):
        lo, hi = max(child.start_ns, start), min(child.end_ns, end)
        if hi <= lo:
            continue
        own(cursor, lo)
        steps.extend(_timeline(child, lo, hi, tree, demand, slot).steps)
        cursor = max(cursor, hi)
    own(cursor, end)
    return Timeline(steps, start, end)


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


def _all_steps(timeline: Timeline) -> list[Step]:
    out = []
    for step in timeline.steps:
        out.append(step)
        for lane in step.branches:
            for branch in lane:
                out.extend(_all_steps(branch))
    return out


def steps(model: Model) -> list[Step]:
    """Every step of a model: its stages' and, inside joins, their branches'."""
    return [step for node in model.stages for step in _all_steps(node.timeline)]


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


@dataclass
class _Run:
    """A timeline being replayed: which step it is at, and who waits for it to end."""

    timeline: Timeline
    on_end: Callable[[float], None]
    index: int = -1


def replay(
    model: Model,
    scale: Scale | None = None,
    threads: int | None = None,
    claimed: Match | None = None,
) -> tuple[float, dict[str, float]]:
    """The request's latency (ns from arrival to the last stage's end) and each stage's end,
    with every step's work divided by ``scale(stage, label, category, resource)``.

    ``threads``: the intra-op threads that the claimed compute steps (``claimed``) use in the
    projected condition, instead of the recorded ones: a speedup that comes from more threads
    asks more of the cores.
    """
    factor = scale or (lambda *key: 1.0)
    cores = model.capacity[CPU]

    def demand(step: Step) -> float:
        if (
            threads is not None
            and step.pool == CPU
            and step.category == Category.COMPUTE.value
            and (claimed is None or claimed(step.stage, step.label, step.category, step.resource))
        ):
            return float(min(max(threads, 1), cores))
        return step.demand

    now = float(model.arrival_ns)
    ends: dict[str, float] = {}
    fixed: list[tuple[float, Callable[[float], None]]] = []  # (when, then)
    active: dict[int, tuple[Step, float, _Run]] = {}  # id -> (step, work left, its run)
    demands: dict[int, float] = {}
    holder: dict[int, int] = {}  # loop thread -> the step running host work on it
    waiting: dict[int, list[tuple[int, int, Step, float, _Run]]] = defaultdict(list)
    started: set[str] = set()

    def advance(run: _Run, at: float) -> None:
        run.index += 1
        if run.index >= len(run.timeline.steps):
            run.on_end(at)
            return
        step = run.timeline.steps[run.index]
        if step.branches:
            _join(step, run, at)
        elif step.pool == FIXED:
            f = factor(step.stage, step.label, step.category, step.resource)
            fixed.append((at + step.ns / f, lambda t, r=run: advance(r, t)))
        else:
            f = factor(step.stage, step.label, step.category, step.resource)
            if step.slot is not None and step.slot in holder:
                waiting[step.slot].append((step.start_ns, id(step), step, step.work / f, run))
                waiting[step.slot].sort(key=lambda item: item[:2])
                return
            if step.slot is not None:
                holder[step.slot] = id(step)
            active[id(step)] = (step, step.work / f, run)
            demands[id(step)] = demand(step)

    def release(step: Step) -> None:
        """The loop thread goes to the task that has waited for it longest (in recorded order)."""
        if step.slot is None:
            return
        del holder[step.slot]
        if waiting[step.slot]:
            _, key, nxt, work, run = waiting[step.slot].pop(0)
            holder[nxt.slot] = key
            active[key] = (nxt, work, run)
            demands[key] = demand(nxt)

    def _join(step: Step, run: _Run, at: float) -> None:
        # Each thread's lane starts as it did (after the same spawn delay) and runs its
        # branches in turn; the join ends when the last lane ends, plus its recorded tail.
        lanes = [lane for lane in step.branches if lane]
        last_end = max(b.end_ns for lane in lanes for b in lane)
        # The join's own waiting (spawn, tail) is scaled like any other wait of its kind.
        f = factor(step.stage, step.label, step.category, step.resource)
        tail = max(step.end_ns - last_end, 0) / f
        pending = [len(lanes)]

        def lane_done(t: float) -> None:
            pending[0] -= 1
            if pending[0] == 0:
                fixed.append((t + tail, lambda t2: advance(run, t2)))

        for lane in lanes:
            start_lane(lane, 0, step.start_ns, at, lane_done, f)

    def start_lane(lane, i, prev_end_ns, at, done, f) -> None:
        branch = lane[i]
        # Dispatch to a pool thread is a fixed gap; a task's start waits for its loop thread.
        gap = (branch.gap_ns if branch.task else max(branch.start_ns - prev_end_ns, 0)) / f

        def branch_done(t: float, lane=lane, i=i, branch=branch) -> None:
            if i + 1 < len(lane):
                start_lane(lane, i + 1, branch.end_ns, t, done, f)
            else:
                done(t)

        fixed.append((at + gap, lambda t: advance(_Run(branch, branch_done), t)))

    def stage_done(name: str) -> Callable[[float], None]:
        def done(t: float) -> None:
            ends[name] = t
            start_ready(t)

        return done

    def start_ready(at: float) -> None:
        for node in model.stages:
            if node.name in started or any(a not in ends for a in node.after):
                continue
            started.add(node.name)
            ready = max((ends[a] for a in node.after), default=float(model.arrival_ns))
            run = _Run(node.timeline, stage_done(node.name))
            fixed.append((max(ready, at) + node.delay_ns, lambda t, r=run: advance(r, t)))

    start_ready(now)
    while fixed or active:
        rates = _rates(active, demands, model.capacity)
        next_fixed = min((when for when, _ in fixed), default=float("inf"))
        next_work = min(
            (left / rates[key] for key, (_, left, _) in active.items() if rates[key] > 0),
            default=float("inf"),
        )
        step_to = min(next_fixed, now + next_work)
        elapsed = step_to - now
        now = step_to
        finished = []
        for key, (step, left, run) in list(active.items()):
            left -= elapsed * rates[key]
            if left <= 1e-6 * max(step.work, 1.0):
                finished.append(key)
            else:
                active[key] = (step, left, run)
        due = [item for item in fixed if item[0] <= now]
        fixed[:] = [item for item in fixed if item[0] > now]
        for key in finished:
            step, _, run = active.pop(key)
            release(step)
            advance(run, now)
        for _, then in due:
            then(now)
    sink = max(ends.values(), default=float(model.arrival_ns))
    return sink - model.arrival_ns, ends


def _rates(
    active: dict[int, tuple[Step, float, _Run]],
    demands: dict[int, float],
    capacity: dict[str, float],
) -> dict[int, float]:
    asked: dict[str, float] = defaultdict(float)
    for key, (step, _, _) in active.items():
        asked[step.pool] += demands[key]
    return {
        key: min(1.0, capacity.get(step.pool, 1.0) / asked[step.pool]) if asked[step.pool] else 1.0
        for key, (step, _, _) in active.items()
    }
