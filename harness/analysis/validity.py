"""The validity verdict of a result set: what makes its numbers trustworthy, or not."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import pandas as pd

from harness.analysis.invariants import Invariants, set_invariants
from harness.analysis.stats import PERCENTILE_FLOORS, Percentiles
from harness.analysis.telemetry import frequency_drop
from harness.archive.schema import Agreement
from harness.archive.store import ResultSet
from harness.machine.cores import whole
from harness.machine.environment import STEAL_WARN_FRACTION
from harness.words import Category, Kind

MIN_COVERAGE = 0.9
OFF_CPU_RATIO = 0.5
THROTTLE_DROP = 0.05  # a median core frequency this far below the run's start
MAX_ERROR_RATE = 0.01


@dataclass(frozen=True)
class Verdict:
    """``valid`` is False when a check fails outright; ``notes`` say why, and what is indicative
    (those notes are also in ``sampling``, for views that leave sample counts out)."""

    valid: bool
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    sampling: tuple[str, ...] = ()


def _disagreement(agreement: Agreement | None, notes: list[str]) -> list[str]:
    """Problems when a backend did other work than its reference; a note for near-ties."""
    if agreement is None:
        return []
    backend, reference = agreement.backend, agreement.reference
    problems = []
    if agreement.top_k_equal < 1.0:
        share = agreement.top_k_equal
        problems.append(f"{backend} retrieved other passages than {reference} ({share:.0%} alike)")
    if not agreement.logits_within_tolerance:
        diff, tolerance = agreement.max_abs_logit_diff, agreement.logit_tolerance
        problems.append(
            f"{backend}'s logits differ from {reference}'s by {diff:.2g} > {tolerance:g}"
        )
    if agreement.tokens_equal < 1.0:
        share = agreement.tokens_equal
        notes.append(
            f"{backend} generated {reference}'s tokens in {share:.0%} of the checked "
            "requests (greedy decoding follows near-ties either way)"
        )
    return problems


def verdict(
    result: ResultSet,
    e2e: Percentiles,
    coverage: float,
    stages: pd.DataFrame | None = None,
    invariants: Invariants | None = None,
) -> Verdict:
    """Judge a set from its raw data: completeness, invariants (checked now unless given),
    errors, samples, noise, coverage, and (given the stage table) compute that was off-CPU and
    threads that oversubscribe."""
    invariants = invariants if invariants is not None else set_invariants(result)
    problems: list[str] = []
    notes: list[str] = []
    manifest = result.manifest
    if not manifest.complete:
        why = manifest.stopped_by or "interrupted"
        problems.append(f"incomplete ({why}): only what finished is shown")
    if isinstance(manifest.work.request_stream.inputs_sha256, tuple):
        problems.append("worker processes were given different inputs: the plugin is unseeded")
    if invariants.violation_count:
        first = invariants.violations[0]
        count = invariants.violation_count
        problems.append(f"{count} accounting invariant violations, e.g. {first}")
    total = len(result.requests)
    failed = int((~result.requests["ok"]).sum()) if total else 0
    # The first failure's own words, so a broken stage is named where the run is judged.
    first = f", the first: {_first_error(result.requests)}" if failed else ""
    if total and failed / total > MAX_ERROR_RATE:
        problems.append(f"{failed} of {total} requests failed ({failed / total:.1%}){first}")
    elif failed:
        notes.append(
            f"{failed} of {total} requests failed and are left out of the percentiles{first}"
        )
    if e2e.n == 0:
        problems.append("no successful request was measured")
    replicates = manifest.replicates
    if any(r.hit_max_duration for r in replicates):
        notes.append("stopped at the maximum duration before the minimum request count")
    steal = max((r.cpu_steal_fraction or 0.0 for r in replicates), default=0.0)
    if steal > STEAL_WARN_FRACTION:
        notes.append(f"CPU steal took {steal:.1%} of the machine's time during the run")
    sampling: list[str] = []
    if manifest.work.size == "quick":
        sampling.append("quick run: small sizes and few requests, every percentile is indicative")
        notes.append(sampling[-1])
    problems += _disagreement(manifest.agreement, notes)
    profile = manifest.profile
    if profile is not None and not profile.agrees:
        notes.append(f"the {profile.tool} cross-check disagrees with the probes (see its table)")
    if any(r.profile_error for r in replicates):
        notes.append("the profiling pass failed; the timed requests are kept")
    for r in replicates:
        if r.teardown_error:
            notes.append(f"replicate {r.replicate}: {r.teardown_error}; what it measured is kept")
    for pct in (90, 99, 99.9):
        if e2e.indicative(pct):
            sampling.append(
                f"p{pct} is indicative: {e2e.n} samples, {PERCENTILE_FLOORS[pct]} needed"
            )
            notes.append(sampling[-1])
    if e2e.noisy:
        notes.append(f"noisy: IQR/median of end-to-end latency is {e2e.iqr_over_median:.2f}")
    if coverage < MIN_COVERAGE:
        notes.append(f"probe coverage is {coverage:.0%}: much of the time is unattributed")
    movement = result.intervals[
        (result.intervals["kind"] == Kind.PROBE.value)
        & (result.intervals["category"] == Category.MOVEMENT.value)
    ]
    unsized = int((movement["nbytes"] < 0).sum())
    if unsized:
        notes.append(
            f"{unsized} movement intervals carry no byte count (a copy of unknown size): "
            "their rate is unknown"
        )
    if result.telemetry is not None and not result.telemetry.empty:
        drop = frequency_drop(result.telemetry)
        if drop is not None and drop >= THROTTLE_DROP:
            notes.append(f"CPU frequency fell {drop:.0%} during the run: throttling")
    if stages is not None:
        notes += _off_cpu(result, stages)
    notes += _oversubscribed(result)
    return Verdict(not problems, tuple(problems), tuple(notes), tuple(sampling))


def _first_error(requests: pd.DataFrame) -> str:
    failed = requests.loc[~requests["ok"]]
    if "error" not in failed or failed.empty:
        return "unknown"
    order = [c for c in ("replicate", "request") if c in failed]
    return str(failed.sort_values(order)["error"].iloc[0]) or "unknown"


def _off_cpu(result: ResultSet, stages: pd.DataFrame) -> list[str]:
    """Compute-bound stages whose thread was on a CPU for much less than their wall time.

    Wall-clock probes count GIL waits, preemption and steal as if they were the work; on an
    accelerator the host legitimately waits, so only host runs are judged.
    """
    if result.manifest.execution.device != "cpu" or "on_cpu_ms" not in stages:
        return []
    notes = []
    for row in stages.to_dict(orient="records"):
        wall, compute, on_cpu = row["wall_p50_ms"], row.get("compute_ms"), row.get("on_cpu_ms")
        if not wall or compute is None or on_cpu is None or math.isnan(on_cpu):
            continue
        if compute >= 0.5 * wall and on_cpu < OFF_CPU_RATIO * wall:
            notes.append(
                f"stage {row['stage']!r} was on a CPU for {on_cpu / wall:.0%} of its wall time: "
                "its compute waited (GIL, preemption or steal) or ran on threads it does not own"
            )
    return notes


def _oversubscribed(result: ResultSet) -> list[str]:
    """Parallel stages or branches times their intra-op threads, against the cores available."""
    cores = whole(result.manifest.fingerprint.cores)
    threads = max(
        (max(r.stage_threads.values(), default=1) for r in result.manifest.replicates),
        default=1,
    )
    width = max_concurrency(result.intervals)
    if width > 1 and width * threads > cores:
        return [
            f"{width} stages or branches ran at once, each allowed {threads} intra-op threads, "
            f"on {cores} cores: where they run torch ops they contend for the cores"
        ]
    return []


def max_concurrency(intervals: pd.DataFrame) -> int:
    """The most threads of one request that ran its stages or branches at the same instant.

    A stage that fanned out is blocked in its join meanwhile, so its branches count, not it;
    and tasks sharing one thread take turns, so it is threads that are counted.
    """
    spans = intervals[intervals["kind"].isin((Kind.STAGE.value, Kind.BRANCH.value))]
    best = 0
    for _, group in spans.groupby(["replicate", "request"]):
        fanned = set(group.loc[group["kind"] == Kind.BRANCH.value, "stage"])
        leaves = group[(group["kind"] == Kind.BRANCH.value) | ~group["stage"].isin(fanned)]
        threads = leaves["thread"].tolist()
        edges = sorted(
            [(t, 1, th) for t, th in zip(leaves["start_ns"].tolist(), threads, strict=True)]
            + [(t, -1, th) for t, th in zip(leaves["end_ns"].tolist(), threads, strict=True)]
        )
        open_per_thread: dict[int, int] = defaultdict(int)
        for _, step, thread in edges:  # an end sorts before a start at the same instant
            open_per_thread[thread] += step
            best = max(best, sum(1 for n in open_per_thread.values() if n > 0))
    return best
