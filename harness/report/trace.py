"""Export a result set's raw intervals as a Chrome/Perfetto trace (what both exports share too)."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import __version__
from harness.archive.store import ResultSet
from harness.archive.tables import by_replicate, frame_intervals
from harness.errors import UserError
from harness.record.probes import Interval
from harness.words import HARNESS_LAG, QUEUE_WAIT, Kind

_REQUEST_WAITS = (QUEUE_WAIT, HARNESS_LAG)  # waits of the whole request, before any stage runs
COMPACT = (",", ":")


@dataclass(frozen=True)
class Track:
    """A Perfetto track of one replicate: where it sorts and what it is called."""

    order: tuple[int, ...]
    name: str


def replicate_intervals(result: ResultSet) -> Iterator[tuple[int, list[Interval]]]:
    """(replicate, its intervals) for every replicate of the set, failed requests included."""
    for replicate, group in by_replicate(result.intervals):
        yield replicate, frame_intervals(group)


def clock_offsets(result: ResultSet) -> dict[int, int]:
    """Per replicate, the ns to add to recorded times to get Unix epoch ns."""
    return {r.replicate: r.clock_anchor.offset_ns for r in result.manifest.replicates}


def write_chrome(result: ResultSet, path: str | os.PathLike, overwrite: bool = False) -> int:
    """Write the set as Chrome trace JSON for Perfetto; returns the number of interval events.

    One process per replicate. Tracks: "requests" (each request, its queue wait and lag); one
    per stage and thread (the stage, its probes, its branches, its handoff wait); "device
    stream N"; "asyncio steps · thread N" (slices, kept on tracks of their own: when a task
    held its thread is how an async probe is read). Every interval is one complete event,
    ``ts``/``dur`` in µs from the set's first interval on the wall clock (through each
    replicate's clock anchor); the metadata events naming tracks are not counted.
    """
    refuse_overwrite(path, overwrite)
    layers = {stage.name: stage.layer for stage in result.manifest.stages}
    offsets = clock_offsets(result)
    replicates = list(replicate_intervals(result))
    origin = min(
        (iv.start_ns + offsets.get(r, 0) for r, ivs in replicates for iv in ivs), default=0
    )
    events: list[dict[str, Any]] = []
    metadata: list[dict[str, Any]] = []
    for replicate, intervals in replicates:
        pid, shift = replicate + 1, offsets.get(replicate, 0) - origin
        name = f"{result.manifest.workload} · replicate {replicate}"
        metadata += [_meta("process_name", pid, 0, name), _meta("process_sort_index", pid, 0, pid)]
        by_track: dict[Track, list[Interval]] = defaultdict(list)
        numbers: dict[tuple[bool, int], int] = {}
        for iv in sorted(intervals, key=lambda iv: iv.start_ns):
            by_track[_track(iv, list(layers), numbers)].append(iv)
        tid = 0
        for track in sorted(by_track, key=lambda t: t.order):
            members = by_track[track]
            lanes = _lanes(members)
            for lane in range(max(lanes) + 1):
                tid += 1
                label = track.name if lane == 0 else f"{track.name} ({lane + 1})"
                metadata += [_meta("thread_name", pid, tid, label)]
                metadata += [_meta("thread_sort_index", pid, tid, tid)]
                chosen = [iv for iv, at in zip(members, lanes, strict=True) if at == lane]
                events += [_event(iv, pid, tid, shift, replicate, layers) for iv in chosen]
    events.sort(key=lambda e: (e["pid"], e["ts"], -e["dur"]))
    other: dict[str, Any] = {"result_set": result.id, "workload": result.manifest.workload}
    other |= {"gapbench_version": __version__, "origin_unix_ns": origin}
    document = {"traceEvents": metadata + events, "displayTimeUnit": "ms", "otherData": other}
    write_text(path, json.dumps(document, separators=COMPACT))
    return len(events)


def _track(iv: Interval, stages: list[str], numbers: dict[tuple[bool, int], int]) -> Track:
    """The track an interval is drawn on; threads and streams are numbered by first use."""
    stream = iv.kind == Kind.DEVICE.value and iv.parent >= 0  # a device interval's thread
    n = numbers.setdefault((stream, iv.thread), sum(key[0] == stream for key in numbers))
    if iv.kind == Kind.REQUEST.value or (iv.kind == Kind.WAIT.value and iv.label in _REQUEST_WAITS):
        return Track((0,), "requests")
    if iv.kind == Kind.DEVICE.value:
        # Without a parent: the anchor event that put device time on the host clock.
        return Track((2, n), f"device stream {n}") if stream else Track((2, -1), "device anchors")
    if iv.kind == Kind.SLICE.value:
        return Track((3, n), f"asyncio steps · thread {n}")
    order = stages.index(iv.stage) if iv.stage in stages else len(stages)
    return Track((1, order, n), f"{iv.stage} · thread {n}")


def _lanes(intervals: Sequence[Interval]) -> list[int]:
    """A lane per interval such that the intervals of one lane nest or are disjoint.

    One thread's spans nest by construction, but asyncio tasks interleave on their thread (a
    probe open across an ``await``): Perfetto misdraws complete events that partially overlap,
    so those go to a further lane of the same track.
    """
    stacks: list[list[int]] = []  # per lane, the end times of its open events
    lanes = [0] * len(intervals)
    order = sorted(
        range(len(intervals)), key=lambda i: (intervals[i].start_ns, -intervals[i].end_ns)
    )
    for i in order:
        iv = intervals[i]
        for lane, stack in enumerate([*stacks, []]):
            while stack and stack[-1] <= iv.start_ns:
                stack.pop()
            if not stack or iv.end_ns <= stack[-1]:
                stacks += [stack] if lane == len(stacks) else []
                stack.append(iv.end_ns)
                lanes[i] = lane
                break
    return lanes


def _meta(name: str, pid: int, tid: int, value: str | int) -> dict[str, Any]:
    key = "sort_index" if name.endswith("sort_index") else "name"
    return {"name": name, "ph": "M", "pid": pid, "tid": tid, "args": {key: value}}


def _event(
    iv: Interval, pid: int, tid: int, shift: int, replicate: int, layers: dict[str, str]
) -> dict[str, Any]:
    args = {"request": iv.request, "replicate": replicate, "kind": iv.kind, "stage": iv.stage}
    args |= {"layer": layers.get(iv.stage, ""), "category": iv.category}
    args |= {"resource": iv.resource, "bytes": iv.nbytes, "task": iv.task}
    # `cat` is what Perfetto filters on: compute, movement, scheduling (else the kind).
    event = {"name": name_of(iv), "cat": iv.category or iv.kind, "ph": "X", "pid": pid, "tid": tid}
    return event | {"ts": (iv.start_ns + shift) / 1000, "dur": iv.duration_ns / 1000, "args": args}


def name_of(iv: Interval, workload: str = "") -> str:
    """The stage's name, the probe's label (else its category), or the request's."""
    if iv.kind == Kind.REQUEST.value:
        return f"{workload} request" if workload else f"request {iv.request}"
    if iv.kind == Kind.STAGE.value:
        return iv.stage
    if iv.kind == Kind.SLICE.value:
        return f"step {iv.task}".strip()
    name = iv.label or iv.category or iv.kind
    return f"device {name}" if workload and iv.kind == Kind.DEVICE.value else name


def refuse_overwrite(path: str | os.PathLike | None, overwrite: bool) -> None:
    """Refuse to replace a file that exists (a set's own manifest, an earlier trace) unless
    told to: an export must never cost what is already archived."""
    if path is not None and not overwrite and Path(path).exists():
        raise UserError(f"{path} exists: name another file (or --force to replace it)")


def write_text(path: str | os.PathLike, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc}") from exc
