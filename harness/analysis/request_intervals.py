"""The raw intervals of chosen successful requests, for the readers that need them whole.

Most of the analysis reads the split table (``harness.analysis.columns``); the replay model and
the trace need a request's intervals as objects, and take only the requests they ask for.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from harness.analysis.columns import split_table
from harness.archive.store import ResultSet
from harness.archive.tables import frame_intervals
from harness.record.probes import Interval


def request_intervals(
    result: ResultSet, rows: Sequence[int] | np.ndarray | None = None
) -> Iterator[tuple[int, int, list[Interval]]]:
    """(row, replicate, raw intervals) of the successful requests at ``rows`` of the split
    table (every one when None), in row order, each request's intervals as recorded."""
    table = split_table(result).requests
    wanted = np.arange(len(table)) if rows is None else np.unique(np.asarray(rows, np.int64))
    if not len(wanted):
        return
    keys = table[["replicate", "request"]].iloc[wanted]
    row_of = {(int(a), int(b)): int(r) for r, a, b in zip(wanted, *keys.to_numpy().T, strict=True)}
    requests, replicates = keys["request"].unique(), keys["replicate"].unique()
    found = []
    for block in result.interval_table.blocks():  # never the whole table at once
        mine = block["request"].isin(requests) & block["replicate"].isin(replicates)
        for (replicate, request), group in block[mine].groupby(["replicate", "request"]):
            row = row_of.get((int(replicate), int(request)))
            if row is not None:
                found.append((row, int(replicate), frame_intervals(group)))
    yield from sorted(found, key=lambda item: item[0])
