"""Two result sets of the same work, executed differently: what was delivered, and was it real.

Significance comes from replicates (separate processes, ``run --repeat K``), never from the
requests inside one process, which share caches and allocator state. With one replicate on a
side the speedup is shown as measured and called not significant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.analysis.breakdown import request_splits
from harness.errors import UserError
from harness.projection.project import Projection
from harness.archive.store import ResultSet
from harness.analysis.summary import Summary

BOOTSTRAP_ROUNDS = 2000
MIN_REPLICATES = 3  # per side, for an interval: two medians say nothing about spread


@dataclass(frozen=True)
class Speedup:
    """BASE's p50 over CANDIDATE's: above 1, the candidate is faster."""

    name: str  # "end to end" or a stage
    base_ms: float
    candidate_ms: float
    low: float | None  # 95% bootstrap over replicates; None below MIN_REPLICATES on a side
    high: float | None

    @property
    def ratio(self) -> float:
        return self.base_ms / self.candidate_ms if self.candidate_ms > 0 else float("nan")

    @property
    def significant(self) -> bool:
        return self.low is not None and (self.low > 1.0 or (self.high or 0.0) < 1.0)


@dataclass(frozen=True)
class Comparison:
    base: Summary
    candidate: Summary
    end_to_end: Speedup
    stages: tuple[Speedup, ...]
    projections: tuple[Projection, ...]  # from BASE, one per claim
    differences: dict[str, tuple[Any, Any]]  # execution settings that differ
    kept: tuple[dict[str, Any], ...] = ()  # projections kept beside BASE earlier

    @property
    def trustworthy(self) -> bool:
        """Both sets valid: a comparison of an invalid set says nothing."""
        return self.base.verdict.valid and self.candidate.verdict.valid

    def gap(self, projection: Projection) -> float:
        """The coordination gap: the claimed speedup minus the delivered one, end to end."""
        return projection.claimed - self.end_to_end.ratio

    def to_dict(self) -> dict[str, Any]:
        def speedup(s: Speedup) -> dict[str, Any]:
            return {
                "name": s.name,
                "base_ms": s.base_ms,
                "candidate_ms": s.candidate_ms,
                "speedup": s.ratio,
                "interval": None if s.low is None else [s.low, s.high],
                "significant": s.significant,
            }

        return {
            "kept_projections": [
                {
                    "made_utc": k.get("made_utc"),
                    "claim": k["claim"]["name"],
                    "replay": k["speedup"]["replay"]["p50"],
                    "naive": k["speedup"]["naive"]["p50"],
                    "delivered": self.end_to_end.ratio,
                }
                for k in self.kept
            ],
            "base": self.base.result.id,
            "candidate": self.candidate.result.id,
            "trustworthy": self.trustworthy,
            "verdicts": {
                "base": self.base.to_dict()["verdict"],
                "candidate": self.candidate.to_dict()["verdict"],
            },
            "differences": {k: list(v) for k, v in self.differences.items()},
            "end_to_end": speedup(self.end_to_end),
            "stages": [speedup(s) for s in self.stages],
            "projections": [
                {
                    **p.to_dict(),
                    "delivered": self.end_to_end.ratio,
                    "coordination_gap": self.gap(p),
                    "replay_error": p.speedup("replay") / self.end_to_end.ratio - 1,
                    "naive_error": p.speedup("naive") / self.end_to_end.ratio - 1,
                }
                for p in self.projections
            ],
        }


def comparable(base: ResultSet, candidate: ResultSet) -> dict[str, tuple[Any, Any]]:
    """The execution settings that differ; a UserError when the sets are not comparable."""
    for result in (base, candidate):
        if result.manifest["config"]["execution"].get("virtual_speedup"):
            raise UserError(f"{result.id} ran with a virtual speedup: it is a check, not a run")
        if not result.requests["ok"].any():
            raise UserError(f"{result.id} has no successful request to compare")
    work_a, work_b = (r.manifest["config"]["work"] for r in (base, candidate))
    if not work_a.get("work_sha256") or work_a.get("work_sha256") != work_b.get("work_sha256"):
        differing = sorted(k for k in set(work_a) | set(work_b) if work_a.get(k) != work_b.get(k))
        named = ", ".join(k for k in differing if k != "work_sha256") or "the work"
        raise UserError(
            f"{base.id} and {candidate.id} were given different work ({named}): not comparable"
        )
    exec_a, exec_b = (r.manifest["config"]["execution"] for r in (base, candidate))
    if exec_a.get("timing_mode") != exec_b.get("timing_mode"):
        raise UserError(
            f"{base.id} was timed in {exec_a.get('timing_mode')} mode and {candidate.id} in "
            f"{exec_b.get('timing_mode')} mode: they measure different things"
        )
    flat_a, flat_b = _flat(exec_a), _flat(exec_b)
    return {
        k: (flat_a.get(k), flat_b.get(k))
        for k in sorted(set(flat_a) | set(flat_b))
        if flat_a.get(k) != flat_b.get(k)
        and not k.startswith(("measurement", "backend_config.graphs"))
    }


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def compare(
    base: Summary,
    candidate: Summary,
    projections: tuple[Projection, ...] = (),
    kept: tuple[dict[str, Any], ...] = (),
) -> Comparison:
    """Measured speedups end to end and per stage, beside the projections made from BASE now
    and those kept beside it earlier (a pre-purchase projection, checked)."""
    differences = comparable(base.result, candidate.result)
    end_to_end = _speedup("end to end", _latencies(base.result), _latencies(candidate.result))
    a, b = _stage_walls(base.result), _stage_walls(candidate.result)
    stages = tuple(_speedup(name, a[name], b[name]) for name in a if name in b)
    return Comparison(base, candidate, end_to_end, stages, projections, differences, kept)


def _latencies(result: ResultSet) -> dict[int, np.ndarray]:
    ok = result.requests.loc[result.requests["ok"]]
    return {
        int(r): group["latency_s"].to_numpy(dtype=float) * 1e3
        for r, group in ok.groupby("replicate")
    }


def _stage_walls(result: ResultSet) -> dict[str, dict[int, np.ndarray]]:
    ok = result.requests.loc[result.requests["ok"]].sort_values(["replicate", "request"])
    replicate_of = ok["replicate"].to_numpy()
    walls: dict[str, dict[int, list[float]]] = {}
    for i, split in enumerate(request_splits(result)):
        for stage in split.stages:
            walls.setdefault(stage.stage, {}).setdefault(int(replicate_of[i]), []).append(
                stage.wall_ns / 1e6
            )
    return {
        name: {r: np.array(v) for r, v in by_replicate.items()}
        for name, by_replicate in walls.items()
    }


def _speedup(name: str, base: dict[int, np.ndarray], candidate: dict[int, np.ndarray]) -> Speedup:
    base_ms = float(np.median(np.concatenate(list(base.values()))))
    candidate_ms = float(np.median(np.concatenate(list(candidate.values()))))
    low = high = None
    if len(base) >= MIN_REPLICATES and len(candidate) >= MIN_REPLICATES:
        # Replicates are the independent samples: resample them, not the requests inside.
        a = np.array([np.median(v) for v in base.values()])
        b = np.array([np.median(v) for v in candidate.values()])
        rng = np.random.default_rng(0)
        ratios = np.median(rng.choice(a, (BOOTSTRAP_ROUNDS, len(a))), axis=1) / np.median(
            rng.choice(b, (BOOTSTRAP_ROUNDS, len(b))), axis=1
        )
        low, high = (float(x) for x in np.percentile(ratios, [2.5, 97.5]))
    return Speedup(name, base_ms, candidate_ms, low, high)
