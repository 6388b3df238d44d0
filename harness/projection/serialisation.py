"""Serialisation losses: work that ran one after another though nothing made it wait, and what
the request would have taken had it overlapped, on this machine.

Two kinds are found in each request's model: the branches of a join that all ran in turn on
one thread (``ctx.fan_out(..., parallel=False)``, or calls a stage made one after another as
branches), and stages that ran in turn on one thread though neither depends on the other in
the DAG. The overlapped request is replayed on the model of the machine
(``harness.projection.replay``): on its cores, so two CPU-bound branches on two cores do not
halve while waits overlap whole; a tool server started on this machine asks the same cores.

What a replay cannot see is the interpreter lock: pure-Python work on threads of one process
runs one thread at a time, and a probe's on-CPU time, read alone, does not say whether its
work held the lock. So a second replay gives the bound: every piece of CPU work in turn, as if
all of it held one lock, while the waits still overlap.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.analysis.columns import split_table
from harness.archive.codec import to_dict
from harness.archive.result_set import ResultSet
from harness.projection.budget import Budget
from harness.projection.limits import LOCK, take_turns
from harness.projection.project import Estimate, estimates, replay_base
from harness.projection.replay import replay
from harness.projection.replay_sample import REPLAY_SAMPLE, percentile
from harness.projection.request_model import Model, Step, Timeline, steps
from harness.workload import Stage

# A set with no more of its requests in turn than this ran its work overlapped, as a whole.
OVERLAPPED = 0.05


@dataclass(frozen=True)
class Finding:
    """One place where independent work ran in turn, and in how many requests."""

    where: str
    requests: int


@dataclass(frozen=True)
class Losses:
    """The set's serialisation losses: where, and p50 as measured, overlapped and bounded."""

    findings: tuple[Finding, ...]
    requests: int  # requests with at least one finding (of those replayed)
    replayed: int
    measured: Estimate  # ms
    overlapped: Estimate  # ms, had the serialised work overlapped on this machine's cores
    one_lock: Estimate  # ms, had it overlapped but all its CPU work held one lock
    cores: float
    # Each replicate's p50, measured and overlapped (ms): what a comparison pairs.
    by_replicate: dict[int, tuple[float, float]]

    @property
    def gain(self) -> float:
        """p50 measured over p50 overlapped."""
        overlapped = self.overlapped.value_ms
        return self.measured.value_ms / overlapped if overlapped else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "findings": [{"where": f.where, "requests": f.requests} for f in self.findings],
            "requests": self.requests,
            "replayed": self.replayed,
            "cores": self.cores,
            "p50_ms": {
                "measured": to_dict(self.measured),
                "overlapped": to_dict(self.overlapped),
                "one_lock": to_dict(self.one_lock),
            },
            "by_replicate": {str(r): list(v) for r, v in self.by_replicate.items()},
        }


def losses(
    result: ResultSet, sample_size: int = REPLAY_SAMPLE, budget: Budget | None = None
) -> Losses:
    """Find the set's serialisation losses and replay each affected request overlapped."""
    table = split_table(result)
    cores = result.manifest.fingerprint.cores
    if not len(table):  # no successful request: nothing ran, in turn or not
        nothing = Estimate(float("nan"), None, None)
        return Losses((), 0, 0, nothing, nothing, nothing, cores, {})
    measured = table.requests["latency_ns"].to_numpy(dtype=float)
    replicate_of = table.requests["replicate"].to_numpy()
    budget = budget or Budget()
    base = replay_base(result, sample_size, budget)
    ancestors = _ancestors(result.manifest.stages)
    overlapped, one_lock = measured.copy(), measured.copy()
    found: Counter[str] = Counter()
    affected = 0
    triples = list(zip(base.rows.tolist(), base.models, base.identity, strict=True))
    for row, model, identity in budget.each(triples, "the replay of overlapped stages"):
        parallel, where = _overlapped(model, ancestors)
        if not where:
            continue
        affected += 1
        found.update(set(where))
        # The model's own error cancels: what overlapping changes, taken off what was measured.
        overlapped[row] = measured[row] - (identity - replay(parallel)[0])
        locked, _ = _overlapped(model, ancestors, lock=True)
        one_lock[row] = measured[row] - (identity - replay(locked)[0])
    weights = base.sample.weights if base.sample.sampled else None
    by_replicate = {}
    for r in sorted(set(replicate_of.tolist())):
        mine = replicate_of == r
        w = None if weights is None else weights[mine]
        pair = (percentile(measured[mine], w, 50), percentile(overlapped[mine], w, 50))
        by_replicate[int(r)] = (pair[0] / 1e6, pair[1] / 1e6)
    return Losses(
        findings=tuple(Finding(w, n) for w, n in found.most_common()),
        requests=affected,
        replayed=len(base.rows),
        measured=estimates(measured, replicate_of, weights)["p50"],
        overlapped=estimates(overlapped, replicate_of, weights)["p50"],
        one_lock=estimates(np.maximum(one_lock, overlapped), replicate_of, weights)["p50"],
        cores=cores,
        by_replicate=by_replicate,
    )


def serialised_share(
    result: ResultSet, sample_size: int = REPLAY_SAMPLE, budget: Budget | None = None
) -> float:
    """The share of the set's replayed requests that ran independent work in turn (found
    without replaying them); 0 for a set without a successful request."""
    if not len(split_table(result)):
        return 0.0
    models = replay_base(result, sample_size, budget).models
    ancestors = _ancestors(result.manifest.stages)
    found = sum(1 for m in models if _overlapped(m, ancestors)[1])
    return found / len(models) if models else 0.0


def _ancestors(stages: tuple[Stage, ...]) -> dict[str, set[str]]:
    after = {s.name: set(s.after) for s in stages}
    out: dict[str, set[str]] = {}

    def of(name: str) -> set[str]:
        if name not in out:
            out[name] = set()
            for parent in after.get(name, ()):
                out[name] |= {parent} | of(parent)
        return out[name]

    for stage in stages:
        of(stage.name)
    return out


def _overlapped(
    model: Model, ancestors: dict[str, set[str]], lock: bool = False
) -> tuple[Model, list[str]]:
    """A copy of ``model`` with its serialised work made concurrent, and where it was; with
    ``lock``, that work's CPU steps take turns on one lock (and no longer count on the cores:
    a bound, not a model)."""
    parallel = copy.deepcopy(model)
    parallel.capacity = {**parallel.capacity, LOCK: 1.0}
    where: list[str] = []
    moved: list[Timeline] = []
    for node in parallel.stages:
        # A stage waits only for what it depends on; another stage before it on its thread
        # was in its way, not its input.
        independent = [a for a in node.after if a not in ancestors.get(node.name, set())]
        independent = [a for a in independent if node.name not in ancestors.get(a, set())]
        if independent:
            where += [f"stages {a} and {node.name}" for a in independent]
            node.after = tuple(a for a in node.after if a not in independent)
            moved += [node.timeline] + [
                n.timeline for n in parallel.stages if n.name in independent
            ]
    for step in steps(parallel):
        # All of a join's branches on one thread, one after another. (Branches spread over
        # several threads ran beside each other; a pool thread taking a second branch once
        # its first is done is the pool's doing, not a hand-off in turn.)
        lanes = [lane for lane in step.branches if lane]
        if len(lanes) == 1 and len(lanes[0]) > 1:
            count = sum(len(lane) for lane in step.branches)
            where.append(f"{step.stage}: {count} branches of {step.label!r} in turn")
            # The join waits as long after its last branch as it did: moved branches end
            # sooner, and the join with them.
            tail = step.end_ns - max(b.end_ns for lane in step.branches for b in lane)
            step.branches = [[b] for lane in step.branches for b in _lanes(step, lane)]
            step.end_ns = max(b.end_ns for lane in step.branches for b in lane) + tail
            moved += [b for lane in step.branches for b in lane]
    if lock:
        take_turns(moved)
    return parallel, where


def _lanes(join: Step, lane: list[Timeline]) -> list[Timeline]:
    """The branches of one lane, each moved to start as the lane's first did after the join
    began, plus its own dispatch gap: on a thread of its own it waits for none before it."""
    out = []
    previous_end = join.start_ns
    for branch in lane:
        gap = max(branch.start_ns - previous_end, 0)
        previous_end = branch.end_ns
        _shift(branch, join.start_ns + gap - branch.start_ns)
        out.append(branch)
    return out


def _shift(timeline: Timeline, delta: int) -> None:
    timeline.start_ns += delta
    timeline.end_ns += delta
    for step in timeline.steps:
        step.start_ns += delta
        step.end_ns += delta
        for lane in step.branches:
            for branch in lane:
                _shift(branch, delta)
