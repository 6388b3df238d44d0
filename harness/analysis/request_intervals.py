"""The raw intervals of chosen successful requests, for the readers that need them whole.

Most of the analysis reads the split table (``harness.analysis.columns``); the replay model and
the trace need a request's intervals as objects, and take only the requests they ask for.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from harness.analysis.columns import split_table
from harness.archive.result_set import ResultSet
from harness.archive.tables import frame_intervals, request_keys
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
    key_of_row = request_keys(
        table["replicate"].to_numpy()[wanted], table["request"].to_numpy()[wanted]
    )
    found = []
    for block in result.interval_table.blocks():  # never the whole table at once
        key = request_keys(block["replicate"].to_numpy(), block["request"].to_numpy())
        mine = np.flatnonzero(np.isin(key, key_of_row))
        if not len(mine):
            continue
        # Each request's rows together, in recorded order; objects made in one pass.
        mine = mine[np.argsort(key[mine], kind="stable")]
        objects, mine_keys = frame_intervals(block.iloc[mine]), key[mine]
        edges = np.flatnonzero(np.diff(mine_keys)) + 1
        starts, ends = np.append(0, edges), np.append(edges, len(mine))
        at_rows = wanted[np.searchsorted(key_of_row, mine_keys[starts])].tolist()
        replicates = (mine_keys[starts] >> 32).tolist()
        for lo, hi, row, replicate in zip(
            starts.tolist(), ends.tolist(), at_rows, replicates, strict=True
        ):
            found.append((row, replicate, objects[lo:hi]))
    yield from sorted(found, key=lambda item: item[0])
