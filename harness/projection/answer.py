"""The answer a run ends with: what a chip faster at compute would make of this pipeline.

It is the naive projection of one claim, "compute on this run's device, 1.5x faster", computed
by the same Amdahl as ``gapbench project``, with the shares of time it does not shorten.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from harness.analysis.breakdown import bucket_shares, category_shares
from harness.analysis.columns import split_table
from harness.analysis.stats import bootstrap_ratio, median_ratio
from harness.archive.result_set import ResultSet
from harness.projection.claims import Claim, parse_key
from harness.projection.project import naive
from harness.projection.sentences import answer_sentence
from harness.words import OFF_CPU, UNATTRIBUTED, Category, Resource

DEFAULT_FACTOR = 1.5


@dataclass(frozen=True)
class Answer:
    """The sentence a buyer came for, and the numbers it is made of."""

    target: str  # e.g. "host compute"; "" when no request succeeded
    chip: str  # "CPU" or "GPU"
    target_share: float
    factor: float
    speedup: float
    interval: tuple[float, float]
    interval_basis: str
    movement_share: float
    waiting_share: float
    unattributed_share: float
    # Of the waiting, the host compute probes' threads off the CPU (the lock, preemption).
    off_cpu_share: float = 0.0
    sentence: str = field(default="", compare=False)


def answer(result: ResultSet, factor: float = DEFAULT_FACTOR) -> Answer:
    """What a chip ``factor``x faster at compute would do end to end, at p50 (naive Amdahl).

    The interval is the spread over replicates when there are several, otherwise a bootstrap
    over this set's requests (which are not independent samples, and say so).
    """
    on_device = result.manifest.execution.device != "cpu"
    resource = Resource.DEVICE.value if on_device else Resource.HOST_CPU.value
    table = split_table(result)
    if not len(table):
        nan = float("nan")
        empty = Answer("", "", 0.0, factor, nan, (nan, nan), "", 0.0, 0.0, 0.0)
        return _said(empty)
    claim = Claim(
        name=f"{resource} compute {factor:g}x",
        speedups=((parse_key(f"{resource}.{Category.COMPUTE.value}"), factor),),
    )
    layers = {s.name: s.layer for s in result.manifest.stages}
    latency = table.requests["latency_ns"].to_numpy(dtype=float)
    projected = naive(table, claim, layers).ns
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
    buckets = bucket_shares(result)
    waits = table.waits
    off_cpu = int(waits.loc[waits["critical"] & (waits["label"] == OFF_CPU), "ns"].sum())
    return _said(
        Answer(
            target="device compute" if on_device else "host compute",
            chip="GPU" if on_device else "CPU",
            target_share=category_shares(result).get((Category.COMPUTE.value, resource), 0.0),
            factor=factor,
            speedup=median_ratio(latency, projected),
            interval=interval,
            interval_basis=basis,
            movement_share=buckets[Category.MOVEMENT.value],
            waiting_share=buckets[Category.SCHEDULING.value],
            unattributed_share=buckets[UNATTRIBUTED],
            off_cpu_share=off_cpu / float(latency.sum()),
        )
    )


def _said(a: Answer) -> Answer:
    return replace(a, sentence=answer_sentence(a))
