"""A profiling pass under torch.profiler, apart from the timed repetitions, checked against probes.

The pass runs a few more requests with gapbench's probes active and each compute probe also
opened as a ``record_function`` scope, so the profiler sees the same spans on its own clock.
Per model stage it then sets gapbench's compute time beside the profiler's time for those
scopes (they must agree) and beside the operators the profiler saw inside them (the rest is
framework dispatch between operators, which a compute probe includes by design).
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.probes import Category, DeviceTimer, Interval, Kind, Probe, Recorder

SCOPE_PREFIX = "gapbench"
AGREEMENT = 0.05  # the most gapbench's compute may differ from the profiler's time for its span
# The least of a model probe the profiler must see as operators: the rest is dispatch between
# them (Python module calls, argument handling), which a compute probe includes by design.
# Measured here: 85-95% for the RAG encoder, prefill, decode loop and top-k.
MIN_OPERATOR_SHARE = 0.8
# Judged only for probes of 1 ms or more a call: opening a scope costs the profiler tens of
# microseconds, which would swamp a tokenizer's 50 us, not a model's forward pass.
MIN_CALL_MS = 1.0


class ProfilerScopes:
    """Opens a ``record_function`` scope inside every compute probe; forwards to a device timer."""

    def __init__(self, inner: DeviceTimer | None = None) -> None:
        from torch.profiler import record_function

        self._record_function = record_function
        self._inner = inner
        self.mode = inner.mode if inner is not None else "host"
        self._open: dict[tuple[int, int], Any] = {}

    def enter(self, probe: Probe) -> None:
        if self._inner is not None:
            self._inner.enter(probe)
        if probe.kind is Kind.PROBE and probe.category == Category.COMPUTE.value:
            scope = self._record_function(f"{SCOPE_PREFIX}:{probe.stage}:{probe.label}")
            scope.__enter__()
            self._open[(probe.request, probe.span)] = scope

    def exit(self, probe: Probe) -> None:
        scope = self._open.pop((probe.request, probe.span), None)
        if scope is not None:
            scope.__exit__(None, None, None)
        if self._inner is not None:
            self._inner.exit(probe)

    def resolve(self, recorder: Recorder) -> None:
        if self._inner is not None:
            self._inner.resolve(recorder)


@dataclass(frozen=True)
class ScopeCheck:
    """One compute probe label of one stage: gapbench's time beside the profiler's."""

    stage: str
    label: str
    calls: int
    gapbench_ms: float
    profiler_scope_ms: float
    profiler_operator_ms: float

    @property
    def agreement(self) -> float:
        """Relative difference of gapbench's compute time from the profiler's scope time."""
        return abs(self.gapbench_ms - self.profiler_scope_ms) / max(self.profiler_scope_ms, 1e-9)

    @property
    def operator_share(self) -> float:
        """How much of the scope the profiler saw as operators (the rest is dispatch)."""
        return self.profiler_operator_ms / max(self.profiler_scope_ms, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "agreement": self.agreement, "operator_share": self.operator_share}


@dataclass(frozen=True)
class Profile:
    """What a profiling pass leaves: its intervals, the check, and the profiler's trace."""

    intervals: list[Interval]
    checks: tuple[ScopeCheck, ...]
    trace_json: bytes

    @property
    def agrees(self) -> bool:
        """Both clocks see the same spans, and operators fill most of every model probe."""
        judged = [c for c in self.checks if c.gapbench_ms >= MIN_CALL_MS * c.calls]
        return bool(judged) and all(
            c.agreement <= AGREEMENT and c.operator_share >= MIN_OPERATOR_SHARE for c in judged
        )


def profile_requests(driver: Any, stream: Sequence[Any], requests: int) -> Profile:
    """Run ``requests`` requests through ``driver`` under torch.profiler (CPU activity)."""
    from torch.profiler import ProfilerActivity, profile

    timer = driver.timer
    driver.timer = ProfilerScopes(timer)
    intervals: list[Interval] = []
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for i in range(requests):
                outcome = driver(-10_000 - i, stream[i % len(stream)])
                intervals.extend(outcome.recorder.intervals)
    finally:
        driver.timer = timer
    with tempfile.TemporaryDirectory(prefix="gapbench-profile-") as folder:
        path = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(path))
        trace = path.read_bytes()
    return Profile(intervals, _checks(intervals, prof.profiler.function_events), trace)


def _checks(intervals: list[Interval], events: Sequence[Any]) -> tuple[ScopeCheck, ...]:
    probed: dict[tuple[str, str], list[int]] = defaultdict(list)
    for iv in intervals:
        if iv.kind == Kind.PROBE.value and iv.category == Category.COMPUTE.value:
            probed[(iv.stage, iv.label)].append(iv.duration_ns)
    scope_us: dict[tuple[str, str], float] = defaultdict(float)
    operator_us: dict[tuple[str, str], float] = defaultdict(float)
    for event in events:
        prefix, _, rest = event.name.partition(":")
        if prefix != SCOPE_PREFIX:
            continue
        key = tuple(rest.split(":", 1))
        scope_us[key] += event.time_range.elapsed_us()
        operator_us[key] += sum(child.time_range.elapsed_us() for child in event.cpu_children)
    return tuple(
        ScopeCheck(
            stage=stage,
            label=label,
            calls=len(durations),
            gapbench_ms=sum(durations) / 1e6,
            profiler_scope_ms=scope_us[(stage, label)] / 1e3,
            profiler_operator_ms=operator_us[(stage, label)] / 1e3,
        )
        for (stage, label), durations in sorted(probed.items())
        if (stage, label) in scope_us
    )
