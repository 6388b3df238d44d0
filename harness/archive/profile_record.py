"""A profiling pass as a result set keeps it: which profiler, how many requests, the machine's
calibration it was read against, and its check of gapbench's compute probes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from harness.machine.calibration import Calibration
from harness.words import Layer

AGREEMENT = 0.05  # the most gapbench's compute may differ from a profiler's reference time
# Judged only for probes of 1 ms or more a call in the timed run: opening a scope costs the
# profiler tens of microseconds, which would swamp a tokenizer's 50 us, not a model's forward.
MIN_CALL_MS = 1.0
# Judged only where the profiler sees the work: its operators cover half the probe or more
# (a tokenizer in pure Python or a faiss search has next to none).
VISIBLE = 0.5


@dataclass(frozen=True)
class ScopeCheck:
    """One compute probe label of one stage: gapbench's time beside the profiler's."""

    stage: str
    layer: str
    label: str
    calls: int
    gapbench_ms: float
    profiler_scope_ms: float
    profiler_operator_ms: float
    # What gapbench's time is judged against: the operators inside the scope (torch), or the
    # scope itself (onnxruntime's session runs, whose node kernels leave out the executor's own
    # work between nodes, which is still the session's compute).
    basis: str = "operators"

    @property
    def reference_ms(self) -> float:
        return self.profiler_operator_ms if self.basis == "operators" else self.profiler_scope_ms

    @property
    def agreement(self) -> float:
        """Relative difference of gapbench's compute time from the profiler's reference time
        (NaN where the profiler saw nothing: a tokenizer in pure Python has no operators)."""
        if self.reference_ms <= 0:
            return math.nan
        return abs(self.gapbench_ms - self.reference_ms) / self.reference_ms

    @property
    def visible(self) -> bool:
        """Whether the profiler saw the probe's work: operators (or a session's runs) over
        at least half its time."""
        return self.reference_ms >= VISIBLE * self.gapbench_ms > 0

    def judged(self, timed_call_ms: float | None = None) -> bool:
        """A model stage's visible probe of a millisecond or more a call in the timed run
        (``timed_call_ms``; the profiling pass's own time where the timed run's is not at hand,
        which the profiler's tracer inflates). Only a model's modules cover the Python between
        its operators, so only there are the two times the same work."""
        per_call = timed_call_ms if timed_call_ms is not None else self.gapbench_ms / self.calls
        model = self.layer == Layer.INFERENCE.value
        return model and self.visible and per_call >= MIN_CALL_MS


@dataclass(frozen=True)
class ProfileRecord:
    """The profiling pass after the timed requests: which profiler, how many requests, and its
    check of gapbench's compute probes (its trace is the set's ``profile.json``)."""

    tool: str
    requests: int
    checks: tuple[ScopeCheck, ...]
    # From schema 9: the machine's calibration when the pass ran, which the operators table's
    # classes are read against (None: none was kept, or an older set).
    calibration: Calibration | None = None

    def agrees(self, timed_call_ms: Mapping[tuple[str, str], float] | None = None) -> bool:
        """Every judged probe is within 5% of the profiler's reference time; ``timed_call_ms``
        is each probe's time a call in the timed run, by (stage, label)."""
        timed = timed_call_ms or {}
        judged = [c for c in self.checks if c.judged(timed.get((c.stage, c.label)))]
        return bool(judged) and all(c.agreement <= AGREEMENT for c in judged)
