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
import itertools
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd

from harness.analysis.attribution import RequestSplit, split_request, table_rows
from harness.analysis.clean import Clean
from harness.analysis.rows import Rows
from harness.archive.result_set import ResultSet
from harness.archive.tables import frame_intervals, request_keys
from harness.record.probes import Interval
from harness.words import (
    HARNESS_LAG,
    SEGMENT_WAITS,
    Category,
    Kind,
    Resource,
    SegmentKind,
)
from harness.workload import Stage

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
CHUNK_REQUESTS = 8192  # requests split together: a few MB of temporaries


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
        wait = (Category.SCHEDULING.value, Resource.WAIT.value)
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
        on = frame["critical"].to_numpy()
        # One integer code per column of the result, then one bincount per column: a groupby
        # and unstack over hundreds of thousands of rows cost ten times more.
        code = np.zeros(int(on.sum()), np.int64)
        uniques = []
        for name in by:
            codes, values = pd.factorize(frame[name].to_numpy()[on], sort=True)
            code = code * len(values) + codes
            uniques.append(np.asarray(values, object))
        present = np.unique(code)
        n, rows, ns = len(self.requests), frame["row"].to_numpy()[on], frame["ns"].to_numpy()[on]
        sums = {}
        for value in present.tolist():
            spelled, rest = [], value
            for values in reversed(uniques):
                spelled.append(values[rest % len(values)])
                rest //= len(values)
            mine = code == value
            column = tuple(spelled[::-1]) if len(by) > 1 else spelled[0]
            sums[column] = np.bincount(rows[mine], weights=ns[mine], minlength=n)
        wide = pd.DataFrame(sums, index=pd.RangeIndex(n, name="row"))
        if len(by) > 1:
            wide.columns = pd.MultiIndex.from_tuples(list(sums)) if sums else wide.columns
        return wide


_KEPT: weakref.WeakKeyDictionary[ResultSet, SplitTable] = weakref.WeakKeyDictionary()


def split_table(result: ResultSet) -> SplitTable:
    """The split table of ``result``, computed once per loaded set, a block of its stored
    intervals at a time."""
    kept = _KEPT.get(result)
    if kept is None:
        blocks = result.interval_table.blocks()
        kept = split_frame(blocks, result.requests, result.manifest.stages)
        _KEPT[result] = kept
    return kept


def split_frame(
    intervals: pd.DataFrame | Iterable[pd.DataFrame],
    requests: pd.DataFrame,
    stages: tuple[Stage, ...],
) -> SplitTable:
    """Split every successful request of these stored tables (see :class:`SplitTable`).

    ``intervals``: the table, or its blocks, each holding every interval of its requests."""
    ok = requests.loc[requests["ok"].astype(bool), ["replicate", "request"]]
    wanted = np.unique(request_keys(ok["replicate"], ok["request"]))
    blocks = [intervals] if isinstance(intervals, pd.DataFrame) else intervals
    split = _Split(stages)
    for block in blocks:
        split.add(block, wanted)
    return split.table()


class _Split:
    """The split table's parts, gathered a block of stored intervals at a time."""

    def __init__(self, stages: tuple[Stage, ...]) -> None:
        self.stages = stages
        self.keys: list[np.ndarray] = []
        self.seen = _Seen()  # every request key of the blocks so far
        self.parts: list[tuple[pd.DataFrame, ...]] = []
        self.cleaned: list[np.ndarray] = []
        self.odd: list[tuple[int, list[Interval], RequestSplit]] = []
        self.count = 0  # requests so far: the next block's rows count from here

    def add(self, intervals: pd.DataFrame, wanted: np.ndarray) -> None:
        """Split the wanted requests (keys) of one block of intervals."""
        every = request_keys(intervals["replicate"], intervals["request"])
        if not self.seen.add(np.unique(every)):
            # Blocks hold whole requests: half of one would be split as if it were all.
            raise RuntimeError("a request's intervals came in more than one block")
        # A successful request with no request interval (none at all, or a corrupt table) has
        # nothing to split from: it is left out.
        recorded = every[(intervals["kind"] == Kind.REQUEST.value).to_numpy()]
        keys = np.intersect1d(wanted, recorded)
        at = np.searchsorted(keys, every)
        found = at < len(keys)
        found[found] &= keys[at[found]] == every[found]
        taken = np.flatnonzero(found)
        # A stable sort keeps each request's rows in recorded order, which the reference reads.
        taken = taken[np.argsort(at[taken], kind="stable")]
        # A few requests at a time: the checks' temporaries grow with the chunk, not the set.
        # (An empty block still gives its empty tables: a set may have nothing to split.)
        firsts = np.arange(0, max(len(keys), 1), CHUNK_REQUESTS).tolist()
        edges = np.searchsorted(at[taken], np.append(firsts, len(keys))).tolist()
        for first, (lo, hi) in zip(firsts, itertools.pairwise(edges), strict=True):
            mine = taken[lo:hi]
            n = min(len(keys) - first, CHUNK_REQUESTS)
            clean = Clean(Rows(intervals, mine, at[mine] - first), n, self.stages)
            base = self.count + first
            self.parts.append(_shifted(clean.tables(), base))
            self.cleaned.append(clean.ok)
            dirty = np.flatnonzero(~clean.ok)
            if len(dirty):
                chosen = np.isin(clean.row, dirty)
                rows = intervals.iloc[mine[chosen]].assign(_row=clean.row[chosen] + base)
                self.parts.append(_reference(rows, self.stages, self.odd))
        self.keys.append(keys)
        self.count += len(keys)

    def table(self) -> SplitTable:
        keys = np.concatenate(self.keys) if self.keys else np.zeros(0, np.int64)
        clean = np.concatenate(self.cleaned) if self.cleaned else np.zeros(0, bool)
        odd, parts = self.odd, self.parts
        if len(keys) > 1 and not (keys[1:] > keys[:-1]).all():
            # Blocks came out of (replicate, request) order: every row is renumbered.
            order = np.argsort(keys, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(len(order))
            for part in parts:
                for frame in part:
                    key = "_row" if "_row" in frame else "row"
                    frame[key] = rank[frame[key].to_numpy()]
            keys, clean = keys[order], clean[order]
            odd = [(int(rank[row]), intervals, split) for row, intervals, split in odd]
        kept = tuple((intervals, split) for _, intervals, split in sorted(odd, key=_first))
        replicate, request = keys >> 32, (keys & 0xFFFFFFFF) - (1 << 31)
        return _assemble(parts, replicate, request, clean, kept)


class _Seen:
    """The request keys of the blocks so far, each block checked against them at a cost that
    grows with the block, not with the blocks before it."""

    def __init__(self) -> None:
        self.top: int | None = None  # the largest key so far
        self.ordered: list[np.ndarray] = []  # each block's keys, while blocks come in order
        self.hashed: set[int] | None = None  # every key, once a block came out of order

    def add(self, keys: np.ndarray) -> bool:
        """Take a block's keys (sorted, each once); False when one came in an earlier block."""
        if not len(keys):
            return True
        if self.hashed is None and (self.top is None or int(keys[0]) > self.top):
            # Blocks in key order (the usual case) are checked by their first key alone.
            self.ordered.append(keys)
        else:
            if self.hashed is None:  # out of order, a range says nothing: look keys up
                self.hashed = set(np.concatenate(self.ordered).tolist())
                self.ordered = []
            fresh = keys.tolist()
            if not self.hashed.isdisjoint(fresh):
                return False
            self.hashed.update(fresh)
        last = int(keys[-1])
        self.top = last if self.top is None else max(self.top, last)
        return True


def _first(item: tuple) -> int:
    return item[0]


def _shifted(tables: tuple[pd.DataFrame, ...], base: int) -> tuple[pd.DataFrame, ...]:
    """A block's tables with their rows counted from the set's first request."""
    for frame in tables:
        key = "_row" if "_row" in frame else "row"
        frame[key] += base
    return tables


def _reference(
    rows: pd.DataFrame,
    stages: tuple[Stage, ...],
    odd: list[tuple[int, list[Interval], RequestSplit]],
) -> tuple[pd.DataFrame, ...]:
    """The rows of the requests not clean (``rows``, with their ``_row``), from the reference
    walk; each request's row, intervals and split are kept in ``odd``."""
    req_rows, stage_rows, charge_rows, wait_rows = [], [], [], []
    for key, group in rows.groupby("_row", sort=True):
        row = int(cast(int, key))
        intervals = frame_intervals(group)
        split = split_request(intervals, stages, int(group["replicate"].iloc[0]))
        odd.append((row, intervals, split))
        request, stage, charges, waits = table_rows(row, split, intervals)
        req_rows.append(request)
        stage_rows += stage
        charge_rows += charges
        wait_rows += waits
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


_TYPES = {"row": "int64", "ns": "int64", "critical": "bool"}


def _assemble(
    parts: list[tuple[pd.DataFrame, ...]],
    replicate: np.ndarray,
    request: np.ndarray,
    clean: np.ndarray,
    odd: tuple[tuple[list[Interval], RequestSplit], ...],
) -> SplitTable:
    # Each table's parts, let go of as soon as they are joined (the caller's list too).
    pieces = [[p[i] for p in parts] for i in range(4)]
    parts.clear()

    def joined(i: int) -> pd.DataFrame:
        """Table ``i`` of every part in one frame, in row order."""
        frame = pd.concat(pieces[i], ignore_index=True)
        pieces[i] = []
        key = "_row" if "_row" in frame else "row"
        rows = frame[key].to_numpy()
        # The clean chunks come in row order; only the reference's rows need placing.
        if (rows[1:] >= rows[:-1]).all():
            return frame
        return frame.iloc[np.argsort(rows, kind="stable")].reset_index(drop=True)

    requests, stages, charges, waits = (joined(i) for i in range(4))

    requests.insert(0, "replicate", replicate[requests["_row"].to_numpy()])
    requests.insert(1, "request", request[requests["_row"].to_numpy()])
    requests["latency_ns"] = requests["response_ns"] - requests["arrival_ns"]
    requests["clean"] = clean[requests.pop("_row").to_numpy()].astype(bool)
    requests["path"] = requests["path"].astype(object)
    return SplitTable(
        requests[SPLIT_COLUMNS].astype({c: "int64" for c in SPLIT_COLUMNS[:9]}),
        stages[STAGE_COLUMNS],
        charges[CHARGE_COLUMNS].astype(_TYPES),
        waits[WAIT_COLUMNS].astype(_TYPES),
        odd,
    )
