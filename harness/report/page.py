"""What `gapbench report` shows, computed from the library's own views (``Summary``,
``Comparison``, ``Projection``): the page and its charts only lay these numbers out."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from harness import __version__
from harness.analysis.comparability import same_work
from harness.analysis.machines import MachineDifferences, accelerators, differences, gib
from harness.analysis.price import Cost, cost
from harness.analysis.stats import sample_floor
from harness.analysis.summary import Summary, summarize
from harness.archive.result_set import ResultSet
from harness.archive.schema import KeptProjection
from harness.errors import UserError
from harness.machine.fingerprint import Fingerprint
from harness.projection.budget import Budget
from harness.projection.claims import Claim
from harness.projection.lineup import distinct, lineup
from harness.projection.project import project
from harness.projection.replay_sample import REPLAY_SAMPLE
from harness.report.against import Pairing, ProjectedRow, against

CATEGORIES = ("compute", "movement", "scheduling", "unattributed")  # the split, as stacked
ECDF_POINTS = 1001  # past this many requests, the distribution is drawn at its quantiles


@dataclass(frozen=True)
class StageSplit:
    """A stage's median wall time and its median per category (ms; 0 where none was seen)."""

    stage: str
    layer: str
    wall_p50_ms: float
    compute_ms: float
    movement_ms: float
    scheduling_ms: float
    unattributed_ms: float


@dataclass(frozen=True)
class Machine:
    """The machine a set ran on, in words, from its manifest's fingerprint."""

    cpu: str
    cores: str
    memory: str
    accelerators: str
    system: str


@dataclass(frozen=True)
class SetView:
    """One result set as the page shows it."""

    index: int  # from 1, in the order given: [1] is the base
    summary: Summary
    machine: Machine
    work: int  # sets with the same number were given the same work
    stages: tuple[StageSplit, ...]
    ecdf_ms: tuple[float, ...]  # end-to-end latency of the ok requests, ascending
    ecdf_share: tuple[float, ...]  # the share of them at or under each
    requests_per_s: float  # answered a second of measured time (NaN: not known)
    tokens_per_s: float | None  # output tokens a second (None: nothing decoded)
    requests_per_joule: str  # with the counters it counts, or "unknown"
    cost: Cost | None  # None: no price given for it
    errors: tuple[tuple[str, int], ...]  # each distinct error, most frequent first

    @property
    def id(self) -> str:
        return self.summary.result.id

    @property
    def label(self) -> str:
        """A short name for axes and legends: its place, its workload, its id's tail."""
        return f"[{self.index}] {self.summary.result.manifest.workload} {self.id[-8:]}"

    @property
    def requests(self) -> int:
        return len(self.summary.result.requests)

    @property
    def error_rate(self) -> float:
        return self.summary.failed / self.requests if self.requests else math.nan


@dataclass(frozen=True)
class LoadPoint:
    """A set's throughput beside its latency: under a load, or one request at a time."""

    index: int
    work: int
    throughput_qps: float
    p50_ms: float
    p99_ms: float
    how: str  # the load in words
    indicative: bool  # p99 over too few requests to mean much


@dataclass(frozen=True)
class Page:
    """Everything the report shows: the sets, the base beside the others, the projections."""

    sets: tuple[SetView, ...]
    pairings: tuple[Pairing, ...]
    projected: tuple[ProjectedRow, ...]
    load: tuple[LoadPoint, ...]  # empty unless a set ran under a load
    machines: MachineDifferences  # what differs in the hardware and software, set to set
    notes: tuple[str, ...]
    made_utc: str
    gapbench: str = __version__

    @property
    def base(self) -> SetView:
        return self.sets[0]


def build(
    results: Sequence[ResultSet],
    claims: Sequence[Claim] = (),
    kept: Sequence[KeptProjection] = (),
    sample_size: int = REPLAY_SAMPLE,
    budget: Budget | None = None,
    notes: Sequence[str] = (),
    prices: Mapping[str, float] | None = None,
) -> Page:
    """The page for ``results``, the first the base that ``claims`` (projected now) and
    ``kept`` (projections kept beside it) are judged from, against each other set of its work;
    ``prices``: USD an hour by set id (``harness.analysis.price.prices``)."""
    if not results:
        raise UserError("a report needs at least one result set")
    distinct(results)
    summaries = [summarize(r) for r in results]
    works = _works(results)
    usd = prices or {}
    views = tuple(_view(i + 1, s, works[i], usd.get(s.result.id)) for i, s in enumerate(summaries))
    made = tuple(project(results[0], c, sample_size, budget) for c in claims)
    # Sets of other work (or run as a check) are set apart, shown but not compared.
    lined = lineup(summaries, made, tuple(kept), set_apart=True) if len(views) > 1 else None
    pairings, rows = against(lined, made, tuple(kept))
    return Page(
        sets=views,
        pairings=pairings,
        projected=rows,
        load=_load_points(views),
        machines=differences(results),
        notes=tuple(notes),
        made_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def _works(results: Sequence[ResultSet]) -> list[int]:
    """Each set's work, numbered from 1 in the order first seen, as ``same_work`` tells works
    apart (a set without a digest is alone in its work)."""
    found: list[int] = []
    for i, result in enumerate(results):
        alike = next((found[j] for j in range(i) if same_work(results[j], result)), None)
        found.append(alike or max(found, default=0) + 1)
    return found


def _view(index: int, summary: Summary, work: int, usd: float | None) -> SetView:
    result = summary.result
    ok = result.requests.loc[result.requests["ok"], "latency_s"].to_numpy(dtype=float) * 1e3
    values, shares = ecdf(ok)
    failed = result.requests.loc[~result.requests["ok"], "error"].fillna("").astype(str)
    errors = Counter(e.strip() or "(no message)" for e in failed)
    made = summary.throughput
    return SetView(
        index=index,
        summary=summary,
        machine=machine(result.manifest.fingerprint),
        work=work,
        stages=_stages(summary),
        ecdf_ms=values,
        ecdf_share=shares,
        requests_per_s=math.nan if made is None else made.requests_per_s,
        tokens_per_s=None if made is None else made.output_tokens_per_s,
        requests_per_joule="unknown" if made is None else made.per_joule_text(),
        cost=None if made is None or usd is None else cost(made, usd),  # None: nothing served
        errors=tuple(errors.most_common()),
    )


def ecdf(values: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The empirical distribution of ``values``: every one while few, else its quantiles."""
    ordered = np.sort(values[np.isfinite(values)])
    if not len(ordered):
        return (), ()
    if len(ordered) <= ECDF_POINTS:
        shares = np.arange(1, len(ordered) + 1) / len(ordered)
        return tuple(ordered.tolist()), tuple(shares.tolist())
    shares = np.linspace(0.0, 1.0, ECDF_POINTS)
    return tuple(np.quantile(ordered, shares).tolist()), tuple(shares.tolist())


def _stages(summary: Summary) -> tuple[StageSplit, ...]:
    def number(row: dict[Hashable, Any], key: str) -> float:
        value = row.get(key)
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else 0.0

    return tuple(
        StageSplit(
            str(row["stage"]),
            str(row.get("layer") or ""),
            number(row, "wall_p50_ms"),
            *(number(row, f"{c}_ms") for c in CATEGORIES),
        )
        for row in summary.stages.to_dict(orient="records")
    )


def machine(fingerprint: Fingerprint) -> Machine:
    """The fingerprint's CPU, cores, memory, accelerators and system, as the page says them."""
    host = fingerprint.host
    physical = host.host_processor_physical_core_total or host.host_processor_core_count
    cores = [f"{physical} cores" if physical else "", _count(host.host_processor_vcpu_count)]
    if fingerprint.usable_cores is not None:
        cores.append(f"{fingerprint.usable_cores:g} usable")
    return Machine(
        cpu=host.host_processor_model_name,
        cores=", ".join(c for c in cores if c) or "unknown",
        memory=gib(host.host_memory_capacity) or "unknown",
        accelerators=accelerators(fingerprint) or "not probed",
        system=f"{host.operating_system}, kernel {host.kernel}",
    )


def _count(vcpus: int | None) -> str:
    return f"{vcpus} vCPUs" if vcpus else ""


def how(summary: Summary) -> str:
    """The load a set ran under, in words."""
    load = summary.load
    if load is None:
        return "one request at a time"
    if not load.by_loadgen:
        return f"closed loop of {load.concurrency} clients"
    rate = f" at {load.target_qps:g} qps" if load.target_qps is not None else ""
    return f"{load.scenario}{rate}, {load.workers} worker{'s' if load.workers != 1 else ''}"


def _load_points(views: tuple[SetView, ...]) -> tuple[LoadPoint, ...]:
    """Every set under a load, with the sets of the same work run one request at a time
    beside them: the curve's unloaded end."""
    loaded = {v.work for v in views if v.summary.load is not None}
    points = []
    for view in views:
        if view.work not in loaded:
            continue
        load, e2e = view.summary.load, view.summary.end_to_end
        if load is not None:
            p50, p99 = load.latency_ms.get(50.0, math.nan), load.latency_ms.get(99.0, math.nan)
            rough = load.counted < sample_floor(99.0)
        else:
            p50, p99, rough = e2e.p50 * 1e3, e2e.p99 * 1e3, e2e.indicative(99)
        how_run = how(view.summary)
        points.append(
            LoadPoint(view.index, view.work, view.requests_per_s, p50, p99, how_run, rough)
        )
    return tuple(points)
