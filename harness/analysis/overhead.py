"""What measuring cost a set, read from it: probes per request times one probe's cost as a share
of p50, and the progress bar's and the telemetry sampler's own time."""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.archive.result_set import ResultSet
from harness.archive.tables import request_keys
from harness.words import Kind


@dataclass(frozen=True)
class Overhead:
    """The cost of measuring, as shares of what was measured."""

    probes_per_request: float
    probe_cost_ns: float
    share_of_p50: float  # probes per request x probe cost / p50
    progress_share: float | None  # the progress bar's time over the measured time
    sampler_cpu_share: float | None  # the telemetry sampler's CPU time over the measured time


def probes_per_request(intervals: pd.DataFrame) -> float:
    """Median number of intervals a request records: probes, stages, branches, waits, itself.

    Device intervals and asyncio slices are left out: they are not probes the code opens.
    """
    counted = ~intervals["kind"].isin((Kind.DEVICE.value, Kind.SLICE.value)).to_numpy()
    # One int64 key a row, not a copy of the table and a groupby over it.
    keys = request_keys(intervals["replicate"], intervals["request"])[counted]
    _, per = np.unique(keys, return_counts=True)
    return float(np.median(per)) if len(per) else 0.0


_COUNTED: weakref.WeakKeyDictionary[ResultSet, float] = weakref.WeakKeyDictionary()


def _probes_per_request(result: ResultSet) -> float:
    """:func:`probes_per_request` of a set, read once (the summary and the verdict both ask)."""
    if result not in _COUNTED:
        columns = result.interval_table.frame(["kind", "replicate", "request"])
        _COUNTED[result] = probes_per_request(columns)
    return _COUNTED[result]


def overhead(result: ResultSet, p50_s: float) -> Overhead | None:
    """The set's cost of measuring; None without a probe cost or a p50 to weigh it against."""
    manifest = result.manifest
    costs = [r.probe_cost_ns for r in manifest.replicates if r.probe_cost_ns]
    if not costs or not p50_s or math.isnan(p50_s):
        return None
    per_request = _probes_per_request(result)
    cost_ns = float(np.median(costs))
    replicates = manifest.replicates
    measured = sum(r.measured_s for r in replicates)
    # A share only where every replicate recorded it: older sets kept neither figure.
    drawn = [r.progress_s for r in replicates if r.progress_s is not None]
    sampled = [r.telemetry_cost.cpu_s for r in replicates if r.telemetry_cost is not None]
    return Overhead(
        probes_per_request=per_request,
        probe_cost_ns=cost_ns,
        share_of_p50=per_request * cost_ns / (p50_s * 1e9),
        progress_share=sum(drawn) / measured
        if measured and len(drawn) == len(replicates)
        else None,
        sampler_cpu_share=(
            sum(sampled) / measured if measured and len(sampled) == len(replicates) else None
        ),
    )
