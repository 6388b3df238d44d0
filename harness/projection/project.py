"""From a claim to the end-to-end gain: naive Amdahl beside a replay of the dependency graph.

Every stretch of a request's recorded time gets the one factor its claim gives it (see
``harness.projection.claims``). The naive model divides the matched time along the recorded critical path
and adds it up again (Amdahl on the summed time). The replay model (``harness.projection.replay``) runs the
request again on a model of its stage DAG, threads and cores with the scaled work, so overlap,
contention and a critical path that moves are accounted for. The harness's own waits (queue,
handoff, generator lag) are never scaled: no vendor's part shortens them.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from harness.analysis.attribution import split_request
from harness.analysis.breakdown import ok_requests, stages_of
from harness.projection.claims import Claim
from harness.errors import UserError
from harness.projection.replay import replay
from harness.projection.request_model import build
from harness.archive.store import ResultSet

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Match:
    """One claim key and what it matched: how much time, where, along the critical path."""

    key: str
    factor: float
    share: float  # of all end-to-end time
    where: tuple[str, ...]  # "stage/label (category, resource)" it applied to


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

    def surviving(self, model: str = "replay") -> float:
        """How much of the claimed gain is left end to end at p50 (1.0: all of it)."""
        claimed = self.claimed - 1.0
        return (self.speedup(model) - 1.0) / claimed if claimed > 0 else float("nan")

    @property
    def headline(self) -> str:
        replay_x, naive_x = self.speedup("replay"), self.speedup("naive")
        text = (
            f"{self.claim.name}: {self.claimed:.3g}x on {_pct(self.matched_share)} of "
            f"end-to-end time gives {replay_x:.3f}x at p50 by replay (naive {naive_x:.3f}x)"
        )
        if self.claimed <= 1.0:
            return f"{text}: the claim promises no gain"
        return f"{text}: {_pct(max(self.surviving(), 0.0))} of the claimed gain survives end to end"

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        body["claim"] = self.claim.to_dict()
        body["schema_version"] = SCHEMA_VERSION
        body["headline"] = self.headline
        body["speedup"] = {
            model: {pct: self.speedup(model, pct) for pct in ("p50", "p99")}
            for model in ("naive", "replay")
        }
        return body


def _pct(share: float) -> str:
    return f"{share:.0%}" if share >= 0.1 or share == 0 else f"{share:.1%}"


def machine_cores(result: ResultSet) -> float:
    """The cores the set's requests could use (see ``cores_of``)."""
    return cores_of(result.manifest.get("fingerprint") or {})


def cores_of(fingerprint: dict) -> float:
    """The logical CPUs of a fingerprint, fewer where the process was pinned to some
    (affinity) or held to a cgroup CPU quota when it was taken."""
    count = fingerprint.get("host", {}).get("host_processor_vcpu_count")
    cores = float(count) if isinstance(count, int | float) and count > 0 else float(os.cpu_count())
    for check in fingerprint.get("environment") or []:
        value = str(check.get("value", ""))
        number = re.match(r"([0-9.]+)(?: of \w+)? CPUs$", value)
        if check.get("name") in ("cpu_affinity", "cpu_quota") and number:
            cores = min(cores, float(number.group(1)))
    return cores


def check_claim(result: ResultSet, claim: Claim) -> None:
    """Refuse a claim scoped to a stage or layer this set does not have (a typo matches
    nothing, and the projection would quietly promise no gain)."""
    stages = stages_of(result)
    known = {"stage": {s.name for s in stages}, "layer": {s.layer for s in stages}}
    for target, _ in claim.speedups:
        if target.scope and target.scope_name not in known[target.scope]:
            where = claim.path or "--speedup"
            names = ", ".join(sorted(known[target.scope]))
            raise UserError(
                f"{where}: key {target.key!r}: {result.id} has no {target.scope} "
                f"{target.scope_name!r} ({names})"
            )


def project(result: ResultSet, claim: Claim) -> Projection:
    """Project ``claim`` on every successful request of ``result``."""
    if result.manifest["config"]["execution"].get("virtual_speedup"):
        raise UserError(f"{result.id} ran with a virtual speedup: it is a check, not a baseline")
    check_claim(result, claim)
    stages = stages_of(result)
    layers = {s.name: s.layer for s in stages}
    cores = machine_cores(result)
    threads = [r.get("stage_threads") or {} for r in result.manifest.get("replicates", [])]

    def factor(stage: str, label: str, category: str, resource: str) -> float:
        return claim.factor(stage, layers.get(stage, ""), category, resource)[0]

    def claimed(stage: str, label: str, category: str, resource: str) -> bool:
        return bool(claim.factor(stage, layers.get(stage, ""), category, resource)[1])

    rows: list[tuple[int, float, float, float, float]] = []  # replicate, measured, naive, ...
    matched: dict[str, float] = defaultdict(float)
    where: dict[str, set[str]] = defaultdict(set)
    total = 0.0
    for replicate, intervals in ok_requests(result.intervals, result.requests):
        split = split_request(intervals, stages)
        naive = 0.0
        for segment in split.path:
            if segment.kind != "stage":
                naive += segment.ns  # the harness's own waits: never scaled
                continue
            stage = split.stage(segment.stage)
            for (category, resource), ns in stage.by_resource:
                f, key = claim.factor(segment.stage, layers[segment.stage], category, resource)
                naive += ns / f
                if key:
                    matched[key] += ns
                    where[key].add(f"{segment.stage} ({category}, {resource})")
        total += split.latency_ns
        stage_threads = threads[replicate] if replicate < len(threads) else {}
        model = build(intervals, stages, cores, stage_threads)
        identity, _ = replay(model)
        replayed, _ = replay(model, factor, claim.threads, claimed)
        rows.append((replicate, split.latency_ns, naive, replayed, identity))
    if not rows:
        raise UserError(f"result set {result.id} has no successful request to project")
    table = np.array(rows, dtype=float)
    replicate_of, measured, naive, replayed, identity = table.T
    matches = tuple(
        Match(t.key, f, matched[t.key] / total, tuple(sorted(where[t.key])))
        for t, f in claim.speedups
    )
    return Projection(
        claim=claim,
        set_id=result.id,
        requests=len(rows),
        replicates=len(set(replicate_of.tolist())),
        cores=cores,
        matched_share=sum(matched.values()) / total,
        matches=matches,
        measured=_estimates(measured, replicate_of),
        naive=_estimates(naive, replicate_of),
        replay=_estimates(replayed, replicate_of),
        replay_identity_error=float(np.median(np.abs(identity - measured) / measured)),
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
