"""A sweep's or a search's server runs for the terminal: the latency-throughput table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from harness.report.units import ms

if TYPE_CHECKING:
    from harness.experiments.capacity import Capacity


def capacity_table(found: Capacity) -> Group:
    """A sweep's or a search's steps as a latency-throughput table, and a search's answer."""
    search = found.p99_bound_ms is not None
    workers = f"{found.workers} worker{'s' if found.workers != 1 else ''}"
    title = f"{found.workload} under LoadGen's server scenario, {workers}: latency from the "
    title += "scheduled arrival (~: p99 over fewer than 662 queries, indicative)"
    table = Table(title=title)
    columns = ["target qps", "answered/s", "queries", "p50 ms", "p99 ms", "queue ms"]
    columns += ["M/G/c ms", "lag p99 ms", "wall s", "valid"]
    columns += (["p99 bound"] if search else []) + ["set"]
    for name in columns:
        left = name in ("set", "p99 bound")
        table.add_column(
            name, justify="left" if left else "right", overflow="fold" if left else "ellipsis"
        )
    for s in found.steps:
        row = [
            f"{s.target_qps:.2f}",
            f"{s.throughput_qps:.2f}",
            f"{s.queries:,}",
            ms(s.p50_ms),
            ("~" if s.p99_indicative else "") + ms(s.p99_ms),
            ms(s.queue_ms),
            ms(s.predicted_queue_ms) if s.predicted_queue_ms is not None else "unbounded",
            ms(s.lag_p99_ms),
            f"{s.wall_s:.0f}",
            "NO" if s.problems else "yes",
        ]
        if search:
            row.append("pass" if s.passed else f"FAIL: {s.failed_because}")
        table.add_row(*row, s.set_id)
    parts: list[Any] = [table]
    cost = f"{len(found.steps)} server runs in {found.wall_s:.0f} s of wall time"
    if search:
        bound = f"p99 within {found.p99_bound_ms:g} ms"
        failed = [s.target_qps for s in found.steps if not s.passed]
        above = f"; {min(failed):.2f} did not" if failed else ""
        if found.max_qps is None:
            answer = f"no rate tried kept {bound}{above}"
        else:
            passed = next(s for s in found.steps if s.target_qps == found.max_qps)
            rough = (
                f" (its p99 over {passed.queries} queries is indicative)"
                if passed.p99_indicative
                else ""
            )
            answer = f"{found.max_qps:.2f} queries/s kept {bound}{rough}{above}"
        ceiling = ""
        if found.probe_qps is not None:
            ceiling = f"; a closed loop of {workers} answered {found.probe_qps:.2f}/s"
        parts.append(Text(answer + ceiling, style="bold"))
        if found.stopped_because:
            parts.append(Text(found.stopped_because, style="yellow"))
    if found.interrupted:
        parts.append(Text("interrupted: the steps above are those that finished", style="red"))
    parts.append(Text(cost, style="dim"))
    return Group(*parts)
