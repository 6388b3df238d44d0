"""Export a result set's raw intervals as a Chrome/Perfetto trace (what both exports share too)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import __version__
from harness.archive.result_set import ResultSet
from harness.archive.tables import by_replicate, frame_intervals
from harness.errors import UserError
from harness.record.probes import Interval
from harness.record.remote import conventions
from harness.words import HARNESS_LAG, QUEUE_WAIT, Kind

_REQUEST_WAITS = (QUEUE_WAIT, HARNESS_LAG)  # waits of the whole request, before any stage runs
COMPACT = (",", ":")
_CHUNK = 65_536  # events joined and written at once
# One complete event; %-formatting a row tuple is the fastest way Python has to lay out a
# million of them (the strings come quoted already, see _event_lines). Times are µs with
# three decimals: exactly the ns recorded.
_EVENT = (
    '{"name":%s,"cat":%s,"ph":"X","pid":%d,"tid":%d,"ts":%.3f,"dur":%.3f,"args":{"request":%d,'
    '"replicate":%d,%s,"bytes":%d,"task":%s}}'
)


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
    shift = frame["replicate"].map(offsets).fillna(0).to_numpy(np.int64)
    starts = frame["start_ns"].to_numpy(np.int64) + shift
    origin = int(starts.min()) if len(frame) else 0
    metadata: list[dict[str, Any]] = []
    parts: list[pd.DataFrame] = []
    for replicate, group in by_replicate(frame):
        pid = replicate + 1
        name = f"{result.manifest.workload} · replicate {replicate}"
        metadata += [_meta("process_name", pid, 0, name), _meta("process_sort_index", pid, 0, pid)]
        ordered = group.iloc[np.argsort(group["start_ns"].to_numpy(), kind="stable")]
        track, names = _tracks(ordered, stages)
        begins, ends = ordered["start_ns"].to_numpy(), ordered["end_ns"].to_numpy()
        tid = np.zeros(len(ordered), np.int64)
        last = 0
        members = np.argsort(track, kind="stable")
        bounds = np.searchsorted(track[members], np.arange(len(names) + 1))
        for t, label in enumerate(names):
            at = members[bounds[t] : bounds[t + 1]]
            lanes = _lanes(begins[at], ends[at])
            for lane in range(int(lanes.max()) + 1):
                last += 1
                shown = label if lane == 0 else f"{label} ({lane + 1})"
                metadata += [_meta("thread_name", pid, last, shown)]
                metadata += [_meta("thread_sort_index", pid, last, last)]
            tid[at] = last - int(lanes.max()) + lanes
        parts.append(ordered.assign(_pid=pid, _tid=tid, _shift=offsets.get(replicate, 0) - origin))
    events = pd.concat(parts, ignore_index=True) if parts else frame.iloc[:0]
    other: dict[str, Any] = {"result_set": result.id, "workload": result.manifest.workload}
    other |= {"gapbench_version": __version__, "origin_unix_ns": origin}
    lines = [json.dumps(m, separators=COMPACT) for m in metadata] + _event_lines(events, layers)
    tail = '],"displayTimeUnit":"ms","otherData":' + json.dumps(other, separators=COMPACT) + "}"
    try:
        with Path(path).open("w") as out:  # joined a piece at a time, not as one string
            out.write('{"traceEvents":[')
            for done in range(0, len(lines), _CHUNK):
                out.write(("," if done else "") + ",".join(lines[done : done + _CHUNK]))
            out.write(tail)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc}") from exc
    return len(events)


def _tracks(ordered: pd.DataFrame, stages: list[str]) -> tuple[np.ndarray, list[str]]:
    """Each interval's track (0, 1, ... in drawing order) and the tracks' names; threads and
    streams are numbered by first use (``ordered`` is by start time)."""
    kind, kinds = _codes(ordered["kind"])
    stage, stage_names = _codes(ordered["stage"])
    label, labels = _codes(ordered["label"])
    is_ = {k: np.isin(kind, np.flatnonzero(kinds == k.value)) for k in Kind}
    stream = is_[Kind.DEVICE] & (ordered["parent"].to_numpy() >= 0)
    # Threads and streams numbered by first use, each kind of lane counting on its own.
    lane_key = ordered["thread"].to_numpy(np.int64) * 2 + stream
    first, uniques = pd.factorize(lane_key)
    n = pd.Series(uniques % 2).groupby(uniques % 2).cumcount().to_numpy()[first]
    known = {name: i for i, name in enumerate(stages)}
    order = np.array([known.get(str(u), len(stages)) for u in stage_names] + [len(stages)])[stage]
    waits = is_[Kind.WAIT] & np.isin(label, np.flatnonzero(np.isin(labels, _REQUEST_WAITS)))
    requests = is_[Kind.REQUEST] | waits
    device, steps = is_[Kind.DEVICE], is_[Kind.SLICE]
    klass = np.select([requests, device, steps], [0, 2, 3], 1)
    second = np.select([requests, device & ~stream, device | steps], [0, -1, n], order)
    third = np.where(klass == 1, n, 0)
    key = klass * 10**12 + (second + 1) * 10**6 + third
    keys, track = np.unique(key, return_inverse=True)
    first_row = np.full(len(keys), len(key))
    np.minimum.at(first_row, track, np.arange(len(key)))
    names = []
    for row in first_row.tolist():
        if requests[row]:
            names.append("requests")
        elif device[row]:
            names.append(f"device stream {n[row]}" if stream[row] else "device anchors")
        elif steps[row]:
            names.append(f"asyncio steps · thread {n[row]}")
        else:
            names.append(f"{stage_names[stage[row]] if stage[row] >= 0 else ''} · thread {n[row]}")
    return track.reshape(-1), names


def _codes(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(column)
    return codes, np.asarray(uniques, object)


def _lanes(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """A lane per interval such that the intervals of one lane nest or are disjoint.

    One thread's spans nest by construction, but asyncio tasks interleave on their thread (a
    probe open across an ``await``), and a wait recorded from another thread's clock may begin
    inside the span before it: Perfetto misdraws complete events that partially overlap, so
    those go to a further lane of the same track.
    """
    stacks: list[list[int]] = [[]]  # per lane, the end times of its open events
    first = stacks[0]
    lanes = [0] * len(start)
    begins, ends = start.tolist(), end.tolist()
    for i in np.lexsort((-end, start)).tolist():
        lo, hi = begins[i], ends[i]
        while first and first[-1] <= lo:
            first.pop()
        if not first or hi <= first[-1]:
            first.append(hi)  # the common case, kept short: most events nest in lane 0
            continue
        lane = 1
        while True:
            if lane == len(stacks):
                stacks.append([])
            stack = stacks[lane]
            while stack and stack[-1] <= lo:
                stack.pop()
            if not stack or hi <= stack[-1]:
                stack.append(hi)
                lanes[i] = lane
                break
            lane += 1
    return np.array(lanes, np.int64)


def _event_lines(events: pd.DataFrame, layers: dict[str, str]) -> list[str]:
    """The complete events as JSON text, in (pid, ts, -dur) order, built a column at a time:
    the strings of an event come from a few distinct combinations, each spelled once."""
    if events.empty:
        return []
    start = events["start_ns"].to_numpy(np.int64) + events["_shift"].to_numpy(np.int64)
    dur = events["end_ns"].to_numpy(np.int64) - events["start_ns"].to_numpy(np.int64)
    pid = events["_pid"].to_numpy(np.int64)
    order = np.lexsort((-dur, start, pid))
    columns = ("kind", "stage", "category", "resource", "label", "task")
    codes = {c: _codes(events[c]) for c in columns}
    combo = np.zeros(len(events), np.int64)
    for c in columns:  # one dense integer per combination of the six strings
        combo = pd.factorize(combo * (len(codes[c][1]) + 1) + codes[c][0] + 1)[0]
    _, first = np.unique(combo, return_index=True)
    request = events["request"].to_numpy(np.int64)
    names, cats, args, tasks = [], [], [], []
    for row in first.tolist():
        values = {c: str(codes[c][1][codes[c][0][row]]) for c in columns}
        kind, stage, category = values["kind"], values["stage"], values["category"]
        iv = Interval(
            request=0,
            span=0,
            parent=0,
            kind=kind,
            stage=stage,
            category=category,
            resource=values["resource"],
            label=values["label"],
            start_ns=0,
            end_ns=0,
            nbytes=0,
            thread=0,
            task=values["task"],
        )
        names.append(json.dumps(name_of(iv)) if kind != Kind.REQUEST.value else "")
        cats.append(json.dumps(category or kind))
        fields = {"kind": kind, "stage": stage, "layer": layers.get(stage, "")}
        fields |= {"category": category, "resource": values["resource"]}
        fields |= conventions(kind, category, values["resource"], values["label"])
        args.append(json.dumps(fields, separators=COMPACT)[1:-1])
        tasks.append(json.dumps(values["task"]))
    name = np.array(names, object)[combo]
    asked = name == ""
    name[asked] = ['"request %d"' % r for r in request[asked].tolist()]  # noqa: UP031
    rows = zip(
        name.tolist(),
        np.array(cats, object)[combo].tolist(),
        pid.tolist(),
        events["_tid"].to_numpy(np.int64).tolist(),
        (start / 1000).tolist(),
        (dur / 1000).tolist(),
        request.tolist(),
        events["replicate"].to_numpy(np.int64).tolist(),
        np.array(args, object)[combo].tolist(),
        events["nbytes"].to_numpy(np.int64).tolist(),
        np.array(tasks, object)[combo].tolist(),
        strict=True,
    )
    lines = [_EVENT % row for row in rows]
    return [lines[i] for i in order.tolist()]


def _meta(name: str, pid: int, tid: int, value: str | int) -> dict[str, Any]:
    key = "sort_index" if name.endswith("sort_index") else "name"
    return {"name": name, "ph": "M", "pid": pid, "tid": tid, "args": {key: value}}


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
    if path is not None and Path(path).is_dir():
        raise UserError(f"{path} is a folder: name a file")
    if path is not None and not overwrite and Path(path).exists():
        raise UserError(f"{path} exists: name another file (or --force to replace it)")


def write_text(path: str | os.PathLike, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc}") from exc
