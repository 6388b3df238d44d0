"""Whether two sets can be compared, and what differs in how they were executed.

Two sets compare only when they ran the same workload, were given the same work
(``work_sha256``) and were timed the same way (the GPU timing mode); a set run with a virtual
speedup is a check, never a side.
"""

from __future__ import annotations

from typing import Any

from harness.archive.codec import to_dict
from harness.archive.result_set import ResultSet
from harness.errors import UserError

# Execution settings that vary without changing what a comparison means.
_IGNORED = ("measurement", "backend_config.graphs")


def same_work(*results: ResultSet) -> bool:
    """Every set was given the same work (and says which)."""
    digests = {r.manifest.work.work_sha256 for r in results}
    return len(digests) == 1 and "" not in digests


def comparable(base: ResultSet, candidate: ResultSet) -> dict[str, tuple[Any, Any]]:
    """The execution settings that differ; a UserError when the sets are not comparable."""
    if base.id == candidate.id:
        raise UserError(
            f"{base.id} is both BASE and CANDIDATE: a set compared with itself says nothing"
        )
    for result in (base, candidate):
        if result.manifest.execution.virtual_speedup:
            raise UserError(f"{result.id} ran with a virtual speedup: it is a check, not a run")
        if not result.requests["ok"].any():
            raise UserError(f"{result.id} has no successful request to compare")
    workloads = (base.manifest.workload, candidate.manifest.workload)
    if workloads[0] != workloads[1]:
        raise UserError(
            f"{base.id} and {candidate.id} ran different workloads ({workloads[0]} and "
            f"{workloads[1]}): not comparable"
        )
    if not same_work(base, candidate):
        work_a, work_b = (_flat(to_dict(r.manifest.work)) for r in (base, candidate))
        differing = sorted(k for k in set(work_a) | set(work_b) if work_a.get(k) != work_b.get(k))
        named = ", ".join(
            f"{k} {work_a.get(k)!r} -> {work_b.get(k)!r}" if k.startswith("params.") else k
            for k in differing
            if k != "work_sha256"
        )
        if named == "code_hash":  # the same settings, run by another version of the code
            named = "code_hash: another version of the workload's code ran"
        named = named or "the work"
        raise UserError(
            f"{base.id} and {candidate.id} were given different work ({named}): not comparable"
        )
    exec_a, exec_b = (r.manifest.execution for r in (base, candidate))
    if exec_a.timing_mode != exec_b.timing_mode:
        raise UserError(
            f"{base.id} was timed in {exec_a.timing_mode} mode and {candidate.id} in "
            f"{exec_b.timing_mode} mode: they measure different things"
        )
    flat_a, flat_b = _flat(to_dict(exec_a)), _flat(to_dict(exec_b))
    return {
        k: (flat_a.get(k), flat_b.get(k))
        for k in sorted(set(flat_a) | set(flat_b))
        if flat_a.get(k) != flat_b.get(k) and not k.startswith(_IGNORED)
    }


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


SAID_EACH = 2  # a section with more differing settings than this is said as a count


def differences_line(differences: dict[str, tuple[Any, Any]]) -> str:
    """The execution differences in one line: each setting with its values, except a section
    with many (``backend_config``'s thirteen), said as its name and a count."""
    sections: dict[str, list[str]] = {}
    for key in differences:
        sections.setdefault(key.split(".")[0], []).append(key)
    said = []
    for section, keys in sections.items():
        if len(keys) > SAID_EACH:
            said.append(f"{section} ({len(keys)} settings)")
        else:
            said += [f"{k} {differences[k][0]} -> {differences[k][1]}" for k in keys]
    return ", ".join(said)
