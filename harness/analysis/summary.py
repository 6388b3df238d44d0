"""Everything `run` and `show` report about one result set, computed once from its raw data."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.breakdown import bucket_shares, end_to_end, stage_table, wait_table
from harness.analysis.columns import split_table
from harness.analysis.generation import Generation, Goodput, generation, goodput
from harness.analysis.invariants import Invariants, set_invariants
from harness.analysis.load import LoadReport, load_report
from harness.analysis.overhead import Overhead, overhead
from harness.analysis.roofline import Roofline, roofline, timed_call_ms
from harness.analysis.stats import Percentiles
from harness.analysis.telemetry import telemetry_summary
from harness.analysis.throughput import Throughput, throughput
from harness.analysis.tool_calls import tool_table
from harness.analysis.validity import Verdict, replicate_p50s, verdict
from harness.archive.codec import to_dict
from harness.archive.result_set import ResultSet
from harness.archive.schema import ReplicateFacts
from harness.words import UNATTRIBUTED


@dataclass(frozen=True)
class Spread:
    """A fact's lowest and highest value over the replicates (equal with one replicate)."""

    low: float
    high: float


@dataclass(frozen=True)
class RunFacts:
    """What the processes measured about themselves, each as its spread over replicates."""

    model_load_s: Spread | None
    first_request_s: Spread | None
    peak_rss_bytes: Spread | None
    gpu_peak_bytes: Spread | None
    cpu_steal_fraction: Spread | None
    # The slowest replicate's export of the backend's graphs (None: none exported), or all of
    # them found in the cache; and the agreement check, both inside the model load.
    export_s: float | None
    graphs_cached: bool
    agreement_check_s: float | None


@dataclass(frozen=True)
class Summary:
    """A result set's verdict, end-to-end percentiles, per-stage breakdown and run facts."""

    result: ResultSet
    end_to_end: Percentiles
    failed: int  # requests that failed, left out of the percentiles
    replicate_p50_s: dict[int, float]  # each replicate's own p50, in replicate order
    stages: pd.DataFrame
    coverage: float  # share of end-to-end time the probes explain
    overlap_ms: float  # median per request: time that ran beside the critical path
    waits: pd.DataFrame  # scheduling on the critical path by kind
    tools: pd.DataFrame  # per tool called across a process boundary: medians per call
    overhead: Overhead | None
    telemetry: dict[str, dict[str, Any]]  # min/median/max per metric while requests ran
    telemetry_notes: tuple[str, ...]  # what the sampler could not read, over every replicate
    facts: RunFacts
    invariants: Invariants
    verdict: Verdict
    throughput: Throughput | None = None  # requests a second, and the energy they took
    load: LoadReport | None = None  # a set run under a load
    generation: Generation | None = None  # the requests that decode
    goodput: Goodput | None = None  # the requests meeting the objectives asked for
    roofline: Roofline | None = None  # a profiled set's compute by class, against the peaks
    # A profiled probe's time a call in the timed run, by (stage, label): what the profiler's
    # cross-check is judged by.
    timed_call_ms: dict[tuple[str, str], float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        m = self.result.manifest
        return {
            "id": self.result.id,
            "workload": m.workload,
            "created_utc": m.created_utc,
            "complete": m.complete,
            "config": to_dict(m.config),
            "agreement": to_dict(m.agreement),
            "verdict": to_dict(self.verdict),
            "invariants": to_dict(self.invariants),
            "requests": len(self.result.requests),
            "errors": self.failed,
            "end_to_end_s": _clean(to_dict(self.end_to_end)),
            "replicate_p50_s": {str(r): v for r, v in self.replicate_p50_s.items()},
            "probe_coverage": self.coverage,
            "overlap_ms": _finite(self.overlap_ms),
            "stages": [_clean(row) for row in self.stages.to_dict(orient="records")],
            "waits": [_clean(row) for row in self.waits.to_dict(orient="records")],
            "tools": [_clean(row) for row in self.tools.to_dict(orient="records")],
            "overhead": to_dict(self.overhead),
            "telemetry": self.telemetry,
            "facts": to_dict(self.facts),
            "replicates": to_dict(m.replicates),
            "throughput": None if self.throughput is None else self.throughput.to_dict(),
            "load": load_dict(self.load),
            "generation": _generation_dict(self.generation),
            "goodput": _deep_finite(to_dict(self.goodput)),
            "roofline": _roofline_dict(self.roofline),
        }


def summarize(result: ResultSet, slo_ms: dict[str, float] | None = None) -> Summary:
    """The summary of ``result``, from its raw intervals, requests and telemetry; with
    ``slo_ms`` (``harness.analysis.generation.parse_slo``), its goodput too."""
    overlaps = split_table(result).requests["overlap_ns"].to_numpy()
    coverage = 1.0 - bucket_shares(result)[UNATTRIBUTED]
    overlap_ms = float(np.median(overlaps)) / 1e6 if len(overlaps) else float("nan")
    e2e = end_to_end(result)
    stages = stage_table(result)
    invariants = set_invariants(result)
    replicates = result.manifest.replicates
    samples = result.telemetry
    notes = tuple(sorted({n for r in replicates for n in r.telemetry_notes}))
    load = load_report(result)
    # A load run cut short knows how long it served from its load facts alone.
    measured_s = sum(r.load.measured_s if r.load else r.measured_s for r in replicates)
    generated = generation(result, measured_s)
    tokens_per_s = None if generated is None else generated.output_tokens_per_s
    return Summary(
        result=result,
        end_to_end=e2e,
        failed=int((~result.requests["ok"]).sum()),
        replicate_p50_s=replicate_p50s(result),
        stages=stages,
        coverage=coverage,
        overlap_ms=overlap_ms,
        waits=wait_table(result),
        tools=tool_table(result),
        overhead=overhead(result, e2e.p50),
        telemetry=telemetry_summary(samples) if samples is not None and not samples.empty else {},
        telemetry_notes=notes,
        facts=run_facts(replicates),
        invariants=invariants,
        verdict=verdict(result, e2e, coverage, invariants, load),
        throughput=throughput(result, measured_s, tokens_per_s, load is not None),
        load=load,
        generation=generated,
        goodput=goodput(result, measured_s, slo_ms) if slo_ms else None,
        roofline=roofline(result) if result.complete or len(result.requests) else None,
        timed_call_ms=timed_call_ms(result),
    )


def _roofline_dict(found: Roofline | None) -> dict[str, Any] | None:
    if found is None:
        return None
    return {
        "classes": [_clean(r) for r in found.classes.to_dict(orient="records")],
        "stages": [_clean(r) for r in found.stages.to_dict(orient="records")],
        "not_visible": list(found.not_visible),
        "calibration_made_utc": found.calibration.made_utc,
    }


def _generation_dict(found: Generation | None) -> dict[str, Any] | None:
    if found is None:
        return None
    body = to_dict(found)
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        body[key] = {f"p{p:g}": v for p, v in getattr(found, key).items()}
    return _deep_finite(body)


def load_dict(load: LoadReport | None) -> dict[str, Any] | None:
    """A load report as JSON (None for a set run one request at a time)."""
    if load is None:
        return None
    body = to_dict(load)
    body["latency_ms"] = {f"p{p:g}": v for p, v in load.latency_ms.items()}
    body["loadgen"] = [
        {"valid": s.valid, "numbers": s.numbers, "early_stopping": s.early_stopping}
        for s in load.loadgen
    ]
    if load.queue is not None:
        body["queue"]["predicted_mean_ms"] = load.queue.predicted_mean_ms
    return _deep_finite(body)


def _deep_finite(value: Any) -> Any:
    # JSON has no NaN or infinity: a queue that grows without bound has no mean wait.
    if isinstance(value, dict):
        return {str(k): _deep_finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_deep_finite(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def run_facts(replicates: tuple[ReplicateFacts, ...]) -> RunFacts:
    """Each fact's spread over ``replicates``."""

    def spread(values: list[float | int | None]) -> Spread | None:
        known = [float(v) for v in values if v is not None]
        return Spread(min(known), max(known)) if known else None

    # What the onnxruntime backend says of its graphs: per graph, its seconds and whether it
    # came from the cache. A workload's own facts are its to shape: what does not fit is left out.
    exports = [_graphs(r.setup_facts.get("onnx_export")) for r in replicates]
    exports = [x for x in exports if x]
    cold = [sum(s for s, _ in x) for x in exports if not all(c for _, c in x)]
    said = [r.setup_facts.get("agreement_check_s") for r in replicates]
    checked = [float(c) for c in said if isinstance(c, int | float) and not isinstance(c, bool)]
    return RunFacts(
        model_load_s=spread([r.model_load_s for r in replicates]),
        first_request_s=spread([r.first_request_s for r in replicates]),
        peak_rss_bytes=spread([r.peak_rss_bytes for r in replicates]),
        gpu_peak_bytes=spread([r.gpu_peak_bytes for r in replicates]),
        cpu_steal_fraction=spread([r.cpu_steal_fraction for r in replicates]),
        export_s=max(cold) if cold else None,
        graphs_cached=bool(exports) and not cold,
        agreement_check_s=max(checked, default=None),
    )


def _graphs(export: Any) -> list[tuple[float, bool]]:
    """(seconds, cached) per exported graph, from a replicate's ``onnx_export`` fact."""
    if not isinstance(export, dict):
        return []
    graphs = [g for g in export.values() if isinstance(g, dict)]
    return [(float(g.get("seconds") or 0.0), bool(g.get("cached"))) for g in graphs]


def _finite(value: Any) -> Any:
    # JSON has no NaN: a statistic that does not exist is null.
    return None if isinstance(value, float) and math.isnan(value) else value


def _clean(row: dict[Any, Any]) -> dict[str, Any]:
    return {str(k): _finite(v) for k, v in row.items()}
