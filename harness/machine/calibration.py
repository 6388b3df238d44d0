"""The machine's measured numbers: peak GEMM, memory bandwidth, dispatch, serialisation, round
trips; what a roofline and a transfer of a claim are read against.

``gapbench calibrate`` measures them (``harness.machine.microbench``) and keeps them per machine
(``harness.archive.calibrations``); a set that uses them records them. Every figure is a median
over repeats with the range of the repeats beside it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from harness.machine.fingerprint import Fingerprint

CALIBRATION_VERSION = 1  # checked wherever one is read (see harness.archive.history)

# What each measure is and its unit. Throughputs are better higher, latencies lower.
GEMM = "gemm"  # a large square matrix product: the peak a vendor quotes
GEMM_SHAPE = "gemm-shape"  # a product at a shape a pipeline uses
COPY = "copy"  # STREAM's copy: a[i] = b[i], two arrays' bytes moved
TRIAD = "triad"  # STREAM's triad: a[i] = b[i] + s * c[i], three arrays' bytes moved
DISPATCH = "dispatch"  # one framework operator on a one-element tensor
JSON_DUMPS = "json-dumps"
JSON_LOADS = "json-loads"
LOOPBACK = "loopback"  # a small message to another process over TCP on 127.0.0.1 and back
PIPE = "pipe"  # the same over a pair of pipes
H2D = "h2d"  # host to device, pinned memory
D2H = "d2h"
DEVICE_COPY = "device-copy"  # device memory to device memory
UNITS = {
    GEMM: "GFLOP/s",
    GEMM_SHAPE: "GFLOP/s",
    COPY: "GB/s",
    TRIAD: "GB/s",
    DISPATCH: "us",
    JSON_DUMPS: "MB/s",
    JSON_LOADS: "MB/s",
    LOOPBACK: "us",
    PIPE: "us",
    H2D: "GB/s",
    D2H: "GB/s",
    DEVICE_COPY: "GB/s",
}
LATENCIES = frozenset({DISPATCH, LOOPBACK, PIPE})


@dataclass(frozen=True)
class GemmShape:
    """A matrix product ``[m, k] @ [k, n]`` in ``dtype``, as a pipeline's operator ran it."""

    m: int
    k: int
    n: int
    dtype: str = "float32"

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n

    @property
    def label(self) -> str:
        return f"{self.m}x{self.k}x{self.n}"

    @classmethod
    def of(cls, label: str, dtype: str) -> GemmShape:
        """The shape ``label`` names (``MxKxN``)."""
        m, k, n = (int(part) for part in label.split("x"))
        return cls(m, k, n, dtype)


@dataclass(frozen=True)
class Figure:
    """One measured number: the median over repeats and their range."""

    measure: str
    value: float
    low: float
    high: float
    unit: str
    repeats: int
    device: str = "cpu"
    dtype: str = ""
    threads: int = 0  # intra-op threads (0: not a threaded measure, or a device's)
    shape: str = ""  # GEMM_SHAPE: m x k x n

    @property
    def spread(self) -> float:
        """The range of the repeats over the median."""
        return (self.high - self.low) / self.value if self.value else float("nan")


@dataclass(frozen=True)
class Calibration:
    """Every figure measured on one machine, kept and reused until re-measured."""

    machine: str  # machine_key of the fingerprint it was measured on
    cpu: str
    cores: float
    made_utc: str
    gapbench: str
    torch: str
    seconds: float
    figures: tuple[Figure, ...]
    accelerator: str = ""
    quick: bool = False  # measured with --quick: small arrays, short blocks, rough numbers
    schema_version: int = CALIBRATION_VERSION

    def find(
        self,
        measure: str,
        *,
        dtype: str = "",
        threads: int = 0,
        device: str = "cpu",
        shape: str = "",
    ) -> Figure | None:
        """The figure for a measure; of threaded ones, the count nearest ``threads`` (ties go
        to the fewer), since a set may run with a count calibrate did not measure."""
        found = [
            f
            for f in self.figures
            if f.measure == measure
            and f.device == device
            and (not dtype or f.dtype == dtype)
            and (not shape or f.shape == shape)
        ]
        if not found:
            return None
        return min(found, key=lambda f: (abs(f.threads - threads), f.threads))

    def peak_gflops(self, threads: int, dtype: str = "float32", device: str = "cpu") -> float:
        """The large square GEMM's rate: the machine's achievable peak."""
        found = self.find(GEMM, dtype=dtype, threads=threads, device=device)
        if found is None:
            found = self.find(GEMM, dtype="float32", threads=threads, device=device)
        return found.value if found else float("nan")

    def bandwidth_gbs(self, threads: int, device: str = "cpu") -> float:
        """STREAM triad's rate (device memory on a device): what a memory-bound operator
        can move."""
        found = self.find(TRIAD if device == "cpu" else DEVICE_COPY, threads=threads, device=device)
        return found.value if found else float("nan")

    def ridge(self, threads: int, dtype: str = "float32", device: str = "cpu") -> float:
        """Arithmetic intensity (FLOP per byte) where the roofline turns: below it an operator
        cannot reach peak compute however well it is written, bandwidth limits it."""
        return self.peak_gflops(threads, dtype, device) / self.bandwidth_gbs(threads, device)

    def dispatch_us(self, device: str = "cpu") -> float:
        found = self.find(DISPATCH, threads=1, device=device)
        return found.value if found else float("nan")

    @property
    def threads(self) -> tuple[int, ...]:
        return tuple(sorted({f.threads for f in self.figures if f.threads}))

    @property
    def shapes(self) -> frozenset[tuple[GemmShape, int]]:
        """Each pipeline shape measured, with the threads it was measured on."""
        return frozenset(
            (GemmShape.of(f.shape, f.dtype), f.threads)
            for f in self.figures
            if f.measure == GEMM_SHAPE
        )


def machine_key(fingerprint: Fingerprint) -> str:
    """What identifies a machine to its calibration: the CPU, its usable cores, the memory and
    the accelerators, as the fingerprint has them (machines built alike share one)."""
    host = fingerprint.host
    found = fingerprint.accelerators
    # Whether GPUs were looked for does not change the machine: none found is none.
    gpus = (
        f"{found.accelerators_per_node} {found.accelerator_model_name}"
        if found and found.accelerators_per_node
        else ""
    )
    parts = [
        host.host_processor_model_name,
        str(host.host_processor_vcpu_count),
        f"{fingerprint.cores:g}",
        str(host.host_memory_capacity),
        gpus,
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
