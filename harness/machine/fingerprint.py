"""The hardware fingerprint: CPU, memory, accelerators and software, with MLPerf's field names.

Conventions: a number that could not be read is None, a string is ``"unknown"``, and a section that
was not probed (``probe_gpus`` / ``probe_software`` off) is None. Sizes are bytes, frequencies Hz,
power watts. Files under ``root`` come first; on the live root py-cpuinfo and psutil fill what they
lack (on macOS, say). The environment checks travel inside the fingerprint as ``environment``.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.machine.accelerators import Accelerators, optional_import, read_accelerators
from harness.machine.cores import cores
from harness.machine.environment import Check, environment_checks
from harness.machine.sysfs import cpu_list, is_live_root, online_cpus
from harness.machine.sysfs import read_text as _read
from harness.words import UNKNOWN

SCHEMA_VERSION = 2  # checked wherever a fingerprint is read (see harness.archive.migrations)
HISTORY = {
    1: "the first fingerprints",
    2: "usable_cores: the one figure of the cores a run may use",
}

AI_ISA_FLAGS = (
    # x86: vector widths, then the dot-product and matrix extensions that AI kernels dispatch on.
    *("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512cd", "avx512bw"),
    *("avx512vl", "avx512ifma", "avx512vbmi", "avx512_vbmi2", "avx512_vnni", "avx512_bitalg"),
    *("avx512_vpopcntdq", "avx512_bf16", "avx512_fp16", "avx_vnni", "avx_vnni_int8"),
    *("avx_ne_convert", "avx_ifma", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16", "amx_complex"),
    # Arm: NEON, its half-precision and dot-product forms, SVE and SME.
    *("neon", "asimd", "asimdhp", "asimddp", "asimdfhm", "fphp", "bf16", "i8mm", "sve", "sve2"),
    *("svebf16", "svei8mm", "sme", "sme2"),
)
"""Instruction-set flags that decide which kernels torch, oneDNN and onnxruntime pick."""

_ARM_IMPLEMENTERS = {
    "0x41": "ARM",
    "0x48": "HiSilicon",
    "0x4e": "NVIDIA",
    "0x51": "Qualcomm",
    "0x61": "Apple",
    "0xc0": "Ampere",
}
_ARM_PARTS = {  # (implementer, part): the core design, since Arm kernels print no model name
    ("0x41", "0xd0c"): "Neoverse-N1",
    ("0x41", "0xd40"): "Neoverse-V1",
    ("0x41", "0xd49"): "Neoverse-N2",
    ("0x41", "0xd4f"): "Neoverse-V2",
    ("0x41", "0xd84"): "Neoverse-V3",
    ("0x41", "0xd8e"): "Neoverse-N3",
    ("0xc0", "0xac3"): "AmpereOne",
}
_X86_VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon"}


@dataclass(frozen=True)
class Cache:
    """One cache level: ``name`` (L1d, L1i, L2, L3), one instance's size and the instance count."""

    name: str
    size_bytes: int | None
    instances: int | None


@dataclass(frozen=True)
class Frequency:
    """CPU clocks in Hz: current (cpu0), cpufreq min/max, and base (nominal) where known."""

    current_hz: int | None
    min_hz: int | None
    max_hz: int | None
    base_hz: int | None


@dataclass(frozen=True)
class Host:
    """The host CPU, memory and OS. MLPerf's ``host_processor_core_count`` is per socket."""

    host_processor_model_name: str
    host_processor_vendor: str
    host_processor_architecture: str
    host_processor_id: str
    host_processors_per_node: int | None
    host_processor_core_count: int | None
    host_processor_physical_core_total: int | None
    host_processor_vcpu_count: int | None
    host_processor_threads_per_core: int | None
    host_processor_frequency: Frequency
    host_processor_caches: tuple[Cache, ...]
    host_processor_isa_flags: tuple[str, ...]
    host_numa_node_count: int | None
    host_memory_capacity: int | None
    host_memory_available: int | None
    operating_system: str
    kernel: str


@dataclass(frozen=True)
class Software:
    """The running interpreter and the libraries whose versions and threads change results."""

    python_version: str
    python_implementation: str
    framework: str
    torch_version: str
    torch_cuda_version: str
    torch_cudnn_version: str
    torch_cpu_capability: str
    torch_num_threads: int | None
    torch_num_interop_threads: int | None
    onnxruntime_version: str
    onnxruntime_providers: tuple[str, ...]
    numpy_version: str
    gapbench_version: str


@dataclass(frozen=True)
class Fingerprint:
    """Everything known about the machine and process a result set was measured on."""

    host: Host
    accelerators: Accelerators | None
    software: Software | None
    environment: tuple[Check, ...]
    # The cores a run here may use: the online CPUs, fewer where affinity or a cgroup quota
    # limits the process (fractional under a quota); None when none of these could be read.
    usable_cores: float | None
    schema_version: int = SCHEMA_VERSION

    @property
    def cores(self) -> float:
        """``usable_cores``, else the logical CPUs, else 1: what a replay may run on."""
        return self.usable_cores or float(self.host.host_processor_vcpu_count or 1)


def detect(
    root: str | os.PathLike[str] = "/",
    *,
    environ: Mapping[str, str] | None = None,
    probe_gpus: bool = True,
    probe_software: bool = True,
) -> Fingerprint:
    """Fingerprint the machine under ``root`` (a canned copy in tests) and this process."""
    return Fingerprint(
        host=read_host(root),
        accelerators=read_accelerators() if probe_gpus else None,
        software=read_software() if probe_software else None,
        environment=environment_checks(root, environ),
        usable_cores=cores(root).usable,
    )


def read_host(root: str | os.PathLike[str] = "/") -> Host:
    """The CPU, memory and OS from ``proc``, ``sys`` and ``etc`` under ``root``."""
    live = is_live_root(root)
    blocks = _cpuinfo_blocks(_read(root, "proc/cpuinfo"))
    first = blocks[0] if blocks else {}
    flags = set((first.get("flags") or first.get("Features") or "").split())
    implementer, part = first.get("CPU implementer", ""), first.get("CPU part", "")
    vendor = _X86_VENDORS.get(first.get("vendor_id", ""), first.get("vendor_id", UNKNOWN))
    model = first.get("model name") or UNKNOWN
    if implementer:
        vendor = _ARM_IMPLEMENTERS.get(implementer, f"Arm implementer {implementer}")
        core = _ARM_PARTS.get((implementer, part), f"part {part}")
        model = model if model != UNKNOWN else f"{vendor} {core}"
    arch = "aarch64" if first.get("CPU architecture") == "8" else "x86_64" if "lm" in flags else ""
    if live and (model == UNKNOWN or not flags or vendor == UNKNOWN):
        info = _py_cpuinfo()
        model = model if model != UNKNOWN else info.get("brand_raw") or UNKNOWN
        vendor = vendor if vendor != UNKNOWN else info.get("vendor_id_raw") or UNKNOWN
        flags = flags or set(info.get("flags", ()))
    if live and not arch:
        arch = platform.machine()

    cpus = online_cpus(root)
    logical = len(cpus) or (_psutil("logical") if live else None)
    sockets, physical = _topology(root, cpus, blocks)
    if physical is None and live:
        physical = _psutil("physical")
    meminfo = _meminfo(_read(root, "proc/meminfo"))
    total = meminfo.get("MemTotal")
    if total is None and live:
        total = _psutil("memory")
    os_release = dict(
        re.findall(r'^(\w+)="?([^"\n]*)"?$', _read(root, "etc/os-release") or "", re.M)
    )
    os_name = os_release.get("PRETTY_NAME") or (platform.platform() if live else UNKNOWN)
    kernel = _read(root, "proc/sys/kernel/osrelease") or (platform.release() if live else UNKNOWN)
    return Host(
        host_processor_model_name=model,
        host_processor_vendor=vendor,
        host_processor_architecture=arch or UNKNOWN,
        host_processor_id=_processor_id(first),
        host_processors_per_node=sockets,
        host_processor_core_count=physical // sockets if physical and sockets else None,
        host_processor_physical_core_total=physical,
        host_processor_vcpu_count=logical,
        host_processor_threads_per_core=logical // physical if logical and physical else None,
        host_processor_frequency=_frequency(root, cpus, first, model, live),
        host_processor_caches=_caches(root, cpus, logical, live),
        host_processor_isa_flags=tuple(f for f in AI_ISA_FLAGS if f in flags),
        host_numa_node_count=len(cpu_list(_read(root, "sys/devices/system/node/online"))) or None,
        host_memory_capacity=total,
        host_memory_available=meminfo.get("MemAvailable"),
        operating_system=os_name,
        kernel=kernel,
    )


def read_software() -> Software:
    """Versions and thread settings of the interpreter and the AI libraries in this process."""
    import harness

    versions: dict[str, str] = {}
    torch: Any = optional_import("torch")
    ort: Any = optional_import("onnxruntime")
    numpy: Any = optional_import("numpy")
    if torch is not None:
        versions["PyTorch"] = str(torch.__version__)
    if ort is not None:
        versions["ONNX Runtime"] = str(ort.__version__)
    cudnn = torch.backends.cudnn.version() if torch is not None else None
    capability = getattr(getattr(torch, "backends", None), "cpu", None)
    return Software(
        python_version=platform.python_version(),
        python_implementation=platform.python_implementation(),
        framework=", ".join(f"{k} {v}" for k, v in versions.items()) or UNKNOWN,
        torch_version=versions.get("PyTorch", "not installed"),
        torch_cuda_version=str(torch.version.cuda or "none") if torch is not None else UNKNOWN,
        torch_cudnn_version=str(cudnn) if cudnn else "none",
        torch_cpu_capability=str(capability.get_cpu_capability()) if capability else UNKNOWN,
        torch_num_threads=torch.get_num_threads() if torch is not None else None,
        torch_num_interop_threads=torch.get_num_interop_threads() if torch is not None else None,
        onnxruntime_version=versions.get("ONNX Runtime", "not installed"),
        onnxruntime_providers=tuple(ort.get_available_providers()) if ort is not None else (),
        numpy_version=str(numpy.__version__) if numpy is not None else "not installed",
        gapbench_version=harness.__version__,
    )


def _cpuinfo_blocks(text: str | None) -> list[dict[str, str]]:
    """``/proc/cpuinfo`` as one dict per processor; Arm's trailing global block merges into all."""
    blocks = []
    for chunk in re.split(r"\n\s*\n", text or ""):
        pairs = (line.split(":", 1) for line in chunk.splitlines() if ":" in line)
        block = {k.strip(): v.strip() for k, v in pairs}
        if block:
            blocks.append(block)
    processors = [b for b in blocks if "processor" in b]
    shared = {k: v for b in blocks if "processor" not in b for k, v in b.items()}
    return [{**shared, **b} for b in processors] or blocks


def _processor_id(first: Mapping[str, str]) -> str:
    if "CPU implementer" in first:
        keys = ("CPU implementer", "CPU part", "CPU variant", "CPU revision")
        return " ".join(f"{k[4:]} {first[k]}" for k in keys if k in first)
    keys = ("cpu family", "model", "stepping", "microcode")
    found = [f"{k.removeprefix('cpu ')} {first[k]}" for k in keys if k in first]
    return " ".join(found) or UNKNOWN


def _topology(
    root: str | os.PathLike[str], cpus: tuple[int, ...], blocks: list[dict[str, str]]
) -> tuple[int | None, int | None]:
    """(sockets, physical cores) from sysfs topology, else from cpuinfo's physical/core ids."""
    packages, cores = set(), set()
    for cpu in cpus:
        base = f"sys/devices/system/cpu/cpu{cpu}/topology"
        package = _read(root, f"{base}/physical_package_id")
        core = _read(root, f"{base}/core_cpus_list") or _read(root, f"{base}/thread_siblings_list")
        if package is None or core is None:
            break
        packages.add(package)
        cores.add((package, core))
    else:
        if cpus:
            return len(packages), len(cores)
    # Arm cpuinfo has neither id: then the counts stay unknown rather than guessed.
    ids = [(b.get("physical id"), b.get("core id")) for b in blocks]
    if ids and all(p is not None and c is not None for p, c in ids):
        return len({p for p, _ in ids}), len(set(ids))
    return None, None


def _frequency(
    root: str | os.PathLike[str],
    cpus: tuple[int, ...],
    first: Mapping[str, str],
    model: str,
    live: bool,
) -> Frequency:
    base = f"sys/devices/system/cpu/cpu{cpus[0] if cpus else 0}/cpufreq"

    def khz(name: str) -> int | None:
        text = _read(root, f"{base}/{name}")
        return int(text) * 1000 if text and text.isdigit() else None

    current = khz("scaling_cur_freq")
    mhz = re.fullmatch(r"\d+(\.\d*)?", first.get("cpu MHz", ""))
    if current is None and mhz:
        current = round(float(mhz.group()) * 1e6)
    if current is None and live:
        current = _psutil("hz")
    # Intel brand strings carry the nominal clock ("... @ 2.10GHz") when sysfs has no base.
    brand = re.search(r"@\s*([\d.]+)\s*GHz", model)
    nominal = khz("base_frequency") or (round(float(brand.group(1)) * 1e9) if brand else None)
    return Frequency(current, khz("cpuinfo_min_freq"), khz("cpuinfo_max_freq"), nominal)


def _caches(
    root: str | os.PathLike[str], cpus: tuple[int, ...], logical: int | None, live: bool
) -> tuple[Cache, ...]:
    """cpu0's cache levels; instances = logical CPUs / CPUs sharing one (symmetric machines)."""
    found: dict[str, Cache] = {}
    base = f"sys/devices/system/cpu/cpu{cpus[0] if cpus else 0}/cache"
    for index in range(16):
        level = _read(root, f"{base}/index{index}/level")
        if level is None:
            break
        kind = _read(root, f"{base}/index{index}/type") or ""
        name = f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")
        sharing = len(cpu_list(_read(root, f"{base}/index{index}/shared_cpu_list")))
        instances = math.ceil(logical / sharing) if logical and sharing else None
        found[name] = Cache(name, _size(_read(root, f"{base}/index{index}/size")), instances)
    if not found and live:
        info = _py_cpuinfo()
        keys = ("l1_data_cache_size", "l1_instruction_cache_size", "l2_cache_size", "l3_cache_size")
        for name, key in zip(("L1d", "L1i", "L2", "L3"), keys, strict=True):
            if isinstance(info.get(key), int):
                found[name] = Cache(name, info[key], None)
    return tuple(found.values())


def _size(text: str | None) -> int | None:
    match = re.fullmatch(r"(\d+)\s*([KMG]?)", text or "")
    if match is None:
        return None
    return int(match.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match.group(2)]


def _meminfo(text: str | None) -> dict[str, int]:
    return {k: int(v) * 1024 for k, v in re.findall(r"^(\w+):\s+(\d+) kB$", text or "", re.M)}


@functools.cache
def _py_cpuinfo() -> dict[str, Any]:
    """py-cpuinfo's answer, once per process: it costs about 0.15 s per call."""
    try:
        import cpuinfo

        return dict(cpuinfo.get_cpu_info())
    except Exception:  # py-cpuinfo probes odd platforms in odd ways; a fallback must not fail
        return {}


def _psutil(what: str) -> int | None:
    """One live-machine fallback from psutil: ``logical``, ``physical``, ``memory`` or ``hz``."""
    import psutil

    if what == "memory":
        return int(psutil.virtual_memory().total)
    if what == "hz":
        freq = psutil.cpu_freq()
        return round(freq.current * 1e6) if freq and freq.current else None
    return psutil.cpu_count(logical=what == "logical")
