"""The accelerators: every GPU NVML sees, the CUDA devices torch sees, and Apple's MPS backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.words import UNKNOWN


@dataclass(frozen=True)
class NvmlDevice:
    """One GPU as the NVIDIA driver sees it (all of the node's, whatever CUDA_VISIBLE_DEVICES)."""

    index: int
    accelerator_model_name: str
    accelerator_memory_capacity: int | None
    compute_capability: str
    graphics_clock_hz: int | None
    graphics_clock_max_hz: int | None
    sm_clock_hz: int | None
    sm_clock_max_hz: int | None
    memory_clock_hz: int | None
    memory_clock_max_hz: int | None
    power_limit_w: float | None
    accelerator_host_interconnect: str


@dataclass(frozen=True)
class Nvml:
    """What NVML reports: ``status`` is ``ok``, ``no NVIDIA driver`` or the error met."""

    status: str
    nvidia_driver_version: str
    cuda_driver_version: str
    devices: tuple[NvmlDevice, ...]


@dataclass(frozen=True)
class TorchDevice:
    """One CUDA device as this process's torch sees it (after CUDA_VISIBLE_DEVICES)."""

    index: int
    name: str
    total_memory: int | None
    compute_capability: str
    multi_processor_count: int | None


@dataclass(frozen=True)
class Accelerators:
    """GPUs seen by NVML and by torch, and whether Apple's MPS backend is usable."""

    accelerators_per_node: int
    accelerator_model_name: str
    nvml: Nvml
    cuda_available: bool | None
    mps_available: bool | None
    torch_devices: tuple[TorchDevice, ...]


def read_nvml(nvml: Any = None) -> Nvml:
    """Every GPU NVML sees; ``nvml`` is the ``pynvml`` module, or a stand-in with its API."""
    nvml = nvml or optional_import("pynvml")
    if nvml is None:
        return Nvml("pynvml not installed", UNKNOWN, UNKNOWN, ())
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as error:
        # No driver is the normal case on a CPU machine: say so, do not fail.
        missing = ("NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded")
        status = "no NVIDIA driver" if type(error).__name__ in missing else f"NVML error: {error}"
        return Nvml(status, UNKNOWN, UNKNOWN, ())
    try:
        cuda = _nvml(nvml, "nvmlSystemGetCudaDriverVersion")
        devices = tuple(
            _nvml_device(nvml, i) for i in range(_nvml(nvml, "nvmlDeviceGetCount") or 0)
        )
        return Nvml(
            "ok",
            _text(_nvml(nvml, "nvmlSystemGetDriverVersion")),
            f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else UNKNOWN,
            devices,
        )
    finally:
        _nvml(nvml, "nvmlShutdown")


def read_accelerators(nvml: Any = None, torch: Any = None) -> Accelerators:
    """NVML's and torch's views side by side; ``nvml``/``torch`` are the modules or stand-ins.

    The two orders may differ (CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER), so they are not merged.
    """
    driver = read_nvml(nvml)
    if torch is None:
        torch = optional_import("torch")
    cuda: bool | None = None
    torch_devices: tuple[TorchDevice, ...] = ()
    try:
        cuda = bool(torch.cuda.is_available()) if torch is not None else None
        count = torch.cuda.device_count() if cuda else 0
        props = (torch.cuda.get_device_properties(i) for i in range(count))
        torch_devices = tuple(_torch_device(i, p) for i, p in enumerate(props))
    except RuntimeError:  # a broken CUDA install raises on first use
        cuda = None
    mps_backend = getattr(getattr(torch, "backends", None), "mps", None)
    names = [d.accelerator_model_name for d in driver.devices] or [d.name for d in torch_devices]
    return Accelerators(
        accelerators_per_node=len(driver.devices) or len(torch_devices),
        accelerator_model_name=", ".join(dict.fromkeys(names)) or "none",
        nvml=driver,
        cuda_available=cuda,
        mps_available=bool(mps_backend.is_available()) if mps_backend else None,
        torch_devices=torch_devices,
    )


def _nvml(nvml: Any, function: str, *args: Any) -> Any:
    """One NVML call; None when the device or driver does not support it."""
    try:
        return getattr(nvml, function)(*args)
    except (nvml.NVMLError, AttributeError):
        return None


def _nvml_device(nvml: Any, index: int) -> NvmlDevice:
    handle = _nvml(nvml, "nvmlDeviceGetHandleByIndex", index)
    memory = _nvml(nvml, "nvmlDeviceGetMemoryInfo", handle)
    capability = _nvml(nvml, "nvmlDeviceGetCudaComputeCapability", handle)
    limit_mw = _nvml(nvml, "nvmlDeviceGetPowerManagementLimit", handle)
    generation = _nvml(nvml, "nvmlDeviceGetMaxPcieLinkGeneration", handle)
    width = _nvml(nvml, "nvmlDeviceGetMaxPcieLinkWidth", handle)

    def clock(kind: str, function: str = "nvmlDeviceGetClockInfo") -> int | None:
        mhz = _nvml(nvml, function, handle, getattr(nvml, kind))
        return mhz * 1_000_000 if isinstance(mhz, int) else None

    return NvmlDevice(
        index=index,
        accelerator_model_name=_text(_nvml(nvml, "nvmlDeviceGetName", handle)),
        accelerator_memory_capacity=getattr(memory, "total", None),
        compute_capability=".".join(map(str, capability)) if capability else UNKNOWN,
        graphics_clock_hz=clock("NVML_CLOCK_GRAPHICS"),
        graphics_clock_max_hz=clock("NVML_CLOCK_GRAPHICS", "nvmlDeviceGetMaxClockInfo"),
        sm_clock_hz=clock("NVML_CLOCK_SM"),
        sm_clock_max_hz=clock("NVML_CLOCK_SM", "nvmlDeviceGetMaxClockInfo"),
        memory_clock_hz=clock("NVML_CLOCK_MEM"),
        memory_clock_max_hz=clock("NVML_CLOCK_MEM", "nvmlDeviceGetMaxClockInfo"),
        power_limit_w=limit_mw / 1000 if isinstance(limit_mw, int) else None,
        accelerator_host_interconnect=f"PCIe Gen{generation} x{width}" if generation else UNKNOWN,
    )


def _torch_device(index: int, props: Any) -> TorchDevice:
    major, minor = getattr(props, "major", None), getattr(props, "minor", None)
    return TorchDevice(
        index=index,
        name=str(getattr(props, "name", UNKNOWN)),
        total_memory=getattr(props, "total_memory", None),
        compute_capability=f"{major}.{minor}" if major is not None else UNKNOWN,
        multi_processor_count=getattr(props, "multi_processor_count", None),
    )


def _text(value: Any) -> str:
    if isinstance(value, bytes):  # pynvml before 11.5 returned bytes
        return value.decode(errors="replace")
    return UNKNOWN if value is None else str(value)


def optional_import(name: str) -> Any:
    """The module ``name``, or None when it is not installed."""
    try:
        return __import__(name)
    except ImportError:
        return None
