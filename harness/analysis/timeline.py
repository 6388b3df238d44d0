"""A stage's time as attribution reads it: along the branches its joins waited for, with the
time its asyncio task sat suspended split out, and the device's work laid over the host's."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from harness.record.probes import Interval
from harness.record.spans import SpanTree, charged, charges, walk
from harness.words import AWAIT, Category, Resource


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


@dataclass
class Walk:
    """What a walk over timelines found beside its pieces: the branches on the critical path
    and the time the other branches ran beside it."""

    overlap_ns: int = 0
    critical: list[Interval] = field(default_factory=list)


def pieces(node: Interval, start: int, end: int, tree: SpanTree, walked: Walk) -> Iterator[Piece]:
    """The pieces of ``node``'s timeline within [start, end], innermost probe first.

    Where the timeline joined branches, the join's time follows the chain of branches that set
    when it ended (see ``_chain``); the other branches ran beside it.
    """
    for stretch in walk(node, start, end, tree):
        owner, lo, hi = stretch.owner, stretch.start_ns, stretch.end_ns
        if hi < lo:  # a child began before its older sibling ended: the invariants say so
            yield _piece(owner, lo, hi)
            continue
        branches = tree.branches(owner)
        if not branches:
            yield from _suspended(owner, lo, hi, tree)
            continue
        chain = _chain(branches)
        walked.critical += chain
        walked.overlap_ns += sum(b.duration_ns for b in branches if b not in chain)
        cursor = lo
        for branch in chain:
            b_lo, b_hi = max(cursor, branch.start_ns), min(hi, branch.end_ns)
            if b_hi <= b_lo:
                continue
            yield from _suspended(owner, cursor, b_lo, tree)
            yield from pieces(branch, b_lo, b_hi, tree, walked)
            cursor = b_hi
        yield from _suspended(owner, cursor, hi, tree)


def _chain(branches: list[Interval]) -> list[Interval]:
    """The branches a join waited for, in order: the last to end, and before it, on its thread,
    each branch it had to wait behind (a branch that ended on that thread before it began).

    Branches on other threads that ran at the same time are beside this chain: overlap.
    """
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
        for charge in charges(node, start, end, tree):
            yield Piece(*charge)
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
    return Piece(start, end, *charged(node))


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
