"""How much work a set got through a second, a joule and a dollar.

Throughput is the set's own pace: under a load, what the machine served; one request at a time,
the inverse of its latency plus the gaps between requests. Energy is read from the counters the
machine exposes (NVML, RAPL) as the mean power while requests were measured, times the time
measured; where no counter was readable it is unknown, never a guess. Price is the user's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.archive.result_set import ResultSet

# The energy counters the sampler reads, by the name a user knows them by.
ENERGY_SOURCES = {"rapl": "CPU package", "gpu": "GPU"}


@dataclass(frozen=True)
class Throughput:
    """Requests (and output tokens) a second over the time measured, and the energy spent."""

    requests: int  # successful requests measured
    measured_s: float  # summed over replicates: the time the requests were served in
    output_tokens_per_s: float | None  # None where no request marked a token
    power_w: dict[str, float]  # counter ("CPU package", "GPU") -> mean watts while measuring
    load: bool = False  # the pace of a load run (what the machine served), not one at a time

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.measured_s if self.measured_s > 0 else math.nan

    @property
    def joules(self) -> float | None:
        """The energy the counters saw spent on the measured requests (None: no counter)."""
        return sum(self.power_w.values()) * self.measured_s if self.power_w else None

    @property
    def requests_per_joule(self) -> float | None:
        joules = self.joules
        return self.requests / joules if joules else None

    def per_joule_text(self) -> str:
        """Requests a joule with the counters it counts, or ``unknown``."""
        found = self.requests_per_joule
        return "unknown" if found is None else f"{found:.4g} ({' + '.join(self.power_w)})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "measured_s": self.measured_s,
            "requests_per_s": _finite(self.requests_per_s),
            "output_tokens_per_s": self.output_tokens_per_s,
            "power_w": self.power_w,
            "energy_counters": sorted(self.power_w),  # empty: unknown, no counter was read
            "requests_per_joule": self.requests_per_joule,
            "under_load": self.load,
        }


def throughput(
    result: ResultSet, measured_s: float, output_tokens_per_s: float | None, load: bool
) -> Throughput:
    """The set's throughput over ``measured_s`` (the replicates' measured time, summed)."""
    requests = int(result.requests["ok"].sum())
    samples = result.telemetry
    power = {} if samples is None or samples.empty else mean_power(samples)
    if not result.manifest.execution.device.startswith("cuda"):
        # NVML counts every GPU of the node: a set run on the CPU did not spend theirs.
        power.pop(ENERGY_SOURCES["gpu"], None)
    return Throughput(requests, measured_s, output_tokens_per_s, power, load)


def mean_power(samples: pd.DataFrame) -> dict[str, float]:
    """Per energy counter, the joules it counted over the seconds it was sampled (summed over
    replicates and devices): a mean power. Counters sampled fewer than twice are left out."""
    rows = samples.loc[(samples["metric"] == "energy") & samples["source"].isin(ENERGY_SOURCES)]
    if rows.empty:
        return {}
    keys = ["source", "device", *(["replicate"] if "replicate" in rows else [])]
    spans = (
        rows.sort_values("t_ns", kind="stable")
        .groupby(keys)
        .agg(first=("value", "first"), last=("value", "last"), t0=("t_ns", "min"))
        .join(rows.groupby(keys)["t_ns"].max().rename("t1"))
    )
    spans = spans.loc[spans["t1"] > spans["t0"]]
    joules = (spans["last"] - spans["first"]).groupby(level="source").sum()
    # One span per source and replicate: a source's devices are sampled together.
    seconds = (spans["t1"] - spans["t0"]).groupby(level=["source", "device"]).sum() / 1e9
    per_source = seconds.groupby(level="source").max()
    return {
        ENERGY_SOURCES[str(s)]: float(joules[s] / per_source[s])
        for s in joules.index
        if per_source[s] > 0
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
