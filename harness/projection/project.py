"""From a claim to the end-to-end gain: naive Amdahl beside a replay of the dependency graph.

Every stretch of a request's recorded time gets the one factor its claim gives it (see
``projection.claims``). The naive model divides the matched time along the recorded critical
path and adds it up again (Amdahl on the summed time). The replay model (``projection.replay``)
runs the request again on a model of its stage DAG, threads and cores with the scaled work, so
overlap, contention and a critical path that moves are accounted for. The harness's own waits
(queue, handoff, generator lag) are never scaled: no vendor's part shortens them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from harness import __version__
from harness.analysis.attribution import RequestSplit
from harness.analysis.stats import PERCENTILE_FLOORS
from harness.archive.codec import to_dict
from harness.archive.schema import PROJECTION_VERSION
from harness.archive.store import ResultSet
from harness.errors import UserError
from harness.projection.claims import Claim
from harness.projection.replay import replay
from harness.projection.request_model import request_models
from harness.projection.sentences import headline
from harness.words import SegmentKind

MODELS = ("naive", "replay")
IDENTITY_WARN = 0.01  # replaying a set unchanged should give back its latency
PERCENTILES = ("p50", "p99")


@dataclass(frozen=True)
class Match:
    """One claim key and what it matched: how much time, where, along the critical path."""

    key: str
    factor: float
    share: float  # of all end-to-end time
    where: tuple[str, ...]  # "stage (category, resource)" it applied to


@dataclass(frozen=True)
class Estimate:
    """A projected percentile and its spread over replicates (None with one replicate)."""

    value_ms: float
    low_ms: float | None
    high_ms: float | None


@dataclass(frozen=True)
class Projection:
    """One claim on one result set: measured beside naive and replayed percentiles."""

    claim: Claim
    set_id: str
    requests: int
    replicates: int
    cores: float
    matched_share: float
    matches: tuple[Match, ...]
    measured: dict[str, Estimate]  # "p50", "p99"
    naive: dict[str, Estimate]
    replay: dict[str, Estimate]
    replay_identity_error: float  # replay without a claim against the recorded latency, median

    def speedup(self, model: str, pct: str = "p50") -> float:
        projected = (self.naive if model == "naive" else self.replay)[pct].value_ms
        return self.measured[pct].value_ms / projected

    @property
    def claimed(self) -> float:
        """The speedup the claim gives the work it matched, taken as a whole: what a component
        benchmark of just that work would show (1.0 when it matched nothing)."""
        slower = sum(m.share for m in self.matches)
        faster = sum(m.share / m.factor for m in self.matches)
        return slower / faster if faster > 0 else 1.0

    @property
    def p99_indicative(self) -> bool:
        """Too few requests for p99 to mean much (MLPerf's floor): its figures are marked."""
        return self.requests < PERCENTILE_FLOORS[99]

    @property
    def model_off(self) -> bool:
        """The replay without a claim misses the recorded latency: its model of the set is off."""
        return self.replay_identity_error > IDENTITY_WARN

    def surviving(self, model: str = "replay") -> float:
        """How much of the claimed gain is left end to end at p50 (1.0: all of it)."""
        claimed = self.claimed - 1.0
        return (self.speedup(model) - 1.0) / claimed if claimed > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The projection as plain data, with its headline and speedups by each model."""
        return {
            **to_dict(self),
            "claim": self.claim.to_dict(),
            "schema_version": PROJECTION_VERSION,
            "headline": headline(self),
            "speedup": {
                model: {pct: self.speedup(model, pct) for pct in PERCENTILES} for model in MODELS
            },
        }

    def kept(self, made: datetime | None = None) -> dict[str, Any]:
        """The projection as it is kept beside its set, stamped with when and by which
        gapbench it was made (read back as a ``KeptProjection``)."""
        made = made or datetime.now(timezone.utc)
        return {**self.to_dict(), "made_utc": made.isoformat(), "gapbench": __version__}


def check_claim(result: ResultSet, claim: Claim) -> None:
    """Refuse a claim scoped to a stage or layer this set does not have (a typo matches
    nothing, and the projection would quietly promise no gain)."""
    stages = result.manifest.stages
    known = {"stage": {s.name for s in stages}, "layer": {s.layer for s in stages}}
    for target, _ in claim.speedups:
        if target.scope and target.scope_name not in known[target.scope]:
            where = claim.path or "--speedup"
            names = ", ".join(sorted(known[target.scope]))
            raise UserError(
                f"{where}: key {target.key!r}: {result.id} has no {target.scope} "
                f"{target.scope_name!r} ({names})"
            )


@dataclass
class Naive:
    """Amdahl on a request's recorded critical path: its scaled latency, and what matched."""

    ns: float
    matched: dict[str, float]  # claim key -> recorded ns it matched
    where: dict[str, set[str]]  # claim key -> "stage (category, resource)"


def naive(split: RequestSplit, claim: Claim, layers: dict[str, str]) -> Naive:
    """The request's latency with every stretch along its critical path divided by the factor
    ``claim`` gives it; the harness's own waits (queue, handoff, lag) are never scaled."""
    out = Naive(0.0, defaultdict(float), defaultdict(set))
    for segment in split.path:
        if segment.kind != SegmentKind.STAGE.value:
            out.ns += segment.ns
            continue
        for (category, resource), ns in split.stage(segment.stage).by_resource:
            factor, key = claim.factor(segment.stage, layers[segment.stage], category, resource)
            out.ns += ns / factor
            if key:
                out.matched[key] += ns
                out.where[key].add(f"{segment.stage} ({category}, {resource})")
    return out


def project(result: ResultSet, claim: Claim) -> Projection:
    """Project ``claim`` on every successful request of ``result``."""
    manifest = result.manifest
    if manifest.execution.virtual_speedup:
        raise UserError(f"{result.id} ran with a virtual speedup: it is a check, not a baseline")
    check_claim(result, claim)
    layers = {s.name: s.layer for s in manifest.stages}

    def factor(stage: str, label: str, category: str, resource: str) -> float:
        return claim.factor(stage, layers.get(stage, ""), category, resource)[0]

    def claimed(stage: str, label: str, category: str, resource: str) -> bool:
        return bool(claim.factor(stage, layers.get(stage, ""), category, resource)[1])

    rows: list[tuple[int, float, float, float, float]] = []  # replicate, measured, naive, ...
    matched: dict[str, float] = defaultdict(float)
    where: dict[str, set[str]] = defaultdict(set)
    total = 0.0
    for request, model in request_models(result):
        split = request.split
        scaled = naive(split, claim, layers)
        for key, ns in scaled.matched.items():
            matched[key] += ns
            where[key] |= scaled.where[key]
        total += split.latency_ns
        identity, _ = replay(model)
        replayed, _ = replay(model, factor, claim.threads, claimed)
        rows.append((request.replicate, split.latency_ns, scaled.ns, replayed, identity))
    if not rows:
        raise UserError(f"result set {result.id} has no successful request to project")
    table = np.array(rows, dtype=float)
    replicate_of, measured, naive_ns, replayed_ns, identity_ns = table.T
    matches = tuple(
        Match(t.key, f, matched[t.key] / total, tuple(sorted(where[t.key])))
        for t, f in claim.speedups
    )
    return Projection(
        claim=claim,
        set_id=result.id,
        requests=len(rows),
        replicates=len(set(replicate_of.tolist())),
        cores=manifest.fingerprint.cores,
        matched_share=sum(matched.values()) / total,
        matches=matches,
        measured=_estimates(measured, replicate_of),
        naive=_estimates(naive_ns, replicate_of),
        replay=_estimates(replayed_ns, replicate_of),
        replay_identity_error=float(np.median(np.abs(identity_ns - measured) / measured)),
    )


def _estimates(ns: np.ndarray, replicate_of: np.ndarray) -> dict[str, Estimate]:
    """p50 and p99 over all requests, with their range over replicates when there are several."""
    out = {}
    for name, q in (("p50", 50), ("p99", 99)):
        value = float(np.percentile(ns, q)) / 1e6
        per = [float(np.percentile(ns[replicate_of == r], q)) / 1e6 for r in set(replicate_of)]
        low, high = (min(per), max(per)) if len(per) > 1 else (None, None)
        out[name] = Estimate(value, low, high)
    return out
