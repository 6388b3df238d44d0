"""Replay a request's model (``harness.projection.request_model``) with its work scaled by a claim.

While the steps running on a pool ask for more than it has, each gets its share (processor
sharing): two CPU-bound branches on two cores each run at half speed. Scaling the work and
replaying gives the projected request: a stretch that overlapped shrinks to its longest part,
contention falls away as steps get shorter, and the critical path may move to another branch.
Replayed without scaling, the model gives back the recorded times.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from harness.projection.request_model import CPU, FIXED, Model, Step, Timeline
from harness.words import Category

Scale = Callable[[str, str, str, str], float]  # (stage, label, category, resource) -> factor
# (stage, label, category, resource) -> the threads it runs with (None: as recorded)
Threads = Callable[[str, str, str, str], float | None]


@dataclass
class _Run:
    """A timeline being replayed: which step it is at, and who waits for it to end."""

    timeline: Timeline
    on_end: Callable[[float], None]
    index: int = -1


def replay(
    model: Model,
    scale: Scale | None = None,
    threads: Threads | None = None,
) -> tuple[float, dict[str, float]]:
    """The request's latency (ns from arrival to the last stage's end) and each stage's end,
    with every step's work divided by ``scale(stage, label, category, resource)``.

    ``threads(stage, label, category, resource)``: the intra-op threads a host compute step
    uses in the projected condition (None: those recorded). A speedup that comes from more
    threads asks more of the cores.
    """
    factor = scale or (lambda *key: 1.0)
    cores = model.capacity[CPU]

    def demand(step: Step) -> float:
        if threads is not None and step.pool == CPU and step.category == Category.COMPUTE.value:
            asked = threads(step.stage, step.label, step.category, step.resource)
            if asked is not None:
                return float(min(max(asked, 1.0), cores))
        return step.demand

    # A clock from the request's arrival: an absolute one (1e13 ns after a day of uptime)
    # steps in 0.002 ns, too coarse to finish a step's last fraction of a nanosecond.
    now, arrival = 0.0, model.arrival_ns
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
            fixed.append((at + step.ns / f, partial(advance, run)))
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
        slot = step.slot
        if slot is None:
            return
        del holder[slot]
        if waiting[slot]:
            _, key, nxt, work, run = waiting[slot].pop(0)
            holder[slot] = key  # the waiting step needs this same loop thread
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
            ready = max((ends[a] for a in node.after), default=0.0)
            run = _Run(node.timeline, stage_done(node.name))
            fixed.append((max(ready, at) + node.delay_ns, partial(advance, run)))

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
            # Done, or what is left is below what the clock can still add (rounding).
            if left <= 1e-6 * max(step.work, 1.0) or (
                rates[key] > 0 and now + left / rates[key] <= now
            ):
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
    return max(ends.values(), default=0.0), {name: arrival + t for name, t in ends.items()}


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
