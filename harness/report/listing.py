"""The archive's sets as the terminal lists them: newest first, what a user scans for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from harness.report.fit import Fit
from harness.report.units import ms

if TYPE_CHECKING:
    from harness.analysis.listing import Row


def results(rows: list[Row], location: str, filtered: str = "") -> Fit | Text:
    """The archive's sets, newest first: when, where, what, p50 and verdict."""
    if not rows:
        return Text(f"no result sets{filtered} in {location}")
    table = Fit(title=f"result sets{filtered}, newest first, in {location}")
    # The id names the workload and host too: their own columns go before it is cut; a
    # failure's reason, in the verdict column, wraps.
    # A host's name is not its machine: the CPU says which one ran.
    for name, drop in (("id", None), ("date (UTC)", 4), ("host", 6), ("CPU", 7),
                       ("workload", 10), ("size", 1), ("device", 3), ("backend", 9),
                       ("threads", 8), ("requests", 5), ("p50 ms", None), ("verdict", None),
                       ("complete", 2)):  # fmt: skip
        numeric = name in ("requests", "p50 ms", "threads")
        table.add_column(
            name, justify="right" if numeric else "left", drop=drop, no_wrap=name != "verdict"
        )
    for row in rows:
        entry, m = row.listing, row.listing.manifest
        if m is None:
            failed = entry.failed
            # Why, in the verdict column: the one a narrow terminal keeps.
            problem = Text(f"failed: {failed.reason}" if failed else entry.problem, "red")
            name, made = (failed.workload, _date(failed.created_utc)) if failed else ("-", "-")
            table.add_row(entry.id, made, row.host or "-", "-", name, *"------", problem, "no")
            continue
        stopped = "interrupted" if m.interrupted else m.stopped_by
        verdict = (
            Text(row.verdict, "green" if row.valid else "red")
            if row.problem == ""
            else (Text(f"unreadable: {row.problem}", "red"))
        )
        table.add_row(
            entry.id,
            _date(m.created_utc),
            row.host or "-",
            Text(m.fingerprint.host.host_processor_model_name),
            m.workload,
            m.work.size,
            m.execution.device,
            m.execution.backend,
            "-" if m.execution.threads is None else str(m.execution.threads),
            str(entry.requests),
            ms(row.p50_ms),
            verdict,
            "yes" if m.complete else Text(f"no ({stopped})", "yellow"),
        )
    return table


def _date(utc: str) -> str:
    return utc[:19].replace("T", " ")
