"""LoadGen's own summary of a run (``mlperf_log_summary.txt``), kept with the set, read back."""

from __future__ import annotations

import re
from dataclasses import dataclass

_STAT = re.compile(r"^(?P<key>[A-Za-z0-9 .()]+?)\s*:\s*(?P<value>-?[0-9.]+)\s*$")
_ESTIMATE = re.compile(r"Early stopping (?P<what>.+?) estimate: (?P<ns>[0-9]+)")


@dataclass(frozen=True)
class LoadGenSummary:
    """The numbers of LoadGen's summary by their label, its verdict, and its early-stopping
    estimates of the percentiles (label -> ns) where its scenario gives them."""

    numbers: dict[str, float]
    valid: bool
    early_stopping: dict[str, float]
    text: str
    unmet: tuple[str, ...] = ()  # the checks LoadGen says were not satisfied
    early_stopping_said: tuple[str, ...] = ()  # its early-stopping result, line by line

    def latency_ns(self, percentile: float) -> float | None:
        """LoadGen's latency at ``percentile`` (50, 90, 95, 97, 99, 99.9), None if absent."""
        return self.numbers.get(f"{percentile:.2f} percentile latency (ns)")


def parse(text: str) -> LoadGenSummary:
    """Read a summary as LoadGen 6.0 writes it: ``label : number`` lines, ``Result is :``."""
    numbers = {
        m["key"].strip(): float(m["value"])
        for line in text.splitlines()
        if (m := _STAT.match(line.strip()))
    }
    estimates = {m["what"]: float(m["ns"]) for m in _ESTIMATE.finditer(text)}
    lines = [line.strip() for line in text.splitlines()]
    unmet = tuple(
        line.split(":")[0].strip()
        for line in lines
        if line.endswith(("satisfied : NO", "satisfied: NO"))
    )
    said: list[str] = []
    if "Early Stopping Result:" in lines:
        for line in lines[lines.index("Early Stopping Result:") + 1 :]:
            if not line or line.startswith("="):
                break
            said.append(line.lstrip("* "))
    valid = "Result is : VALID" in text
    return LoadGenSummary(numbers, valid, estimates, text, unmet, tuple(said))
