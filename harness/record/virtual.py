"""A virtual speedup, as COZ makes one: slow everything else down, then rescale.

To see what a stage ``f`` times faster would do end to end without making it faster, every
compute and movement probe of the other stages is stretched to ``f`` times its length by
spinning at its end (spinning holds the core, as the slowed work would; sleeping would free it).
The request then runs as if the target were ``f`` times faster and the clock ``f`` times slower:
its latency divided by ``f`` is the projection's independent check. Time outside probes (glue,
waits) is not stretched, which the rescaled figure inherits as a small error.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from harness.record.probes import DeviceTimer, Probe, TimerChain
from harness.words import Category, Kind

_STRETCHED = (Category.COMPUTE.value, Category.MOVEMENT.value)


@dataclass(frozen=True)
class Virtual:
    """Make ``stage`` virtually ``factor`` times faster."""

    stage: str
    factor: float

    @classmethod
    def parse(cls, text: str) -> Virtual:
        stage, sep, factor = text.partition("=")
        value = float(factor) if sep else 0.0
        if not stage or value <= 1.0:
            raise ValueError(f"a virtual speedup is STAGE=FACTOR with FACTOR > 1, not {text!r}")
        return cls(stage, value)


class Spinner(TimerChain):
    """A probe hook that stretches the other stages' probes; forwards to a device timer."""

    def __init__(self, virtual: Virtual, inner: DeviceTimer | None = None) -> None:
        super().__init__(inner)
        self.virtual = virtual
        # (request, span) -> time its nested probes took, stretch included: a probe stretches
        # only its own time, or nested work would be stretched twice.
        self._inside: dict[tuple[int, int], int] = defaultdict(int)

    def exit(self, probe: Probe) -> None:
        super().exit(probe)
        if probe.kind is not Kind.PROBE:
            return
        clock = time.perf_counter_ns
        nested = self._inside.pop((probe.request, probe.span), 0)
        if probe.category in _STRETCHED and probe.stage != self.virtual.stage:
            own = clock() - probe.start_ns - nested
            until = clock() + own * (self.virtual.factor - 1.0)
            while clock() < until:
                pass
        if probe.parent >= 0:
            self._inside[(probe.request, probe.parent)] += clock() - probe.start_ns
