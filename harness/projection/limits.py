"""Where the model of the machine ends: the interpreter lock, and thread pools that ask more
cores than there are.

The replay models cores. It does not model the interpreter lock (pure-Python work holding it
while a native branch waits to dispatch its next operator) nor pools spinning against each
other. What the recording shows of them is kept: a host compute probe's time off the CPU is
a wait, held fixed under a claim (the lock's share of that stage). Where a set shows the signs,
a projection says so and gives the other end of the range: the same claim replayed as if all
the CPU work of stages that ran side by side held one lock (they then take turns).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from harness.analysis.columns import SplitTable
from harness.analysis.validity import recorded_threads, widest
from harness.archive.result_set import ResultSet
from harness.machine.cores import whole
from harness.projection.claims import Claim
from harness.projection.request_model import CPU, Model, Timeline, all_steps
from harness.words import OFF_CPU, Category, Resource

LOCK = "lock"  # the one pool of the bound
SIGN = 0.05  # a stage whose host compute is off the CPU this share of its time shows the lock


@dataclass(frozen=True)
class Signs:
    """What a set shows of what the replay does not model."""

    off_cpu: dict[str, float]  # stage -> share of its host compute's wall time off the CPU
    width: int  # the most stages or branches of a request that ran at once
    threads: float  # the most intra-op threads a stage ran (or the claim asks) with
    cores: int

    @property
    def oversubscribed(self) -> bool:
        return self.width > 1 and self.width * self.threads > self.cores

    @property
    def shown(self) -> bool:
        return bool(self.off_cpu) or self.oversubscribed

    def sentences(self) -> list[str]:
        out = []
        if self.off_cpu:
            where = ", ".join(f"{s} {v:.0%}" for s, v in sorted(self.off_cpu.items()))
            out.append(
                f"the replay models cores, not the interpreter lock: host compute was off the "
                f"CPU for part of its time ({where}: the lock, or other processes preempting "
                "it), a wait held as recorded"
            )
        if self.oversubscribed:
            out.append(
                f"{self.width} stages or branches at once with {self.threads:g} intra-op "
                f"threads each ask more than {self.cores} cores: the replay shares the cores "
                "out, and does not model pools spinning against each other"
            )
        return out


def signs(result: ResultSet, table: SplitTable, claim: Claim | None = None) -> Signs:
    """The lock's share of each stage's host compute, and whether the pools oversubscribe the
    cores as recorded or as the claim's threads would."""
    waits = table.waits
    off = waits[waits["label"] == OFF_CPU].groupby("stage", observed=True)["ns"].sum()
    charges = table.charges
    host = charges[
        (charges["category"] == Category.COMPUTE.value)
        & (charges["resource"] == Resource.HOST_CPU.value)
    ]
    on = host.groupby("stage", observed=True)["ns"].sum()
    shares = {}
    for stage, ns in off.items():
        total = float(ns) + float(on.get(stage, 0))
        if total and float(ns) / total >= SIGN:
            shares[str(stage)] = float(ns) / total
    recorded = recorded_threads(result)
    asked = [claim.threads or 0, *(t for _, t in claim.key_threads)] if claim else []
    cores = whole(result.manifest.fingerprint.cores)
    return Signs(shares, widest(result), max([recorded, *asked]), cores)


def take_turns(timelines: list[Timeline]) -> None:
    """Make the host CPU work of ``timelines`` take turns on one lock (a model's LOCK pool, of
    capacity 1): no longer on the cores."""
    for timeline in timelines:
        for step in all_steps(timeline):
            if step.pool == CPU:
                step.pool, step.demand = LOCK, 1.0


def locked(model: Model) -> Model:
    """A copy of ``model`` whose host CPU work all takes turns on one lock."""
    held = copy.deepcopy(model)
    held.capacity = {**held.capacity, LOCK: 1.0}
    take_turns([node.timeline for node in held.stages])
    return held
