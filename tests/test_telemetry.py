"""The telemetry sampler on this machine, on a fake NVML and on a canned RAPL root."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from harness.analysis.telemetry import frequency_drop, telemetry_summary
from harness.machine.accelerators import read_nvml
from harness.measure.sampler import COLUMNS, Sampler
from harness.measure.telemetry_sources import Reading, Source, load_sources, rapl_sources


def run_until(sampler: Sampler, done: Callable[[], bool], limit_s: float = 1.5) -> None:
    """Let ``sampler`` run until ``done()`` (or ``limit_s``), then stop it."""
    with sampler:
        deadline = time.monotonic() + limit_s
        while not done() and time.monotonic() < deadline:
            time.sleep(0.005)


class FakeNvmlError(Exception):
    pass


class NVMLError_LibraryNotFound(FakeNvmlError):  # pynvml names it so; the sampler checks the name
    pass


class FakeNvml:
    """Two GPUs with pynvml's API; the second has no energy counter (a pre-Volta card)."""

    NVMLError = FakeNvmlError
    NVML_CLOCK_SM, NVML_CLOCK_MEM = 1, 2

    def __init__(self, *, fail_init: Exception | None = None) -> None:
        self.fail_init = fail_init
        self.calls: list[str] = []
        self.energy_mj = [10_000_000, 0]

    def nvmlInit(self) -> None:
        self.calls.append("init")
        if self.fail_init:
            raise self.fail_init

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=(87, 3)[handle], memory=(41, 0)[handle])

    def nvmlDeviceGetClockInfo(self, handle: int, kind: int) -> int:
        return {1: (1980, 1590), 2: (2619, 5001)}[kind][handle]  # MHz

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        return (612_500, 70_000)[handle]  # mW

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(total=0, free=0, used=(1_073_741_824, 0)[handle])

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        if handle == 1:
            raise FakeNvmlError("Not Supported")
        self.energy_mj[handle] += 1_500  # 1.5 J between two reads
        return self.energy_mj[handle]


NO_GPU = FakeNvml(fail_init=NVMLError_LibraryNotFound("NVML Shared Library Not Found"))


def test_a_real_run_on_this_machine() -> None:
    import psutil

    sampler = Sampler(interval_s=0.05)
    with sampler:
        time.sleep(0.3)
    samples = sampler.samples()
    assert list(samples.columns) == COLUMNS
    assert samples["t_ns"].is_monotonic_increasing
    cpu = samples[samples["metric"] == "utilization"].query("source == 'cpu'")
    cores = {str(i) for i in range(psutil.cpu_count())}
    assert set(cpu["device"]) == cores
    assert cpu["unit"].eq("fraction").all() and cpu["value"].between(0, 1).all()
    memory = samples[samples["source"] == "memory"]
    assert set(zip(memory["device"], memory["metric"], memory["unit"], strict=True)) == {
        ("process", "rss", "bytes"),
        ("system", "available", "bytes"),
    }
    assert (memory["value"] > 0).all()
    has_gpu = bool(read_nvml().devices)  # no NVIDIA driver here: no GPU rows, only a note
    assert (samples["source"] == "gpu").any() == has_gpu
    cost = sampler.cost()
    # At 0.05 s over 0.3 s: about 7 samples (the first, one per interval, one at stop).
    assert 3 <= cost.samples <= 9
    assert samples["t_ns"].nunique() == cost.samples
    assert 0.3 <= cost.wall_s < 1.0
    assert cost.cpu_s > 0 and cost.mean_sample_us > 0
    assert cost.cpu_fraction < 0.2  # an invariant: the sampler stays light, not a speed target
    assert all(isinstance(note, str) for note in sampler.notes)


def test_two_fake_gpus_give_si_units_and_energy_in_joules(tmp_path: Path) -> None:
    nvml = FakeNvml()
    sampler = Sampler(interval_s=0.01, nvml=nvml, rapl_root=tmp_path)
    run_until(sampler, lambda: sampler.cost().samples >= 4)
    assert nvml.calls == ["init", "shutdown"]
    gpu = sampler.samples().query("source == 'gpu'")
    first = gpu[gpu["t_ns"] == gpu["t_ns"].min()]
    readings = {(r.device, r.metric): (r.value, r.unit) for r in first.itertuples()}
    assert readings == {
        ("0", "utilization"): (0.87, "fraction"),
        ("0", "memory_utilization"): (0.41, "fraction"),
        ("0", "sm_clock"): (1_980_000_000, "Hz"),
        ("0", "memory_clock"): (2_619_000_000, "Hz"),
        ("0", "power"): (612.5, "W"),
        ("0", "memory_used"): (1_073_741_824, "bytes"),
        ("0", "energy"): (10_001.5, "J"),
        ("1", "utilization"): (0.03, "fraction"),
        ("1", "memory_utilization"): (0.0, "fraction"),
        ("1", "sm_clock"): (1_590_000_000, "Hz"),
        ("1", "memory_clock"): (5_001_000_000, "Hz"),
        ("1", "power"): (70.0, "W"),
        ("1", "memory_used"): (0.0, "bytes"),
    }
    # GPU 1 has no energy counter: asked once, dropped, noted; its other readings go on.
    assert sampler.notes.count("gpu 1 energy: Not Supported") == 1
    assert gpu.query("device == '1' and metric == 'power'")["t_ns"].nunique() >= 4
    summary = telemetry_summary(sampler.samples())
    energy_reads = (nvml.energy_mj[0] - 10_000_000) // 1_500
    assert summary["gpu.energy[0]"] == {
        "unit": "J",
        "used": pytest.approx(1.5 * (energy_reads - 1)),
    }
    assert summary["gpu.energy"]["used"] == summary["gpu.energy[0]"]["used"]
    assert summary["gpu.power[0]"] == {"unit": "W", "min": 612.5, "median": 612.5, "max": 612.5}


def test_no_nvidia_driver_is_a_note_not_a_failure(tmp_path: Path) -> None:
    sampler = Sampler(interval_s=0.01, nvml=NO_GPU, rapl_root=tmp_path)
    run_until(sampler, lambda: sampler.cost().samples >= 2)
    assert "gpu: none (no NVIDIA driver)" in sampler.notes
    assert "cpu package energy: unknown (no readable RAPL counter)" in sampler.notes
    assert set(sampler.samples()["source"]) <= {"cpu", "memory"}


def write_zone(root: Path, zone: str, name: str, energy_uj: int, max_uj: int) -> Path:
    folder = root / "sys/class/powercap" / zone
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "name").write_text(f"{name}\n")
    (folder / "energy_uj").write_text(f"{energy_uj}\n")
    (folder / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return folder


def test_rapl_energy_across_a_wraparound(tmp_path: Path) -> None:
    package = write_zone(tmp_path, "intel-rapl:0", "package-0", 999_000_000, 1_000_000_000)
    write_zone(tmp_path, "intel-rapl:0:0", "core", 5, 1_000_000_000)  # inside the package
    write_zone(tmp_path, "intel-rapl:1", "psys", 5, 1_000_000_000)  # covers the package too
    notes: list[str] = []
    (source,) = rapl_sources(tmp_path, notes)
    assert notes == []
    values = []
    for energy_uj in (999_000_000, 2_000_000, 5_000_000):  # wraps past 1000 J after the first
        (package / "energy_uj").write_text(f"{energy_uj}\n")
        ((src, device, metric, unit, value),) = source.read()
        assert (src, device, metric, unit) == ("rapl", "package-0", "energy", "J")
        values.append(value)
    assert values == [999.0, 1002.0, 1005.0]
    frame = pd.DataFrame(
        [(t, "rapl", "package-0", "energy", v, "J") for t, v in enumerate(values)], columns=COLUMNS
    )
    assert telemetry_summary(frame)["rapl.energy"] == {"unit": "J", "used": 6.0}


def test_rapl_through_the_sampler_and_unreadable_counters(tmp_path: Path) -> None:
    write_zone(tmp_path, "intel-rapl:0", "package-0", 123_000_000, 262_143_328_850)
    sampler = Sampler(interval_s=0.01, nvml=NO_GPU, rapl_root=tmp_path)
    run_until(sampler, lambda: sampler.cost().samples >= 2)
    rapl = sampler.samples().query("source == 'rapl'")
    assert set(rapl["value"]) == {123.0} and len(rapl) >= 2
    unreadable = write_zone(tmp_path / "other", "intel-rapl:0", "package-0", 1, 10)
    (unreadable / "energy_uj").unlink()
    notes: list[str] = []
    assert rapl_sources(tmp_path / "other", notes) == []
    assert notes == [
        "cpu package energy: intel-rapl:0 not readable (it needs root)",
        "cpu package energy: unknown (no readable RAPL counter)",
    ]


def test_a_source_that_raises_is_disabled_and_noted() -> None:
    calls = {"good": 0, "bad": 0}

    def good() -> list[Reading]:
        calls["good"] += 1
        return [("fake", "0", "reads", "count", float(calls["good"]))]

    def bad() -> list[Reading]:
        calls["bad"] += 1
        if calls["bad"] == 2:
            raise RuntimeError("sensor went away")
        return [("fake", "1", "reads", "count", 1.0)]

    sampler = Sampler(interval_s=0.01, sources=[Source("good", good), Source("bad", bad)])
    run_until(sampler, lambda: calls["good"] >= 5)
    assert calls["bad"] == 2
    assert sampler.notes == ["bad: disabled after RuntimeError: sensor went away"]
    samples = sampler.samples()
    assert len(samples.query("device == '1'")) == 1
    assert samples.query("device == '0'")["value"].tolist() == [
        float(i) for i in range(1, calls["good"] + 1)
    ]


def test_a_probe_that_fails_to_start_is_unknown(tmp_path: Path) -> None:
    class BrokenPsutil:
        def Process(self) -> None:
            raise PermissionError("no /proc")

    sampler = Sampler(interval_s=0.01, psutil=BrokenPsutil(), nvml=NO_GPU, rapl_root=tmp_path)
    run_until(sampler, lambda: sampler.cost().samples >= 2)
    assert "cpu, memory: unknown (set-up failed: PermissionError: no /proc)" in sampler.notes
    assert sampler.samples().empty


def test_unknown_frequencies_and_a_fake_psutil(tmp_path: Path) -> None:
    process = SimpleNamespace(memory_info=lambda: SimpleNamespace(rss=4096))
    psutil = SimpleNamespace(
        Process=lambda: process,
        cpu_percent=lambda percpu: [25.0, 50.0],
        cpu_freq=lambda percpu: [],  # what psutil gives where the kernel says nothing
        virtual_memory=lambda: SimpleNamespace(available=8192),
    )
    sampler = Sampler(interval_s=0.01, psutil=psutil, nvml=NO_GPU, rapl_root=tmp_path)
    run_until(sampler, lambda: sampler.cost().samples >= 3)
    assert "cpu frequency: unknown (not reported here)" in sampler.notes
    samples = sampler.samples()
    # Utilisation needs an interval: the first sample has none, every later one has both cores.
    per_sample = samples.query("metric == 'utilization'").groupby("t_ns")["value"].apply(list)
    assert len(per_sample) == sampler.cost().samples - 1
    assert all(values == [0.25, 0.5] for values in per_sample)
    assert frequency_drop(samples) is None
    summary = telemetry_summary(samples)
    assert summary["cpu.utilization"] == {
        "unit": "fraction",
        "min": 0.375,
        "median": 0.375,
        "max": 0.375,
    }
    assert "cpu.frequency" not in summary
    assert summary["memory.rss[process]"] == {
        "unit": "bytes",
        "min": 4096,
        "median": 4096,
        "max": 4096,
    }


def hand_made() -> pd.DataFrame:
    """Two cores over 4 s: core 1 sags from 3.0 to 2.0 GHz at 3 s; energy counters; a GPU."""
    rows = []
    freqs = {0: (3.0, 3.2), 1: (3.0, 3.0), 2: (2.8, 3.0), 3: (2.0, 2.0)}  # GHz, per second
    utils = {0: (0.5, 1.0), 1: (0.0, 1.0), 2: (1.0, 1.0), 3: (0.25, 0.75)}
    for second in range(4):
        t = 1_000 + second * 1_000_000_000
        for core in (0, 1):
            rows.append((t, "cpu", str(core), "frequency", freqs[second][core] * 1e9, "Hz"))
            rows.append((t, "cpu", str(core), "utilization", utils[second][core], "fraction"))
        rows.append((t, "rapl", "package-0", "energy", 100.0 + 30.0 * second, "J"))
        rows.append((t, "gpu", "0", "energy", 5_000.0 + 250.0 * second, "J"))
        rows.append((t, "gpu", "0", "power", (300.0, 250.0, 200.0, 100.0)[second], "W"))
    return pd.DataFrame(rows[::-1], columns=COLUMNS)  # out of order: summaries sort by time


def test_summarize_hand_made_samples() -> None:
    summary = telemetry_summary(hand_made())
    # Overall utilisation is the mean over cores at each sample: 0.75, 0.5, 1.0, 0.5.
    assert summary["cpu.utilization"] == {
        "unit": "fraction",
        "min": 0.5,
        "median": 0.625,
        "max": 1.0,
    }
    assert summary["cpu.utilization[1]"] == {
        "unit": "fraction",
        "min": 0.75,
        "median": 1.0,
        "max": 1.0,
    }
    # Median over cores at each sample: 3.1, 3.0, 2.9, 2.0 GHz.
    assert summary["cpu.frequency"] == {
        "unit": "Hz",
        "min": 2.0e9,
        "median": pytest.approx(2.95e9),
        "max": pytest.approx(3.1e9),
        "largest_drop": pytest.approx(0.1 / 3),
    }
    assert summary["cpu.frequency[0]"] == {
        "unit": "Hz",
        "min": 2.0e9,
        "median": 2.9e9,
        "max": 3.0e9,
    }
    assert summary["rapl.energy[package-0]"] == {"unit": "J", "used": 90.0}
    assert summary["rapl.energy"] == {"unit": "J", "used": 90.0}
    assert summary["gpu.energy[0]"] == {"unit": "J", "used": 750.0}
    assert summary["gpu.power[0]"] == {"unit": "W", "min": 100.0, "median": 225.0, "max": 300.0}
    empty = telemetry_summary(pd.DataFrame(columns=COLUMNS))
    assert empty == {}


def test_frequency_drop_against_the_first_seconds() -> None:
    samples = hand_made()
    # Baseline over the first 2 s: median of 3.1, 3.0, 2.9 GHz = 3.0 GHz. The last sample's
    # 2.0 GHz is one reading: the sustained low (median of three in a row) is 2.9 GHz.
    assert frequency_drop(samples) == pytest.approx(0.1 / 3)
    # Over the first sample alone the baseline is 3.1 GHz.
    assert frequency_drop(samples, baseline_s=0.5) == pytest.approx(0.2 / 3.1)
    rising = samples.assign(value=samples["value"].where(samples["metric"] != "frequency", 3e9))
    assert frequency_drop(rising) == 0.0
    assert frequency_drop(samples[samples["metric"] != "frequency"]) is None


def test_a_sampler_runs_once_and_wants_a_positive_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        Sampler(interval_s=0)
    sampler = Sampler(interval_s=0.01, sources=[])
    with sampler:
        pass
    sampler.stop()  # twice is harmless
    with pytest.raises(RuntimeError, match="runs once"):
        sampler.start()
    assert sampler.samples().empty and list(sampler.samples().columns) == COLUMNS
    assert sampler.cost().samples >= 2  # the first and the one at stop


def test_energy_over_replicates_leaves_out_the_gaps_between_them() -> None:
    rows = [
        (0, "rapl", "package-0", "energy", 100.0, "J", 0),
        (1, "rapl", "package-0", "energy", 110.0, "J", 0),
        (5, "rapl", "package-0", "energy", 150.0, "J", 1),  # set-up and warm-up ran meanwhile
        (6, "rapl", "package-0", "energy", 155.0, "J", 1),
    ]
    samples = pd.DataFrame(rows, columns=[*COLUMNS, "replicate"])
    assert telemetry_summary(samples)["rapl.energy"] == {"unit": "J", "used": 10.0 + 5.0}


def _stat(folder: Path, per_cpu: dict[int, tuple[int, ...]]) -> None:
    """A canned /proc/stat: per CPU, user nice system idle iowait irq softirq steal."""
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    lines += [f"cpu{c} " + " ".join(map(str, v)) + " 0 0" for c, v in sorted(per_cpu.items())]
    (folder / "proc").mkdir(exist_ok=True)
    (folder / "proc" / "stat").write_text("\n".join(lines) + "\nintr 0\n")


def test_other_processes_are_the_cpus_busy_time_less_the_runs_own(tmp_path):
    import os

    hertz = os.sysconf("SC_CLK_TCK")
    now = {"wall": 10.0, "own": 0}
    _stat(tmp_path, {0: (100, 0, 50, 900, 0, 0, 0, 0), 1: (0,) * 8, 2: (999,) * 8})
    notes: list[str] = []
    (source,) = load_sources(
        tmp_path, notes, cpus=[0, 1], wall=lambda: now["wall"], own=lambda: now["own"]
    )
    assert source.read() == []  # the first reading only sets the baseline
    # In 2 s on CPUs 0 and 1 (4 CPU-seconds): 3 s busy (steal, idle, iowait and CPU 2 left
    # out), of which 1 s was this process's own: others took 2 of the 4.
    _stat(
        tmp_path,
        {
            0: (100 + 2 * hertz, 0, 50, 900, 7, 0, 0, 9),
            1: (0, 0, 0, 0, 0, 0, hertz, 0),
            2: (10**6,) * 8,
        },
    )
    now["wall"], now["own"] = 12.0, 1_000_000_000
    readings = dict(((d, m), v) for _, d, m, _, v in source.read())
    assert readings[("others", "cpu_share")] == pytest.approx(0.5)
    assert readings[("run", "cpu_share")] == pytest.approx(0.25)
    assert readings[("window", "wall_time")] == pytest.approx(2.0)
    assert notes == []
    assert load_sources(tmp_path / "nowhere", notes) == [] and "unknown" in notes[0]


class Burner:
    """A workload that keeps one CPU busy for 2 ms a request."""

    @staticmethod
    def make():
        from harness.workload import Stage, Workload

        class Burn(Workload):
            name = "burn"
            stages = (Stage("spin", layer="inference"),)

            def requests(self, ctx):
                return [0]

            def spin(self, ctx, payload):
                with ctx.compute():
                    deadline = time.perf_counter() + 0.002
                    while time.perf_counter() < deadline:
                        pass
                return payload

        return Burn()


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="needs affinity")
def test_a_competing_busy_process_is_flagged_and_a_quiet_control_is_not():
    import os
    import signal
    import subprocess
    import sys

    from harness.analysis.validity import other_processes
    from harness.archive.schema import RunLength
    from harness.measure.process import measure
    from harness.workload import SetupContext

    before = os.sched_getaffinity(0)
    cpu = max(before)
    os.sched_setaffinity(0, {cpu})  # the run and its rival share one CPU, on any machine
    try:
        length = RunLength(warmup=0, min_requests=1, min_duration_s=1.6)
        quiet = measure(Burner.make(), SetupContext(), length).telemetry
        # Another job, not a child of this one (the run's children are the run's): started
        # by a shell that exits, so it belongs to no one here.
        spin = (
            f"import os, time\nos.sched_setaffinity(0, {{{cpu}}})\n"
            "end = time.time() + 30\nwhile time.time() < end: pass"
        )
        launched = subprocess.run(
            ["sh", "-c", '"$0" -c "$1" >/dev/null 2>&1 & echo $!', sys.executable, spin],
            capture_output=True,
            text=True,
            check=True,
        )
        rival = int(launched.stdout.split()[0])
        try:
            busy = measure(Burner.make(), SetupContext(), length).telemetry
        finally:
            os.kill(rival, signal.SIGKILL)
    finally:
        os.sched_setaffinity(0, before)

    def share(samples, who="others"):
        rows = samples[(samples["source"] == "load") & (samples["device"] == who)]
        return float(rows["value"].mean())

    _, problems = other_processes(busy.assign(replicate=0))
    assert problems and "other processes used" in problems[0]
    # Other jobs on a shared machine may use that CPU too; the rival is what must show, and
    # the run's own burning must not be taken for another process's.
    assert share(busy) > share(quiet) + 0.2
    assert share(quiet, "run") > 0.3


def test_the_run_s_own_children_are_the_run_s_load_not_others():
    import itertools
    import subprocess
    import sys

    from harness.measure.telemetry_sources import run_cpu_ns

    before = run_cpu_ns()
    spin = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    child = subprocess.Popen([sys.executable, "-c", spin])
    readings = [before]
    try:
        deadline = time.monotonic() + 20
        while child.poll() is None and time.monotonic() < deadline:
            readings.append(run_cpu_ns())  # counted while it runs
            time.sleep(0.02)
        child.wait(timeout=20)
    finally:
        child.kill()
    readings.append(run_cpu_ns())
    # Once it ended and was waited for, its time stays counted (the kernel keeps it), and
    # the count never drops as the child moves from live to ended (1 ms of rounding aside).
    assert readings[-1] - before >= 0.3e9
    assert min(b - a for a, b in itertools.pairwise(readings)) > -1e6


def test_other_processes_share_weighs_each_sample_by_the_time_it_covers():
    from harness.analysis.validity import other_processes

    def sample(t, others, window):
        return [
            (t, "load", "others", "cpu_share", others, "fraction"),
            (t, "load", "run", "cpu_share", 0.5, "fraction"),
            (t, "load", "window", "wall_time", window, "s"),
        ]

    columns = ["t_ns", "source", "device", "metric", "value", "unit"]
    rows = sample(1, 0.0, 9.0) + sample(2, 1.0, 1.0)  # busy for one second of ten
    telemetry = pd.DataFrame(rows, columns=columns).assign(replicate=0)
    notes, problems = other_processes(telemetry)
    assert problems == [] and "other processes used 10%" in notes[0]
    # A set kept before windows were: every sample alike, 50% and saturated.
    older = telemetry[telemetry["device"] != "window"]
    assert "used 50%" in other_processes(older)[1][0]
