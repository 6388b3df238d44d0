"""Every successful request of a set, split once per load: its replicate, raw intervals and split.

A loaded set is immutable, so what is read from its tables is kept per object: `show`, `project`
and `compare` ask for the same splits many times, and get them computed once.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import pandas as pd

from harness.analysis.attribution import RequestSplit, split_request
from harness.archive.store import ResultSet
from harness.archive.tables import frame_intervals
from harness.record.probes import Interval


@dataclass(frozen=True)
class Split:
    """One successful request: its raw intervals and its split (which knows its replicate)."""

    intervals: list[Interval]
    split: RequestSplit

    @property
    def replicate(self) -> int:
        return self.split.replicate


_KEPT: weakref.WeakKeyDictionary[ResultSet, list[Split]] = weakref.WeakKeyDictionary()


def ok_requests(
    intervals: pd.DataFrame, requests: pd.DataFrame
) -> Iterator[tuple[int, list[Interval]]]:
    """(replicate, raw intervals) of every successful request, in (replicate, request) order."""
    ok = requests.loc[requests["ok"]]
    wanted = set(zip(ok["replicate"], ok["request"], strict=True))
    for key, group in intervals.groupby(["replicate", "request"]):
        replicate, request = cast(tuple[int, int], key)
        if (replicate, request) in wanted:
            yield int(replicate), frame_intervals(group)


def splits(result: ResultSet) -> list[Split]:
    """Every successful request of ``result``, split, in (replicate, request) order."""
    kept = _KEPT.get(result)
    if kept is None:
        stages = result.manifest.stages
        kept = [
            Split(rows, split_request(rows, stages, replicate))
            for replicate, rows in ok_requests(result.intervals, result.requests)
        ]
        _KEPT[result] = kept
    return kept


def request_splits(result: ResultSet) -> list[RequestSplit]:
    """The split of every successful request, in (replicate, request) order."""
    return [s.split for s in splits(result)]
