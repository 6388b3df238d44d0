"""Export a result set's raw intervals as a Chrome/Perfetto trace (what both exports share too)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import __version__
from harness.archive.store import ResultSet
from harness.archive.tables import by_replicate, frame_intervals
from harness.errors import UserError
from harness.record.probes import Interval
from harness.words import HARNESS_LAG, QUEUE_WAIT, Kind

_REQUEST_WAITS = (QUEUE_WAIT, HARNESS_LAG)  # waits of the whole request, before any stage runs
COMPACT = (",", ":")
# One complete event; %-formatting a row tuple is the fastest way Python has to lay out a
# million of them (the strings come quoted already, see _quoted).
_EVENT = (
    '{"name":%s,"cat":%s,"ph":"X","pid":%d,"tid":%d,"ts":%r,"dur":%r,"args":{"request":%d,'
    '"replicate":%d,"kind":%s,"stage":%s,"layer":%s,"category":%s,"resource":%s,'
    '"bytes":%d,"task":%s}}'
)


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
    replicate's clock anchor); the metadata events naming tracks are not counted. The events
    are built in columns and written as text: a set of a million intervals takes seconds.
    """
    refuse_overwrite(path, overwrite)
    stages = [stage.name for stage in result.manifest.stages]
    layers = {stage.name: stage.layer for stage in result.manifest.stages}
    offsets = clock_offsets(result)
    frame = result.intervals
    shift = frame["replicate"].map(lambda r: offsets.get(int(r), 0)).to_numpy(np.int64)
    starts = frame["start_ns"].to_numpy(np.int64) + shift
    origin = int(starts.min()) if len(frame) else 0
    metadata: list[dict[str, Any]] = []
    parts: list[pd.DataFrame] = []
    for replicate, group in by_replicate(frame):
        pid = replicate + 1
        name = f"{result.manifest.workload} · replicate {replicate}"
        metadata += [_meta("process_name", pid, 0, name), _meta("process_sort_index", pid, 0, pid)]
        ordered = group.iloc[np.argsort(group["start_ns"].to_numpy(), kind="stable")]
        tracks = _tracks(ordered, stages)
        tid = np.zeros(len(ordered), np.int64)
        last = 0
        for (_, track), rows in tracks.groupby(["order", "name"], sort=True):
            at = rows.index.to_numpy()
            lanes = _lanes(ordered["start_ns"].to_numpy()[at], ordered["end_ns"].to_numpy()[at])
            for lane in range(int(lanes.max()) + 1):
                last += 1
                label = str(track) if lane == 0 else f"{track} ({lane + 1})"
                metadata += [_meta("thread_name", pid, last, label)]
                metadata += [_meta("thread_sort_index", pid, last, last)]
            tid[at] = last - int(lanes.max()) + lanes
        parts.append(ordered.assign(_pid=pid, _tid=tid, _shift=offsets.get(replicate, 0) - origin))
    events = pd.concat(parts, ignore_index=True) if parts else frame.iloc[:0]
    other: dict[str, Any] = {"result_set": result.id, "workload": result.manifest.workload}
    other |= {"gapbench_version": __version__, "origin_unix_ns": origin}
    head = json.dumps(metadata, separators=COMPACT)[1:-1]
    body = _event_lines(events, layers)
    text = (
        '{"traceEvents":['
        + ",".join(p for p in (head, body) if p)
        + '],"displayTimeUnit":"ms","otherData":'
        + json.dumps(other, separators=COMPACT)
        + "}"
    )
    write_text(path, text)
    return len(events)


def _tracks(ordered: pd.DataFrame, stages: list[str]) -> pd.DataFrame:
    """Each interval's track, as a sort key and a name; threads and streams are numbered by
    first use (``ordered`` is by start time)."""
    kind = ordered["kind"].to_numpy(object)
    label = ordered["label"].to_numpy(object)
    stream = (kind == Kind.DEVICE.value) & (ordered["parent"].to_numpy() >= 0)
    thread = ordered["thread"].to_numpy(np.int64)
    pairs = pd.DataFrame({"stream": stream, "thread": thread})
    first = pairs.drop_duplicates()
    number = first.groupby("stream").cumcount().to_numpy()
    n = pairs.merge(first.assign(n=number), on=["stream", "thread"], how="left")["n"].to_numpy()
    known = {name: i for i, name in enumerate(stages)}
    order = np.array([known.get(s, len(stages)) for s in ordered["stage"].to_numpy(object)])
    requests = (kind == Kind.REQUEST.value) | (
        (kind == Kind.WAIT.value) & np.isin(label, _REQUEST_WAITS)
    )
    device = kind == Kind.DEVICE.value
    steps = kind == Kind.SLICE.value
    klass = np.select([requests, device, steps], [0, 2, 3], 1)
    second = np.select([requests, device & ~stream, device | steps], [0, -1, n], order)
    third = np.where(klass == 1, n, 0)
    stage = ordered["stage"].to_numpy(object)
    names = np.select(
        [requests, device & stream, device, steps],
        [
            "requests",
            "device stream " + n.astype(str),
            "device anchors",
            "asyncio steps · thread " + n.astype(str),
        ],
        stage + " · thread " + n.astype(str),
    )
    key = klass * 10**12 + (second + 1) * 10**6 + third
    return pd.DataFrame({"order": key, "name": names}, index=np.arange(len(ordered)))


def _lanes(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """A lane per interval such that the intervals of one lane nest or are disjoint.

    One thread's spans nest by construction, but asyncio tasks interleave on their thread (a
    probe open across an ``await``), and a wait recorded from another thread's clock may begin
    inside the span before it: Perfetto misdraws complete events that partially overlap, so
    those go to a further lane of the same track.
    """
    stacks: list[list[int]] = []  # per lane, the end times of its open events
    lanes = np.zeros(len(start), np.int64)
    begins, ends = start.tolist(), end.tolist()
    for i in np.lexsort((-end, start)).tolist():
        lo, hi = begins[i], ends[i]
        for lane, stack in enumerate([*stacks, []]):
            while stack and stack[-1] <= lo:
                stack.pop()
            if not stack or hi <= stack[-1]:
                stacks += [stack] if lane == len(stacks) else []
                stack.append(hi)
                lanes[i] = lane
                break
    return lanes


def _event_lines(events: pd.DataFrame, layers: dict[str, str]) -> str:
    """The complete events as JSON text, in (pid, ts, -dur) order, built a column at a time."""
    if events.empty:
        return ""
    start = events["start_ns"].to_numpy(np.int64) + events["_shift"].to_numpy(np.int64)
    dur = events["end_ns"].to_numpy(np.int64) - events["start_ns"].to_numpy(np.int64)
    pid = events["_pid"].to_numpy(np.int64)
    order = np.lexsort((-dur, start, pid))
    kind = events["kind"].to_numpy(object)
    category = events["category"].to_numpy(object)
    stage = events["stage"].to_numpy(object)
    label = events["label"].to_numpy(object)
    request = events["request"].to_numpy(np.int64)
    task = events["task"].to_numpy(object)
    name = np.where(kind == Kind.REQUEST.value, "request " + request.astype(str), label)
    name = np.where(kind == Kind.STAGE.value, stage, name)
    name = np.where(
        kind == Kind.SLICE.value, np.char.strip(("step " + task.astype(str)).astype(str)), name
    )
    name = np.where(name == "", np.where(category == "", kind, category), name)
    cat = np.where(category == "", kind, category)
    layer = np.array([layers.get(s, "") for s in stage], object)
    text = {
        "name": _quoted(name),
        "cat": _quoted(cat),
        "kind": _quoted(kind),
        "stage": _quoted(stage),
        "layer": _quoted(layer),
        "category": _quoted(category),
        "resource": _quoted(events["resource"].to_numpy(object)),
        "task": _quoted(task),
    }
    columns = [
        text["name"],
        text["cat"],
        pid.tolist(),
        events["_tid"].to_numpy(np.int64).tolist(),
        (start / 1000).tolist(),
        (dur / 1000).tolist(),
        request.tolist(),
        events["replicate"].to_numpy(np.int64).tolist(),
        text["kind"],
        text["stage"],
        text["layer"],
        text["category"],
        text["resource"],
        events["nbytes"].to_numpy(np.int64).tolist(),
        text["task"],
    ]
    rows = list(zip(*columns, strict=True))
    return ",".join(_EVENT % rows[i] for i in order.tolist())


def _quoted(values: np.ndarray) -> list[str]:
    """Each value as a JSON string, escaped once per distinct value."""
    codes, uniques = pd.factorize(pd.Series(values, dtype=object))
    quoted = np.array([json.dumps(str(u)) for u in uniques] + ['""'], dtype=object)
    return quoted[codes].tolist()


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
