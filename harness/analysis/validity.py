"""The validity verdict of a result set: what makes its numbers trustworthy, or not."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.analysis.invariants import Invariants, set_invariants
from harness.analysis.load import LoadReport
from harness.analysis.overhead import overhead
from harness.analysis.roofline import timed_call_ms
from harness.analysis.stats import NOISE_THRESHOLD, PERCENTILE_FLOORS, Percentiles
from harness.analysis.telemetry import frequency_drop
from harness.archive.result_set import ResultSet
from harness.archive.schema import Agreement
from harness.machine.cores import whole
from harness.machine.environment import STEAL_WARN_FRACTION
from harness.words import Category, Kind

MIN_COVERAGE = 0.9
THROTTLE_DROP = 0.05  # a median core frequency this far below the run's start
MAX_ERROR_RATE = 0.01
# Other processes' share of the CPUs the run could use. Past a tenth they share its caches,
# memory bandwidth and scheduler: a note. Past a quarter while those CPUs were saturated
# (others and the run together at 90% or more), the run's threads queued for a CPU and its
# latencies measure that queue, not the pipeline: a problem.
OTHERS_NOISY = 0.10
OTHERS_INVALID = 0.25
SATURATED = 0.90
# Replicates' p50s this far apart differ by more than the run-to-run noise of a quiet machine.
DISAGREE_FLOOR = 0.10
VERY_NOISY = 1.0  # IQR/median of end-to-end latency ten times the noise threshold
PROBE_COST_WARN = 0.05  # probing this share of p50 is a visible part of what is measured


@dataclass(frozen=True)
class Verdict:
    """``valid`` is False when a check fails outright; ``notes`` say why, and what is indicative
    (those notes are also in ``sampling``, for views that leave sample counts out)."""

    valid: bool
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    sampling: tuple[str, ...] = ()
    # The problems a busy machine causes (other processes, noise, replicates that disagree):
    # the set is as invalid, but a quiet machine is the remedy, not a fix to the workload.
    busy: tuple[str, ...] = ()
    # The problems in what the workload did (requests failing, accounting that does not add
    # up, inputs or outputs that differ): a rerun on a quiet machine would not mend them.
    broken: tuple[str, ...] = ()


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
    invariants: Invariants | None = None,
    load: LoadReport | None = None,
) -> Verdict:
    """Judge a set from its raw data: completeness, invariants (checked now unless given),
    errors, samples, noise, coverage, the machine's load, threads that oversubscribe, and
    under a load, the generator's lag and its clock against gapbench's (``load``).

    (Compute whose thread was off the CPU is no note: it is split out as a wait.)"""
    invariants = invariants if invariants is not None else set_invariants(result)
    problems: list[str] = []
    broken: list[str] = []  # what the workload did wrong: a quiet machine would not mend it
    notes: list[str] = []
    manifest = result.manifest
    if not manifest.complete:
        why = manifest.stopped_by or "interrupted"
        problems.append(f"incomplete ({why}): only what finished is shown")
    if isinstance(manifest.work.request_stream.inputs_sha256, tuple):
        broken.append("worker processes were given different inputs: the plugin is unseeded")
    if invariants.violation_count:
        first = invariants.violations[0]
        count = invariants.violation_count
        broken.append(f"{count} accounting invariant violations, e.g. {first}")
    total = len(result.requests)
    failed = int((~result.requests["ok"]).sum()) if total else 0
    # The failures' own words, so a broken stage is named where the run is judged.
    first = f"; most often: {_top_errors(result.requests)}" if failed else ""
    if total and failed / total > MAX_ERROR_RATE:
        broken.append(f"{failed} of {total} requests failed ({failed / total:.1%}){first}")
    elif failed:
        notes.append(
            f"{failed} of {total} requests failed and are left out of the percentiles{first}"
        )
    if e2e.n == 0:
        broken.append("no successful request was measured")
    replicates = manifest.replicates
    if any(r.failed_fast for r in replicates):
        broken.append("its first requests all failed, so measuring stopped there")
    if any(r.hit_max_duration for r in replicates):
        notes.append("stopped at the maximum duration before the minimum request count")
    if any(r.hit_max_requests for r in replicates):
        length = manifest.execution.measurement
        notes.append(
            f"stopped at its cap of {length.request_cap:,.0f} requests before "
            f"{length.min_duration_s:g} s had passed (--min-requests measures more)"
        )
    steal = max((r.cpu_steal_fraction or 0.0 for r in replicates), default=0.0)
    if steal > STEAL_WARN_FRACTION:
        notes.append(f"CPU steal took {steal:.1%} of the machine's time during the run")
    sampling: list[str] = []
    if manifest.work.size == "quick":
        sampling.append("quick run: small sizes and few requests, every percentile is indicative")
        notes.append(sampling[-1])
    broken += _disagreement(manifest.agreement, notes)
    problems += broken
    profile = manifest.profile
    if profile is not None and not profile.agrees(timed_call_ms(result)):
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
    busy: list[str] = []
    # Under arrivals that queue (all at once offline, Poisson in the server scenario), the
    # spread of latency is the queue's, which the load makes: no sign of noise.
    scenario = manifest.execution.load.scenario if manifest.execution.load else ""
    queued = scenario if scenario in ("offline", "server") else ""
    said, trouble = other_processes(result.telemetry)
    loaded = bool(said or trouble or steal > STEAL_WARN_FRACTION)  # the telemetry saw load
    if e2e.iqr_over_median >= VERY_NOISY:
        noise = (
            f"very noisy: IQR/median of end-to-end latency is {e2e.iqr_over_median:.2f}, "
            f"{e2e.iqr_over_median / NOISE_THRESHOLD:.0f}x the {NOISE_THRESHOLD:g} threshold"
        )
        # Blamed on the machine's load only where its telemetry saw load; over a handful of
        # requests the spread itself is too rough to judge a set by.
        if e2e.n < PERCENTILE_FLOORS[90]:
            notes.append(f"{noise}, over only {e2e.n} requests")
        elif queued:
            notes.append(f"{noise}: queries queued under {queued}, as its load makes them")
        elif loaded:
            busy.append(noise)
        elif _load_known(result.telemetry):
            problems.append(f"{noise}; no other load was seen: the spread is the run's own")
        else:
            problems.append(f"{noise}; the machine's load was not recorded")
    elif e2e.noisy:
        notes.append(f"noisy: IQR/median of end-to-end latency is {e2e.iqr_over_median:.2f}")
    # Blamed on the machine's load, again, only where the telemetry saw some.
    if loaded:
        why = " (another job, a throttle or a placement changed the machine)"
    elif _load_known(result.telemetry):
        why = "; no other load was seen: the difference is the run's own"
    else:
        why = "; the machine's load was not recorded"
    (busy if loaded else problems).extend(_replicates_disagree(result, why))
    cost = overhead(result, e2e.p50)
    if cost is not None and cost.share_of_p50 >= PROBE_COST_WARN:
        notes.append(
            f"probing costs {cost.share_of_p50:.0%} of p50 ({cost.probes_per_request:g} "
            f"intervals a request): the probes are a visible part of what is measured"
        )
    if coverage < MIN_COVERAGE:
        notes.append(f"probe coverage is {coverage:.0%}: much of the time is unattributed")
    probes = result.interval_table.of_kinds([Kind.PROBE.value], ["category", "nbytes"])
    unsized = int(((probes["category"] == Category.MOVEMENT.value) & (probes["nbytes"] < 0)).sum())
    if unsized:
        notes.append(
            f"{unsized} movement intervals carry no byte count (a copy of unknown size): "
            "their rate is unknown"
        )
    if result.telemetry is not None and not result.telemetry.empty:
        drop = frequency_drop(result.telemetry)
        if drop is not None and drop >= THROTTLE_DROP:
            notes.append(f"CPU frequency fell {drop:.0%} during the run: throttling")
    notes += said
    busy += trouble
    problems += busy
    notes += _oversubscribed(result)
    if load is not None:
        problems += load.problems
        notes += load.notes
    return Verdict(
        not problems, tuple(problems), tuple(notes), tuple(sampling), tuple(busy), tuple(broken)
    )


def replicate_p50s(result: ResultSet) -> dict[int, float]:
    """Each replicate's p50 end-to-end latency in seconds, over its successful requests."""
    ok = result.requests.loc[result.requests["ok"], ["replicate", "latency_s"]]
    return {int(r): float(v) for r, v in ok.groupby("replicate")["latency_s"].median().items()}


def _replicates_disagree(result: ResultSet, why: str) -> list[str]:
    """A problem where one replicate's p50 is off the other replicates' by more than noise:
    the 95% intervals of the two medians apart, and by at least ``DISAGREE_FLOOR`` (requests
    of one process are not independent samples, so their intervals alone are too narrow).
    ``why`` ends it: what the machine's telemetry says of the cause."""
    ok = result.requests.loc[result.requests["ok"], ["replicate", "latency_s"]]
    groups = {int(r): g.to_numpy(float) for r, g in ok.groupby("replicate")["latency_s"]}
    if len(groups) < 2:
        return []
    found = []
    for r, mine in groups.items():
        others = np.concatenate([v for o, v in groups.items() if o != r])
        ratio = float(np.median(mine) / np.median(others))
        (low, high), (o_low, o_high) = _median_interval(mine), _median_interval(others)
        if (low > o_high or high < o_low) and abs(math.log(ratio)) > math.log1p(DISAGREE_FLOOR):
            found.append((abs(math.log(ratio)), ratio, r))
    if not found:
        return []
    shown = ", ".join(f"{r}: {float(np.median(v)) * 1e3:.4g}" for r, v in groups.items())
    if len(groups) == 2:
        # Each is as far off the other: a busy machine slows a process and seldom speeds one,
        # so the slower is named.
        _, ratio, r = max(found, key=lambda f: f[1])
        off = f"replicate {r} is {ratio:.3f}x slower than the other"
    else:
        _, ratio, r = max(found)
        off = f"replicate {r} is {ratio:.3f}x the other replicates' p50"
    return [
        f"replicates disagree: p50 ms by replicate {shown}; {off}, beyond their 95% intervals "
        f"and the {DISAGREE_FLOOR:.0%} floor{why}"
    ]


def _median_interval(values: np.ndarray) -> tuple[float, float]:
    """A distribution-free 95% interval of the median: order statistics around the middle
    (the binomial's normal approximation)."""
    ranked = np.sort(values)
    n = len(ranked)
    if n < 6:  # the chance all of five fall on one side of the median is over 5%: no interval
        return -math.inf, math.inf
    half = 1.96 * math.sqrt(n) / 2
    low, high = max(math.floor(n / 2 - half), 0), min(math.ceil(n / 2 + half), n - 1)
    return float(ranked[low]), float(ranked[high])


def _load_known(telemetry: pd.DataFrame | None) -> bool:
    return telemetry is not None and not telemetry.empty and "load" in set(telemetry["source"])


def other_processes(telemetry: pd.DataFrame | None) -> tuple[list[str], list[str]]:
    """(notes, problems) on other processes' use of the run's CPUs, per replicate's mean."""
    if telemetry is None or not _load_known(telemetry):
        return [], []
    load = telemetry[telemetry["source"] == "load"]
    by = ["replicate", "t_ns"] if "replicate" in load else ["t_ns"]
    wide = load.pivot_table(index=by, columns="device", values="value", aggfunc="first")
    if "others" not in wide:
        return [], []
    # Each sample weighed by the time it covers (sets from before windows were kept: alike).
    window = wide["window"] if "window" in wide else pd.Series(1.0, index=wide.index)
    weighed = wide[["others", "run"] if "run" in wide else ["others"]].mul(window, axis=0)
    group = weighed.index.get_level_values("replicate") if "replicate" in load else None
    totals = weighed.groupby(group).sum() if group is not None else weighed.sum().to_frame().T
    spans = window.groupby(group).sum() if group is not None else pd.Series([window.sum()])
    means = totals.div(spans.to_numpy(), axis=0)
    worst = means.loc[means["others"].idxmax()]
    others, run = float(worst["others"]), float(worst.get("run", 0.0))
    said = (
        f"other processes used {others:.0%} of the CPUs this run could use "
        f"(the run itself {run:.0%})"
    )
    if others >= OTHERS_INVALID and others + run >= SATURATED:
        return [], [f"{said}: those CPUs were saturated, so its threads queued for them"]
    if others >= OTHERS_NOISY:
        return [f"noisy: {said}"], []
    return [], []


def _top_errors(requests: pd.DataFrame, top: int = 3) -> str:
    """The failed requests' most frequent errors with their counts, most frequent first."""
    failed = requests.loc[~requests["ok"]]
    if "error" not in failed or failed.empty:
        return "unknown"
    counts = failed["error"].fillna("").replace("", "unknown").value_counts(sort=True)
    return "; ".join(f"{text} (x{n})" for text, n in counts.head(top).items())


CONCURRENCY_COLUMNS = ("replicate", "request", "stage", "kind", "thread", "start_ns", "end_ns")
_SPANS = (Kind.STAGE.value, Kind.BRANCH.value)


def widest(result: ResultSet) -> int:
    """The most stages or branches of one request of the set that ran at once."""
    return max_concurrency(result.interval_table.of_kinds(_SPANS, CONCURRENCY_COLUMNS))


def recorded_threads(result: ResultSet) -> int:
    """The most intra-op threads any stage of the set ran with."""
    return max(
        (max(r.stage_threads.values(), default=1) for r in result.manifest.replicates),
        default=1,
    )


def _oversubscribed(result: ResultSet) -> list[str]:
    """Parallel stages or branches times their intra-op threads, against the cores available."""
    cores = whole(result.manifest.fingerprint.cores)
    threads = recorded_threads(result)
    width = widest(result)
    if width > 1 and width * threads > cores:
        return [
            f"{width} stages or branches ran at once, each allowed {threads} intra-op "
            f"thread{'s' if threads != 1 else ''}, "
            f"on {cores} cores: where they run torch ops they contend for the cores"
        ]
    return []


def max_concurrency(intervals: pd.DataFrame) -> int:
    """The most threads of one request that ran its stages or branches at the same instant.

    A stage that fanned out is blocked in its join meanwhile, so its branches count, not it;
    and tasks sharing one thread take turns, so it is threads that are counted.
    """
    keys = ["replicate", "request", "stage"]
    spans = intervals.loc[intervals["kind"].isin(_SPANS), list(CONCURRENCY_COLUMNS)]
    branch = spans["kind"] == Kind.BRANCH.value
    fanned = spans.loc[branch, keys].drop_duplicates().assign(_fanned=True)
    marked = spans.merge(fanned, on=keys, how="left")
    leaves = marked[branch.to_numpy() | marked["_fanned"].isna().to_numpy()]
    if leaves.empty:
        return 0
    # First each thread's busy stretches (overlapping leaves on one thread merged), then how
    # many threads were busy at once: two sweeps, ends before starts at the same instant.
    request = leaves.groupby(["replicate", "request"], sort=False).ngroup().to_numpy()
    thread = leaves["thread"].to_numpy(np.int64)
    busy = _sweep(
        np.concatenate([request, request]),
        np.concatenate([thread, thread]),
        np.concatenate(
            [leaves["start_ns"].to_numpy(np.int64), leaves["end_ns"].to_numpy(np.int64)]
        ),
        np.repeat([1, -1], len(leaves)),
    )
    group, _, time, step, count = busy
    rises = (step == 1) & (count == 1)
    falls = (step == -1) & (count == 0)
    edges = rises | falls
    threads = _sweep(group[edges], np.zeros(int(edges.sum()), np.int64), time[edges], step[edges])
    return int(threads[4].max(initial=0))


def _sweep(
    group: np.ndarray, lane: np.ndarray, time: np.ndarray, step: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Events sorted by (group, lane, time, step), with the running count of each (group,
    lane) after each event: every lane's steps add up to zero, so one cumsum serves them all."""
    order = np.lexsort((step, time, lane, group))
    group, lane, time, step = group[order], lane[order], time[order], step[order]
    return group, lane, time, step, np.cumsum(step)
