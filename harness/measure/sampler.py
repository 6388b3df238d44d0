"""Telemetry sampled beside the measured repetitions: CPU, memory, GPU, energy, and its own cost."""

from __future__ import annotations

import os
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.archive.schema import SamplerCost
from harness.machine.accelerators import optional_import
from harness.machine.sysfs import read_text

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["t_ns", "source", "device", "metric", "value", "unit"]
"""The samples table, one row per reading (long format: a new metric never changes the schema).

``t_ns`` is the sampler's clock (``time.perf_counter_ns`` by default, the probes' clock). Units
are SI or a share: ``fraction`` (0..1, utilisation), ``Hz``, ``bytes``, ``W``, ``J``."""

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


class Sampler:
    """Samples every source every ``interval_s`` on a daemon thread, around measured work.

    ``with Sampler() as sampler: ...`` then ``sampler.samples()`` (the table in ``COLUMNS``) and
    ``sampler.cost()``. Sources are set up on entry, in the caller's thread; a sample is taken at
    once and a last one at stop, so counters cover the whole span. A source that raises is
    dropped at its first error and noted in ``notes``; the run and the other sources go on.
    """

    def __init__(
        self,
        interval_s: float = 0.5,
        *,
        psutil: Any = None,
        nvml: Any = None,
        rapl_root: str | os.PathLike[str] = "/",
        sources: Sequence[Source] | None = None,
        clock: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.interval_s, self.clock = interval_s, clock
        self.notes: list[str] = []
        self._given, self._setup = sources, (psutil, nvml, rapl_root)
        self._all: list[Source] = []
        self._live: list[Source] = []  # a failed source leaves this list, not _all
        # Readings go to typed arrays, not per-row Python objects: no garbage for the collector
        # to walk while the measured work runs, and 24 bytes a reading.
        self._keys: dict[tuple[str, str, str, str], int] = {}
        self._t, self._k, self._v = array("q"), array("q"), array("d")
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread: threading.Thread | None = None
        self._count = self._cpu_ns = self._sample_ns = self._began_ns = self._ended_ns = 0

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Sampler:
        """Set up the sources and start sampling; a Sampler runs once."""
        if self._thread is not None:
            raise RuntimeError("a Sampler runs once; make a new one")
        if self._given is None:
            self._all, _ = default_sources(*self._setup, self.notes)
        else:
            self._all = list(self._given)
        self._live = list(self._all)
        self._began_ns = time.perf_counter_ns()
        self._thread = threading.Thread(target=self._run, name="gapbench-telemetry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take a last sample and end the thread; safe to call twice."""
        if self._thread is not None and not self._ended_ns:
            self._stop.set()
            self._thread.join()
            self._ended_ns = time.perf_counter_ns()

    def _run(self) -> None:
        cpu_began = time.thread_time_ns()
        step, due = round(self.interval_s * 1e9), time.perf_counter_ns()
        try:
            while True:
                self._sample()
                self._cpu_ns = time.thread_time_ns() - cpu_began
                now = time.perf_counter_ns()
                # A fixed grid, so slow samples do not stretch the interval; after a stall, one
                # sample at once rather than a burst to catch up.
                due = max(due + step, now)
                if self._stop.wait((due - now) / 1e9):
                    break
            self._sample()
        except Exception as error:  # a bug here must not take the run down with it
            self.notes.append(f"sampler stopped: {type(error).__name__}: {error}")
        for source in self._all:
            try:
                if source.close is not None:
                    source.close()
            except Exception as error:
                self.notes.append(f"{source.name}: close failed: {type(error).__name__}: {error}")
        self._cpu_ns = time.thread_time_ns() - cpu_began

    def _sample(self) -> None:
        began, t_ns = time.perf_counter_ns(), self.clock()
        rows: list[Reading] = []
        for source in list(self._live):
            try:
                rows += [(s, d, m, u, float(v)) for s, d, m, u, v in source.read()]
            except Exception as error:  # one broken probe must not end the others or the run
                self._live.remove(source)
                self.notes.append(f"{source.name}: disabled after {type(error).__name__}: {error}")
        with self._lock:
            for name, device, metric, unit, value in rows:
                self._t.append(t_ns)
                key = (name, device, metric, unit)
                self._k.append(self._keys.setdefault(key, len(self._keys)))
                self._v.append(value)
            self._count += 1
            self._sample_ns += time.perf_counter_ns() - began

    def samples(self) -> pd.DataFrame:
        """Every reading so far, one row each, in the columns of ``COLUMNS``."""
        import numpy as np
        import pandas as pd

        with self._lock:
            t, k, v = (np.array(column) for column in (self._t, self._k, self._v))
            keys = np.array(list(self._keys), dtype=object).reshape(-1, 4)
        source, device, metric, unit = (keys[k, i] for i in range(4))
        columns = {"t_ns": t, "source": source, "device": device, "metric": metric}
        return pd.DataFrame({**columns, "value": v, "unit": unit}, columns=COLUMNS)

    def cost(self) -> SamplerCost:
        """The sampler's own CPU and wall time, so far or over the whole span once stopped."""
        with self._lock:
            count, sample_ns = self._count, self._sample_ns
        wall_ns = (self._ended_ns or time.perf_counter_ns()) - self._began_ns
        return SamplerCost(
            samples=count,
            cpu_s=self._cpu_ns / 1e9,
            wall_s=wall_ns / 1e9 if self._began_ns else 0.0,
            cpu_fraction=self._cpu_ns / wall_ns if self._began_ns and wall_ns > 0 else 0.0,
            mean_sample_us=sample_ns / count / 1e3 if count else 0.0,
        )
