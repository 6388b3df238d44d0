"""Where telemetry readings come from: psutil, the load of other processes, NVML, RAPL; each
source set up once and read as often as the sampler asks."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.machine.accelerators import optional_import
from harness.machine.sysfs import read_text

Reading = tuple[str, str, str, str, float]
"""One reading from a source: (source, device, metric, unit, value)."""

# NVML readings: metric, unit, NVML function, clock kind, field of its result, to SI (x, /).
_GPU = (
    ("utilization", "fraction", "nvmlDeviceGetUtilizationRates", None, "gpu", 1, 100),
    ("memory_utilization", "fraction", "nvmlDeviceGetUtilizationRates", None, "memory", 1, 100),
    ("sm_clock", "Hz", "nvmlDeviceGetClockInfo", "NVML_CLOCK_SM", None, 10**6, 1),
    ("memory_clock", "Hz", "nvmlDeviceGetClockInfo", "NVML_CLOCK_MEM", None, 10**6, 1),
    ("power", "W", "nvmlDeviceGetPowerUsage", None, None, 1, 1000),
    ("memory_used", "bytes", "nvmlDeviceGetMemoryInfo", None, "used", 1, 1),
    # Millijoules since the driver loaded; Volta and later only.
    ("energy", "J", "nvmlDeviceGetTotalEnergyConsumption", None, None, 1, 1000),
)


@dataclass(frozen=True)
class Source:
    """A probe the sampler polls from its thread: ``read()`` returns this sample's readings."""

    name: str
    read: Callable[[], list[Reading]]
    close: Callable[[], None] | None = None


def psutil_sources(psutil: Any, notes: list[str]) -> list[Source]:
    """Per-core utilisation and frequency, this process's RSS, the system's available memory."""
    psutil = psutil or optional_import("psutil")
    if psutil is None:
        notes.append("cpu, memory: unknown (psutil not installed)")
        return []
    process, primed = psutil.Process(), list[bool]()

    def utilization() -> list[Reading]:
        percent = psutil.cpu_percent(percpu=True)
        # The first call only sets psutil's baseline (kept per calling thread): no interval yet.
        if not primed:
            primed.append(True)
            return []
        return [("cpu", str(i), "utilization", "fraction", p / 100) for i, p in enumerate(percent)]

    def frequency() -> list[Reading]:
        # psutil gives MHz; 0.0 means the kernel did not say: unknown, not a stopped core.
        freqs = enumerate(psutil.cpu_freq(percpu=True) or ())
        return [("cpu", str(i), "frequency", "Hz", f.current * 1e6) for i, f in freqs if f.current]

    def memory() -> list[Reading]:
        available = psutil.virtual_memory().available
        return [
            ("memory", "process", "rss", "bytes", process.memory_info().rss),
            ("memory", "system", "available", "bytes", available),
        ]

    sources = [Source("cpu utilization", utilization), Source("memory", memory)]
    if frequency():
        sources.append(Source("cpu frequency", frequency))
    else:
        notes.append("cpu frequency: unknown (not reported here)")
    return sources


MIN_LOAD_SAMPLE_S = 0.2  # 20 kernel ticks at 100 Hz: a share to 5% on one CPU


def load_sources(
    root: str | os.PathLike[str],
    notes: list[str],
    *,
    cpus: Sequence[int] | None = None,
    wall: Callable[[], float] = time.monotonic,
    own: Callable[[], int] | None = None,
) -> list[Source]:
    """How busy the CPUs this process may run on were with other processes' work, and with
    this run's: per sample, each as a share of those CPUs' time since the sample before, and
    how long that was (``window``, so a reader weighs samples by the time they cover).

    The kernel's busy time on those CPUs (user, nice, system, irq, softirq from ``/proc/stat``;
    steal is the hypervisor's and counted apart) less the run's own CPU time (``own``: this
    process's and its children's, see :func:`run_cpu_ns`) is what other processes took.
    """
    own = own or run_cpu_ns
    cpus = list(cpus) if cpus is not None else _allowed_cpus()
    hertz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    if _busy_ticks(root, cpus) is None:
        notes.append("other processes' CPU use: unknown (no readable /proc/stat)")
        return []
    last: list[tuple[int, float, int]] = []  # (busy ticks, wall s, own CPU ns)

    def read() -> list[Reading]:
        busy = _busy_ticks(root, cpus)
        if busy is None:
            raise OSError("/proc/stat became unreadable")
        now = (busy, wall(), own())
        if not last:
            last.append(now)
            return []
        b0, w0, o0 = last[0]
        # A sample a few ticks long (the last one, taken at stop) would swing between 0 and
        # 100%: it waits to be part of a longer one.
        if now[1] - w0 < MIN_LOAD_SAMPLE_S:
            return []
        last[0] = now
        capacity = (now[1] - w0) * len(cpus)
        everyone = (busy - b0) / hertz
        ours = (now[2] - o0) / 1e9
        others = min(max(everyone - ours, 0.0), capacity) / capacity
        return [
            ("load", "others", "cpu_share", "fraction", others),
            ("load", "run", "cpu_share", "fraction", min(ours / capacity, 1.0)),
            ("load", "window", "wall_time", "s", now[1] - w0),
        ]

    return [Source("other processes", read)]


def run_cpu_ns() -> int:
    """CPU time used so far by this process and its children (a tool server a workload
    started, a worker), live or ended: none of it is another process's load."""
    import psutil

    total = time.process_time_ns()
    ended = os.times()  # children waited for: the kernel keeps their time
    total += int((ended.children_user + ended.children_system) * 1e9)
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return total
    for child in children:
        try:
            used = child.cpu_times()
        except psutil.Error:  # ended since it was listed
            continue
        total += int((used.user + used.system) * 1e9)
    return total


def _allowed_cpus() -> list[int]:
    """The CPUs this process may run on (all of them where the platform cannot say)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _busy_ticks(root: str | os.PathLike[str], cpus: Sequence[int]) -> int | None:
    """Busy clock ticks so far summed over ``cpus``, from ``<root>/proc/stat``."""
    text = read_text(root, "proc/stat")
    if text is None:
        return None
    wanted, total, seen = {f"cpu{c}" for c in cpus}, 0, 0
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] in wanted:
            user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
            total += user + nice + system + irq + softirq
            seen += 1
    return total if seen else None


def nvml_sources(nvml: Any, notes: list[str]) -> list[Source]:
    """Every GPU NVML sees; a reading a device refuses is dropped for that device and noted."""
    nvml = nvml or optional_import("pynvml")
    if nvml is None:
        notes.append("gpu: unknown (pynvml not installed)")
        return []
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as error:
        # No driver is the normal case on a CPU machine: a note, not a failure.
        missing = type(error).__name__ in ("NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded")
        notes.append("gpu: none (no NVIDIA driver)" if missing else f"gpu: NVML error: {error}")
        return []
    try:
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    except Exception:
        nvml.nvmlShutdown()
        raise
    dropped: set[tuple[int, str]] = set()

    def read() -> list[Reading]:
        rows: list[Reading] = []
        for index, handle in enumerate(handles):
            results: dict[tuple[str, str | None], Any] = {}  # one call serves all its fields
            for metric, unit, function, kind, field, multiply, divide in _GPU:
                if (index, metric) in dropped:
                    continue
                try:
                    if (function, kind) not in results:
                        args = (handle,) if kind is None else (handle, getattr(nvml, kind))
                        results[function, kind] = getattr(nvml, function)(*args)
                except nvml.NVMLError as error:  # older GPUs lack energy or power counters
                    dropped.add((index, metric))
                    notes.append(f"gpu {index} {metric}: {error}")
                    continue
                value = results[function, kind]
                value = getattr(value, field) if field else value
                rows.append(("gpu", str(index), metric, unit, value * multiply / divide))
        return rows

    return [Source("gpu", read, nvml.nvmlShutdown)]


def rapl_sources(root: str | os.PathLike[str], notes: list[str]) -> list[Source]:
    """CPU package energy from the RAPL counters under ``root``, unwrapped into totals in J."""
    zones: list[tuple[str, Path, int]] = []  # package name, zone folder, max_energy_range_uj
    for folder in sorted(Path(root, "sys/class/powercap").glob("intel-rapl:*")):
        name = read_text(folder, "name")
        # Subzones (core, uncore, dram) lie inside a package; psys covers the packages too.
        if folder.name.count(":") != 1 or (name is not None and not name.startswith("package")):
            continue
        limit = read_text(folder, "max_energy_range_uj") or ""
        if read_text(folder, "energy_uj") is None or not limit.isdigit():
            notes.append(f"cpu package energy: {folder.name} not readable (it needs root)")
            continue
        zones.append((name or folder.name, folder, int(limit)))
    if not zones:
        notes.append("cpu package energy: unknown (no readable RAPL counter)")
        return []
    last: dict[str, int] = {}
    total: dict[str, int] = {}

    def read() -> list[Reading]:
        rows: list[Reading] = []
        for name, folder, max_uj in zones:
            text = read_text(folder, "energy_uj")
            if text is None:
                raise OSError(f"{folder.name}/energy_uj became unreadable")
            raw = int(text)
            delta = raw - last.get(name, raw)
            if delta < 0:  # the counter passed max_energy_range_uj and restarted from zero
                delta += max_uj
            last[name], total[name] = raw, total.get(name, raw) + delta
            rows.append(("rapl", name, "energy", "J", total[name] / 1e6))
        return rows

    return [Source("cpu package energy", read)]


def default_sources(
    psutil: Any = None,
    nvml: Any = None,
    rapl_root: str | os.PathLike[str] = "/",
    notes: list[str] | None = None,
) -> tuple[list[Source], list[str]]:
    """The sources this machine offers, and a note for each one it does not (so it is unknown).

    ``psutil`` and ``nvml`` are the modules or stand-ins with their API; ``rapl_root`` is ``/``
    or a canned copy of it (its ``sys/class/powercap`` and ``proc/stat``). Sources add later
    notes (a GPU counter refused) to ``notes``.
    """
    sources: list[Source] = []
    notes = [] if notes is None else notes
    builders = (
        ("cpu, memory", lambda: psutil_sources(psutil, notes)),
        ("gpu", lambda: nvml_sources(nvml, notes)),
        ("cpu package energy", lambda: rapl_sources(rapl_root, notes)),
        ("other processes", lambda: load_sources(rapl_root, notes)),
    )
    for name, build in builders:
        try:
            sources += build()
        except Exception as error:  # a probe that cannot start is unknown, never a failed run
            notes.append(f"{name}: unknown (set-up failed: {type(error).__name__}: {error})")
    return sources, notes
