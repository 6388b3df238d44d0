"""The archive's sets as one table a user scans: when, where, what, how fast, and judged how."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from harness.analysis.summary import summarize
from harness.archive.names import host_of
from harness.archive.result_set import Listing
from harness.archive.store import Archive
from harness.errors import UserError


@dataclass(frozen=True)
class Row:
    """A listing with what reading its set says: its end-to-end p50 and its verdict."""

    listing: Listing
    host: str
    p50_ms: float | None  # None: no successful request, or the set could not be read
    valid: bool | None  # None: not judged (no manifest, or unreadable)
    problem: str = ""  # why it was not judged
    problems: tuple[str, ...] = ()  # why its verdict is INVALID

    @property
    def verdict(self) -> str:
        if self.valid is None:
            return "-"
        return "valid" if self.valid else "INVALID"


def workload_of(entry: Listing) -> str:
    """The workload a listing names: its manifest's, or its failure record's ("" if neither)."""
    if entry.manifest is not None:
        return entry.manifest.workload
    return entry.failed.workload if entry.failed is not None else ""


def chosen(
    listings: Sequence[Listing], workload: str | None = None, host: str | None = None
) -> list[Listing]:
    """The listings of ``workload`` made on ``host`` (either None: any)."""

    def keep(entry: Listing) -> bool:
        name = workload_of(entry)
        if workload is not None and name != workload:
            return False
        return host is None or host_of(entry.id, name) == host

    return [e for e in listings if keep(e)]


def rows(
    archive: Archive, listings: Iterable[Listing], tick: Callable[[], None] = lambda: None
) -> list[Row]:
    """Each listing read and judged (``tick`` after each: a progress bar's step)."""
    found = []
    for entry in listings:
        host = host_of(entry.id, workload_of(entry))
        if entry.manifest is None:
            found.append(Row(entry, host, None, None, entry.problem))
        else:
            try:
                s = summarize(archive.load(entry.id))
            except UserError as exc:  # damaged tables: listed, said, and the rest go on
                found.append(Row(entry, host, None, None, str(exc)))
            else:
                p50 = s.end_to_end.p50 * 1e3 if s.end_to_end.n else None
                found.append(Row(entry, host, p50, s.verdict.valid, "", s.verdict.problems))
        tick()
    return found
