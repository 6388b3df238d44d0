"""The per-stage breakdown of a set, read from its splits: wall percentiles and the category
split per stage, the waits on the critical path, and each category's share of the time."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from harness.analysis.splits import request_splits
from harness.analysis.stats import Percentiles
from harness.archive.store import ResultSet
from harness.words import BUCKETS, SEGMENT_WAITS, SegmentKind


def stage_table(result: ResultSet) -> pd.DataFrame:
    """One row per stage plus the waits between stages: wall percentiles and the category split.

    Category columns are medians over requests; ``share`` is the stage's time on the critical
    path over all end-to-end time (so the rows' shares add up to 1 with the waits).
    """
    splits = request_splits(result)
    total_ns = sum(s.latency_ns for s in splits) or 1
    rows = []
    for stage in result.manifest.stages:
        per = [
            (r, r.stage(stage.name)) for r in splits if any(s.stage == stage.name for s in r.stages)
        ]
        wall = np.array([s.wall_ns for _, s in per], dtype=float) / 1e9
        pct = Percentiles.of(wall)
        critical = sum(s.wall_ns for r, s in per if stage.name in r.critical_stages)
        measured = sum(s.measured_ns for _, s in per)
        cpu = [s.cpu_ns for _, s in per if s.cpu_ns >= 0]
        rows.append(
            {
                "stage": stage.name,
                "layer": stage.layer,
                "wall_p50_ms": pct.p50 * 1e3,
                "wall_p90_ms": pct.p90 * 1e3,
                "wall_p99_ms": pct.p99 * 1e3,
                "compute_ms": _median_ms([s.compute_ns for _, s in per]),
                "movement_ms": _median_ms([s.movement_ns for _, s in per]),
                "scheduling_ms": _median_ms([s.scheduling_ns for _, s in per]),
                "unattributed_ms": _median_ms([s.unattributed_ns for _, s in per]),
                "on_cpu_ms": _median_ms(cpu),
                "bytes_moved": float(np.median([s.nbytes for _, s in per])) if per else 0.0,
                "share": critical / total_ns,
                "coverage": measured / max(sum(s.wall_ns for _, s in per), 1),
            }
        )
    for kind in (SegmentKind.LAG.value, SegmentKind.QUEUE.value, SegmentKind.HANDOFF.value):
        waits = [r.wait_ns(kind) for r in splits]
        if kind == SegmentKind.LAG.value and not any(waits):
            continue  # a closed loop has no schedule to fall behind
        rows.append(
            {
                "stage": SEGMENT_WAITS[kind],
                "layer": "",
                "wall_p50_ms": _median_ms(waits),
                "scheduling_ms": _median_ms(waits),
                "share": sum(waits) / total_ns,
                "coverage": 1.0,
            }
        )
    return pd.DataFrame(rows)


def wait_table(result: ResultSet) -> pd.DataFrame:
    """Scheduling along the critical path by kind: lag, queue, handoff, and each named wait."""
    splits = request_splits(result)
    total_ns = sum(s.latency_ns for s in splits) or 1
    per_request = [split.waits() for split in splits]
    kinds = sorted({kind for waits in per_request for kind in waits})
    rows = []
    for kind in kinds:
        values = [waits.get(kind, 0) for waits in per_request]
        rows.append(
            {
                "wait": kind,
                "median_ms": _median_ms(values),
                "p90_ms": float(np.percentile(values, 90)) / 1e6,
                "share": sum(values) / total_ns,
            }
        )
    return pd.DataFrame(rows, columns=["wait", "median_ms", "p90_ms", "share"])


def _median_ms(values_ns: list[int]) -> float:
    return float(np.median(values_ns)) / 1e6 if values_ns else float("nan")


def end_to_end(result: ResultSet) -> Percentiles:
    ok = result.requests.loc[result.requests["ok"], "latency_s"].to_numpy(dtype=float)
    return Percentiles.of(ok)


def category_shares(result: ResultSet) -> dict[tuple[str, str], float]:
    """Share of all end-to-end time per (category, resource), along each critical path."""
    splits = request_splits(result)
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for split in splits:
        for key, ns in split.by_resource().items():
            totals[key] += ns
    whole = sum(s.latency_ns for s in splits) or 1
    return {key: ns / whole for key, ns in sorted(totals.items())}


def bucket_shares(result: ResultSet) -> dict[str, float]:
    """Share of all end-to-end time per bucket: the categories, unattributed, harness lag."""
    shares = dict.fromkeys(BUCKETS, 0.0)
    for (category, _), share in category_shares(result).items():
        shares[category] += share
    return shares
