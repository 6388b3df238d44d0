"""Every successful request of a set split at once, in columns: the tables the analysis reads.

The rules are attribution's (innermost probe wins, unattributed glue, the critical path through
the stage DAG), computed over the whole interval table with numpy instead of request by request.
A request the columns can split exactly is *clean*: one thread per stage, probes nested inside
their parents without overlap, no fan-out, no asyncio slices, no device timeline, every wait on
its path recorded, no tie in choosing the path. Every other request is split by the reference
walk (``harness.analysis.attribution``), so the tables always hold what it would give; a clean
request, by those same checks, breaks none of DESIGN.md's invariants.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd

from harness.analysis.attribution import RequestSplit, split_request
from harness.archive.store import ResultSet
from harness.archive.tables import frame_intervals
from harness.record.probes import Interval
from harness.words import (
    HARNESS_LAG,
    SEGMENT_WAITS,
    UNATTRIBUTED,
    Category,
    Kind,
    Resource,
    SegmentKind,
)
from harness.workload import Stage

_PROBE, _STAGE, _REQUEST, _WAIT = (
    k.value for k in (Kind.PROBE, Kind.STAGE, Kind.REQUEST, Kind.WAIT)
)
_ODD_KINDS = (Kind.BRANCH.value, Kind.SLICE.value, Kind.DEVICE.value)
_SCHEDULING = Category.SCHEDULING.value
_LOW = np.iinfo(np.int64).min
_MAX_DEPTH = 64  # deeper probe nesting than this is split by the reference walk

SPLIT_COLUMNS = [
    "replicate",
    "request",
    "arrival_ns",
    "response_ns",
    "latency_ns",
    "lag_ns",
    "queue_ns",
    "handoff_ns",
    "overlap_ns",
    "path",
    "clean",
]
STAGE_COLUMNS = [
    "row",
    "stage",
    "start_ns",
    "end_ns",
    "wall_ns",
    "compute_ns",
    "movement_ns",
    "scheduling_ns",
    "unattributed_ns",
    "nbytes",
    "overlap_ns",
    "cpu_ns",
    "thread",
    "critical",
]
CHARGE_COLUMNS = ["row", "stage", "category", "resource", "ns", "critical"]
WAIT_COLUMNS = ["row", "stage", "label", "ns", "critical"]


@dataclass(frozen=True)
class SplitTable:
    """The splits of a set's successful requests, in (replicate, request) order.

    ``requests``: one row each; ``row`` in the other tables is its position there.
    ``stages``: one row per stage a request ran, split along its critical timeline.
    ``charges``: a stage's ns per (category, resource), ``unattributed`` included.
    ``waits``: a stage's scheduling ns per wait label. ``critical``: on the request's path.
    ``odd``: the requests not clean, with their raw intervals and reference split, in order:
    only they can break DESIGN.md's invariants (``harness.analysis.invariants``).
    """

    requests: pd.DataFrame
    stages: pd.DataFrame
    charges: pd.DataFrame
    waits: pd.DataFrame
    odd: tuple[tuple[list[Interval], RequestSplit], ...]

    def __len__(self) -> int:
        return len(self.requests)

    def sequential(self) -> np.ndarray:
        """Per request: clean, and every stage it ran on its critical path (so nothing ran
        beside anything else)."""
        ran = np.bincount(self.stages["row"], minlength=len(self))
        on = np.bincount(self.stages["row"], weights=self.stages["critical"], minlength=len(self))
        return self.requests["clean"].to_numpy() & (ran == on)

    @functools.cached_property
    def totals(self) -> pd.DataFrame:
        """:meth:`path_totals`, computed once (the shares and the answer both read it)."""
        return self.path_totals()

    def path_totals(self) -> pd.DataFrame:
        """Per request (index ``row``), ns along the critical path per (category, resource)
        column, the runner's waits included as (scheduling, wait) and (harness lag, "")."""
        wide = self._wide(self.charges, ["category", "resource"])
        segments = self.requests[["queue_ns", "handoff_ns"]].sum(axis=1).to_numpy()
        wait = (_SCHEDULING, Resource.WAIT.value)
        wide[wait] = (wide.get(wait, 0)) + segments
        wide[(HARNESS_LAG, "")] = self.requests["lag_ns"].to_numpy()
        return wide.astype("int64")

    def path_waits(self) -> pd.DataFrame:
        """Per request (index ``row``), scheduling and lag along the critical path by kind: each
        stage wait by its label, and the runner's lag, queue and handoff waits where any
        request has such a segment."""
        wide = self._wide(self.waits, ["label"])
        r = self.requests
        segments = {
            SegmentKind.LAG.value: (r["lag_ns"], bool((r["lag_ns"] != 0).any())),
            SegmentKind.QUEUE.value: (r["queue_ns"], len(r) > 0),
            SegmentKind.HANDOFF.value: (r["handoff_ns"], bool(r["path"].str.contains(" > ").any())),
        }
        for kind, (values, present) in segments.items():
            name = SEGMENT_WAITS[kind]
            if present:
                wide[name] = (wide.get(name, 0)) + values.to_numpy()
        return wide.astype("int64")

    def _wide(self, frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
        """Critical rows of ``frame`` summed per request (one row each) and per ``by``."""
        on = frame[frame["critical"]]
        # One integer code per column of the result, then one bincount per column: a groupby
        # and unstack over hundreds of thousands of rows cost ten times more.
        keys = pd.MultiIndex.from_frame(on[by]) if len(by) > 1 else pd.Index(on[by[0]])
        code, columns = pd.factorize(keys, sort=True)
        n, rows, ns = len(self.requests), on["row"].to_numpy(), on["ns"].to_numpy()
        sums = {
            column: np.bincount(rows[code == i], weights=ns[code == i], minlength=n)
            for i, column in enumerate(columns)
        }
        wide = pd.DataFrame(sums, index=pd.RangeIndex(n, name="row"))
        if len(by) > 1:
            wide.columns = (
                pd.MultiIndex.from_tuples(list(columns)) if len(columns) else wide.columns
            )
        return wide


_KEPT: weakref.WeakKeyDictionary[ResultSet, SplitTable] = weakref.WeakKeyDictionary()


def split_table(result: ResultSet) -> SplitTable:
    """The split table of ``result``, computed once per loaded set."""
    kept = _KEPT.get(result)
    if kept is None:
        kept = split_frame(result.intervals, result.requests, result.manifest.stages)
        _KEPT[result] = kept
    return kept


def split_frame(
    intervals: pd.DataFrame, requests: pd.DataFrame, stages: tuple[Stage, ...]
) -> SplitTable:
    """Split every successful request of these stored tables (see :class:`SplitTable`)."""
    ok = requests.loc[requests["ok"].astype(bool), ["replicate", "request"]]
    every = _key(intervals["replicate"], intervals["request"])
    # A successful request with no interval at all has nothing to split: it is left out.
    keys = np.intersect1d(_key(ok["replicate"], ok["request"]), every)
    at = np.searchsorted(keys, every)
    found = at < len(keys)
    found[found] &= keys[at[found]] == every[found]
    taken = np.flatnonzero(found)
    # A stable sort keeps each request's rows in recorded order, which the reference reads.
    taken = taken[np.argsort(at[taken], kind="stable")]
    clean = _Clean(_Rows(intervals, taken, at[taken]), len(keys), stages)
    parts = [clean.tables()]
    odd: list[tuple[list[Interval], RequestSplit]] = []
    dirty = np.flatnonzero(~clean.ok)
    if len(dirty):
        chosen = np.isin(clean.row, dirty)
        rows = intervals.iloc[taken[chosen]].assign(_row=clean.row[chosen])
        parts.append(_reference(rows, stages, odd))
    replicate, request = keys >> 32, (keys & 0xFFFFFFFF) - (1 << 31)
    return _assemble(parts, replicate, request, clean.ok, tuple(odd))


def _key(replicate: pd.Series, request: pd.Series) -> np.ndarray:
    return (replicate.to_numpy(np.int64) << 32) | (request.to_numpy(np.int64) + (1 << 31))


class _Rows:
    """The intervals of the successful requests as numpy columns, strings as integer codes
    (read once: comparing codes is what makes a million rows cheap)."""

    def __init__(self, intervals: pd.DataFrame, taken: np.ndarray, row: np.ndarray) -> None:
        self.row = row
        self._codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name in ("kind", "stage", "category", "resource", "label"):
            codes, uniques = pd.factorize(intervals[name])
            self._codes[name] = (codes[taken], np.asarray(uniques, object))
        self._ints = {
            name: intervals[name].to_numpy(np.int64)[taken]
            for name in ("span", "parent", "start_ns", "end_ns", "nbytes", "thread", "cpu_ns")
        }

    def __getitem__(self, name: str) -> np.ndarray:
        return self._ints[name]

    def eq(self, name: str, value: str) -> np.ndarray:
        """Where string column ``name`` holds ``value``."""
        codes, uniques = self._codes[name]
        hits = np.flatnonzero(uniques == value)
        return codes == hits[0] if len(hits) else np.zeros(len(codes), bool)

    def isin(self, name: str, values: tuple[str, ...]) -> np.ndarray:
        codes, uniques = self._codes[name]
        return np.isin(codes, np.flatnonzero(np.isin(uniques, values)))

    def codes(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The codes of string column ``name``, and the strings they stand for."""
        return self._codes[name]


class _Clean:
    """The clean requests' split, and which requests are clean (``ok``)."""

    def __init__(self, rows: _Rows, n: int, stages: tuple[Stage, ...]) -> None:
        self.n, self.stages = n, stages
        self.row = rows.row
        self.is_probe, self.is_stage = rows.eq("kind", _PROBE), rows.eq("kind", _STAGE)
        self.start, self.end = rows["start_ns"], rows["end_ns"]
        self.rows = rows
        bad = np.zeros(n, bool)
        _mark(bad, self.row, rows.isin("kind", _ODD_KINDS) | (self.end < self.start))
        self._request_edges(bad)
        self._stage_matrix(bad)
        self._nesting(bad)
        self.ok = ~bad
        self._path()

    def _request_edges(self, bad: np.ndarray) -> None:
        is_request = self.rows.eq("kind", _REQUEST)
        count = np.bincount(self.row[is_request], minlength=self.n)
        bad |= count != 1
        arrival = np.zeros(self.n, np.int64)
        response = np.zeros(self.n, np.int64)
        arrival[self.row[is_request]] = self.start[is_request]
        response[self.row[is_request]] = self.end[is_request]
        self.arrival, self.response = arrival, response
        # Every interval but the request's own lies inside the request's window.
        inside = (self.start >= arrival[self.row]) & (self.end <= response[self.row])
        _mark(bad, self.row, ~inside & ~is_request)
        self.is_wait = self.rows.eq("kind", _WAIT)
        is_lag = self.is_wait & self.rows.eq("label", HARNESS_LAG)
        lags = np.bincount(self.row[is_lag], minlength=self.n)
        bad |= lags > 1
        sent = arrival.copy()
        sent[self.row[is_lag]] = self.end[is_lag]
        self.sent = sent

    def _stage_matrix(self, bad: np.ndarray) -> None:
        names = [s.name for s in self.stages]
        codes, uniques = self.rows.codes("stage")
        index = {name: i for i, name in enumerate(names)}
        mapped = np.array([index.get(u, -1) for u in uniques] + [-1], np.int64)
        self.stage_of = mapped[codes]  # -1: not a stage of the set (code -1 reads the last)
        S = len(names)
        _mark(bad, self.row, self.is_stage & (self.stage_of < 0))
        st = self.is_stage & (self.stage_of >= 0)
        r, s = self.row[st], self.stage_of[st]
        count = np.zeros((self.n, S), np.int64)
        np.add.at(count, (r, s), 1)
        bad |= (count > 1).any(axis=1) | (count.sum(axis=1) == 0)
        self.present = count > 0
        self.s_start = np.zeros((self.n, S), np.int64)
        self.s_end = np.full((self.n, S), _LOW, np.int64)
        self.s_thread = np.zeros((self.n, S), np.int64)
        self.s_cpu = np.full((self.n, S), -1, np.int64)
        self.s_start[r, s], self.s_end[r, s] = self.start[st], self.end[st]
        self.s_thread[r, s] = self.rows["thread"][st]
        cpu = self.rows["cpu_ns"][st]
        self.s_cpu[r, s] = np.where(cpu >= 0, cpu, -1)
        # A probe lies inside the stage interval its stage column names.
        p = self.is_probe
        named = self.stage_of[p]
        has = (named >= 0) & self.present[self.row[p], np.maximum(named, 0)]
        lo = self.s_start[self.row[p], np.maximum(named, 0)]
        hi = self.s_end[self.row[p], np.maximum(named, 0)]
        _mark(bad, self.row[p], ~has | (self.start[p] < lo) | (self.end[p] > hi))

    def _nesting(self, bad: np.ndarray) -> None:
        """Each probe's parent row and root stage; bad where a probe does not nest."""
        span, parent = self.rows["span"], self.rows["parent"]
        width = int(max(span.max(initial=0), parent.max(initial=0))) + 2
        code = self.row * width + span
        order = np.argsort(code, kind="stable")
        sorted_code = code[order]
        dup = sorted_code[1:] == sorted_code[:-1]
        _mark(bad, self.row[order[1:]], dup)
        p = np.flatnonzero(self.is_probe)
        wanted = self.row[p] * width + parent[p]
        at = np.minimum(np.searchsorted(sorted_code, wanted), len(order) - 1)
        hit = (len(order) > 0) & (sorted_code[at] == wanted) & (parent[p] >= 0)
        up = np.full(len(self.row), -1, np.int64)
        up[p[hit]] = order[at[hit]]
        _mark(bad, self.row[p], ~hit)
        up_ok = up[p] >= 0
        kinds_ok = np.zeros(len(p), bool)
        kinds_ok[up_ok] = self.is_probe[up[p][up_ok]] | self.is_stage[up[p][up_ok]]
        _mark(bad, self.row[p], ~kinds_ok)
        # Children inside their parent, and siblings (sorted by start, end) apart.
        child = p[kinds_ok]
        mother = up[child]
        _mark(
            bad,
            self.row[child],
            (self.start[child] < self.start[mother]) | (self.end[child] > self.end[mother]),
        )
        sib = child[np.lexsort((self.end[child], self.start[child], mother))]
        same = up[sib][1:] == up[sib][:-1]
        _mark(bad, self.row[sib[1:]], same & (self.start[sib][1:] < self.end[sib][:-1]))
        # The root stage of each probe, up its parents.
        root = up.copy()
        for _ in range(_MAX_DEPTH):
            climbing = (root >= 0) & ~self.is_stage[np.maximum(root, 0)]
            if not climbing.any():
                break
            root[climbing] = up[root[climbing]]
        else:
            _mark(bad, self.row, (root >= 0) & ~self.is_stage[np.maximum(root, 0)])
        self.up, self.root = up, root

    def _path(self) -> None:
        """The critical path of every request walked back from its sink, all at once."""
        n, S = self.n, len(self.stages)
        names = [s.name for s in self.stages]
        parents = np.zeros((S, S), bool)
        for i, stage in enumerate(self.stages):
            parents[i, [names.index(a) for a in stage.after if a in names]] = True
        end = np.where(self.present, self.s_end, _LOW)
        bad = ~self.ok
        sink = end.argmax(axis=1)
        bad |= (end == end.max(axis=1, keepdims=True)).sum(axis=1) > 1
        on_path = np.zeros((n, S), bool)
        step_of = np.full((n, S), -1, np.int64)
        queue = np.zeros(n, np.int64)
        handoff = np.zeros(n, np.int64)
        current, walking = sink.copy(), ~bad
        every = np.arange(S)
        for step in range(S + 1):
            idx = np.flatnonzero(walking)
            if not len(idx):
                break
            c = current[idx]
            bad[idx[on_path[idx, c]]] = True  # a cycle: only corrupt data gets here
            on_path[idx, c], step_of[idx, c] = True, step
            began = self.s_start[idx, c][:, None]
            thread = self.s_thread[idx, c][:, None]
            cand = self.present[idx] & (
                parents[c]
                | ((self.s_thread[idx] == thread) & (every != c[:, None]) & (end[idx] <= began))
            )
            ends = np.where(cand, end[idx], _LOW)
            best = ends.max(axis=1)
            has = cand.any(axis=1)
            bad[idx[(cand & (ends == best[:, None])).sum(axis=1) > 1]] = True
            gap = np.where(has, self.s_start[idx, c] - np.where(has, best, 0), 0)
            handoff[idx[has]] += gap[has]
            bad[idx[has & (gap < 0)]] = True
            done = idx[~has]
            queue[done] = self.s_start[done, current[done]] - self.sent[done]
            current[idx[has]] = ends.argmax(axis=1)[has]
            walking[done] = False
        bad |= walking
        lag = self.sent - self.arrival
        bad |= (queue < 0) | (lag < 0)
        bad |= end[np.arange(n), sink] != self.response
        self.on_path, self.step_of = on_path, step_of
        self.queue, self.handoff, self.lag = queue, handoff, lag
        self._covered(bad)
        self.ok = ~bad

    def _covered(self, bad: np.ndarray) -> None:
        """Bad where a wait on the path lies in no wait the runner recorded for it."""
        w = self.is_wait
        lag = self.rows.eq("label", HARNESS_LAG)[w]
        r, s = self.row[w], self.stage_of[w]
        lo, hi = self.start[w], self.end[w]
        ok_lag = np.zeros(self.n, bool)
        np.logical_or.at(
            ok_lag, r[lag], (lo[lag] <= self.arrival[r[lag]]) & (self.sent[r[lag]] <= hi[lag])
        )
        bad |= (self.lag != 0) & ~ok_lag
        # Each path stage's wait segment: from what enabled it (or the send) to its start.
        n, S = self.n, len(self.stages)
        seg_start, seg_end = self._segment_starts(), self.s_start
        covered = np.zeros((n, S), bool)
        keep = (s >= 0) & ~lag
        rk, sk = r[keep], s[keep]
        np.logical_or.at(
            covered, (rk, sk), (lo[keep] <= seg_start[rk, sk]) & (seg_end[rk, sk] <= hi[keep])
        )
        bad |= (self.on_path & ~covered).any(axis=1)

    def _segment_starts(self) -> np.ndarray:
        """Where each path stage's wait begins: its enabler's end, or the send for the first."""
        n, S = self.n, len(self.stages)
        starts = np.zeros((n, S), np.int64)
        order = np.argsort(-self.step_of, axis=1)  # the path from arrival to sink
        rows = np.arange(n)
        previous = self.sent.copy()
        for k in range(S):
            s = order[:, k]
            live = self.step_of[rows, s] >= 0
            starts[rows[live], s[live]] = previous[live]
            previous[live] = self.s_end[rows[live], s[live]]
        return starts

    def tables(self) -> tuple[pd.DataFrame, ...]:
        """The clean requests' rows of the four tables."""
        names = np.array([s.name for s in self.stages], object)
        ok_row = self.ok[self.row]
        # Own time: a probe's or stage's duration less its direct child probes'.
        child = np.flatnonzero(self.is_probe & ok_row)
        duration = self.end - self.start
        covered = np.bincount(self.up[child], weights=duration[child], minlength=len(self.row))
        own = duration - covered.astype(np.int64)
        stage_rows = np.flatnonzero(self.is_stage & ok_row)
        # A stage's own time is glue: unattributed. Strings stay codes until the sums are made.
        cat, cats = self.rows.codes("category")
        res, ress = self.rows.codes("resource")
        cats, ress = np.append(cats, UNATTRIBUTED), np.append(ress, "")
        glue = np.full(len(stage_rows), len(cats) - 1), np.full(len(stage_rows), len(ress) - 1)
        charges = pd.DataFrame(
            {
                "row": np.concatenate([self.row[child], self.row[stage_rows]]),
                "s": np.concatenate([self.stage_of[self.root[child]], self.stage_of[stage_rows]]),
                "c": np.concatenate([cat[child], glue[0]]),
                "r": np.concatenate([res[child], glue[1]]),
                "ns": np.concatenate([own[child], own[stage_rows]]),
            }
        )
        charges = charges[charges["ns"] > 0]
        charges = charges.groupby(["row", "s", "c", "r"], as_index=False, sort=True)["ns"].sum()
        charges["category"] = cats[charges.pop("c").to_numpy()]
        charges["resource"] = ress[charges.pop("r").to_numpy()]
        scheduled = child[self.rows.eq("category", _SCHEDULING)[child] & (own[child] > 0)]
        label, labels = self.rows.codes("label")
        labels = np.where(labels == "", "wait", labels)
        waits = (
            pd.DataFrame(
                {
                    "row": self.row[scheduled],
                    "s": self.stage_of[self.root[scheduled]],
                    "l": label[scheduled],
                    "ns": own[scheduled],
                }
            )
            .groupby(["row", "s", "l"], as_index=False, sort=True)["ns"]
            .sum()
        )
        waits["label"] = labels[waits.pop("l").to_numpy()]
        r, s = np.nonzero(self.present & self.ok[:, None])
        by_cat = charges.pivot_table(
            index=["row", "s"], columns="category", values="ns", aggfunc="sum"
        )
        by_cat = by_cat.reindex(pd.MultiIndex.from_arrays([r, s]), fill_value=0).fillna(0)
        probes = np.flatnonzero(self.is_probe & ok_row & (self.stage_of >= 0))
        moved = np.zeros((self.n, len(self.stages)), np.int64)
        nbytes = self.rows["nbytes"]
        np.add.at(moved, (self.row[probes], self.stage_of[probes]), np.maximum(nbytes[probes], 0))

        def column(category: str) -> np.ndarray:
            return (
                by_cat[category].to_numpy(np.int64)
                if category in by_cat
                else np.zeros(len(r), np.int64)
            )

        stages = pd.DataFrame(
            {
                "row": r,
                "s": s,
                "start_ns": self.s_start[r, s],
                "end_ns": self.s_end[r, s],
                "wall_ns": self.s_end[r, s] - self.s_start[r, s],
                "compute_ns": column(Category.COMPUTE.value),
                "movement_ns": column(Category.MOVEMENT.value),
                "scheduling_ns": column(_SCHEDULING),
                "unattributed_ns": column(UNATTRIBUTED),
                "nbytes": moved[r, s],
                "overlap_ns": np.zeros(len(r), np.int64),
                "cpu_ns": self.s_cpu[r, s],
                "thread": self.s_thread[r, s],
                "critical": self.on_path[r, s],
            }
        )
        for frame in (stages, charges, waits):
            index = frame.pop("s").to_numpy()
            if frame is not stages:
                frame["critical"] = self.on_path[frame["row"].to_numpy(), index]
            frame.insert(1, "stage", names[index])
        rows = np.flatnonzero(self.ok)
        # Requests share a few paths: each distinct one is spelled once.
        patterns, which = np.unique(self.step_of[rows], axis=0, return_inverse=True)
        spelled = []
        for steps in patterns:
            walked = np.argsort(-steps, kind="stable")
            spelled.append(" > ".join(names[walked[steps[walked] >= 0]]))
        paths = np.array(spelled, object)[which.reshape(-1)] if len(rows) else np.array([], object)
        on = self.on_path[rows]
        wall = self.s_end[rows] - self.s_start[rows]
        off = np.where(self.present[rows] & ~on, wall, 0).sum(axis=1)
        requests = pd.DataFrame(
            {
                "_row": rows,
                "arrival_ns": self.arrival[rows],
                "response_ns": self.response[rows],
                "lag_ns": self.lag[rows],
                "queue_ns": self.queue[rows],
                "handoff_ns": self.handoff[rows],
                "overlap_ns": off,
                "path": paths,
            }
        )
        return requests, stages, charges, waits


def _mark(bad: np.ndarray, row: np.ndarray, where: np.ndarray) -> None:
    """Mark bad every request that has a row where ``where`` holds."""
    bad[row[where]] = True


def _reference(
    rows: pd.DataFrame, stages: tuple[Stage, ...], odd: list[tuple[list[Interval], RequestSplit]]
) -> tuple[pd.DataFrame, ...]:
    """The rows of the requests not clean (``rows``, with their ``_row``), from the reference
    walk; each request's intervals and split are kept in ``odd``."""
    req_rows, stage_rows, charge_rows, wait_rows = [], [], [], []
    for key, group in rows.groupby("_row", sort=True):
        row = int(cast(int, key))
        intervals = frame_intervals(group)
        split = split_request(intervals, stages, int(group["replicate"].iloc[0]))
        odd.append((intervals, split))
        req_rows.append(_request_row(int(row), split))
        critical = set(split.critical_stages)
        for s in split.stages:
            on = s.stage in critical
            stage_rows.append(
                (
                    int(row),
                    s.stage,
                    s.start_ns,
                    s.end_ns,
                    s.wall_ns,
                    s.compute_ns,
                    s.movement_ns,
                    s.scheduling_ns,
                    s.unattributed_ns,
                    s.nbytes,
                    s.overlap_ns,
                    s.cpu_ns,
                    _thread(intervals, s.stage),
                    on,
                )
            )
            charge_rows += [(int(row), s.stage, c, r, ns, on) for (c, r), ns in s.by_resource if ns]
            wait_rows += [(int(row), s.stage, label, ns, on) for label, ns in s.waits if ns]
    requests = pd.DataFrame(
        req_rows,
        columns=[
            "_row",
            "arrival_ns",
            "response_ns",
            "lag_ns",
            "queue_ns",
            "handoff_ns",
            "overlap_ns",
            "path",
        ],
    )
    return (
        requests,
        pd.DataFrame(stage_rows, columns=STAGE_COLUMNS),
        pd.DataFrame(charge_rows, columns=CHARGE_COLUMNS),
        pd.DataFrame(wait_rows, columns=WAIT_COLUMNS),
    )


def _thread(intervals: list[Interval], stage: str) -> int:
    return next(iv.thread for iv in intervals if iv.kind == _STAGE and iv.stage == stage)


def _request_row(row: int, split: RequestSplit) -> tuple:
    return (
        row,
        split.arrival_ns,
        split.response_ns,
        split.wait_ns(SegmentKind.LAG.value),
        split.wait_ns(SegmentKind.QUEUE.value),
        split.wait_ns(SegmentKind.HANDOFF.value),
        split.overlap_ns,
        " > ".join(split.critical_stages),
    )


_TYPES = {"row": "int64", "ns": "int64", "critical": "bool"}


def _assemble(
    parts: list[tuple[pd.DataFrame, ...]],
    replicate: np.ndarray,
    request: np.ndarray,
    clean: np.ndarray,
    odd: tuple[tuple[list[Interval], RequestSplit], ...],
) -> SplitTable:
    requests, stages, charges, waits = (
        pd.concat([p[i] for p in parts], ignore_index=True) for i in range(4)
    )

    def by_row(frame: pd.DataFrame) -> pd.DataFrame:
        # The clean part comes in row order; only the reference's rows need placing among it.
        if len(parts) == 1:
            return frame
        return frame.iloc[np.argsort(frame["row"].to_numpy(), kind="stable")].reset_index(drop=True)

    requests = by_row(requests.rename(columns={"_row": "row"})).rename(columns={"row": "_row"})
    requests.insert(0, "replicate", replicate[requests["_row"].to_numpy()])
    requests.insert(1, "request", request[requests["_row"].to_numpy()])
    requests["latency_ns"] = requests["response_ns"] - requests["arrival_ns"]
    requests["clean"] = clean[requests.pop("_row").to_numpy()].astype(bool)
    requests["path"] = requests["path"].astype(object)
    return SplitTable(
        requests[SPLIT_COLUMNS].astype({c: "int64" for c in SPLIT_COLUMNS[:9]}),
        by_row(stages)[STAGE_COLUMNS],
        by_row(charges)[CHARGE_COLUMNS].astype(_TYPES),
        by_row(waits)[WAIT_COLUMNS].astype(_TYPES),
        odd,
    )
