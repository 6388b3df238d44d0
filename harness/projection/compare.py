"""Two result sets of the same work, executed differently: what was delivered, and was it real.

Significance comes from replicates (separate processes, ``run --repeat K``), never from the
requests inside one process, which share caches and allocator state. With fewer than three
replicates on a side the speedup is shown as measured and called not significant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.analysis.columns import split_table
from harness.analysis.comparability import comparable
from harness.analysis.outputs import output_agreement
from harness.analysis.stats import bootstrap_ratio
from harness.analysis.summary import Summary, load_dict
from harness.archive.codec import to_dict
from harness.archive.result_set import ResultSet
from harness.archive.schema import KeptProjection
from harness.archive.tables import by_replicate
from harness.projection.project import Projection
from harness.projection.sentences import comparison_sentence
from harness.projection.serialisation import Losses

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base_ms": self.base_ms,
            "candidate_ms": self.candidate_ms,
            "speedup": self.ratio,
            "interval": None if self.low is None else [self.low, self.high],
            "significant": self.significant,
        }


@dataclass(frozen=True)
class Checked:
    """A projection from BASE against what CANDIDATE delivered end to end at p50."""

    claim: str
    claimed: float  # what the claim gives the work it matched, taken as a whole
    naive: float
    replay: float
    delivered: float
    made_utc: str = ""  # when it was kept, for one kept beside BASE earlier

    @property
    def gap(self) -> float:
        """The coordination gap: the claimed speedup minus the delivered one."""
        return self.claimed - self.delivered

    def error(self, model: str) -> float:
        """The projection's error against the delivered speedup (+: it promised more)."""
        return (self.replay if model == "replay" else self.naive) / self.delivered - 1


@dataclass(frozen=True)
class Comparison:
    base: Summary
    candidate: Summary
    end_to_end: Speedup
    stages: tuple[Speedup, ...]
    projections: tuple[Projection, ...]  # from BASE, one per claim
    checked: tuple[Checked, ...]  # each projection made now, against what was delivered
    kept: tuple[Checked, ...]  # those kept beside BASE earlier, against what was delivered
    differences: dict[str, tuple[Any, Any]]  # execution settings that differ
    # BASE's serialisation losses, overlapped, beside CANDIDATE as measured (None: none found)
    overlap: OverlapCheck | None = None
    # Per output both kept (top-k ids, tokens): the share of requests where CANDIDATE's equals
    # BASE's (None: no outputs in common)
    agreement: dict[str, float] | None = None

    @property
    def trustworthy(self) -> bool:
        """Both sets valid: a comparison of an invalid set says nothing."""
        return self.base.verdict.valid and self.candidate.verdict.valid

    @property
    def sentence(self) -> str:
        return comparison_sentence(self, self.candidate.result.id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kept_projections": [
                {
                    "made_utc": k.made_utc,
                    "claim": k.claim,
                    "replay": k.replay,
                    "naive": k.naive,
                    "delivered": k.delivered,
                    "replay_error": k.error("replay"),
                }
                for k in self.kept
            ],
            "base": self.base.result.id,
            "candidate": self.candidate.result.id,
            "trustworthy": self.trustworthy,
            "verdicts": {
                "base": to_dict(self.base.verdict),
                "candidate": to_dict(self.candidate.verdict),
            },
            "differences": {k: list(v) for k, v in self.differences.items()},
            "end_to_end": self.end_to_end.to_dict(),
            "stages": [s.to_dict() for s in self.stages],
            "projections": [
                {
                    **p.to_dict(),
                    "delivered": c.delivered,
                    "coordination_gap": c.gap,
                    "replay_error": c.error("replay"),
                    "naive_error": c.error("naive"),
                }
                for p, c in zip(self.projections, self.checked, strict=True)
            ],
            "serialisation": None if self.overlap is None else self.overlap.to_dict(),
            "output_agreement": self.agreement,
            "load": {
                "base": load_dict(self.base.load),
                "candidate": load_dict(self.candidate.load),
            },
            "sentence": self.sentence,
        }


@dataclass(frozen=True)
class OverlapCheck:
    """The serialisation finder's p50 from BASE, had its serialised work overlapped, beside
    CANDIDATE's measured p50: overall, and replicate by replicate (paired in order)."""

    losses: Losses
    candidate_ms: float
    pairs: tuple[tuple[int, float, float], ...]  # (replicate, predicted ms, measured ms)

    @property
    def error(self) -> float:
        """The prediction's error against what CANDIDATE measured (+: it promised more)."""
        return self.candidate_ms / self.losses.overlapped.value_ms - 1

    def pair_errors(self) -> list[float]:
        return [measured / predicted - 1 for _, predicted, measured in self.pairs]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.losses.to_dict(),
            "candidate_p50_ms": self.candidate_ms,
            "error": self.error,
            "pairs": [
                {"replicate": r, "predicted_ms": p, "measured_ms": m, "error": m / p - 1}
                for r, p, m in self.pairs
            ],
        }


def overlap_check(losses: Losses, candidate: ResultSet) -> OverlapCheck | None:
    """BASE's losses against CANDIDATE (None when BASE serialised nothing)."""
    if not losses.findings:
        return None
    measured = _latencies(candidate)
    pairs = tuple(
        (r, losses.by_replicate[r][1], float(np.median(measured[r])))
        for r in sorted(losses.by_replicate)
        if r in measured
    )
    whole = float(np.median(np.concatenate(list(measured.values()))))
    return OverlapCheck(losses, whole, pairs)


def compare(
    base: Summary,
    candidate: Summary,
    projections: tuple[Projection, ...] = (),
    kept: tuple[KeptProjection, ...] = (),
    losses: Losses | None = None,
) -> Comparison:
    """Measured speedups end to end and per stage, beside the projections made from BASE now
    and those kept beside it earlier (a pre-purchase projection, checked)."""
    differences = comparable(base.result, candidate.result)
    end_to_end = _speedup("end to end", _latencies(base.result), _latencies(candidate.result))
    a, b = _stage_walls(base.result), _stage_walls(candidate.result)
    stages = tuple(_speedup(name, a[name], b[name]) for name in a if name in b)
    delivered = end_to_end.ratio
    checked = tuple(
        Checked(p.claim.name, p.claimed, p.speedup("naive"), p.speedup("replay"), delivered)
        for p in projections
    )
    earlier = tuple(
        Checked(
            k.claim_name,
            float("nan"),
            k.speedup["naive"]["p50"],
            k.speedup["replay"]["p50"],
            delivered,
            k.made_utc,
        )
        for k in kept
    )
    overlap = overlap_check(losses, candidate.result) if losses is not None else None
    return Comparison(
        base,
        candidate,
        end_to_end,
        stages,
        projections,
        checked,
        earlier,
        differences,
        overlap,
        output_agreement(base.result, candidate.result),
    )


def _latencies(result: ResultSet) -> dict[int, np.ndarray]:
    ok = result.requests.loc[result.requests["ok"]]
    return {r: group["latency_s"].to_numpy(dtype=float) * 1e3 for r, group in by_replicate(ok)}


def _stage_walls(result: ResultSet) -> dict[str, dict[int, np.ndarray]]:
    table = split_table(result)
    stages = table.stages.assign(
        replicate=table.requests["replicate"].to_numpy()[table.stages["row"].to_numpy()],
        wall_ms=table.stages["wall_ns"] / 1e6,
    )
    return {
        str(name): {int(r): g["wall_ms"].to_numpy() for r, g in per.groupby("replicate")}
        for name, per in stages.groupby("stage", sort=False)
    }


def _speedup(name: str, base: dict[int, np.ndarray], candidate: dict[int, np.ndarray]) -> Speedup:
    base_ms = float(np.median(np.concatenate(list(base.values()))))
    candidate_ms = float(np.median(np.concatenate(list(candidate.values()))))
    low = high = None
    if len(base) >= MIN_REPLICATES and len(candidate) >= MIN_REPLICATES:
        # Replicates are the independent samples: resample them, not the requests inside.
        a = np.array([np.median(v) for v in base.values()])
        b = np.array([np.median(v) for v in candidate.values()])
        low, high = bootstrap_ratio(a, b, paired=False)
    return Speedup(name, base_ms, candidate_ms, low, high)
