"""Everything `run` and `show` print about one result set, computed once from its raw data."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.breakdown import (
    Answer,
    Percentiles,
    answer,
    end_to_end,
    request_splits,
    stage_table,
    wait_table,
)
from harness.measure.overhead import estimate
from harness.archive.store import ResultSet
from harness.measure.telemetry import summarize as summarize_telemetry
from harness.analysis.validity import Verdict, verdict


@dataclass(frozen=True)
class Summary:
    """A result set's verdict, end-to-end percentiles, per-stage breakdown and answer."""

    result: ResultSet
    end_to_end: Percentiles
    stages: pd.DataFrame
    answer: Answer
    coverage: float
    overlap_ms: float  # median per request: time that ran beside the critical path
    waits: pd.DataFrame  # scheduling on the critical path by kind
    overhead: dict[str, float]  # probes per request x probe cost, as a share of p50
    telemetry: dict[str, dict[str, Any]]  # min/median/max per metric while requests ran
    verdict: Verdict

    def to_dict(self) -> dict[str, Any]:
        m = self.result.manifest
        return {
            "id": self.result.id,
            "workload": m["workload"],
            "created_utc": m["created_utc"],
            "complete": m["complete"],
            "config": m["config"],
            "agreement": m.get("agreement"),
            "verdict": asdict(self.verdict),
            "requests": len(self.result.requests),
            "errors": int((~self.result.requests["ok"]).sum()),
            "end_to_end_s": _clean(asdict(self.end_to_end)),
            "probe_coverage": self.coverage,
            "overlap_ms": _finite(self.overlap_ms),
            "stages": [_clean(row) for row in self.stages.to_dict(orient="records")],
            "waits": [_clean(row) for row in self.waits.to_dict(orient="records")],
            "overhead": self.overhead,
            "telemetry": self.telemetry,
            "answer": _clean(asdict(self.answer)),
            "replicates": m["replicates"],
        }


def summarize(result: ResultSet) -> Summary:
    splits = request_splits(result)
    a = answer(result, splits)
    coverage = 1.0 - a.unattributed_share
    overlaps = [r.overlap_ns for r in splits]
    overlap_ms = float(np.median(overlaps)) / 1e6 if overlaps else float("nan")
    e2e = end_to_end(result)
    stages = stage_table(result, splits)
    return Summary(
        result,
        e2e,
        stages,
        a,
        coverage,
        overlap_ms,
        wait_table(splits),
        estimate(result.manifest["replicates"], result.intervals, e2e.p50),
        summarize_telemetry(result.telemetry) if has_telemetry(result) else {},
        verdict(result, e2e, coverage, stages),
    )


def has_telemetry(result: ResultSet) -> bool:
    return result.telemetry is not None and not result.telemetry.empty


def _finite(value: Any) -> Any:
    # JSON has no NaN: a statistic that does not exist is null.
    return None if isinstance(value, float) and math.isnan(value) else value


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _finite(v) for k, v in row.items()}
