"""A validation condition's change stated as a vendor would state it, and what its outputs
kept: the claim `gapbench validate` projects by class and as one ratio."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from harness.analysis.roofline import roofline
from harness.archive.result_set import ResultSet
from harness.archive.store import Archive
from harness.machine.fingerprint import Fingerprint
from harness.measure.calibrate import calibration
from harness.projection.claims import Claim, parse_key
from harness.projection.spec import Calibrated
from harness.projection.transfer import Transfer
from harness.workload import Condition


@dataclass(frozen=True)
class Transferred:
    """A condition's change stated as a vendor would (peaks calibrated at both settings, or
    the bytes it saves), projected as one ratio on all compute and by class, per replicate."""

    one_ratio: list[float]
    by_class: list[float]
    limiting: str
    notes: tuple[str, ...]
    # Per class: the speedup claimed for it, and A's time in it over B's (both profiled).
    moved: dict[str, tuple[float, float]] = field(default_factory=dict)

    def unlike(self, far: float = 0.1) -> list[str]:
        """The classes whose time moved unlike their claim, by more than ``far``, in words."""
        return [
            f"{klass}: claimed {claimed:.2f}x, {seen:.2f}x in the pipeline"
            for klass, (claimed, seen) in self.moved.items()
            if abs(seen / claimed - 1) > far
        ]


def vendor_claim(condition: Condition, archive: Archive, fingerprint: Fingerprint) -> Claim | None:
    """The condition's change as a vendor states it: a change of threads as the machine's large
    GEMM and STREAM at both counts (its calibration: what a vendor publishes, never the
    pipeline's own shapes at B, which would measure the answer); a change the workload knows
    in classes as its ``by_class``; None for other changes (a backend)."""
    a, b = condition.a.threads, condition.b.threads
    if condition.by_class:
        speedups = tuple((parse_key(k), f) for k, f in condition.by_class)
        return Claim(condition.name, speedups, source="the workload: what the change saves")
    if a is None or b is None or a == b:
        return None
    found = calibration(archive, fingerprint, threads=(a, b), rough_ok=True).calibration
    spec = Calibrated(found, found, a, b, source="gapbench calibrate, at both thread counts")
    return Claim(f"{condition.name}: GEMM and STREAM at {a} and {b} threads", (), spec=spec)


def class_moves(transfer: Transfer, a: ResultSet, b: ResultSet) -> dict[str, tuple[float, float]]:
    """Per class of operators' work with time in both sets: the speedup claimed for it (over
    every stage, weighted by its time) and A's operators' own time in it over B's, both
    profiling passes classed alike (the classes the operators set: compute- and memory-bound)."""
    # B's operators classed against A's ridge point: an operator that changed class would
    # otherwise read as time that moved.
    threads = max(a.manifest.replicates[0].stage_threads.values(), default=1)
    seen_a, seen_b = roofline(a, ridge_threads=threads), roofline(b, ridge_threads=threads)
    if seen_a is None or seen_b is None:
        return {}

    def per_class(frame: pd.DataFrame, column: str) -> dict[str, float]:
        return {str(k): float(v) for k, v in frame.groupby("class")[column].sum().items()}

    in_a, in_b = seen_a.operator_ms, seen_b.operator_ms
    ms, left = per_class(transfer.stages, "ms"), per_class(transfer.stages, "left_ms")
    out = {}
    for klass, a_ms in in_a.items():
        if a_ms > 0 and in_b.get(klass, 0) > 0 and left.get(klass, 0) > 0:
            out[klass] = (ms[klass] / left[klass], a_ms / in_b[klass])
    return out
