"""The answer a run ends with: what the user's claims would make of this pipeline, or, with
none given, the most each part of the machine could give (its time gone: Amdahl's bound).

Both are the naive projection ``gapbench project`` makes (Amdahl along each request's critical
path), at p50, with the shares of time no chip shortens beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from harness.analysis.breakdown import bucket_shares, category_shares
from harness.analysis.columns import SplitTable, split_table
from harness.analysis.stats import bootstrap_ratio, median_ratio
from harness.archive.result_set import ResultSet
from harness.errors import UserError
from harness.projection.claims import MAX_FACTOR, Claim, parse_key
from harness.projection.project import check_claim, naive
from harness.projection.sentences import answer_sentence
from harness.projection.transfer import resolve
from harness.words import OFF_CPU, UNATTRIBUTED, Category, Resource

# The parts of a machine a faster chip or link shortens, in the order they are said.
PARTS = (
    (Category.COMPUTE.value, Resource.HOST_CPU.value, "host compute", "CPU"),
    (Category.COMPUTE.value, Resource.DEVICE.value, "device compute", "GPU"),
    (Category.MOVEMENT.value, Resource.LINK.value, "host-device and network transfers", "link"),
    (Category.MOVEMENT.value, Resource.HOST_MEMORY.value, "host memory copies", "memory"),
    (Category.MOVEMENT.value, Resource.HOST_CPU.value, "(de)serialisation", "CPU"),
    (Category.COMPUTE.value, Resource.REMOTE.value, "remote compute", "remote server"),
)
MIN_SHARE = 0.005  # a part under half a percent of the time is not worth a bound


@dataclass(frozen=True)
class Bound:
    """One part of the machine: its share of end-to-end time, and the end-to-end speedup at
    p50 if it took no time at all (what no faster part can beat)."""

    part: str
    chip: str
    category: str
    resource: str
    share: float
    most: float
    interval: tuple[float, float]
    interval_basis: str


@dataclass(frozen=True)
class Said:
    """A user's claim, projected naively on this set."""

    claim: str
    matched_share: float
    speedup: float
    interval: tuple[float, float]
    interval_basis: str
    unused: tuple[str, ...] = ()  # resources the claim names that nothing here ran on
    problem: str = ""  # why it could not be projected (a claim by class on an unprofiled set)


@dataclass(frozen=True)
class Answer:
    """The sentence a buyer came for, and the numbers it is made of."""

    bounds: tuple[Bound, ...]
    claims: tuple[Said, ...]
    movement_share: float
    waiting_share: float
    unattributed_share: float
    # Of the waiting, the host compute probes' threads off the CPU (the lock, preemption).
    off_cpu_share: float = 0.0
    device: str = "cpu"
    requests: int = 0  # the successful requests it speaks of
    sentence: str = field(default="", compare=False)


def answer(result: ResultSet, claims: Sequence[Claim] = ()) -> Answer:
    """What ``claims`` would do end to end at p50, or without any, each part's bound, each
    with its spread (``_spread``)."""
    device = result.manifest.execution.device
    table = split_table(result)
    if not len(table):
        return _said(Answer((), (), 0.0, 0.0, 0.0, device=device))
    layers = {s.name: s.layer for s in result.manifest.stages}
    latency = table.requests["latency_ns"].to_numpy(dtype=float)
    shares = category_shares(result)
    bounds = []
    for category, resource, part, chip in PARTS:
        share = shares.get((category, resource), 0.0)
        if share >= MIN_SHARE:
            gone = Claim(part, ((parse_key(f"{resource}.{category}"), MAX_FACTOR),))
            most = _spread(table, latency, naive(table, gone, layers).ns)
            bounds.append(Bound(part, chip, category, resource, share, *most))
    for claim in claims:  # a stage or layer the set does not have is a typo: refused
        check_claim(result, claim)
    said = tuple(_claim(result, table, claim, layers, latency, shares) for claim in claims)
    buckets = bucket_shares(result)
    waits = table.waits
    off_cpu = int(waits.loc[waits["critical"] & (waits["label"] == OFF_CPU), "ns"].sum())
    return _said(
        Answer(
            bounds=tuple(bounds),
            claims=said,
            movement_share=buckets[Category.MOVEMENT.value],
            waiting_share=buckets[Category.SCHEDULING.value],
            unattributed_share=buckets[UNATTRIBUTED],
            off_cpu_share=off_cpu / float(latency.sum()),
            device=device,
            requests=len(table),
        )
    )


def _claim(
    result: ResultSet,
    table: SplitTable,
    claim: Claim,
    layers: dict[str, str],
    latency: np.ndarray,
    shares: dict[tuple[str, str], float],
) -> Said:
    used = {resource for (_, resource), share in shares.items() if share > 0}
    unused = tuple(
        sorted({t.resource for t, _ in claim.speedups if t.resource and t.resource not in used})
    )
    nan = float("nan")
    if claim.by_class:
        try:
            claim = resolve(result, claim).aware
        except UserError as exc:
            return Said(claim.name, 0.0, nan, (nan, nan), "", unused, str(exc))
    scaled = naive(table, claim, layers)
    matched = sum(scaled.matched.values()) / float(latency.sum())
    return Said(claim.name, matched, *_spread(table, latency, scaled.ns), unused)


def _spread(
    table: SplitTable, latency: np.ndarray, projected: np.ndarray
) -> tuple[float, tuple[float, float], str]:
    """The p50 speedup, and its range over replicates when there are several, otherwise a
    bootstrap over this set's requests (not independent samples: said so)."""
    replicate_of = table.requests["replicate"].to_numpy()
    replicates = sorted(set(replicate_of.tolist()))
    if len(replicates) > 1:
        ratios = [
            median_ratio(latency[replicate_of == r], projected[replicate_of == r])
            for r in replicates
        ]
        interval, basis = (min(ratios), max(ratios)), f"range over {len(ratios)} replicates"
    else:
        interval = bootstrap_ratio(latency, projected, paired=True)
        basis = "95% bootstrap over requests"
    return median_ratio(latency, projected), interval, basis


def _said(a: Answer) -> Answer:
    return replace(a, sentence=answer_sentence(a))
