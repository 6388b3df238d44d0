"""Environment checks that change results: governor, SMT, CPU quota, affinity, steal, threads."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

OK, WARN, UNKNOWN = "ok", "warn", "unknown"

STEAL_WARN_FRACTION = 0.02
"""Steal above 2% of CPU time means a noisy neighbour shares the host: latencies are inflated."""

THREAD_VARIABLE_PREFIXES = (
    "OMP_",
    "KMP_",
    "GOMP_",
    "MKL_",
    "OPENBLAS_",
    "GOTO_",
    "BLIS_",
    "VECLIB_",
    "NUMEXPR_",
    "DNNL_",
    "ONEDNN_",
    "TBB_",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "CUDA_LAUNCH_BLOCKING",
    "PYTORCH_CUDA_ALLOC_CONF",
    "LD_PRELOAD",
)
"""Variables that set thread pools, pinning, visible devices or the allocator (LD_PRELOAD of
tcmalloc, jemalloc or libiomp): each can change a result by more than a hardware difference."""

_THREAD_COUNT_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@dataclass(frozen=True)
class Check:
    """One environment setting: its value, ``ok``/``warn``/``unknown``, and why it matters."""

    name: str
    value: str
    status: str
    detail: str


@dataclass(frozen=True)
class CpuTimes:
    """The aggregate ``cpu`` line of ``/proc/stat``, in clock ticks (USER_HZ) since boot.

    Diff two readings with :meth:`since` to get the share of a run lost to steal.
    """

    user: int
    nice: int
    system: int
    idle: int
    iowait: int
    irq: int
    softirq: int
    steal: int
    guest: int
    guest_nice: int

    @property
    def total(self) -> int:
        """All ticks; guest time is left out because the kernel already counts it in user/nice."""
        return (
            self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
        )

    @property
    def steal_fraction(self) -> float | None:
        """Steal as a share of all ticks; None when no tick was counted."""
        return self.steal / self.total if self.total > 0 else None

    def since(self, earlier: CpuTimes) -> CpuTimes:
        """The ticks counted between ``earlier`` and this reading."""
        return CpuTimes(
            *(getattr(self, f.name) - getattr(earlier, f.name) for f in fields(CpuTimes))
        )


def read_text(root: str | os.PathLike[str], relative: str) -> str | None:
    """The stripped text of ``<root>/<relative>``, or None when absent or unreadable."""
    try:
        return Path(root, relative).read_text(encoding="utf-8", errors="replace").strip()
    except (OSError, ValueError):
        return None


def is_live_root(root: str | os.PathLike[str]) -> bool:
    """True when ``root`` is this machine's own ``/``, not a canned copy."""
    return Path(root).resolve() == Path("/").resolve()


def cpu_list(text: str | None) -> tuple[int, ...]:
    """The CPU numbers in a kernel cpu list such as ``0-3,8,10-11``; empty when unparsable."""
    cpus: set[int] = set()
    for part in (text or "").replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            cpus.update(range(int(low), int(high or low) + 1))
        except ValueError:
            return ()
    return tuple(sorted(cpus))


def online_cpus(root: str | os.PathLike[str] = "/") -> tuple[int, ...]:
    """The online logical CPUs: sysfs ``online``, else ``cpuN`` folders, else cpuinfo entries."""
    listed = cpu_list(read_text(root, "sys/devices/system/cpu/online"))
    if listed:
        return listed
    folders = Path(root, "sys/devices/system/cpu").glob("cpu[0-9]*")
    numbered = sorted(int(p.name[3:]) for p in folders if p.name[3:].isdigit())
    if numbered:
        return tuple(numbered)
    cpuinfo = read_text(root, "proc/cpuinfo") or ""
    return tuple(range(len(re.findall(r"^processor\s*:", cpuinfo, re.MULTILINE))))


def cpu_times(root: str | os.PathLike[str] = "/") -> CpuTimes | None:
    """The counters of ``/proc/stat``'s first line, or None when absent; read at start and end."""
    first = (read_text(root, "proc/stat") or "").partition("\n")[0].split()
    if not first or first[0] != "cpu":
        return None
    try:
        # Old kernels have fewer columns; the missing ones are zero, as those kernels never counted.
        values = [int(v) for v in first[1:11]] + [0] * (11 - len(first))
    except ValueError:
        return None
    return CpuTimes(*values)


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


def _cgroup_paths(root: str | os.PathLike[str], v1_controller: str | None) -> list[str]:
    """This process's cgroup and its ancestors, innermost first, relative to the mount."""
    path = ""
    for line in (read_text(root, "proc/self/cgroup") or "").splitlines():
        _, controllers, where = [*line.split(":", 2), "", ""][:3]
        # The v2 line is "0::/path"; a v1 line names its controllers, e.g. "4:cpu,cpuacct:/path".
        if (v1_controller or "") in controllers.split(","):
            path = where
    parts = [p for p in path.split("/") if p]
    return ["/".join(parts[:i]) for i in range(len(parts), -1, -1)]


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _cpu_quota(root: str | os.PathLike[str]) -> tuple[float | None, str] | None:
    """The tightest quota in CPUs (None: no limit) and where it came from; None when unknown."""
    quotas: list[tuple[float | None, str]] = []
    # A limit anywhere up the hierarchy applies, so every ancestor is read and the tightest wins.
    # A container without its own cgroup namespace sees a path that is not under its mount: then
    # only the mount's top (the container's own cgroup) exists, and that is the one read.
    for mount in ("sys/fs/cgroup", "sys/fs/cgroup/unified"):
        for rel in _cgroup_paths(root, None):
            text = read_text(root, _join(mount, rel, "cpu.max"))
            quota, _, period = (text or "").partition(" ")
            if period.isdigit() and int(period) > 0 and (quota == "max" or quota.isdigit()):
                cpus = None if quota == "max" else int(quota) / int(period)
                quotas.append((cpus, f"cgroup v2 cpu.max {text!r}"))
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        if quotas:
            break
        for rel in _cgroup_paths(root, "cpu"):
            base = _join("sys/fs/cgroup", mount, rel)
            try:
                q = int(read_text(root, f"{base}/cpu.cfs_quota_us") or "")
                p = int(read_text(root, f"{base}/cpu.cfs_period_us") or "")
            except ValueError:
                continue
            where = f"cgroup v1 cpu.cfs_quota_us {q}, cpu.cfs_period_us {p}"
            quotas.append((q / p if q > 0 and p > 0 else None, where))
    limited = [q for q in quotas if q[0] is not None]
    if limited:
        return min(limited, key=lambda q: q[0] or 0.0)
    return quotas[0] if quotas else None


def check_cpu_quota(root: str | os.PathLike[str] = "/") -> Check:
    """The cgroup CPU quota against the logical CPU count; a smaller quota throttles the run."""
    found = _cpu_quota(root)
    if found is None:
        return Check("cpu_quota", "unknown", UNKNOWN, "no cgroup cpu.max or cpu.cfs_quota_us")
    quota, where = found
    if quota is None:
        return Check("cpu_quota", "no limit", OK, where)
    logical = len(online_cpus(root))
    value = f"{quota:g} CPUs"
    if logical and quota < logical:
        return Check("cpu_quota", value, WARN, f"{where}: {quota:g} of {logical} logical CPUs")
    return Check("cpu_quota", value, OK, f"{where}; {logical or 'unknown'} logical CPUs")


def check_affinity(root: str | os.PathLike[str] = "/", affinity: set[int] | None = None) -> Check:
    """The CPUs this process may run on against the online ones; fewer means a pinned run."""
    affinity = _live_affinity(root) if affinity is None else affinity
    logical = len(online_cpus(root))
    if affinity is None:
        return Check("cpu_affinity", "unknown", UNKNOWN, f"{logical or 'unknown'} logical CPUs")
    value = f"{len(affinity)} of {logical or 'unknown'} CPUs"
    detail = "CPUs " + _ranges(sorted(affinity))
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
    found = {k: v for k, v in sorted(environ.items()) if k.startswith(THREAD_VARIABLE_PREFIXES)}
    value = " ".join(f"{k}={v}" for k, v in found.items()) or "none set"
    problems = []
    for name in _THREAD_COUNT_VARIABLES:
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
    affinity = _live_affinity(root) if affinity is None else affinity
    quota = _cpu_quota(root)
    # Threads beyond the tightest of these limits time-share cores, whichever limit it is.
    limits = [len(online_cpus(root)), len(affinity or ())]
    if quota is not None and quota[0] is not None:
        limits.append(max(1, int(quota[0])))
    cores_available = min((n for n in limits if n), default=None)
    return (
        check_governor(root),
        check_smt(root),
        check_cpu_quota(root),
        check_affinity(root, affinity),
        check_steal(root),
        check_thread_variables(environ, cores_available),
        check_transparent_hugepages(root),
        check_cpu_package_energy(root),
    )


def _live_affinity(root: str | os.PathLike[str]) -> set[int] | None:
    if is_live_root(root) and hasattr(os, "sched_getaffinity"):
        return os.sched_getaffinity(0)
    return None


def _ranges(cpus: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``0-2,5``, the kernel's own cpu list form."""
    spans: list[list[int]] = []
    for cpu in cpus:
        if spans and cpu == spans[-1][1] + 1:
            spans[-1][1] = cpu
        else:
            spans.append([cpu, cpu])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)
