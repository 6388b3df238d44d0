"""From a claim to the end-to-end gain: naive Amdahl beside a replay of the dependency graph.

Every stretch of a request's recorded time gets the one factor its claim gives it (see
``projection.claims``). The naive model divides the matched time along the recorded critical
path and adds it up again (Amdahl on the summed time). The replay model (``projection.replay``)
runs the request again on a model of its stage DAG, threads and cores with the scaled work, so
overlap, contention and a critical path that moves are accounted for. The harness's own waits
(queue, handoff, generator lag) are never scaled: no vendor's part shortens them.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from harness import __version__
from harness.analysis.columns import SplitTable, split_table
from harness.analysis.stats import PERCENTILE_FLOORS
from harness.archive.codec import to_dict
from harness.archive.history import PROJECTION_VERSION
from harness.archive.result_set import ResultSet
from harness.errors import UserError, in_range
from harness.projection.budget import Budget
from harness.projection.claims import Claim
from harness.projection.limits import locked, signs
from harness.projection.replay import replay
from harness.projection.replay_sample import (
    PERCENTILES,
    REPLAY_SAMPLE,
    REPLAY_SAMPLE_MAX,
    ReplaySample,
    choose,
    percentile,
    sampling_error,
)
from harness.projection.request_model import Model, request_models
from harness.projection.sentences import headline
from harness.projection.transfer import resolve

MODELS = ("naive", "replay")
SAMPLING_ROUGH = 0.05  # a replayed percentile the sample may move further is marked ~
IDENTITY_WARN = 0.01  # replaying a set unchanged should give back its latency


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
    side_by_side: int = 0  # requests whose stages ran side by side
    replayed: int = 0  # of those, how many the event loop replayed (all, or a sample)
    sampling_error: dict[str, float] | None = None  # per percentile, what the sample moves
    # What the set shows that the replay does not model (harness.projection.limits), and the
    # claim replayed with the CPU work of side-by-side stages under one lock: the other end.
    limits: tuple[str, ...] = ()
    lock: dict[str, Estimate] | None = None

    def speedup(self, model: str, pct: str = "p50") -> float:
        chosen = {"naive": self.naive, "replay": self.replay, "lock": self.lock or self.replay}
        return self.measured[pct].value_ms / chosen[model][pct].value_ms

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

    def indicative(self, model: str, pct: str) -> bool:
        """A figure to read as approximate: p99 from too few requests, or a replayed one the
        replay's sample may have moved by more than ``SAMPLING_ROUGH``."""
        if pct == "p99" and self.p99_indicative:
            return True
        moved = (self.sampling_error or {}).get(pct, 0.0)
        return model == "replay" and moved > SAMPLING_ROUGH

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
                model: {pct: self.speedup(model, pct) for pct in PERCENTILES}
                for model in (*MODELS, *(["lock"] if self.lock else []))
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


@dataclass(frozen=True)
class Naive:
    """Amdahl on each request's recorded critical path: its scaled latency, and what matched."""

    ns: np.ndarray  # per row of the split table
    matched: dict[str, float]  # claim key -> recorded ns it matched, over every request
    where: dict[str, tuple[str, ...]]  # claim key -> "stage (category, resource)"


def naive(table: SplitTable, claim: Claim, layers: dict[str, str]) -> Naive:
    """Every request's latency with each stretch along its critical path divided by the factor
    ``claim`` gives it; the harness's own waits (queue, handoff, lag) are never scaled."""
    on = table.charges[table.charges["critical"]]
    # One factor per (stage, category, resource) there is, not one per stretch.
    kinds = on[["stage", "category", "resource"]].drop_duplicates()
    said = [claim.factor(st, layers[st], c, r) for st, c, r in kinds.itertuples(index=False)]
    kinds = kinds.assign(factor=[f for f, _ in said], key=[k for _, k in said])
    on = on.merge(kinds, on=["stage", "category", "resource"], how="left")
    scaled = np.bincount(on["row"], weights=on["ns"] / on["factor"], minlength=len(table))
    segments = table.requests[["lag_ns", "queue_ns", "handoff_ns"]].sum(axis=1).to_numpy()
    hit = on[on["key"] != ""]
    matched = {str(k): float(ns) for k, ns in hit.groupby("key")["ns"].sum().items()}
    named = kinds[kinds["key"] != ""]
    where = {
        str(key): tuple(
            sorted(
                f"{st} ({c}, {r})"
                for st, c, r in zip(g["stage"], g["category"], g["resource"], strict=True)
            )
        )
        for key, g in named.groupby("key")
    }
    return Naive(scaled + segments, matched, where)


def project(
    result: ResultSet,
    claim: Claim,
    sample_size: int = REPLAY_SAMPLE,
    budget: Budget | None = None,
) -> Projection:
    """Project ``claim`` on every successful request of ``result``; of the requests whose
    stages ran side by side, at most ``sample_size`` are replayed (0: every one), a seeded
    sample standing for the rest (``harness.projection.replay_sample``). The replays stop in
    one line past the ``budget`` (``BUDGET_S`` seconds when None)."""
    budget = budget or Budget()
    manifest = result.manifest
    if manifest.execution.virtual_speedup:
        raise UserError(f"{result.id} ran with a virtual speedup: it is a check, not a baseline")
    check_claim(result, claim)
    if claim.by_class:
        claim = resolve(result, claim).aware
    layers = {s.name: s.layer for s in manifest.stages}
    table = split_table(result)
    if not len(table):
        raise UserError(f"result set {result.id} has no successful request to project")

    def factor(stage: str, label: str, category: str, resource: str) -> float:
        return claim.factor(stage, layers.get(stage, ""), category, resource)[0]

    def threads(stage: str, label: str, category: str, resource: str) -> float | None:
        return claim.threads_for(stage, layers.get(stage, ""), category, resource)

    measured = table.requests["latency_ns"].to_numpy(dtype=float)
    scaled = naive(table, claim, layers)
    # A request whose stages ran one after another, each on one timeline, replays as the sum
    # of its scaled pieces and fixed waits: nothing ran beside anything to contend with it.
    base = replay_base(result, sample_size, budget)
    sample = base.sample
    replayed, identity = scaled.ns.copy(), measured.copy()
    identity[base.rows] = base.identity
    pairs = list(zip(base.rows.tolist(), base.models, strict=True))
    for row, model in budget.each(pairs, f"the replay of claim {claim.name!r}"):
        replayed[row], _ = replay(model, factor, threads)
    weights = sample.weights if sample.sampled else None
    replicate_of = table.requests["replicate"].to_numpy()
    shown = signs(result, table, claim)
    lock = None
    if shown.shown and len(base.rows):
        gains = []
        for model in budget.each(base.models, "the replay under one lock"):
            held = locked(model)
            gains.append(replay(held)[0] - replay(held, factor, threads)[0])
        held_ns = replayed.copy()
        held_ns[base.rows] = measured[base.rows] - np.array(gains)
        lock = estimates(held_ns, replicate_of, weights)
    total = float(measured.sum())
    matches = tuple(
        Match(t.key, f, scaled.matched.get(t.key, 0.0) / total, scaled.where.get(t.key, ()))
        for t, f in claim.speedups
    )
    return Projection(
        claim=claim,
        set_id=result.id,
        requests=len(table),
        replicates=len(set(replicate_of.tolist())),
        cores=manifest.fingerprint.cores,
        matched_share=sum(scaled.matched.values()) / total,
        matches=matches,
        measured=estimates(measured, replicate_of),
        naive=estimates(scaled.ns, replicate_of),
        replay=estimates(replayed, replicate_of, weights),
        replay_identity_error=percentile(np.abs(identity - measured) / measured, weights, 50),
        side_by_side=sample.side_by_side,
        replayed=len(sample.rows),
        sampling_error=(
            sampling_error(sample, replayed, measured, scaled.ns) if sample.sampled else None
        ),
        limits=tuple(shown.sentences()),
        lock=lock,
    )


@dataclass(frozen=True)
class ReplayBase:
    """What every claim on a set replays: the chosen requests' models, and their latency
    replayed without a claim (the model's check against what was recorded)."""

    sample: ReplaySample
    rows: np.ndarray  # the rows replayed, each with its model
    models: list[Model]
    identity: np.ndarray  # per replayed row, ns


BASES: weakref.WeakKeyDictionary[ResultSet, dict[int, ReplayBase]] = weakref.WeakKeyDictionary()


def replay_base(result: ResultSet, size: int, budget: Budget | None = None) -> ReplayBase:
    kept = BASES.setdefault(result, {})
    in_range("sample size", size, 0, REPLAY_SAMPLE_MAX)  # 0: every request
    if size not in kept:
        budget = budget or Budget()
        table = split_table(result)
        replicate_of = table.requests["replicate"].to_numpy()
        sample = choose(np.flatnonzero(~table.sequential()), len(table), size, replicate_of)
        built = list(request_models(result, sample.rows))
        rows = np.array([row for row, _ in built], np.int64)
        models = [model for _, model in built]
        checking = budget.each(models, "the replay of the set as measured")
        identity = np.array([replay(model)[0] for model in checking], float)
        kept[size] = ReplayBase(sample, rows, models, identity)
    return kept[size]


def estimates(
    ns: np.ndarray, replicate_of: np.ndarray, weights: np.ndarray | None = None
) -> dict[str, Estimate]:
    """p50 and p99 over all requests (each counted ``weights`` times when a sample stands for
    the rest), with their range over replicates when there are several."""
    out = {}
    for name, q in PERCENTILES.items():
        value = percentile(ns, weights, q) / 1e6
        per = []
        for r in sorted(set(replicate_of.tolist())):
            mine = replicate_of == r
            per.append(percentile(ns[mine], None if weights is None else weights[mine], q) / 1e6)
        low, high = (min(per), max(per)) if len(per) > 1 else (None, None)
        out[name] = Estimate(value, low, high)
    return out
