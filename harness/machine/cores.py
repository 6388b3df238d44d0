"""How many cores a run may use: the online CPUs, fewer where affinity pins the process or a
cgroup quota holds it. The one figure every reader of the machine uses."""

from __future__ import annotations

import os
from dataclasses import dataclass

from harness.machine.sysfs import is_live_root, online_cpus, read_text


@dataclass(frozen=True)
class Cores:
    """What limits the cores a process may use, and the tightest of those limits."""

    online: int  # logical CPUs online (0: unknown)
    affinity: frozenset[int] | None  # the CPUs this process may run on (None: unknown)
    quota: float | None  # cgroup CPU quota in CPUs (None: no limit, or unknown)
    quota_source: str  # where the quota was read, "" when none was found

    @property
    def usable(self) -> float | None:
        """The tightest limit: threads beyond it time-share cores, whichever limit it is."""
        limits = [float(n) for n in (self.online, len(self.affinity or ())) if n]
        if self.quota is not None:
            limits.append(self.quota)
        return min(limits) if limits else None


def cores(root: str | os.PathLike[str] = "/", affinity: set[int] | None = None) -> Cores:
    """The limits under ``root``; ``affinity`` defaults to this process's CPU mask on the live
    root only (a canned root's CPUs are not this process's)."""
    affinity = live_affinity(root) if affinity is None else affinity
    found = cpu_quota(root)
    quota, source = found if found is not None else (None, "")
    return Cores(
        online=len(online_cpus(root)),
        affinity=frozenset(affinity) if affinity is not None else None,
        quota=quota,
        quota_source=source,
    )


def whole(usable: float | None) -> int:
    """A core count as threads can use it: whole cores, at least one."""
    return max(1, int(usable)) if usable else 1


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


def cpu_quota(root: str | os.PathLike[str]) -> tuple[float | None, str] | None:
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


def live_affinity(root: str | os.PathLike[str]) -> set[int] | None:
    if is_live_root(root) and hasattr(os, "sched_getaffinity"):
        return os.sched_getaffinity(0)
    return None
