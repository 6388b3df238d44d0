"""Environment checks that change results: governor, SMT, CPU quota, affinity, steal, threads."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.machine.cores import Cores, cores, live_affinity, whole
from harness.machine.sysfs import cpu_times, online_cpus, ranges, read_text
from harness.machine.threads import THREAD_COUNT_VARIABLES, thread_variables

OK, WARN, UNKNOWN = "ok", "warn", "unknown"

STEAL_WARN_FRACTION = 0.02
"""Steal above 2% of CPU time means a noisy neighbour shares the host: latencies are inflated."""


@dataclass(frozen=True)
class Check:
    """One environment setting: its value, ``ok``/``warn``/``unknown``, and why it matters."""

    name: str
    value: str
    status: str
    detail: str


def check_governor(root: str | os.PathLike[str] = "/") -> Check:
    """The cpufreq governor of every CPU; anything but ``performance`` lets clocks wander."""
    governors = {
        cpu: read_text(root, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor")
        for cpu in online_cpus(root)
    }
    found = sorted({g for g in governors.values() if g})
    if not found:
        return Check("cpu_governor", "unknown", UNKNOWN, "no cpufreq (a VM, or no driver)")
    counts = ", ".join(f"{g} x{list(governors.values()).count(g)}" for g in found)
    if len(found) > 1:
        return Check("cpu_governor", "mixed", WARN, f"CPUs differ: {counts}")
    if found[0] != "performance":
        return Check("cpu_governor", found[0], WARN, "clocks follow load; `performance` holds them")
    return Check("cpu_governor", found[0], OK, counts)


def check_smt(root: str | os.PathLike[str] = "/") -> Check:
    """Simultaneous multithreading: sibling threads share one core's execution units."""
    control = read_text(root, "sys/devices/system/cpu/smt/control")
    active = read_text(root, "sys/devices/system/cpu/smt/active")
    if control is None:
        return Check("smt", "unknown", UNKNOWN, "no sys/devices/system/cpu/smt")
    detail = {"1": "active: sibling threads are in use", "0": "inactive"}.get(active or "", "")
    return Check("smt", control, OK, detail or f"active {active or 'unknown'}")


def check_cpu_quota(root: str | os.PathLike[str] = "/", limits: Cores | None = None) -> Check:
    """The cgroup CPU quota against the logical CPU count; a smaller quota throttles the run."""
    limits = limits or cores(root)
    quota, where = limits.quota, limits.quota_source
    if not where:
        return Check("cpu_quota", "unknown", UNKNOWN, "no cgroup cpu.max or cpu.cfs_quota_us")
    if quota is None:
        return Check("cpu_quota", "no limit", OK, where)
    logical = limits.online
    value = f"{quota:g} CPUs"
    if logical and quota < logical:
        return Check("cpu_quota", value, WARN, f"{where}: {quota:g} of {logical} logical CPUs")
    return Check("cpu_quota", value, OK, f"{where}; {logical or 'unknown'} logical CPUs")


def check_affinity(root: str | os.PathLike[str] = "/", affinity: set[int] | None = None) -> Check:
    """The CPUs this process may run on against the online ones; fewer means a pinned run."""
    affinity = live_affinity(root) if affinity is None else affinity
    logical = len(online_cpus(root))
    if affinity is None:
        return Check("cpu_affinity", "unknown", UNKNOWN, f"{logical or 'unknown'} logical CPUs")
    value = f"{len(affinity)} of {logical or 'unknown'} CPUs"
    detail = "CPUs " + ranges(sorted(affinity))
    if logical and len(affinity) < logical:
        return Check("cpu_affinity", value, WARN, f"pinned to {detail}")
    return Check("cpu_affinity", value, OK, detail)


def check_steal(root: str | os.PathLike[str] = "/") -> Check:
    """CPU time taken by the hypervisor for other guests since boot; high steal inflates latency."""
    times = cpu_times(root)
    fraction = times.steal_fraction if times else None
    if times is None or fraction is None:
        return Check("cpu_steal", "unknown", UNKNOWN, "no proc/stat")
    detail = f"{times.steal} of {times.total} ticks since boot, not only during a run"
    status = WARN if fraction > STEAL_WARN_FRACTION else OK
    return Check("cpu_steal", f"{fraction:.2%}", status, detail)


def check_thread_variables(environ: Mapping[str, str], cores_available: int | None) -> Check:
    """Thread, BLAS and device variables that are set; a thread count above the cores warns."""
    found = thread_variables(environ)
    value = " ".join(f"{k}={v}" for k, v in found.items()) or "none set"
    problems = []
    for name in THREAD_COUNT_VARIABLES:
        # OMP_NUM_THREADS may list one count per nesting level ("8,2"): the outer level is first.
        match = re.match(r"\s*(\d+)", found.get(name, ""))
        if match and cores_available and int(match.group(1)) > cores_available:
            problems.append(f"{name}={match.group(1)} exceeds the {cores_available} CPUs available")
    if found.get("CUDA_LAUNCH_BLOCKING", "0").strip() not in ("", "0"):
        problems.append("CUDA_LAUNCH_BLOCKING serialises every kernel launch")
    if problems:
        return Check("thread_variables", value, WARN, "; ".join(problems))
    return Check("thread_variables", value, OK, f"{cores_available or 'unknown'} CPUs available")


def check_transparent_hugepages(root: str | os.PathLike[str] = "/") -> Check:
    """Transparent huge pages: ``always`` changes allocation latency and TLB misses."""
    text = read_text(root, "sys/kernel/mm/transparent_hugepage/enabled")
    match = re.search(r"\[(\w+)\]", text or "")
    if match is None:
        return Check("transparent_hugepages", "unknown", UNKNOWN, "no transparent_hugepage")
    return Check("transparent_hugepages", match.group(1), OK, text or "")


def check_cpu_package_energy(root: str | os.PathLike[str] = "/") -> Check:
    """Whether RAPL package energy can be read, so energy per request can be measured."""
    path = Path(root, "sys/class/powercap/intel-rapl:0/energy_uj")
    if not path.exists():
        return Check("cpu_package_energy", "unknown", UNKNOWN, "no RAPL counter")
    if read_text(root, "sys/class/powercap/intel-rapl:0/energy_uj") is None:
        return Check("cpu_package_energy", "not readable", UNKNOWN, "RAPL needs root to read")
    return Check("cpu_package_energy", "available", OK, "RAPL intel-rapl:0 energy_uj")


def environment_checks(
    root: str | os.PathLike[str] = "/",
    environ: Mapping[str, str] | None = None,
    affinity: set[int] | None = None,
) -> tuple[Check, ...]:
    """Every check, in a fixed order.

    ``environ`` defaults to this process's environment. ``affinity`` defaults to this process's
    CPU mask on the live root only: a canned root's CPUs are not this process's, so it is unknown.
    """
    environ = os.environ if environ is None else environ
    limits = cores(root, affinity)
    usable = limits.usable
    return (
        check_governor(root),
        check_smt(root),
        check_cpu_quota(root, limits),
        check_affinity(root, set(limits.affinity) if limits.affinity is not None else None),
        check_steal(root),
        check_thread_variables(environ, whole(usable) if usable else None),
        check_transparent_hugepages(root),
        check_cpu_package_energy(root),
    )
