"""What differs between the machines and software several sets ran on: a buyer's first question.

A comparison across machines is the main use of a comparison, so what differs in the hardware
is said before any speedup; a software version that differs is a warning, since a speedup then
mixes the machine with the library.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.archive.result_set import ResultSet
from harness.machine.fingerprint import Fingerprint

Read = Callable[[Fingerprint], Any]


def gib(value: int | None) -> str | None:
    """Bytes of memory as a buyer reads them (None: unknown)."""
    return None if value is None else f"{value / 2**30:.1f} GiB"


def accelerators(f: Fingerprint) -> str | None:
    """``2 x NVIDIA H100``, ``none``, or None where they were not probed."""
    a = f.accelerators
    if a is None:
        return None
    if not a.accelerators_per_node:
        return "none"
    return f"{a.accelerators_per_node} x {a.accelerator_model_name}"


# (label, reader): the fields a buyer reads a machine by, in the order they are said.
HARDWARE: tuple[tuple[str, Read], ...] = (
    ("CPU", lambda f: f.host.host_processor_model_name),
    ("architecture", lambda f: f.host.host_processor_architecture),
    ("cores", lambda f: f.host.host_processor_core_count),
    ("logical CPUs", lambda f: f.host.host_processor_vcpu_count),
    ("usable cores", lambda f: f.usable_cores),
    ("sockets", lambda f: f.host.host_processors_per_node),
    ("NUMA nodes", lambda f: f.host.host_numa_node_count),
    ("memory", lambda f: gib(f.host.host_memory_capacity)),
    ("ISA flags", lambda f: " ".join(f.host.host_processor_isa_flags) or None),
    ("accelerators", accelerators),
)
# The same box after an update differs here, not in its hardware.
SOFTWARE: tuple[tuple[str, Read], ...] = (
    ("operating system", lambda f: f.host.operating_system),
    ("kernel", lambda f: f.host.kernel),
    ("gapbench", lambda f: f.software and f.software.gapbench_version),
    ("Python", lambda f: f.software and f.software.python_version),
    ("torch", lambda f: f.software and f.software.torch_version),
    ("onnxruntime", lambda f: f.software and f.software.onnxruntime_version),
    ("numpy", lambda f: f.software and f.software.numpy_version),
    ("CUDA (torch)", lambda f: f.software and f.software.torch_cuda_version),
)


@dataclass(frozen=True)
class MachineDifferences:
    """The fields whose value differs between sets, one column per set (in the order given)."""

    hardware: pd.DataFrame  # index: field label; columns: set ids
    software: pd.DataFrame

    @property
    def same_machine(self) -> bool:
        return self.hardware.empty

    def sentence(self) -> str:
        """One line: which machine fields differ, or that the machines are alike."""
        if self.same_machine:
            return "the same machine model: CPU, cores, memory and accelerators alike"
        return "different machines: " + ", ".join(self.hardware.index) + " differ"

    def warnings(self) -> list[str]:
        """One line per software version that differs, values in set order."""
        return [
            f"{label} differs ({' / '.join(str(v) for v in row)}): a speedup mixes the "
            "machine with the software"
            for label, row in self.software.iterrows()
        ]

    def to_dict(self) -> dict[str, Any]:
        def rows(frame: pd.DataFrame) -> dict[str, list[Any]]:
            return {str(k): list(v) for k, v in frame.iterrows()}

        return {"hardware": rows(self.hardware), "software": rows(self.software)}


def differences(results: Sequence[ResultSet]) -> MachineDifferences:
    """The hardware and software fields that differ across ``results``."""

    def table(fields: tuple[tuple[str, Read], ...]) -> pd.DataFrame:
        frame = pd.DataFrame(
            {r.id: [read(r.manifest.fingerprint) for _, read in fields] for r in results},
            index=[label for label, _ in fields],
            dtype=object,
        )
        frame = frame.where(frame.notna(), "unknown")
        return frame.loc[frame.astype(str).nunique(axis=1) > 1]

    return MachineDifferences(table(HARDWARE), table(SOFTWARE))
