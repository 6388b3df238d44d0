"""One timeline's time, piece by piece: innermost probe wins, joins follow their last branch.

A timeline is what one thread or asyncio task did inside a stage or a branch. Its pieces tile
the window exactly when probes nest as they must; the invariants check that they do.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from harness.record.probes import LAG_WAIT, Category, Interval, Kind, Resource

UNATTRIBUTED = "unattributed"
HARNESS_LAG = LAG_WAIT  # the bucket of end-to-end time the load generator's lateness fills
AWAIT = "await"  # an asyncio task suspended at an await while another task held its thread


@dataclass(frozen=True, slots=True)
class Piece:
    """A stretch of one timeline and what it was spent on."""

    start_ns: int
    end_ns: int
    category: str
    resource: str
    label: str  # the probe's label: for scheduling, which wait it was

    @property
    def ns(self) -> int:
        return self.end_ns - self.start_ns


class SpanTree:
    """The intervals of one request indexed by span and task: who encloses whom, who ran when."""

    def __init__(self, intervals: Iterable[Interval]) -> None:
        self.children: dict[int, list[Interval]] = defaultdict(list)
        slices: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.thread_slices: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
        self.device: list[Interval] = []  # when the device ran the request's work (events mode)
        for iv in intervals:
            if iv.kind in (Kind.PROBE.value, Kind.BRANCH.value) and iv.parent >= 0:
                self.children[iv.parent].append(iv)
            elif iv.kind == Kind.DEVICE.value:
                self.device.append(iv)
            elif iv.kind == Kind.SLICE.value:
                slices[iv.task].append((iv.start_ns, iv.end_ns))
                self.thread_slices[iv.thread].append((iv.start_ns, iv.end_ns, iv.task))
        for kids in self.children.values():
            kids.sort(key=lambda iv: (iv.start_ns, iv.end_ns))  # siblings: the empty one first
        self.slices = {task: sorted(runs) for task, runs in slices.items()}
        for runs in self.thread_slices.values():
            runs.sort()

    def nested(self, node: Interval) -> list[Interval]:
        """Probes nested in ``node`` on its own timeline (branches are timelines of their own)."""
        return [iv for iv in self.children[node.span] if iv.kind == Kind.PROBE.value]

    def branches(self, node: Interval) -> list[Interval]:
        return [iv for iv in self.children[node.span] if iv.kind == Kind.BRANCH.value]

    def others_running(self, task: str, thread: int, start: int, end: int) -> list[tuple[int, int]]:
        """When other tasks of this request held ``thread`` within [start, end], in order."""
        out = []
        for lo, hi, other in self.thread_slices.get(thread, ()):
            if other == task or hi <= start or lo >= end:
                continue
            out.append((max(lo, start), min(hi, end)))
        return out


@dataclass
class Walk:
    """What a walk over timelines found beside its pieces: the branches on the critical path
    and the time the other branches ran beside it."""

    overlap_ns: int = 0
    critical: list[Interval] = field(default_factory=list)


def pieces(node: Interval, start: int, end: int, tree: SpanTree, walk: Walk) -> Iterator[Piece]:
    """The pieces of ``node``'s timeline within [start, end], innermost probe first.

    Time the node spends outside its nested probes is its own; if the node joined branches,
    that time follows the chain of branches that set when the join ended (see ``_chain``).
    """
    branches = tree.branches(node)
    chain = _chain(branches)
    walk.critical += chain
    walk.overlap_ns += sum(b.duration_ns for b in branches if b not in chain)
    cursor = start
    for child in tree.nested(node):
        lo, hi = max(child.start_ns, start), min(child.end_ns, end)
        if hi <= lo:
            continue
        yield from _own(node, cursor, lo, chain, tree, walk)
        yield from pieces(child, lo, hi, tree, walk)
        cursor = max(cursor, hi)
    yield from _own(node, cursor, end, chain, tree, walk)


def _chain(branches: list[Interval]) -> list[Interval]:
    """The branches a join waited for, in order: the last to end, and before it, on its thread,
    each branch it had to wait behind (a branch that ended on that thread before it began).

    Branches on other threads that ran at the same time are beside this chain: overlap.
    """
    if not branches:
        return []
    chain = [max(branches, key=lambda b: b.end_ns)]
    while True:
        first = chain[0]
        before = [
            b
            for b in branches
            if b.thread == first.thread and b.end_ns <= first.start_ns and b not in chain
        ]
        if not before:
            return chain
        chain.insert(0, max(before, key=lambda b: b.end_ns))


def _own(
    node: Interval,
    start: int,
    end: int,
    chain: list[Interval],
    tree: SpanTree,
    walk: Walk,
) -> Iterator[Piece]:
    if end < start:  # a child began before its older sibling ended: the invariants say so
        yield _piece(node, start, end)
        return
    cursor = start
    for branch in chain:
        lo, hi = max(cursor, branch.start_ns), min(end, branch.end_ns)
        if hi <= lo:
            continue
        yield from _suspended(node, cursor, lo, tree)
        yield from pieces(branch, lo, hi, tree, walk)
        cursor = hi
    yield from _suspended(node, cursor, end, tree)


def _suspended(node: Interval, start: int, end: int, tree: SpanTree) -> Iterator[Piece]:
    """The node's own time, less what other asyncio tasks used while its task was suspended.

    A probe that spans an await must not claim the time other tasks used: while another task of
    the request held the thread, this one was waiting behind it, so that time is an ``await``
    wait. While the loop sat idle the probe keeps its category (compute awaited from an
    executor is compute, a socket read is movement, plain glue is unattributed); a wait probe
    keeps all of its time.
    """
    if end <= start:
        return
    own = _piece(node, start, end)
    if not node.task or node.task not in tree.slices or own.category == Category.SCHEDULING.value:
        yield own
        return
    cursor = start
    for lo, hi in tree.others_running(node.task, node.thread, start, end):
        if lo > cursor:
            yield Piece(cursor, lo, own.category, own.resource, own.label)
        if hi > max(lo, cursor):
            yield Piece(max(lo, cursor), hi, Category.SCHEDULING.value, Resource.WAIT.value, AWAIT)
        cursor = max(cursor, hi)
    if end > cursor:
        yield Piece(cursor, end, own.category, own.resource, own.label)


def _piece(node: Interval, start: int, end: int) -> Piece:
    if node.kind == Kind.PROBE.value:
        return Piece(start, end, node.category, node.resource, node.label)
    return Piece(start, end, UNATTRIBUTED, "", "")  # a stage's or branch's own glue code


def device_overlay(host: list[Piece], device: list[Interval]) -> list[Piece]:
    """Host pieces with the stretches in which the device ran this request's work replaced.

    With CUDA events the host runs ahead and blocks later (in a copy back, a synchronize);
    while the device is busy it is what the request waits for, so that time is the device
    work's category and resource, whichever host code was running or blocked meanwhile.
    """
    busy = sorted((iv for iv in device if iv.category), key=lambda iv: iv.start_ns)
    if not busy:
        return host
    out: list[Piece] = []
    for piece in host:
        cursor = piece.start_ns
        for iv in busy:
            lo, hi = max(iv.start_ns, cursor), min(iv.end_ns, piece.end_ns)
            if hi <= lo:
                continue
            if lo > cursor:
                out.append(Piece(cursor, lo, piece.category, piece.resource, piece.label))
            out.append(Piece(lo, hi, iv.category, iv.resource, iv.label))
            cursor = hi
        if piece.end_ns > cursor:
            out.append(Piece(cursor, piece.end_ns, piece.category, piece.resource, piece.label))
    return out
