"""The accelerators from a fake NVML and a fake torch, and the real pynvml without a driver."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.machine.accelerators import NvmlDevice, TorchDevice, read_accelerators, read_nvml


class FakeNvmlError(Exception):
    pass


class FakeNotSupported(FakeNvmlError):
    pass


class NVMLError_LibraryNotFound(FakeNvmlError):  # pynvml names it so; read_nvml checks the name
    pass


class FakeNvml:
    """Two GPUs with pynvml's API: an H100 with everything, a T4 missing power and PCIe data."""

    NVMLError = FakeNvmlError
    NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM, NVML_CLOCK_MEM = 0, 1, 2

    def __init__(self, *, fail_init: Exception | None = None) -> None:
        self.fail_init = fail_init
        self.calls: list[str] = []

    def nvmlInit(self) -> None:
        self.calls.append("init")
        if self.fail_init:
            raise self.fail_init

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12040

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> str | bytes:
        return "NVIDIA H100 80GB HBM3" if handle == 0 else b"Tesla T4"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        return SimpleNamespace(total=(85_520_809_984, 16_106_127_360)[handle], used=0, free=0)

    def nvmlDeviceGetCudaComputeCapability(self, handle: int) -> tuple[int, int]:
        return ((9, 0), (7, 5))[handle]

    def nvmlDeviceGetClockInfo(self, handle: int, kind: int) -> int:
        return ((345, 345, 2619), (300, 300, 405))[handle][kind]

    def nvmlDeviceGetMaxClockInfo(self, handle: int, kind: int) -> int:
        return ((1980, 1980, 2619), (1590, 1590, 5001))[handle][kind]

    def nvmlDeviceGetPowerManagementLimit(self, handle: int) -> int:
        if handle == 1:
            raise FakeNotSupported("Not Supported")
        return 700_000

    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle: int) -> int:
        if handle == 1:
            raise FakeNotSupported("Not Supported")
        return 5

    def nvmlDeviceGetMaxPcieLinkWidth(self, handle: int) -> int:
        return 16


def test_fake_nvml_two_gpus() -> None:
    nvml = FakeNvml()
    report = read_nvml(nvml)
    assert (report.status, report.nvidia_driver_version, report.cuda_driver_version) == (
        "ok",
        "550.54.15",
        "12.4",
    )
    assert report.devices == (
        NvmlDevice(
            index=0,
            accelerator_model_name="NVIDIA H100 80GB HBM3",
            accelerator_memory_capacity=85_520_809_984,
            compute_capability="9.0",
            graphics_clock_hz=345_000_000,
            graphics_clock_max_hz=1_980_000_000,
            sm_clock_hz=345_000_000,
            sm_clock_max_hz=1_980_000_000,
            memory_clock_hz=2_619_000_000,
            memory_clock_max_hz=2_619_000_000,
            power_limit_w=700.0,
            accelerator_host_interconnect="PCIe Gen5 x16",
        ),
        NvmlDevice(
            index=1,
            accelerator_model_name="Tesla T4",
            accelerator_memory_capacity=16_106_127_360,
            compute_capability="7.5",
            graphics_clock_hz=300_000_000,
            graphics_clock_max_hz=1_590_000_000,
            sm_clock_hz=300_000_000,
            sm_clock_max_hz=1_590_000_000,
            memory_clock_hz=405_000_000,
            memory_clock_max_hz=5_001_000_000,
            power_limit_w=None,
            accelerator_host_interconnect="unknown",
        ),
    )
    assert nvml.calls == ["init", "shutdown"]


def test_no_nvidia_driver_is_not_an_error() -> None:
    nvml = FakeNvml(fail_init=NVMLError_LibraryNotFound("NVML Shared Library Not Found"))
    report = read_nvml(nvml)
    assert (report.status, report.devices) == ("no NVIDIA driver", ())
    nvml = FakeNvml(fail_init=FakeNvmlError("Insufficient Permissions"))
    assert read_nvml(nvml).status == "NVML error: Insufficient Permissions"


def test_real_pynvml_without_a_driver_says_so() -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("an NVIDIA driver is present")
    except pynvml.NVMLError:
        pass
    assert read_nvml().status == "no NVIDIA driver"


def fake_torch(devices: list[SimpleNamespace], mps: bool = False) -> SimpleNamespace:
    cuda = SimpleNamespace(
        is_available=lambda: bool(devices),
        device_count=lambda: len(devices),
        get_device_properties=lambda i: devices[i],
    )
    return SimpleNamespace(
        cuda=cuda, backends=SimpleNamespace(mps=SimpleNamespace(is_available=lambda: mps))
    )


def test_accelerators_from_fake_nvml_and_torch() -> None:
    props = SimpleNamespace(
        name="NVIDIA H100 80GB HBM3",
        total_memory=85_017_624_576,
        major=9,
        minor=0,
        multi_processor_count=132,
    )
    found = read_accelerators(FakeNvml(), fake_torch([props]))
    assert found.accelerators_per_node == 2  # the driver sees both; this process sees one
    assert found.accelerator_model_name == "NVIDIA H100 80GB HBM3, Tesla T4"
    assert (found.cuda_available, found.mps_available) == (True, False)
    assert found.torch_devices == (
        TorchDevice(0, "NVIDIA H100 80GB HBM3", 85_017_624_576, "9.0", 132),
    )


def test_accelerators_on_a_mac_like_box() -> None:
    nvml = FakeNvml(fail_init=NVMLError_LibraryNotFound("NVML Shared Library Not Found"))
    found = read_accelerators(nvml, fake_torch([], mps=True))
    assert (found.accelerators_per_node, found.accelerator_model_name) == (0, "none")
    assert (found.cuda_available, found.mps_available, found.torch_devices) == (False, True, ())
