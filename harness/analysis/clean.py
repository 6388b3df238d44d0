"""The vectorised half of the split table: which requests are clean, and their rows.

A clean request passes, in columns, the checks DESIGN.md's invariants make (see
``harness.analysis.columns``); its split is then arithmetic over numpy arrays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.analysis.rows import Rows
from harness.record.spans import HOST_COMPUTE
from harness.words import HARNESS_LAG, OFF_CPU, UNATTRIBUTED, Category, Kind, Resource
from harness.workload import Stage

_PROBE, _STAGE, _REQUEST, _WAIT = (
    k.value for k in (Kind.PROBE, Kind.STAGE, Kind.REQUEST, Kind.WAIT)
)
_ODD_KINDS = (Kind.BRANCH.value, Kind.SLICE.value, Kind.DEVICE.value)
_SCHEDULING = Category.SCHEDULING.value
_WAIT = Resource.WAIT.value
_LOW = np.iinfo(np.int64).min
_MAX_DEPTH = 64  # deeper probe nesting than this is split by the reference walk


class Clean:
    """The clean requests' split, and which requests are clean (``ok``)."""

    def __init__(self, rows: Rows, n: int, stages: tuple[Stage, ...]) -> None:
        self.n, self.stages = n, stages
        self.row = rows.row
        self.is_probe, self.is_stage = rows.eq("kind", _PROBE), rows.eq("kind", _STAGE)
        self.start, self.end = rows["start_ns"], rows["end_ns"]
        self.rows = rows
        bad = np.zeros(n, bool)
        odd = rows.isin("kind", _ODD_KINDS) | (self.end < self.start) | rows.missing()
        _mark(bad, self.row, odd)
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

    def _off_cpu(self, child: np.ndarray, duration: np.ndarray, own: np.ndarray) -> np.ndarray:
        """Each row's own off-CPU time: a host compute probe's wall less its thread's CPU time,
        less its nested probes' (``harness.record.spans.SpanTree.off_cpu`` says the rules)."""
        cpu = self.rows["cpu_ns"]
        outside = np.maximum(duration - cpu, 0)
        n = len(self.row)
        nested = np.bincount(self.up[child], weights=outside[child], minlength=n)
        blind = np.bincount(self.up[child], weights=cpu[child] < 0, minlength=n) > 0
        eligible = (
            self.is_probe
            & self.rows.eq("category", Category.COMPUTE.value)
            & self.rows.isin("resource", HOST_COMPUTE)
            & self.rows.eq("task", "")
            & (cpu >= 0)
            & ~blind
        )
        off = (duration - cpu) - nested.astype(np.int64)
        return np.where(eligible, np.clip(off, 0, np.maximum(own, 0)), 0)

    def tables(self) -> tuple[pd.DataFrame, ...]:
        """The clean requests' rows of the four tables."""
        names = np.array([s.name for s in self.stages], object)
        ok_row = self.ok[self.row]
        # Own time: a probe's or stage's duration less its direct child probes'.
        child = np.flatnonzero(self.is_probe & ok_row)
        duration = self.end - self.start
        covered = np.bincount(self.up[child], weights=duration[child], minlength=len(self.row))
        own = duration - covered.astype(np.int64)
        off = self._off_cpu(child, duration, own)[child]
        stage_rows = np.flatnonzero(self.is_stage & ok_row)
        # A stage's own time is glue: unattributed. Strings stay codes until the sums are made.
        cat, cats = self.rows.codes("category")
        res, ress = self.rows.codes("resource")
        cats, glue_cat = _with(cats, UNATTRIBUTED)
        ress, glue_res = _with(ress, "")
        cats, waiting = _with(cats, _SCHEDULING)
        ress, wait = _with(ress, _WAIT)
        S = len(self.stages)
        spent = np.flatnonzero(off > 0)  # the probes whose thread was off the CPU a while
        at_stage = self.stage_of[self.root[child]]
        charges, (c_code, r_code) = _summed(
            np.concatenate([self.row[child], self.row[stage_rows], self.row[child[spent]]]),
            np.concatenate([at_stage, self.stage_of[stage_rows], at_stage[spent]]),
            np.concatenate([own[child] - off, own[stage_rows], off[spent]]),
            S,
            (
                np.concatenate(
                    [cat[child], np.full(len(stage_rows), glue_cat), np.full(len(spent), waiting)]
                ),
                len(cats),
            ),
            (
                np.concatenate(
                    [res[child], np.full(len(stage_rows), glue_res), np.full(len(spent), wait)]
                ),
                len(ress),
            ),
        )
        charges["category"] = _strings(cats[c_code])
        charges["resource"] = _strings(ress[r_code])
        scheduled = child[self.rows.eq("category", _SCHEDULING)[child] & (own[child] > 0)]
        label, labels = self.rows.codes("label")
        labels = np.where(labels == "", "wait", labels)
        labels, off_cpu = _with(labels, OFF_CPU)
        waits, (l_code,) = _summed(
            np.concatenate([self.row[scheduled], self.row[child[spent]]]),
            np.concatenate([self.stage_of[self.root[scheduled]], at_stage[spent]]),
            np.concatenate([own[scheduled], off[spent]]),
            S,
            (np.concatenate([label[scheduled], np.full(len(spent), off_cpu)]), len(labels)),
        )
        waits["label"] = _strings(labels[l_code])
        r, s = np.nonzero(self.present & self.ok[:, None])
        # Per stage row, the ns of each category: one bincount per category over row * S + s.
        flat = charges["row"].to_numpy() * S + charges["s"].to_numpy()
        ns = charges["ns"].to_numpy()
        probes = np.flatnonzero(self.is_probe & ok_row & (self.stage_of >= 0))
        moved = np.zeros((self.n, len(self.stages)), np.int64)
        nbytes = self.rows["nbytes"]
        np.add.at(moved, (self.row[probes], self.stage_of[probes]), np.maximum(nbytes[probes], 0))

        def column(category: str) -> np.ndarray:
            mine = np.isin(c_code, np.flatnonzero(cats == category))
            sums = np.bincount(flat[mine], weights=ns[mine], minlength=self.n * S)
            return sums[r * S + s].astype(np.int64)

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
            frame.insert(1, "stage", _strings(names[index]))
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


def _with(uniques: np.ndarray, value: str) -> tuple[np.ndarray, int]:
    """``uniques`` holding ``value``, and its code: one code a string, so a sum per string is
    one row."""
    hits = np.flatnonzero(uniques == value)
    if len(hits):
        return uniques, int(hits[0])
    return np.append(uniques, value), len(uniques)


def _summed(
    row: np.ndarray, stage: np.ndarray, ns: np.ndarray, stages: int, *codes: tuple[np.ndarray, int]
) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """The positive ``ns`` summed per (row, stage, code, ...), sorted so: a frame of ``row``,
    ``s`` and ``ns``, and each code column (given with how many values it takes) per sum.

    One int64 key a row and one sort: a groupby over four columns costs several times the time
    and memory."""
    keep = ns > 0
    key = row[keep].astype(np.int64) * stages + stage[keep]
    for values, size in codes:
        key = key * size + values[keep]
    keys, which = np.unique(key, return_inverse=True)
    # Float sums are exact below 2**53 ns (104 days) a group.
    total = np.bincount(which.reshape(-1), weights=ns[keep], minlength=len(keys))
    decoded = []
    for _, size in reversed(codes):
        decoded.append(keys % size)
        keys = keys // size
    frame = pd.DataFrame({"row": keys // stages, "s": keys % stages, "ns": total.astype(np.int64)})
    return frame, decoded[::-1]


def _strings(values: np.ndarray) -> pd.Series:
    """Strings kept as Python objects: a pointer a row to a few shared strings, where pandas
    would otherwise copy every row into an Arrow string buffer."""
    return pd.Series(values, dtype=object, copy=False)


def _mark(bad: np.ndarray, row: np.ndarray, where: np.ndarray) -> None:
    """Mark bad every request that has a row where ``where`` holds."""
    bad[row[where]] = True
