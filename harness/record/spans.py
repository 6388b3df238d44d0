"""How one request's intervals nest: the span tree, and the one walk of a timeline.

A timeline is what one thread or asyncio task did inside a stage or a fan-out branch. Walking it
gives its stretches in order, each charged to the innermost interval open over it: the innermost
probe wins. A join on fan-out branches is one stretch, whose owner has branches; each reader
follows those its own way (attribution along the branches that ended last, the replay model over
every branch). Attribution, the replay model and the profiler check all read time through this
walk, so they agree by construction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from harness.record.probes import Interval
from harness.words import OFF_CPU, UNATTRIBUTED, Category, Kind, Resource

_COMPUTE = Category.COMPUTE.value
# Compute on this host's CPUs: the run's own threads, and a tool server it started.
HOST_COMPUTE = (Resource.HOST_CPU.value, Resource.REMOTE.value)


class SpanTree:
    """The intervals of one request indexed by span and task: who encloses whom, who ran when."""

    def __init__(self, intervals: Iterable[Interval]) -> None:
        self.children: dict[int, list[Interval]] = defaultdict(list)
        slices: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.thread_slices: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
        self.device: list[Interval] = []  # when the device ran the request's work (events mode)
        # Each a timeline of its own: stages, branches, and probes open outside any span (a
        # stage method called alone, as a component benchmark calls it).
        self.roots: list[Interval] = []
        for iv in intervals:
            if iv.kind in (Kind.PROBE.value, Kind.BRANCH.value) and iv.parent >= 0:
                self.children[iv.parent].append(iv)
            elif iv.kind == Kind.DEVICE.value:
                self.device.append(iv)
            elif iv.kind == Kind.SLICE.value:
                slices[iv.task].append((iv.start_ns, iv.end_ns))
                self.thread_slices[iv.thread].append((iv.start_ns, iv.end_ns, iv.task))
            if iv.kind in (Kind.STAGE.value, Kind.BRANCH.value) or (
                iv.kind == Kind.PROBE.value and iv.parent < 0
            ):
                self.roots.append(iv)
        for kids in self.children.values():
            kids.sort(key=lambda iv: (iv.start_ns, iv.end_ns))  # siblings: the empty one first
        self.slices = {task: sorted(runs) for task, runs in slices.items()}
        for runs in self.thread_slices.values():
            runs.sort()
        self._off_cpu: dict[int, tuple[int, int]] = {}  # span -> (own ns, own off-CPU ns)

    def nested(self, node: Interval) -> list[Interval]:
        """Probes nested in ``node`` on its own timeline (branches are timelines of their own)."""
        return [iv for iv in self.children[node.span] if iv.kind == Kind.PROBE.value]

    def branches(self, node: Interval) -> list[Interval]:
        return [iv for iv in self.children[node.span] if iv.kind == Kind.BRANCH.value]

    def off_cpu(self, owner: Interval, start: int, end: int) -> int:
        """How much of ``owner``'s own time within [start, end] its thread spent off the CPU
        while it had work: the interpreter lock, preemption. Only host compute has any: the
        run's own probes, and those a tool server on this host carried back with its CPU time.

        A probe's own off-CPU time is its wall less its thread's CPU time, less that of the
        probes nested in it; it is spread evenly over its own time, so the stretches of one
        probe add up to it exactly however the walk cuts them. The rules, and why:

        - device compute keeps all its time: a host thread blocked on the GPU is the device
          computing, and the device's own timing (CUDA events) says when;
        - an intra-op pool (OpenMP, onnxruntime's) runs on the probe's thread too, which works
          its share and spins at the pool's barrier: its CPU time stays close to the wall time
          while the op runs, so what it lacks is time the op could not run, a wait; the pool's
          other threads are neither counted nor needed;
        - inside an asyncio task the thread's CPU time is shared by the tasks on it, so it
          says nothing of one probe's: such probes keep their category (their suspended time
          is split out as `await` instead);
        - a probe, or one nested in it, without a CPU reading (sets from before probes read it)
          is not split.
        """
        if owner.kind != Kind.PROBE.value or owner.category != _COMPUTE:
            return 0
        if owner.resource not in HOST_COMPUTE or owner.task or end <= start:
            return 0
        if owner.span not in self._off_cpu:
            self._off_cpu[owner.span] = self._own_off_cpu(owner)
        own, off = self._off_cpu[owner.span]
        if not off:
            return 0
        before = self._own_before(owner, start)
        through = before + (end - start)
        return off * through // own - off * before // own

    def _own_off_cpu(self, owner: Interval) -> tuple[int, int]:
        kids = self.nested(owner)
        if owner.cpu_ns < 0 or self.branches(owner) or any(k.cpu_ns < 0 for k in kids):
            return 0, 0
        own = owner.duration_ns - sum(_inside(k, owner.start_ns, owner.end_ns) for k in kids)
        off = owner.duration_ns - owner.cpu_ns
        off -= sum(max(k.duration_ns - k.cpu_ns, 0) for k in kids)
        return own, min(max(off, 0), max(own, 0))

    def _own_before(self, owner: Interval, at: int) -> int:
        """``owner``'s own time from its start to ``at``."""
        inside = sum(_inside(k, owner.start_ns, at) for k in self.nested(owner))
        return at - owner.start_ns - inside

    def others_running(self, task: str, thread: int, start: int, end: int) -> list[tuple[int, int]]:
        """When other tasks of this request held ``thread`` within [start, end], in order."""
        out = []
        for lo, hi, other in self.thread_slices.get(thread, ()):
            if other == task or hi <= start or lo >= end:
                continue
            out.append((max(lo, start), min(hi, end)))
        return out


@dataclass(frozen=True, slots=True)
class Stretch:
    """A stretch of one timeline and the innermost interval open over it (its owner)."""

    owner: Interval
    start_ns: int
    end_ns: int

    @property
    def ns(self) -> int:
        return self.end_ns - self.start_ns


def walk(node: Interval, start: int, end: int, tree: SpanTree) -> Iterator[Stretch]:
    """``node``'s timeline within [start, end], in order: its nested probes' stretches (their
    own innermost first) and its own time between them.

    A node that joined branches is one stretch: its time is its branches'. A child that began
    before its older sibling ended gives a stretch of negative length, which the invariants
    report rather than hide.
    """
    if tree.branches(node):
        yield Stretch(node, start, end)
        return
    cursor = start
    for child in tree.nested(node):
        lo, hi = max(child.start_ns, start), min(child.end_ns, end)
        if hi <= lo:
            continue
        if lo != cursor:
            yield Stretch(node, cursor, lo)
        yield from walk(child, lo, hi, tree)
        cursor = max(cursor, hi)
    if end > cursor:
        yield Stretch(node, cursor, end)


def _inside(iv: Interval, start: int, end: int) -> int:
    return max(min(iv.end_ns, end) - max(iv.start_ns, start), 0)


Charge = tuple[int, int, str, str, str]  # start, end, category, resource, label


def charges(owner: Interval, start: int, end: int, tree: SpanTree) -> Iterator[Charge]:
    """A stretch of ``owner``'s own time as it is charged: its category, resource and label,
    and a host compute probe's off-CPU part after that, as a wait (``SpanTree.off_cpu``).
    Attribution and the replay model both cut stretches here, so they agree."""
    category, resource, label = charged(owner)
    off = tree.off_cpu(owner, start, end)
    if off:
        if end - off > start:
            yield start, end - off, category, resource, label
        yield end - off, end, Category.SCHEDULING.value, Resource.WAIT.value, OFF_CPU
    else:
        yield start, end, category, resource, label


def charged(owner: Interval) -> tuple[str, str, str]:
    """(category, resource, label) of time its owner holds: a probe's own, else a stage's or
    branch's glue code, which is unattributed."""
    if owner.kind == Kind.PROBE.value:
        return owner.category, owner.resource, owner.label
    return UNATTRIBUTED, "", ""


def own_time(intervals: Iterable[Interval]) -> dict[int, int]:
    """Each probe's own time in ns by span (innermost wins), over every timeline of one request;
    a probe whose nested probes cover it whole has 0."""
    tree = SpanTree(intervals)
    own: dict[int, int] = defaultdict(int)
    for root in tree.roots:
        for stretch in walk(root, root.start_ns, root.end_ns, tree):
            if stretch.owner.kind == Kind.PROBE.value:
                own[stretch.owner.span] += stretch.ns
    return own
