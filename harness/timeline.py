"""One timeline's time, piece by piece: innermost probe wins, joins follow their last branch.

A timeline is what one thread or asyncio task did inside a stage or a branch. Its pieces tile
the window exactly when probes nest as they must; the invariants check that they do.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from harness.probes import Category, Interval, Kind, Resource

UNATTRIBUTED = "unattributed"
HARNESS_LAG = "harness lag"
AWAIT = "await"  # an asyncio task suspended at an await, between its slices


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
        for iv in intervals:
            if iv.kind in (Kind.PROBE.value, Kind.BRANCH.value) and iv.parent >= 0:
                self.children[iv.parent].append(iv)
            elif iv.kind == Kind.SLICE.value:
                slices[iv.task].append((iv.start_ns, iv.end_ns))
        for kids in self.children.values():
            kids.sort(key=lambda iv: (iv.start_ns, -iv.end_ns))
        self.slices = {task: sorted(runs) for task, runs in slices.items()}

    def nested(self, node: Interval) -> list[Interval]:
        """Probes nested in ``node`` on its own timeline (branches are timelines of their own)."""
        return [iv for iv in self.children[node.span] if iv.kind == Kind.PROBE.value]

    def branches(self, node: Interval) -> list[Interval]:
        return [iv for iv in self.children[node.span] if iv.kind == Kind.BRANCH.value]

    def running(self, task: str, start: int, end: int) -> list[tuple[int, int]]:
        """When ``task`` held its thread within [start, end] (its slices), in order."""
        runs = self.slices.get(task, [])
        first = max(bisect.bisect_right(runs, (start, start)) - 1, 0)
        out = []
        for lo, hi in runs[first:]:
            if lo >= end:
                break
            lo, hi = max(lo, start), min(hi, end)
            if hi > lo:
                out.append((lo, hi))
        return out


def pieces(
    node: Interval, start: int, end: int, tree: SpanTree, overlap: list[int]
) -> Iterator[Piece]:
    """The pieces of ``node``'s timeline within [start, end], innermost probe first.

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
        yield from pieces(child, lo, hi, tree, overlap)
        cursor = max(cursor, hi)
    yield from _own(node, cursor, end, critical, tree, overlap)


def _own(
    node: Interval,
    start: int,
    end: int,
    critical: Interval | None,
    tree: SpanTree,
    overlap: list[int],
) -> Iterator[Piece]:
    if end < start:  # a child began before its older sibling ended: the invariants say so
        yield _piece(node, start, end)
        return
    if critical is not None:
        lo, hi = max(start, critical.start_ns), min(end, critical.end_ns)
        if hi > lo:
            yield from _suspended(node, start, lo, tree)
            yield from pieces(critical, lo, hi, tree, overlap)
            yield from _suspended(node, hi, end, tree)
            return
    yield from _suspended(node, start, end, tree)


def _suspended(node: Interval, start: int, end: int, tree: SpanTree) -> Iterator[Piece]:
    """The node's own time, less what its asyncio task spent suspended at an await.

    A probe that spans an await must not claim the time other tasks used: outside its task's
    slices a compute probe (or plain glue) was waiting, so that time is scheduling. A wait or
    movement probe keeps it: waiting on a reply or a socket is what those probes time.
    """
    if end <= start:
        return
    own = _piece(node, start, end)
    if not node.task or node.task not in tree.slices or own.category in _KEPT_WHEN_SUSPENDED:
        yield own
        return
    cursor = start
    for lo, hi in tree.running(node.task, start, end):
        if lo > cursor:
            yield Piece(cursor, lo, Category.SCHEDULING.value, Resource.WAIT.value, AWAIT)
        yield Piece(lo, hi, own.category, own.resource, own.label)
        cursor = hi
    if end > cursor:
        yield Piece(cursor, end, Category.SCHEDULING.value, Resource.WAIT.value, AWAIT)


_KEPT_WHEN_SUSPENDED = (Category.SCHEDULING.value, Category.MOVEMENT.value)


def _piece(node: Interval, start: int, end: int) -> Piece:
    if node.kind == Kind.PROBE.value:
        return Piece(start, end, node.category, node.resource, node.label)
    return Piece(start, end, UNATTRIBUTED, "", "")  # a stage's or branch's own glue code
