"""The validity verdict of a result set: what makes its numbers trustworthy, or not."""

from __future__ import annotations

from dataclasses import dataclass

from harness.breakdown import PERCENTILE_FLOORS, Percentiles
from harness.environment import STEAL_WARN_FRACTION
from harness.store import ResultSet

MIN_COVERAGE = 0.9
MAX_ERROR_RATE = 0.01


@dataclass(frozen=True)
class Verdict:
    """``valid`` is False when a check fails outright; ``notes`` say why, and what is indicative."""

    valid: bool
    problems: tuple[str, ...]
    notes: tuple[str, ...]


def verdict(result: ResultSet, e2e: Percentiles, coverage: float) -> Verdict:
    """Judge a set from its raw data: completeness, invariants, errors, samples, noise, coverage."""
    problems: list[str] = []
    notes: list[str] = []
    manifest = result.manifest
    if not manifest.get("complete"):
        why = manifest.get("stopped_by") or "interrupted"
        problems.append(f"incomplete ({why}): only what finished is shown")
    if isinstance(manifest["config"]["work"]["request_stream"]["inputs_sha256"], list):
        problems.append("worker processes were given different inputs: the plugin is unseeded")
    inv = manifest.get("invariants", {})
    if inv.get("violation_count"):
        first = inv["violations"][0]
        problems.append(f"{inv['violation_count']} accounting invariant violations, e.g. {first}")
    total = len(result.requests)
    failed = int((~result.requests["ok"]).sum()) if total else 0
    if total and failed / total > MAX_ERROR_RATE:
        problems.append(f"{failed} of {total} requests failed ({failed / total:.1%})")
    elif failed:
        notes.append(f"{failed} of {total} requests failed and are left out of the percentiles")
    if e2e.n == 0:
        problems.append("no successful request was measured")
    replicates = manifest.get("replicates", [])
    if any(r.get("hit_max_duration") for r in replicates):
        notes.append("stopped at the maximum duration before the minimum request count")
    steal = max((r.get("cpu_steal_fraction") or 0.0 for r in replicates), default=0.0)
    if steal > STEAL_WARN_FRACTION:
        notes.append(f"CPU steal took {steal:.1%} of the machine's time during the run")
    for pct in (90, 99):
        if e2e.indicative(pct):
            notes.append(f"p{pct} is indicative: {e2e.n} samples, {PERCENTILE_FLOORS[pct]} needed")
    if e2e.noisy:
        notes.append(f"noisy: IQR/median of end-to-end latency is {e2e.iqr_over_median:.2f}")
    if coverage < MIN_COVERAGE:
        notes.append(f"probe coverage is {coverage:.0%}: much of the time is unattributed")
    return Verdict(not problems, tuple(problems), tuple(notes))
