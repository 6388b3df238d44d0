"""The per-stage breakdown of a set, read from its splits: wall percentiles and the category
split per stage, the waits on the critical path, and each category's share of the time."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pandas as pd

from harness.analysis.columns import split_table
from harness.analysis.stats import Percentiles
from harness.archive.result_set import ResultSet
from harness.words import BUCKETS, SEGMENT_WAITS, SegmentKind


def stage_table(result: ResultSet) -> pd.DataFrame:
    """One row per stage plus the waits between stages: wall percentiles and the category split.

    Category columns are medians over requests; ``share`` is the stage's time on the critical
    path over all end-to-end time (so the rows' shares add up to 1 with the waits).
    """
    table = split_table(result)
    total_ns = int(table.requests["latency_ns"].sum()) or 1
    by_stage = dict(tuple(table.stages.groupby("stage", sort=False)))
    rows = []
    for stage in result.manifest.stages:
        per = by_stage.get(stage.name, table.stages.iloc[:0])
        pct = Percentiles.of(per["wall_ns"].to_numpy(dtype=float) / 1e9)
        measured = per[["compute_ns", "movement_ns", "scheduling_ns"]].to_numpy().sum()
        cpu = per["cpu_ns"].to_numpy()
        rows.append(
            {
                "stage": stage.name,
                "layer": stage.layer,
                "wall_p50_ms": pct.p50 * 1e3,
                "wall_p90_ms": pct.p90 * 1e3,
                "wall_p99_ms": pct.p99 * 1e3,
                "compute_ms": _median_ms(per["compute_ns"]),
                "movement_ms": _median_ms(per["movement_ns"]),
                "scheduling_ms": _median_ms(per["scheduling_ns"]),
                "unattributed_ms": _median_ms(per["unattributed_ns"]),
                "on_cpu_ms": _median_ms(cpu[cpu >= 0]),
                "bytes_moved": float(np.median(per["nbytes"])) if len(per) else 0.0,
                "share": int(per.loc[per["critical"], "wall_ns"].sum()) / total_ns,
                "coverage": measured / max(int(per["wall_ns"].sum()), 1),
            }
        )
    for kind, column in (("lag", "lag_ns"), ("queue", "queue_ns"), ("handoff", "handoff_ns")):
        waits = table.requests[column].to_numpy()
        if kind == SegmentKind.LAG.value and not waits.any():
            continue  # a closed loop has no schedule to fall behind
        rows.append(
            {
                "stage": SEGMENT_WAITS[kind],
                "layer": "",
                "wall_p50_ms": _median_ms(waits),
                "scheduling_ms": _median_ms(waits),
                "share": int(waits.sum()) / total_ns,
                "coverage": 1.0,
            }
        )
    return pd.DataFrame(rows)


def wait_table(result: ResultSet) -> pd.DataFrame:
    """Scheduling along the critical path by kind: lag, queue, handoff, and each named wait."""
    table = split_table(result)
    total_ns = int(table.requests["latency_ns"].sum()) or 1
    waits = table.path_waits()
    rows = [
        {
            "wait": kind,
            "median_ms": _median_ms(values),
            "p90_ms": float(np.percentile(values, 90)) / 1e6,
            "share": int(values.sum()) / total_ns,
        }
        for kind, values in ((k, waits[k].to_numpy()) for k in sorted(waits.columns))
        if len(values)
    ]
    return pd.DataFrame(rows, columns=["wait", "median_ms", "p90_ms", "share"])


def _median_ms(values_ns: Any) -> float:
    return float(np.median(values_ns)) / 1e6 if len(values_ns) else float("nan")


def end_to_end(result: ResultSet) -> Percentiles:
    ok = result.requests.loc[result.requests["ok"], "latency_s"].to_numpy(dtype=float)
    return Percentiles.of(ok)


def category_shares(result: ResultSet) -> dict[tuple[str, str], float]:
    """Share of all end-to-end time per (category, resource), along each critical path."""
    table = split_table(result)
    totals = table.totals.sum()
    whole = int(table.requests["latency_ns"].sum()) or 1
    keys = cast(list[tuple[str, str]], list(totals.index))
    shares = {(str(c), str(r)): int(ns) / whole for (c, r), ns in zip(keys, totals, strict=True)}
    return {key: share for key, share in sorted(shares.items()) if share}


def bucket_shares(result: ResultSet) -> dict[str, float]:
    """Share of all end-to-end time per bucket: the categories, unattributed, harness lag."""
    shares = dict.fromkeys(BUCKETS, 0.0)
    for (category, _), share in category_shares(result).items():
        shares[category] += share
    return shares
