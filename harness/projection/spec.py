"""A claim in a vendor's terms: two machines' spec sheets, or two machines' calibrations, read
as a speedup per class of compute.

Spec is compared with spec and measured with measured, never a vendor's peak with this
machine's achievable one: a sheet's peak is a promise, a calibration's is what a GEMM reached.

    [spec.reference]                      [calibration]
    peak_gflops_fp32 = 3000               reference = "this.json"   # gapbench calibrate --json
    memory_bandwidth_gbs = 200            candidate = "that.json"
    [spec.candidate]                      reference_threads = 1     # default: the set's
    peak_gflops_fp32 = 6000               candidate_threads = 2     # default: every core
    memory_bandwidth_gbs = 460
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.archive.codec import DecodeError, from_dict
from harness.archive.migrations import check_calibration
from harness.errors import UserError
from harness.machine import calibration as cal
from harness.machine.calibration import Calibration
from harness.machine.threads import whole_threads
from harness.words import ComputeClass, Resource

SPEC_KEYS = (
    "peak_gflops_fp32",
    "peak_gflops_bf16",
    "memory_bandwidth_gbs",
    "cores",
    "frequency_ghz",
    "link_bandwidth_gbs",
)
SPEC_RANGE = (1e-6, 1e9)  # a spec number outside this is a typo (GFLOP/s, GB/s, cores, GHz)
# A speedup outside these is a typo, not a chip (and would stall the replay's clock).
MIN_FACTOR, MAX_FACTOR = 0.001, 1000.0
COMPUTE_BOUND, MEMORY_BOUND = ComputeClass.COMPUTE_BOUND.value, ComputeClass.MEMORY_BOUND.value
DISPATCH, OPAQUE = ComputeClass.DISPATCH.value, ComputeClass.OPAQUE.value
LINK = Resource.LINK.value


@dataclass(frozen=True)
class Sheet:
    """One machine's numbers, by SPEC_KEYS name (a calibration's read into the same names, and
    ``dispatch_us`` and ``json_mb_s`` besides)."""

    values: tuple[tuple[str, float], ...]

    def get(self, key: str) -> float | None:
        return dict(self.values).get(key)


@dataclass(frozen=True)
class Spec:
    """Two machines' numbers: ``measured`` when they come from calibrations."""

    reference: Sheet
    candidate: Sheet
    measured: bool = False
    candidate_threads: int | None = None  # a calibration's: the threads the candidate runs with
    source: str = ""
    reference_threads: int | None = None  # a calibration's: the threads the reference is read at

    def ratio(self, key: str) -> float | None:
        """Candidate over reference for a throughput key (None: not on both sheets)."""
        a, b = self.reference.get(key), self.candidate.get(key)
        return b / a if a and b else None

    def ratios(self, dtype: str = "float32", threads: int | None = None) -> dict[str, tuple]:
        """Per class (and the link), the speedup and where it came from. Where both sheets
        give their cores, a peak is per core times the cores ``threads`` can use on each."""
        out: dict[str, tuple[float, str]] = {}
        peak = "peak_gflops_bf16" if dtype == "bfloat16" else "peak_gflops_fp32"
        if self.ratio(peak) is None and peak != "peak_gflops_fp32":
            peak = "peak_gflops_fp32"
        found = self.ratio(peak)
        cores, freq = self.ratio("cores"), self.ratio("frequency_ghz")
        ref_cores, cand_cores = self.reference.get("cores"), self.candidate.get("cores")
        if found is not None and threads and ref_cores and cand_cores:
            used = min(threads, cand_cores) / cand_cores / (min(threads, ref_cores) / ref_cores)
            out[COMPUTE_BOUND] = (found * used, f"{peak} per core, on {threads} threads")
        elif found is not None:
            out[COMPUTE_BOUND] = (found, peak)
        elif cores is not None and freq is not None:
            out[COMPUTE_BOUND] = (cores * freq, "cores x frequency_ghz (no peak given)")
        bandwidth = self.ratio("memory_bandwidth_gbs")
        if bandwidth is not None:
            out[MEMORY_BOUND] = (bandwidth, "memory_bandwidth_gbs")
        if self.measured:
            a, b = self.reference.get("dispatch_us"), self.candidate.get("dispatch_us")
            if a and b:
                out[DISPATCH] = (a / b, "dispatch latency")
            json_rate = self.ratio("json_mb_s")
            if json_rate is not None:
                out[OPAQUE] = (json_rate, "JSON rate (one interpreter thread)")
        elif freq is not None:
            out[DISPATCH] = out[OPAQUE] = (freq, "frequency_ghz (one thread's speed)")
        link = self.ratio("link_bandwidth_gbs")
        if link is not None:
            out[LINK] = (link, "link_bandwidth_gbs")
        for klass, (ratio, how) in out.items():
            if not MIN_FACTOR <= ratio <= MAX_FACTOR:
                raise UserError(
                    f"{self.source or 'the specs'}: {klass} would be {ratio:g}x from {how}, "
                    f"outside {MIN_FACTOR:g} to {MAX_FACTOR:g}: check the two sheets' numbers"
                )
        return out


def sheet(table: Any, where: str) -> Sheet:
    """A ``[spec.reference]`` or ``[spec.candidate]`` table, every number checked."""
    if not isinstance(table, dict):
        raise UserError(f"{where}: a table of {', '.join(SPEC_KEYS)}")
    values = []
    for key, value in table.items():
        if key not in SPEC_KEYS:
            raise UserError(f"{where}: key {key!r}: not a spec key ({', '.join(SPEC_KEYS)})")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"{where}: key {key!r}: a number, not {value!r}")
        if not math.isfinite(value) or not SPEC_RANGE[0] <= value <= SPEC_RANGE[1]:
            raise UserError(f"{where}: key {key!r}: a positive number up to 1e9, not {value:g}")
        values.append((key, float(value)))
    if not values:
        raise UserError(f"{where}: empty: give at least one of {', '.join(SPEC_KEYS)}")
    return Sheet(tuple(values))


def from_spec(body: Any, path: str) -> Spec:
    """The ``[spec]`` table of a claim file: both sheets, with a key in common."""
    if not isinstance(body, dict) or set(body) != {"reference", "candidate"}:
        raise UserError(f"{path}: key 'spec': give [spec.reference] and [spec.candidate]")
    reference = sheet(body["reference"], f"{path}: [spec.reference]")
    candidate = sheet(body["candidate"], f"{path}: [spec.candidate]")
    common = {k for k, _ in reference.values} & {k for k, _ in candidate.values}
    if not common:
        raise UserError(
            f"{path}: [spec.reference] and [spec.candidate] share no key: a ratio needs both"
        )
    return Spec(reference, candidate, source=path)


def read_calibration(path: Path, where: str) -> Calibration:
    """A calibration file: ``gapbench calibrate --json``'s output, or a kept one."""
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{where}: {str(path)!r} does not exist") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}: cannot read {str(path)!r}: {exc}") from None
    if not isinstance(body, dict):
        raise UserError(f"{where}: {str(path)!r} is not a calibration")
    try:
        return from_dict(Calibration, check_calibration(body, f"{where}: {path}"))
    except DecodeError as exc:
        raise UserError(f"{where}: {str(path)!r} is not a calibration: {exc}") from None


def measured_sheet(found: Calibration, threads: int) -> Sheet:
    """A calibration read as a sheet at ``threads``: what a GEMM and STREAM reached there."""
    values = {
        "peak_gflops_fp32": found.peak_gflops(threads, "float32"),
        "peak_gflops_bf16": found.peak_gflops(threads, "bfloat16"),
        "memory_bandwidth_gbs": found.bandwidth_gbs(threads),
        "dispatch_us": found.dispatch_us(),
    }
    json_rate = found.find(cal.JSON_DUMPS)
    if json_rate is not None:
        values["json_mb_s"] = json_rate.value
    h2d = found.find(cal.H2D, device=(found.accelerator and "cuda:0") or "cpu")
    if h2d is not None:
        values["link_bandwidth_gbs"] = h2d.value
    return Sheet(tuple((k, v) for k, v in values.items() if math.isfinite(v)))


@dataclass(frozen=True)
class Calibrated:
    """Two machines' calibrations, read as a Spec at the threads each runs with."""

    reference: Calibration
    candidate: Calibration
    reference_threads: int | None  # None: the threads the set being projected ran with
    candidate_threads: int
    source: str = ""

    def spec(self, set_threads: int) -> Spec:
        threads = self.reference_threads or set_threads
        return Spec(
            measured_sheet(self.reference, threads),
            measured_sheet(self.candidate, self.candidate_threads),
            measured=True,
            candidate_threads=self.candidate_threads,
            source=self.source,
            reference_threads=threads,
        )


def from_calibrations(body: Any, path: str, folder: Path) -> Calibrated:
    """The ``[calibration]`` table of a claim file: two calibrations, and their threads (the
    reference's by default those of the set projected, the candidate's every core it has)."""
    keys = {"reference", "candidate", "reference_threads", "candidate_threads"}
    if not isinstance(body, dict) or not {"reference", "candidate"} <= set(body) <= keys:
        raise UserError(
            f"{path}: key 'calibration': give reference = FILE and candidate = FILE "
            "(and reference_threads, candidate_threads)"
        )
    counts = {
        key: whole_threads(body.get(key), f"{path}: key {key!r}")
        for key in ("reference_threads", "candidate_threads")
    }
    found = {}
    for side in ("reference", "candidate"):
        name = body[side]
        if not isinstance(name, str) or not name.strip():
            raise UserError(f"{path}: key {side!r}: the path of a calibration file")
        file = Path(name) if Path(name).is_absolute() else folder / name
        found[side] = read_calibration(file, f"{path}: [calibration] {side}")
    # By default the candidate runs on every core it has, as the reference ran the set.
    candidate_threads = counts["candidate_threads"] or max(1, int(found["candidate"].cores))
    return Calibrated(
        found["reference"],
        found["candidate"],
        counts["reference_threads"],
        candidate_threads,
        source=path,
    )
