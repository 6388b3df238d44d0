"""Readers of a machine's ``proc`` and ``sys`` files under a root: the live ``/`` or a copy."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path


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


def ranges(cpus: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``0-2,5``, the kernel's own cpu list form."""

    spans: list[list[int]] = []
    for cpu in cpus:
        if spans and cpu == spans[-1][1] + 1:
            spans[-1][1] = cpu
        else:
            spans.append([cpu, cpu])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)
