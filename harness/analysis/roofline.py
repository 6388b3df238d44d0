"""Inside compute: each stage's compute time split into classes by the roofline, from the
operators a profiling pass saw (``operators`` table) and the machine's calibration.

An operator's own time is its dispatch floor (the calibrated cost of an operator with no work,
at most its whole time) and the work beyond it. The work is compute-bound when the operator's
arithmetic intensity (FLOPs per byte) reaches the machine's measured ridge point at the
stage's threads, memory-bound below it; the class follows from the shapes, never from the
operator's name. A probe the profiler sees into (the cross-check's ``ScopeCheck.visible``) has
the rest of its time as dispatch: the framework's and the interpreter's around its operators;
one it cannot see into (a tokenizer in pure Python, a native library without operators) has it
as opaque.

The compute-bound and memory-bound times are the operators' own times in the profiling pass;
dispatch (or opaque) is what remains of the probe's time in the timed requests once they are
taken out. That remainder is a model's, not a measurement: it holds the framework's time and
whatever the profiling pass and the timed run differ by (the profiler's tracer costs fall on
the Python between operators, and are left out by taking the timed run's time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.analysis.columns import split_table
from harness.archive.result_set import ResultSet
from harness.machine.calibration import Calibration
from harness.words import COMPUTE_CLASSES, Category, ComputeClass, Kind

COMPUTE_BOUND = ComputeClass.COMPUTE_BOUND.value
MEMORY_BOUND = ComputeClass.MEMORY_BOUND.value
DISPATCH = ComputeClass.DISPATCH.value
OPAQUE = ComputeClass.OPAQUE.value
CLASSES = COMPUTE_CLASSES


@dataclass(frozen=True)
class Roofline:
    """A set's compute per stage and class, and what its operators achieved against the peaks.

    ``classes``: one row per (stage, class): ``ms`` per request of the timed run, ``share`` of
    the stage's compute, ``flops`` and ``bytes`` per request. ``stages``: one row per stage
    profiled: threads, compute ms, achieved GFLOP/s of its compute-bound work and GB/s of its
    memory-bound work, each beside the peak measured at its threads, and the ridge point.
    """

    classes: pd.DataFrame
    stages: pd.DataFrame
    calibration: Calibration
    not_visible: tuple[str, ...]  # "stage/label" of the probes the profiler did not see into
    dtypes: dict[str, float]  # compute-bound FLOPs per request by the type they were in
    # The operators' own work (floors out) per request by class, in the profiling pass alone:
    # what two passes compare without either timed run's remainder.
    operator_ms: dict[str, float]

    def shares(self) -> dict[str, dict[str, float]]:
        """Per stage, each class's share of its compute."""
        out: dict[str, dict[str, float]] = {}
        for stage, klass, share in self.classes[["stage", "class", "share"]].itertuples(False):
            out.setdefault(stage, {})[klass] = float(share)
        return out


def timed_compute_ms(result: ResultSet) -> pd.Series:
    """Each stage's compute (every resource, on and off its critical path) in ms per request."""
    table = split_table(result)
    charges = table.charges[table.charges["category"] == Category.COMPUTE.value]
    per_stage = charges.groupby("stage", observed=True)["ns"].sum()
    return per_stage / max(len(table), 1) / 1e6


def timed_probe_ms(result: ResultSet) -> pd.Series:
    """Each compute probe's own wall time (less the probes directly inside it) in ms per
    request of the timed run, by (stage, label)."""
    frame = result.intervals
    probes = frame[frame["kind"] == Kind.PROBE.value]
    wall = probes["end_ns"] - probes["start_ns"]
    keys = ["replicate", "request"]
    inner = (
        probes.assign(ns=wall).groupby([*keys, "parent"], observed=True)["ns"].sum().rename("inner")
    )
    compute = probes[probes["category"] == Category.COMPUTE.value].assign(
        ns=wall[probes["category"] == Category.COMPUTE.value]
    )
    joined = compute.join(inner, on=[*keys, "span"])
    own = joined["ns"] - joined["inner"].fillna(0)
    requests = max(len(result.requests), 1)
    return own.groupby([joined["stage"], joined["label"]], observed=True).sum() / requests / 1e6


def timed_call_ms(result: ResultSet) -> dict[tuple[str, str], float]:
    """Each profiled probe's time a call in the timed run, by (stage, label): what decides
    whether the profiler's cross-check judges it."""
    profile = result.manifest.profile
    if profile is None:
        return {}
    per_request = timed_probe_ms(result)
    out = {}
    for c in profile.checks:
        calls = c.calls / max(profile.requests, 1)  # a call's share of a request
        if (c.stage, c.label) in per_request.index and calls:
            out[(c.stage, c.label)] = float(per_request[(c.stage, c.label)]) / calls
    return out


def roofline(
    result: ResultSet, calibration: Calibration | None = None, ridge_threads: int | None = None
) -> Roofline | None:
    """The classes of ``result``'s compute, or None without a profile's operators or a
    calibration (the set's own, else ``calibration``: the machine's kept one). Operators are
    classed against the ridge point at each stage's threads, or at ``ridge_threads`` (to class
    two sets' operators alike)."""
    profile = result.manifest.profile
    operators = result.operators
    calibration = (profile.calibration if profile else None) or calibration
    if profile is None or operators is None or not len(operators) or calibration is None:
        return None
    if result.manifest.execution.device != "cpu":
        return None  # the pass records host operators: a device's kernels are not classed
    seen = {(c.stage, c.label): c.visible for c in profile.checks}
    facts = result.manifest.replicates[0]
    requests = max(profile.requests, 1)
    timed = timed_compute_ms(result)
    # Each probe's share of its stage's compute, from the timed run: the profiler's own cost
    # (its Python tracer most) would weigh the probes calling Python the most.
    per_probe = timed_probe_ms(result).rename("ms").reset_index()
    probed = {
        (str(stage), str(label)): float(ms)
        for stage, label, ms in per_probe[["stage", "label", "ms"]].itertuples(index=False)
    }
    ops = operators.assign(
        threads=[facts.stage_threads.get(s, 1) for s in operators["stage"]],
    )
    dispatch_us = calibration.dispatch_us()
    ops["floor_us"] = np.minimum(ops["own_us"], ops["calls"] * dispatch_us)
    ops["work_us"] = ops["own_us"] - ops["floor_us"]
    ridge = {t: calibration.ridge(ridge_threads or int(t)) for t in ops["threads"].unique()}
    if not all(np.isfinite(list(ridge.values()))) or not np.isfinite(dispatch_us):
        return None  # a calibration without a GEMM peak, a triad or a dispatch figure
    intensity = ops["flops"] / ops["bytes"].where(ops["bytes"] > 0)
    bound = intensity >= ops["threads"].map(ridge)
    ops["class"] = np.where(ops["bytes"] + ops["flops"] <= 0, DISPATCH,
                            np.where(bound, COMPUTE_BOUND, MEMORY_BOUND))  # fmt: skip
    rows, stage_rows, hidden = [], [], []
    for stage in sorted({stage for stage, _ in probed}):
        in_stage = ops[ops["stage"] == stage]
        labels = {lbl: ms for (st, lbl), ms in probed.items() if st == stage}
        profiled_ms = sum(labels.values())
        stage_ms = float(timed.get(stage, 0.0))
        if profiled_ms <= 0 or stage_ms <= 0:
            continue
        split = dict.fromkeys(CLASSES, 0.0)
        work = {COMPUTE_BOUND: [0.0, 0.0, 0.0], MEMORY_BOUND: [0.0, 0.0, 0.0]}
        for label, label_ms in labels.items():
            mine = in_stage[in_stage["label"] == label]
            timed_ms = stage_ms * label_ms / profiled_ms  # this probe's share of the timed time
            by_class = mine.groupby("class")["work_us"].sum() / 1e3 / requests
            cb, mb = float(by_class.get(COMPUTE_BOUND, 0.0)), float(by_class.get(MEMORY_BOUND, 0.0))
            if cb + mb > timed_ms:  # the profiler's cost on the operators: scaled to the time
                cb, mb = cb * timed_ms / (cb + mb), mb * timed_ms / (cb + mb)
            rest = timed_ms - cb - mb
            visible = seen.get((stage, label), False)
            if not visible:
                hidden.append(f"{stage}/{label}")
            split[COMPUTE_BOUND] += cb
            split[MEMORY_BOUND] += mb
            split[DISPATCH if visible else OPAQUE] += rest
            for klass in (COMPUTE_BOUND, MEMORY_BOUND):
                picked = mine[mine["class"] == klass]
                work[klass][0] += float(picked["flops"].sum()) / requests
                work[klass][1] += float(picked["bytes"].sum()) / requests
                work[klass][2] += float(picked["work_us"].sum()) / 1e3 / requests
        total = sum(split.values())
        for klass, ms in split.items():
            flops, nbytes, _ = work.get(klass, [0.0, 0.0, 0.0])
            rows.append((stage, klass, ms, ms / total if total else 0.0, flops, nbytes))
        threads = facts.stage_threads.get(stage, 1)
        cb_flops, _, cb_ms = work[COMPUTE_BOUND]
        _, mb_bytes, mb_ms = work[MEMORY_BOUND]
        gflops = cb_flops / cb_ms / 1e6 if cb_ms else float("nan")
        gbs = mb_bytes / mb_ms / 1e6 if mb_ms else float("nan")
        peak, bandwidth = calibration.peak_gflops(threads), calibration.bandwidth_gbs(threads)
        stage_rows.append((stage, threads, total, gflops, peak, gbs, bandwidth,
                           calibration.ridge(threads)))  # fmt: skip
    classes = pd.DataFrame(rows, columns=["stage", "class", "ms", "share", "flops", "bytes"])
    stages = pd.DataFrame(
        stage_rows,
        columns=["stage", "threads", "compute_ms", "gflops", "peak_gflops", "gbs",
                 "bandwidth_gbs", "ridge"],
    )  # fmt: skip
    bound_ops = ops[ops["class"] == COMPUTE_BOUND]
    dtypes = bound_ops.groupby("dtype", observed=True)["flops"].sum() / requests
    worked = ops.groupby("class")["work_us"].sum() / 1e3 / requests
    return Roofline(
        classes,
        stages,
        calibration,
        tuple(hidden),
        {str(k): float(v) for k, v in dtypes.items()},
        {str(k): float(v) for k, v in worked.items()},
    )
