"""A result set as the library hands it out (its manifest, and its tables read as asked), and
as `gapbench results` lists it."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.archive.intervals import Intervals
from harness.archive.schema import FailedRun, Manifest


@dataclass(frozen=True, eq=False)
class ResultSet:
    """An archived result set as a library user gets it: the manifest, its intervals (read in
    parts as readers ask) and its other tables as pandas DataFrames.

    Compared by identity: statistics computed from a loaded set are kept per object."""

    manifest: Manifest
    interval_table: Intervals  # read in parts as asked (``intervals`` reads it whole)
    requests: pd.DataFrame
    telemetry: pd.DataFrame | None = None  # samples taken while requests were timed
    queries: pd.DataFrame | None = None  # each query LoadGen scheduled (a run under LoadGen)
    operators: pd.DataFrame | None = None  # what a profiling pass saw (harness.measure.operators)

    def __post_init__(self) -> None:
        if not isinstance(self.interval_table, Intervals):  # a DataFrame: ResultSet.of wraps it
            raise TypeError("a ResultSet's intervals are an Intervals; build one with .of()")

    @classmethod
    def of(
        cls,
        manifest: Manifest,
        intervals: pd.DataFrame,
        requests: pd.DataFrame,
        telemetry: pd.DataFrame | None = None,
        queries: pd.DataFrame | None = None,
        operators: pd.DataFrame | None = None,
    ) -> ResultSet:
        """A set held in memory (built by a test, or sliced from another set)."""
        return cls(manifest, Intervals(intervals), requests, telemetry, queries, operators)

    @property
    def intervals(self) -> pd.DataFrame:
        """Every interval, read whole once; readers that need less ask ``interval_table``."""
        return self.interval_table.frame()

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def complete(self) -> bool:
        return self.manifest.complete


@dataclass(frozen=True)
class Listing:
    """One entry of ``gapbench results``: a committed manifest, or why there is none."""

    id: str
    manifest: Manifest | None
    problem: str = ""  # e.g. no manifest (the run was killed), or a corrupt one
    failed: FailedRun | None = None  # its workload failed before any replicate finished

    @property
    def requests(self) -> int:
        """Requests measured over every replicate (0 without a manifest)."""
        if self.manifest is None:
            return 0
        return sum(r.requests_measured for r in self.manifest.replicates)
