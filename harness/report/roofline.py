"""A profiled set's roofline per stage: its compute by class, and what its operators achieved
against the machine's measured peaks."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table
from rich.text import Text

from harness.analysis.roofline import CLASSES, Roofline


def _rate(value: float, peak: float) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:.3g} ({value / peak:.0%})" if math.isfinite(peak) and peak else f"{value:.3g}"


def roofline_table(found: Roofline) -> list[Any]:
    c = found.calibration
    table = Table(
        title=f"roofline per stage: compute by class; rates from the operators' own time in the "
        f"profiling pass, against this machine's peaks (calibrated {c.made_utc[:10]})"
    )
    for name in ("stage", "threads", "compute ms", *CLASSES, "GFLOP/s (of peak)",
                 "GB/s (of triad)", "ridge FLOP/B"):  # fmt: skip
        table.add_column(name, justify="left" if name == "stage" else "right")
    shares = found.shares()
    for row in found.stages.to_dict(orient="records"):
        of = shares.get(str(row["stage"]), {})
        table.add_row(
            str(row["stage"]),
            str(row["threads"]),
            f"{float(row['compute_ms']):.3g}",
            *(f"{of.get(k, 0.0):.0%}" if of.get(k) else "-" for k in CLASSES),
            _rate(float(row["gflops"]), float(row["peak_gflops"])),
            _rate(float(row["gbs"]), float(row["bandwidth_gbs"])),
            f"{float(row['ridge']):.2f}",
        )
    parts: list[Any] = [table]
    if found.not_visible:
        parts.append(
            Text(
                "  - not visible to the profiler (no operators for most of their time): "
                + ", ".join(found.not_visible),
                style="dim",
            )
        )
    return parts
