"""What one validation condition found: the component, the sets, and each projection's
paired error against what B delivered."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from harness.archive.codec import to_dict
from harness.experiments.vendor import Transferred
from harness.workload import Condition

TARGET = 0.03  # the replay model's median error, or the noise floor where that is larger
TRANSFER_TARGET = 0.10  # a projection from a vendor's numbers: within 10% end to end


@dataclass(frozen=True)
class Trial:
    """A condition as one workload declares it."""

    workload: str
    condition: Condition


@dataclass(frozen=True)
class Outcome:
    """One condition: component speedups, the sets, and the paired errors."""

    trial: Trial
    component: dict[str, float]  # stage -> isolated compute speedup, A over B
    sets: dict[str, str]  # "a", "b", "a_again" -> set id
    measured: list[float]  # per replicate: B's p50 over A's (the delivered speedup)
    naive: list[float]  # per replicate: the projected speedup
    replay: list[float]
    noise: list[float]  # per replicate: |A again / A - 1|
    # The replay from components measured inside the two sets instead of alone: the same
    # arithmetic without the component benchmark's own error (warm caches, one input shape).
    in_pipeline: list[float]
    # The change as a vendor would state it (calibrated peaks, or bytes), projected both ways.
    transfer: Transferred | None = None
    agreement: dict[str, float] | None = None  # per output, B's equal to A's: share of requests
    # Per replicate, the replay with side-by-side CPU work under one lock, where A showed the
    # signs of what the replay does not model (harness.projection.limits): the other end.
    lock: list[float] = field(default_factory=list)

    @property
    def in_range(self) -> bool | None:
        """Whether the measured speedup lies between the lock's end and the replay's, widened
        by the noise floor (None: no range was given)."""
        if not self.lock:
            return None
        low = min(statistics.median(self.lock), statistics.median(self.replay))
        high = max(statistics.median(self.lock), statistics.median(self.replay))
        measured = statistics.median(self.measured)
        return low * (1 - self.noise_floor) <= measured <= high * (1 + self.noise_floor)

    def errors(self) -> dict[str, float]:
        """Median error of each projection there is: naive, replay, in situ, one ratio and by
        class."""
        out = {m: self.error(m) for m in ("naive", "replay", "in_pipeline")}
        if self.transfer is not None:
            for name, got in (
                ("one_ratio", self.transfer.one_ratio),
                ("by_class", self.transfer.by_class),
            ):
                out[name] = statistics.median(
                    abs(p / m - 1) for p, m in zip(got, self.measured, strict=True)
                )
        return out

    def error(self, model: str) -> float:
        """Median over replicates of |projected / measured - 1|."""
        projected = {"naive": self.naive, "replay": self.replay, "in_pipeline": self.in_pipeline}[
            model
        ]
        return statistics.median(
            abs(p / m - 1) for p, m in zip(projected, self.measured, strict=True)
        )

    @property
    def noise_floor(self) -> float:
        return statistics.median(self.noise)

    @property
    def passes(self) -> bool:
        return self.error("replay") <= max(TARGET, self.noise_floor)

    def to_dict(self) -> dict[str, Any]:
        return {
            "condition": {"workload": self.trial.workload, **to_dict(self.trial.condition)},
            "component_speedups": self.component,
            "sets": self.sets,
            "measured_speedup": statistics.median(self.measured),
            "naive_speedup": statistics.median(self.naive),
            "replay_speedup": statistics.median(self.replay),
            "naive_error": self.error("naive"),
            "replay_error": self.error("replay"),
            "in_pipeline_replay_speedup": statistics.median(self.in_pipeline),
            "in_pipeline_replay_error": self.error("in_pipeline"),
            "noise_floor": self.noise_floor,
            "target": max(TARGET, self.noise_floor),
            "passes": self.passes,
            "lock_speedup": statistics.median(self.lock) if self.lock else None,
            "measured_in_range": self.in_range,
            "output_agreement": self.agreement,
            "transfer": None
            if self.transfer is None
            else {
                "one_ratio_speedup": statistics.median(self.transfer.one_ratio),
                "by_class_speedup": statistics.median(self.transfer.by_class),
                "one_ratio_error": self.errors()["one_ratio"],
                "by_class_error": self.errors()["by_class"],
                "within_target": self.errors()["by_class"] <= TRANSFER_TARGET,
                "limiting": self.transfer.limiting,
                "classes": {
                    k: {"claimed": c, "in_pipeline": p} for k, (c, p) in self.transfer.moved.items()
                },
                "notes": list(self.transfer.notes),
                "per_replicate": {
                    "one_ratio": self.transfer.one_ratio,
                    "by_class": self.transfer.by_class,
                },
            },
            "per_replicate": {
                "measured": self.measured,
                "naive": self.naive,
                "replay": self.replay,
                "noise": self.noise,
                "in_pipeline": self.in_pipeline,
            },
        }
