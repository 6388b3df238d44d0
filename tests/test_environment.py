"""Environment checks read from canned machine roots, with exact expected values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.machine.environment import (
    Check,
    check_affinity,
    check_cpu_package_energy,
    check_cpu_quota,
    check_governor,
    check_smt,
    check_steal,
    check_thread_variables,
    check_transparent_hugepages,
    environment_checks,
)
from harness.machine.sysfs import CpuTimes, cpu_list, cpu_times, online_cpus

MACHINES = Path(__file__).parent / "fixtures" / "machines"
EPYC = MACHINES / "epyc-vm-2cpu"  # this 2-CPU VM: no cpufreq, SMT notsupported, cgroup v1
XEON = MACHINES / "xeon-gold-5415plus-2s"  # 2 sockets, SMT on, powersave, cgroup v2 quota
GRAVITON = MACHINES / "graviton3-16cpu"  # Neoverse-V1, no SMT dir, cgroup v1 quota, steal


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    return tmp_path


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0-3,8,10-11", (0, 1, 2, 3, 8, 10, 11)),
        ("5", (5,)),
        ("0,16", (0, 16)),
        ("", ()),
        (None, ()),
        ("0-x", ()),
    ],
)
def test_cpu_list(text: str | None, expected: tuple[int, ...]) -> None:
    assert cpu_list(text) == expected


def test_online_cpus_per_machine(empty: Path) -> None:
    assert online_cpus(EPYC) == (0, 1)
    assert online_cpus(XEON) == tuple(range(32))
    assert online_cpus(GRAVITON) == tuple(range(16))
    assert online_cpus(empty) == ()


def test_online_cpus_falls_back_to_folders_then_cpuinfo(empty: Path) -> None:
    write(empty, "proc/cpuinfo", "processor\t: 0\n\nprocessor\t: 1\n\nprocessor\t: 2")
    assert online_cpus(empty) == (0, 1, 2)
    for cpu in (0, 1, 10):
        (empty / f"sys/devices/system/cpu/cpu{cpu}").mkdir(parents=True)
    (empty / "sys/devices/system/cpu/cpufreq").mkdir()
    assert online_cpus(empty) == (0, 1, 10)


def test_cpu_times_per_machine(empty: Path) -> None:
    assert cpu_times(EPYC) == CpuTimes(11507, 0, 2856, 144630, 229, 0, 35, 20, 0, 0)
    assert cpu_times(XEON) == CpuTimes(
        81234567, 12345, 23456789, 987654321, 1234567, 0, 345678, 0, 0, 0
    )
    assert cpu_times(GRAVITON) == CpuTimes(
        1834567, 210, 412345, 98765432, 4567, 0, 12345, 2345678, 0, 0
    )
    assert cpu_times(empty) is None


def test_cpu_times_old_kernel_and_garbage(empty: Path) -> None:
    write(empty, "proc/stat", "cpu  10 0 5 85\ncpu0 10 0 5 85")
    assert cpu_times(empty) == CpuTimes(10, 0, 5, 85, 0, 0, 0, 0, 0, 0)
    write(empty, "proc/stat", "cpu  10 zero 5 85")
    assert cpu_times(empty) is None
    write(empty, "proc/stat", "intr 1 2 3")
    assert cpu_times(empty) is None


def test_cpu_times_diff_gives_the_steal_of_a_run() -> None:
    start = CpuTimes(100, 0, 50, 800, 10, 0, 5, 35, 7, 0)
    end = CpuTimes(160, 0, 70, 900, 10, 0, 5, 55, 9, 0)
    run = end.since(start)
    assert run == CpuTimes(60, 0, 20, 100, 0, 0, 0, 20, 2, 0)
    assert run.total == 200  # guest is inside user already, so it is not added again
    assert run.steal_fraction == 0.1
    assert start.since(start).steal_fraction is None


def test_governor(empty: Path) -> None:
    assert check_governor(EPYC) == Check(
        "cpu_governor", "unknown", "unknown", "no cpufreq (a VM, or no driver)"
    )
    assert check_governor(XEON) == Check(
        "cpu_governor", "powersave", "warn", "clocks follow load; `performance` holds them"
    )
    assert check_governor(GRAVITON).status == "unknown"
    assert check_governor(empty).value == "unknown"


def test_governor_performance_and_mixed(empty: Path) -> None:
    write(empty, "sys/devices/system/cpu/online", "0-2")
    for cpu in (0, 1, 2):
        write(empty, f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor", "performance")
    assert check_governor(empty) == Check("cpu_governor", "performance", "ok", "performance x3")
    write(empty, "sys/devices/system/cpu/cpu2/cpufreq/scaling_governor", "schedutil")
    assert check_governor(empty) == Check(
        "cpu_governor", "mixed", "warn", "CPUs differ: performance x2, schedutil x1"
    )


def test_smt(empty: Path) -> None:
    assert check_smt(EPYC) == Check("smt", "notsupported", "ok", "inactive")
    assert check_smt(XEON) == Check("smt", "on", "ok", "active: sibling threads are in use")
    assert check_smt(GRAVITON) == Check(
        "smt", "unknown", "unknown", "no sys/devices/system/cpu/smt"
    )
    assert check_smt(empty).status == "unknown"


def test_cpu_quota(empty: Path) -> None:
    assert check_cpu_quota(EPYC) == Check(
        "cpu_quota", "no limit", "ok", "cgroup v1 cpu.cfs_quota_us -1, cpu.cfs_period_us 100000"
    )
    # The service's own 200000/100000 is tighter than its parent's "max", so it wins.
    assert check_cpu_quota(XEON) == Check(
        "cpu_quota", "2 CPUs", "warn", "cgroup v2 cpu.max '200000 100000': 2 of 32 logical CPUs"
    )
    # The container's /docker/... path is not under its own mount: the mount's top is read.
    assert check_cpu_quota(GRAVITON) == Check(
        "cpu_quota",
        "4 CPUs",
        "warn",
        "cgroup v1 cpu.cfs_quota_us 400000, cpu.cfs_period_us 100000: 4 of 16 logical CPUs",
    )
    assert check_cpu_quota(empty) == Check(
        "cpu_quota", "unknown", "unknown", "no cgroup cpu.max or cpu.cfs_quota_us"
    )


def test_cpu_quota_v2_unlimited_and_generous(empty: Path) -> None:
    write(empty, "sys/devices/system/cpu/online", "0-3")
    write(empty, "proc/self/cgroup", "0::/")
    write(empty, "sys/fs/cgroup/cpu.max", "max 100000")
    assert check_cpu_quota(empty) == Check(
        "cpu_quota", "no limit", "ok", "cgroup v2 cpu.max 'max 100000'"
    )
    write(empty, "sys/fs/cgroup/cpu.max", "600000 100000")
    assert check_cpu_quota(empty) == Check(
        "cpu_quota", "6 CPUs", "ok", "cgroup v2 cpu.max '600000 100000'; 4 logical CPUs"
    )
    write(empty, "sys/fs/cgroup/cpu.max", "150000 100000")
    assert check_cpu_quota(empty).value == "1.5 CPUs"
    assert check_cpu_quota(empty).status == "warn"


def test_affinity(empty: Path) -> None:
    assert check_affinity(EPYC, {0, 1}) == Check("cpu_affinity", "2 of 2 CPUs", "ok", "CPUs 0-1")
    assert check_affinity(XEON, {0, 1, 2, 3, 16, 17, 18, 19}) == Check(
        "cpu_affinity", "8 of 32 CPUs", "warn", "pinned to CPUs 0-3,16-19"
    )
    # A canned root's CPUs are not this process's: without a mask given, it is unknown.
    assert check_affinity(GRAVITON) == Check(
        "cpu_affinity", "unknown", "unknown", "16 logical CPUs"
    )
    assert check_affinity(empty).value == "unknown"


def test_affinity_on_the_live_root_reads_this_process() -> None:
    mask = os.sched_getaffinity(0)
    assert check_affinity("/").value == f"{len(mask)} of {len(online_cpus('/'))} CPUs"


def test_steal(empty: Path) -> None:
    assert check_steal(EPYC) == Check(
        "cpu_steal", "0.01%", "ok", "20 of 159277 ticks since boot, not only during a run"
    )
    assert check_steal(XEON).value == "0.00%"
    assert check_steal(GRAVITON) == Check(
        "cpu_steal", "2.27%", "warn", "2345678 of 103375144 ticks since boot, not only during a run"
    )
    assert check_steal(empty) == Check("cpu_steal", "unknown", "unknown", "no proc/stat")


def test_thread_variables_are_listed_sorted() -> None:
    environ = {
        "PATH": "/usr/bin",
        "OMP_NUM_THREADS": "2",
        "MKL_NUM_THREADS": "2",
        "KMP_AFFINITY": "granularity=fine,compact",
        "CUDA_VISIBLE_DEVICES": "0",
        "HOME": "/root",
    }
    assert check_thread_variables(environ, 2) == Check(
        "thread_variables",
        "CUDA_VISIBLE_DEVICES=0 KMP_AFFINITY=granularity=fine,compact MKL_NUM_THREADS=2 "
        "OMP_NUM_THREADS=2",
        "ok",
        "2 CPUs available",
    )
    assert check_thread_variables({"HOME": "/root"}, None) == Check(
        "thread_variables", "none set", "ok", "unknown CPUs available"
    )


def test_thread_variables_warn_on_oversubscription() -> None:
    environ = {"OMP_NUM_THREADS": "8,2", "OPENBLAS_NUM_THREADS": "4", "CUDA_LAUNCH_BLOCKING": "1"}
    assert check_thread_variables(environ, 4) == Check(
        "thread_variables",
        "CUDA_LAUNCH_BLOCKING=1 OMP_NUM_THREADS=8,2 OPENBLAS_NUM_THREADS=4",
        "warn",
        "OMP_NUM_THREADS=8 exceeds the 4 CPUs available; "
        "CUDA_LAUNCH_BLOCKING serialises every kernel launch",
    )


def test_transparent_hugepages(empty: Path) -> None:
    assert check_transparent_hugepages(EPYC) == Check(
        "transparent_hugepages", "madvise", "ok", "always [madvise] never"
    )
    assert check_transparent_hugepages(XEON).value == "always"
    assert check_transparent_hugepages(GRAVITON).value == "madvise"
    assert check_transparent_hugepages(empty).status == "unknown"


def test_cpu_package_energy(empty: Path) -> None:
    assert check_cpu_package_energy(XEON) == Check(
        "cpu_package_energy", "available", "ok", "RAPL intel-rapl:0 energy_uj"
    )
    assert check_cpu_package_energy(EPYC).status == "unknown"
    assert check_cpu_package_energy(GRAVITON).value == "unknown"
    assert check_cpu_package_energy(empty).value == "unknown"
    # Present but unreadable (root-only since 2020 kernels); a folder stands in for that here.
    (empty / "sys/class/powercap/intel-rapl:0/energy_uj").mkdir(parents=True)
    assert check_cpu_package_energy(empty) == Check(
        "cpu_package_energy", "not readable", "unknown", "RAPL needs root to read"
    )


def test_environment_checks_on_the_xeon() -> None:
    checks = environment_checks(XEON, {"OMP_NUM_THREADS": "16"}, set(range(32)))
    assert checks == (
        Check("cpu_governor", "powersave", "warn", "clocks follow load; `performance` holds them"),
        Check("smt", "on", "ok", "active: sibling threads are in use"),
        Check(
            "cpu_quota",
            "2 CPUs",
            "warn",
            "cgroup v2 cpu.max '200000 100000': 2 of 32 logical CPUs",
        ),
        Check("cpu_affinity", "32 of 32 CPUs", "ok", "CPUs 0-31"),
        Check(
            "cpu_steal", "0.00%", "ok", "0 of 1093938267 ticks since boot, not only during a run"
        ),
        # The quota (2 CPUs), not the 32 logical CPUs, is what 16 threads oversubscribe.
        Check(
            "thread_variables",
            "OMP_NUM_THREADS=16",
            "warn",
            "OMP_NUM_THREADS=16 exceeds the 2 CPUs available",
        ),
        Check("transparent_hugepages", "always", "ok", "[always] madvise never"),
        Check("cpu_package_energy", "available", "ok", "RAPL intel-rapl:0 energy_uj"),
    )


def test_environment_checks_affinity_limits_threads() -> None:
    checks = {c.name: c for c in environment_checks(GRAVITON, {"OMP_NUM_THREADS": "3"}, {0, 1})}
    assert checks["cpu_affinity"].status == "warn"
    assert checks["thread_variables"].detail == "OMP_NUM_THREADS=3 exceeds the 2 CPUs available"


def test_an_empty_root_is_all_unknown(empty: Path) -> None:
    checks = environment_checks(empty, {})
    assert [c.name for c in checks] == [
        "cpu_governor",
        "smt",
        "cpu_quota",
        "cpu_affinity",
        "cpu_steal",
        "thread_variables",
        "transparent_hugepages",
        "cpu_package_energy",
    ]
    assert {(c.name, c.value, c.status) for c in checks if c.name != "thread_variables"} == {
        (c.name, "unknown", "unknown") for c in checks if c.name != "thread_variables"
    }


def test_live_root_checks_never_raise() -> None:
    checks = environment_checks("/")
    assert len(checks) == 8
    assert {c.status for c in checks} <= {"ok", "warn", "unknown"}
