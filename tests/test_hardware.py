"""The hardware fingerprint from canned roots, a fake NVML, a fake torch and the live machine."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

import harness
from harness.archive.codec import to_dict
from harness.machine import fingerprint as hardware
from harness.machine.fingerprint import Cache, Frequency, Host, detect, read_host

MACHINES = Path(__file__).parent / "fixtures" / "machines"
EPYC = MACHINES / "epyc-vm-2cpu"
XEON = MACHINES / "xeon-gold-5415plus-2s"
GRAVITON = MACHINES / "graviton3-16cpu"
KIB, MIB = 1 << 10, 1 << 20

MLPERF_HOST_KEYS = (
    "host_processor_model_name",
    "host_processors_per_node",
    "host_processor_core_count",
    "host_processor_vcpu_count",
    "host_processor_frequency",
    "host_processor_caches",
    "host_memory_capacity",
    "operating_system",
)


@pytest.fixture(autouse=True)
def no_py_cpuinfo_on_canned_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    """A canned root must be read from its files alone, never from this machine's CPUID."""

    def refuse() -> dict[str, Any]:
        raise AssertionError("py-cpuinfo consulted for a canned root")

    monkeypatch.setattr(hardware, "_py_cpuinfo", refuse)


def test_this_machine() -> None:
    assert read_host(EPYC) == Host(
        host_processor_model_name="AMD EPYC",
        host_processor_vendor="AMD",
        host_processor_architecture="x86_64",
        host_processor_id="family 25 model 17 stepping 1 microcode 0x1000065",
        host_processors_per_node=1,
        host_processor_core_count=2,
        host_processor_physical_core_total=2,
        host_processor_vcpu_count=2,
        host_processor_threads_per_core=1,
        host_processor_frequency=Frequency(2_596_152_000, None, None, None),
        host_processor_caches=(
            Cache("L1d", 32 * KIB, 2),
            Cache("L1i", 32 * KIB, 2),
            Cache("L2", 1 * MIB, 2),
            Cache("L3", 32 * MIB, 1),
        ),
        host_processor_isa_flags=(
            *("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512cd"),
            *("avx512bw", "avx512vl", "avx512ifma", "avx512vbmi", "avx512_vbmi2", "avx512_vnni"),
            *("avx512_bitalg", "avx512_vpopcntdq", "avx512_bf16"),
        ),
        host_numa_node_count=1,
        host_memory_capacity=24684096 * KIB,
        host_memory_available=24221804 * KIB,
        operating_system="Debian GNU/Linux 12 (bookworm)",
        kernel="6.18.44-fc-v595",
    )


def test_xeon_two_sockets_smt_amx() -> None:
    assert read_host(XEON) == Host(
        host_processor_model_name="Intel(R) Xeon(R) Gold 5415+",
        host_processor_vendor="Intel",
        host_processor_architecture="x86_64",
        host_processor_id="family 6 model 143 stepping 8 microcode 0x2b000571",
        host_processors_per_node=2,
        host_processor_core_count=8,
        host_processor_physical_core_total=16,
        host_processor_vcpu_count=32,
        host_processor_threads_per_core=2,
        host_processor_frequency=Frequency(800_000_000, 800_000_000, 4_100_000_000, 2_900_000_000),
        host_processor_caches=(
            Cache("L1d", 48 * KIB, 16),
            Cache("L1i", 32 * KIB, 16),
            Cache("L2", 2 * MIB, 16),
            Cache("L3", 23040 * KIB, 2),
        ),
        host_processor_isa_flags=(
            *("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512cd"),
            *("avx512bw", "avx512vl", "avx512ifma", "avx512vbmi", "avx512_vbmi2", "avx512_vnni"),
            *("avx512_bitalg", "avx512_vpopcntdq", "avx512_bf16", "avx512_fp16", "avx_vnni"),
            *("amx_tile", "amx_bf16", "amx_int8"),
        ),
        host_numa_node_count=2,
        host_memory_capacity=263577944 * KIB,
        host_memory_available=257834520 * KIB,
        operating_system="Ubuntu 22.04.4 LTS",
        kernel="5.15.0-105-generic",
    )


def test_graviton3_arm_features_and_part() -> None:
    assert read_host(GRAVITON) == Host(
        host_processor_model_name="ARM Neoverse-V1",
        host_processor_vendor="ARM",
        host_processor_architecture="aarch64",
        host_processor_id="implementer 0x41 part 0xd40 variant 0x1 revision 1",
        host_processors_per_node=1,
        host_processor_core_count=16,
        host_processor_physical_core_total=16,
        host_processor_vcpu_count=16,
        host_processor_threads_per_core=1,
        host_processor_frequency=Frequency(None, None, None, None),
        host_processor_caches=(
            Cache("L1d", 64 * KIB, 16),
            Cache("L1i", 64 * KIB, 16),
            Cache("L2", 1 * MIB, 16),
            Cache("L3", 32 * MIB, 1),
        ),
        host_processor_isa_flags=(
            *("asimd", "asimdhp", "asimddp", "asimdfhm", "fphp", "bf16", "i8mm", "sve"),
            *("svebf16", "svei8mm"),
        ),
        host_numa_node_count=1,
        host_memory_capacity=32114420 * KIB,
        host_memory_available=31288744 * KIB,
        operating_system="Amazon Linux 2",
        kernel="5.10.215-203.850.amzn2.aarch64",
    )


def test_an_empty_root_is_all_unknown(tmp_path: Path) -> None:
    host = read_host(tmp_path)
    assert host == Host(
        *(["unknown"] * 4),
        *([None] * 5),
        Frequency(None, None, None, None),
        (),
        (),
        *([None] * 3),
        "unknown",
        "unknown",
    )


def test_cpuinfo_topology_fallback_and_brand_frequency(tmp_path: Path) -> None:
    """Without sysfs, sockets and cores come from cpuinfo ids; base from the brand string."""
    model = "Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz"
    blocks = [
        f"processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: {model}\n"
        f"cpu MHz\t\t: 2300.042\nphysical id\t: 0\ncore id\t\t: {n // 2}\nflags\t\t: lm avx2\n"
        for n in range(4)
    ]
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("\n".join(blocks))
    host = read_host(tmp_path)
    assert (host.host_processors_per_node, host.host_processor_physical_core_total) == (1, 2)
    assert (host.host_processor_vcpu_count, host.host_processor_threads_per_core) == (4, 2)
    assert host.host_processor_frequency == Frequency(2_300_042_000, None, None, 2_300_000_000)
    assert host.host_processor_isa_flags == ("avx2",)


def test_detect_on_canned_roots_is_plain_json() -> None:
    # The cores a run may use, the one figure: the online CPUs, fewer under a cgroup quota.
    usable = {EPYC: 2.0, XEON: 2.0, GRAVITON: 4.0}
    for root in (EPYC, XEON, GRAVITON):
        fingerprint = detect(root, environ={}, probe_gpus=False, probe_software=False)
        data = to_dict(fingerprint)
        fields = ["schema_version", "host", "accelerators", "software", "environment"]
        assert list(data) == [*fields, "usable_cores"]
        assert data["schema_version"] == 2 and data["usable_cores"] == usable[root]
        assert data["accelerators"] is None and data["software"] is None
        assert json.loads(json.dumps(data)) == data
        assert [c["name"] for c in data["environment"]][:3] == ["cpu_governor", "smt", "cpu_quota"]
    xeon = to_dict(detect(XEON, environ={}, probe_gpus=False, probe_software=False))
    assert xeon["host"]["host_processor_caches"][3] == {
        "name": "L3",
        "size_bytes": 23040 * KIB,
        "instances": 2,
    }


def test_detect_live_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the live root may consult py-cpuinfo
    start = time.perf_counter()
    data = to_dict(detect("/"))
    seconds = time.perf_counter() - start
    assert json.loads(json.dumps(data)) == data
    for key in MLPERF_HOST_KEYS:
        assert key in data["host"]
    assert data["host"]["host_processor_vcpu_count"] >= 1
    assert data["host"]["host_memory_capacity"] > 0
    accelerators = data["accelerators"]
    assert {"accelerators_per_node", "accelerator_model_name"} <= set(accelerators)
    assert accelerators["nvml"]["status"] in {"ok", "no NVIDIA driver", "pynvml not installed"}
    software = data["software"]
    torch = pytest.importorskip("torch")
    assert software["torch_version"] == torch.__version__
    assert software["gapbench_version"] == harness.__version__
    assert software["framework"].startswith(f"PyTorch {torch.__version__}")
    assert len(data["environment"]) == 8
    assert seconds < 10  # about 1.2 s here, most of it importing torch; generous for slow CI


def test_live_fallbacks_fill_what_files_lack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live root without proc or sys (macOS) is described by py-cpuinfo and psutil."""
    info = {
        "brand_raw": "Apple M2 Pro",
        "vendor_id_raw": "Apple",
        "flags": ["asimd", "bf16", "i8mm", "sme"],
        "l1_data_cache_size": 65536,
        "l2_cache_size": 4194304,
    }
    psutil = {"logical": 12, "physical": 12, "memory": 32 << 30, "hz": 3_504_000_000}
    monkeypatch.setattr(hardware, "is_live_root", lambda root: True)
    monkeypatch.setattr(hardware, "_py_cpuinfo", lambda: info)
    monkeypatch.setattr(hardware, "_psutil", psutil.get)
    monkeypatch.setattr(hardware.platform, "machine", lambda: "arm64")
    host = read_host(tmp_path)
    assert (host.host_processor_model_name, host.host_processor_vendor) == ("Apple M2 Pro", "Apple")
    assert host.host_processor_architecture == "arm64"
    assert host.host_processor_isa_flags == ("asimd", "bf16", "i8mm", "sme")
    assert (host.host_processor_vcpu_count, host.host_processor_physical_core_total) == (12, 12)
    assert host.host_processors_per_node is None
    assert host.host_memory_capacity == 32 << 30
    assert host.host_processor_frequency == Frequency(3_504_000_000, None, None, None)
    assert host.host_processor_caches == (Cache("L1d", 65536, None), Cache("L2", 4194304, None))
