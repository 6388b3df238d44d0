"""A profiling pass apart from the timed repetitions, checked against gapbench's probes.

Under torch.profiler the pass runs a few more requests with gapbench's probes active and each
compute probe also opened as a ``record_function`` scope, so the profiler sees the same spans on
its own clock. Per compute probe it then sets gapbench's time beside the profiler's operators
and model modules inside that scope; for the model stages (the inference layer) they must agree
within 5%. The scope's own time is kept beside them as a check that both clocks saw the same
span. A backend with a profiler of its own (onnxruntime's per-node profile) is checked the same
way: per graph, gapbench's compute probe of the same name beside the session runs (scope) and
the node kernel time inside them (operators).
"""

from __future__ import annotations

import bisect
import json
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from harness.archive.profile_record import ScopeCheck
from harness.measure.operators import SCOPE_PREFIX, ort_operators, torch_operators
from harness.record.gpu_timing import SYNC
from harness.record.probes import DeviceTimer, Interval, Probe, TimerChain
from harness.record.spans import own_time
from harness.words import Category, Kind

# torch operators, model modules around them, and the host waiting for the device's kernels
OPERATOR_PREFIXES = ("aten::", "nn.Module: ", "cudaDeviceSynchronize", "cudaStreamSynchronize")
ATTEMPTS = 3


class ProfilerScopes(TimerChain):
    """Opens a profiler scope inside every compute probe; forwards to a device timer.

    The scope opens after the probe read its start time and closes before it reads its end,
    with torch's C++ scope where there is one: under the profiler's Python tracer, every
    Python call the bookkeeping makes costs microseconds that belong to neither side.
    """

    def __init__(self, inner: DeviceTimer | None = None) -> None:
        import torch
        from torch.profiler import record_function

        super().__init__(inner)
        self._scope = getattr(torch._C._profiler, "_RecordFunctionFast", record_function)
        self._open: dict[tuple[int, int], Any] = {}

    def started(self, probe: Probe) -> None:
        super().started(probe)
        if probe.kind is Kind.PROBE and probe.category == Category.COMPUTE.value:
            scope = self._scope(f"{SCOPE_PREFIX}:{probe.stage}:{probe.label}")
            scope.__enter__()
            self._open[(probe.request, probe.span)] = scope

    def exit(self, probe: Probe) -> None:
        # Synchronize-at-edge drains the device inside the scope, as inside the probe: the
        # probe's time includes waiting for the kernels it launched. An end event is only
        # bookkeeping, recorded once the scope is closed.
        drains = self.mode == SYNC
        try:
            if drains and self._inner is not None:
                self._inner.exit(probe)
        finally:
            scope = self._open.pop((probe.request, probe.span), None)
            if scope is not None:
                scope.__exit__(None, None, None)
        if not drains and self._inner is not None:
            self._inner.exit(probe)


@dataclass(frozen=True)
class Profile:
    """What a profiling pass leaves: its intervals, the check, and the profiler's trace."""

    intervals: list[Interval]
    checks: tuple[ScopeCheck, ...]
    trace_json: bytes
    tool: str = "torch.profiler"
    # Each operator inside a compute probe, by shapes (harness.measure.operators).
    operators: pd.DataFrame | None = None


class GraphTimes(Protocol):
    """One graph's profile: how many runs, their time, and the node kernel time inside."""

    runs: int
    run_us: float
    node_us: float
    events: list[dict[str, Any]]


class BackendProfiler(Protocol):
    """A backend's own profiler (``backends.ort.OrtProfiler``): on for the pass, read after it."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> Mapping[str, GraphTimes]: ...


def profile_requests(
    driver: Any, stream: Sequence[Any], requests: int, backend: BackendProfiler | None = None
) -> Profile:
    """Run ``requests`` requests through ``driver`` under torch.profiler (CPU activity), or
    under ``backend``'s own profiler when the model stages run elsewhere.

    torch's Python tracer now and then hands back a function name it cannot decode
    (UnicodeDecodeError while the profile is read): the pass is then run again, twice at most.
    """
    if backend is not None:
        return _profile_backend(driver, stream, requests, backend)
    for attempt in range(ATTEMPTS):
        try:
            return _profile_once(driver, stream, requests)
        except UnicodeDecodeError:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _profile_once(driver: Any, stream: Sequence[Any], requests: int) -> Profile:
    from torch.profiler import ProfilerActivity, profile

    timer = driver.timer
    driver.timer = ProfilerScopes(timer)
    try:
        # with_modules+with_stack: the profiler names each nn.Module call, so a model's time is
        # seen as the profiler's operators and modules rather than as bare kernels.
        # record_shapes: each operator's FLOPs and bytes follow from its shapes.
        with profile(
            activities=[ProfilerActivity.CPU],
            with_modules=True,
            with_stack=True,
            record_shapes=True,
        ) as prof:
            intervals = _run(driver, stream, requests)
    finally:
        driver.timer = timer
    layers = {stage.name: stage.layer for stage in driver.order}
    with tempfile.TemporaryDirectory(prefix="gapbench-profile-") as folder:
        path = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(path))
        trace = path.read_bytes()
    events = json.loads(trace)
    checks = _checks(intervals, events, layers)
    return Profile(intervals, checks, trace, operators=torch_operators(events))


def _run(driver: Any, stream: Sequence[Any], requests: int) -> list[Interval]:
    intervals: list[Interval] = []
    for i in range(requests):
        outcome = driver(-10_000 - i, stream[i % len(stream)])
        intervals.extend(outcome.recorder.intervals)
    return intervals


def compute_times(intervals: list[Interval]) -> dict[tuple[str, str], list[int]]:
    """Each compute probe's own time by (stage, label), one entry a call: innermost wins, so
    time in a probe nested inside it (binding a session's inputs, a copy) is not its compute."""
    by_request: dict[int, list[Interval]] = defaultdict(list)
    for iv in intervals:
        by_request[iv.request].append(iv)
    probed: dict[tuple[str, str], list[int]] = defaultdict(list)
    for rows in by_request.values():
        own = own_time(rows)
        for iv in rows:
            if iv.kind == Kind.PROBE.value and iv.category == Category.COMPUTE.value:
                probed[(iv.stage, iv.label)].append(own.get(iv.span, 0))
    return probed


def _profile_backend(
    driver: Any, stream: Sequence[Any], requests: int, backend: BackendProfiler
) -> Profile:
    backend.start()
    try:
        intervals = _run(driver, stream, requests)
    finally:
        graphs = backend.stop()
    layers = {stage.name: stage.layer for stage in driver.order}
    checks = tuple(
        _check(
            stage, label, durations, layers, graphs[label].run_us, graphs[label].node_us, "scope"
        )
        for (stage, label), durations in sorted(compute_times(intervals).items())
        if label in graphs  # a compute probe named after the graph it runs
    )
    events = [event for graph in graphs.values() for event in graph.events]
    found = [ort_operators(graphs[c.label].events, c.stage, c.label) for c in checks]
    operators = pd.concat(found, ignore_index=True) if found else None
    return Profile(intervals, checks, json.dumps(events).encode(), backend.name, operators)


def _checks(
    intervals: list[Interval], trace: dict[str, Any], layers: dict[str, str]
) -> tuple[ScopeCheck, ...]:
    """gapbench's compute per probe beside the profiler's scope and the operators inside it.

    Operators are found by time on the scope's thread, not through the profiler's event tree,
    whose links between Python calls and operators differ across torch versions; overlapping
    ones (a module and the operators it calls) are counted once.
    """
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X" and "dur" in e]
    by_thread: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event["name"].startswith(OPERATOR_PREFIXES):
            by_thread[event["tid"]].append(event)
    for found in by_thread.values():
        found.sort(key=lambda e: e["ts"])
    starts = {tid: [e["ts"] for e in found] for tid, found in by_thread.items()}
    scope_us: dict[tuple[str, ...], float] = defaultdict(float)
    operator_us: dict[tuple[str, ...], float] = defaultdict(float)
    for event in events:
        prefix, _, rest = event["name"].partition(":")
        if prefix != SCOPE_PREFIX:
            continue
        key = tuple(rest.split(":", 1))
        begin, end = event["ts"], event["ts"] + event["dur"]
        scope_us[key] += event["dur"]
        found = by_thread.get(event["tid"], [])
        first = bisect.bisect_left(starts.get(event["tid"], []), begin)
        inside = []
        for op in found[first:]:
            if op["ts"] > end:
                break
            inside.append((op["ts"], min(op["ts"] + op["dur"], end)))
        operator_us[key] += _union_us(inside)
    return tuple(
        _check(*key, durations, layers, scope_us[key], operator_us[key])
        for key, durations in sorted(compute_times(intervals).items())
        if key in scope_us
    )


def _check(
    stage: str,
    label: str,
    durations: list[int],
    layers: dict[str, str],
    scope_us: float,
    operator_us: float,
    basis: str = "operators",
) -> ScopeCheck:
    """One probe label's check: gapbench's ns beside the profiler's microseconds."""
    return ScopeCheck(
        stage=stage,
        layer=layers.get(stage, ""),
        label=label,
        calls=len(durations),
        gapbench_ms=sum(durations) / 1e6,
        profiler_scope_ms=scope_us / 1e3,
        profiler_operator_ms=operator_us / 1e3,
        basis=basis,
    )


def _union_us(spans: list[tuple[float, float]]) -> float:
    """Total length of ``spans`` (sorted by start), overlaps counted once."""
    total, reach = 0.0, float("-inf")
    for start, end in spans:
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total
