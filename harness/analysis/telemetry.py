"""Telemetry read back: per metric its spread over the run, or a counter's use; throttling."""

from __future__ import annotations

from typing import Any

import pandas as pd

SUSTAINED_SAMPLES = 3  # a frequency drop counts when it lasts this many samples
CUMULATIVE = frozenset({"energy"})
"""Metrics that are running counters: only differences between two samples mean anything."""


def _spread(values: pd.Series, unit: str) -> dict[str, Any]:
    return {"unit": unit, **{stat: float(values.agg(stat)) for stat in ("min", "median", "max")}}


def telemetry_summary(samples: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per metric: min/median/max, or for a counter the amount used over the run (last - first).

    Keys are ``source.metric[device]`` per device; ``cpu.utilization`` (mean over cores at each
    sample), ``cpu.frequency`` (median over cores, with ``largest_drop``, see
    :func:`frequency_drop`) and ``<source>.energy`` (summed over devices, J) are across devices.
    """
    summary: dict[str, dict[str, Any]] = {}
    ordered = samples.sort_values("t_ns", kind="stable")
    by_device = ordered.groupby(["source", "metric", "unit", "device"])
    for (source, metric, unit, device), values in by_device["value"]:
        if metric not in CUMULATIVE:
            summary[f"{source}.{metric}[{device}]"] = _spread(values, str(unit))
            continue
        # A counter keeps running between replicates (set-up, warm-up): sum each one's use.
        runs = ordered.loc[values.index, "replicate"] if "replicate" in ordered else None
        parts = values.groupby(runs) if runs is not None else [(0, values)]
        used = sum(float(v.iloc[-1] - v.iloc[0]) for _, v in parts)
        summary[f"{source}.{metric}[{device}]"] = {"unit": unit, "used": used}
        total = summary.setdefault(f"{source}.{metric}", {"unit": unit, "used": 0.0})
        total["used"] += used
    for metric, how in (("utilization", "mean"), ("frequency", "median")):
        rows = ordered[(ordered["source"] == "cpu") & (ordered["metric"] == metric)]
        if not rows.empty:
            per_sample = rows.groupby("t_ns")["value"].agg(how)
            summary[f"cpu.{metric}"] = _spread(per_sample, rows["unit"].iloc[0])
    if "cpu.frequency" in summary:
        summary["cpu.frequency"]["largest_drop"] = frequency_drop(samples)
    return summary


def frequency_drop(samples: pd.DataFrame, baseline_s: float = 2.0) -> float | None:
    """The largest relative drop of the cores' median frequency below the run's first seconds.

    The baseline is the median over the first ``baseline_s`` of the run; 0.0 means no drop (a
    rise is not a drop), None means frequencies are unknown. A throttling hint, not a proof.
    """
    rows = samples[(samples["source"] == "cpu") & (samples["metric"] == "frequency")]
    if rows.empty:
        return None
    median = rows.groupby("t_ns")["value"].median().sort_index()
    baseline = median[median.index <= median.index[0] + baseline_s * 1e9].median()
    if not baseline > 0:
        return None
    # Sustained, not one low reading: the lowest median of three consecutive samples.
    sustained = median.rolling(SUSTAINED_SAMPLES, min_periods=1).median().min()
    return max(0.0, float((baseline - sustained) / baseline))
