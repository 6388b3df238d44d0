"""A machine's calibration as a table, with the ridge points a roofline turns at."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from harness.machine.calibration import LATENCIES, Calibration

NOISY = 0.25  # repeats this far apart: the machine was busy, or the measure is unstable


def calibration(c: Calibration, where: str, measured: bool) -> Group:
    how = f"measured in {c.seconds:.1f} s" if measured else f"kept from {c.made_utc[:19]}Z"
    if c.quick:
        how += " with --quick (rough: small arrays, short blocks)"
    head = Text(f"{c.cpu} ({c.cores:g} usable cores): {how}, {where}", style="bold")
    table = Table(title="median over repeats, with the repeats' range")
    for column in ("measure", "threads", "dtype", "shape", "median", "range", "unit", "spread"):
        table.add_column(column, justify="right" if column in ("median", "range") else "left")
    for f in c.figures:
        digits = 3 if f.value < 100 else 4
        table.add_row(
            f.measure + ("" if f.device == "cpu" else f" ({f.device})"),
            str(f.threads or ""),
            f.dtype,
            f.shape,
            f"{f.value:.{digits}g}",
            f"{f.low:.{digits}g}-{f.high:.{digits}g}",
            f.unit + (" (lower is better)" if f.measure in LATENCIES else ""),
            f"{f.spread:.0%}" + (" noisy" if f.spread > NOISY else ""),
        )
    ridges = ", ".join(f"{t} thread{'s' if t != 1 else ''} {c.ridge(t):.2f}" for t in c.threads)
    foot = Text(
        f"ridge point (FLOP per byte, float32 GEMM peak over triad): {ridges}; below it an "
        "operator is memory-bound",
        style="dim",
    )
    again = Text("re-measure with gapbench calibrate --refresh", style="dim")
    noisy = [f for f in c.figures if f.spread > NOISY]
    warn = Text(
        f"! {len(noisy)} figure(s) spread over {NOISY:.0%} between repeats: measure again when "
        "the machine is quiet (--refresh)",
        style="yellow",
    )
    return Group(head, table, foot, *([warn] if noisy else []), *([] if measured else [again]))
