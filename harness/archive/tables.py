"""The stored tables of a result set: raw intervals and one row per request, as DataFrames."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.archive.history import SCHEMA_VERSION
from harness.record.probes import Interval

INTERVAL_COLUMNS = list(Interval.__dataclass_fields__)
# A few distinct values each, over every interval: read back as categories, not one string a row.
INTERVAL_STRINGS = ("kind", "stage", "category", "resource", "label", "task")
# The intervals as a run records them, before a set gives them their ``replicate``.
INTERVAL_SCHEMA = pa.schema(
    [(name, pa.string() if name in INTERVAL_STRINGS else pa.int64()) for name in INTERVAL_COLUMNS]
)
# Rows a stored table's row group holds (about 1 MB of Arrow buffers): the spool writes a block
# this big every few thousand requests, and a reader can take a table a group at a time.
ROW_GROUP_ROWS = 16_384
REQUEST_COLUMNS = [
    "request",
    "ok",
    "error",
    "arrival_ns",
    "response_ns",
    "latency_s",
    "samples",
    "outputs",
]


# Kept from the second commit of schema 8 on: when each output token of a decoding request
# existed, in ns from its arrival (StageContext.token; empty where none was marked).
TOKEN_COLUMN = "token_ns"

# One row per query LoadGen scheduled (harness.measure.loadgen.LoadRun says what each holds);
# ``request`` is the request that served it.
QUERY_COLUMNS = [
    "query",
    "sample_index",
    "request",
    "scheduled_at_ns",
    "issued_ns",
    "lag_ns",
    "issue_delay_ns",
    "latency_ns",
    "own_latency_ns",
]
# Kept from the second commit of schema 8 on: when a worker took the query up, and when it
# was free again (the server's own occupancy; older sets read without them).
QUERY_OCCUPANCY = ["picked_ns", "done_ns"]

# From schema 9, one row per operator a profiling pass saw inside a compute probe, grouped by
# its shapes (harness.measure.operators): calls, own time (us), FLOPs and bytes of all calls.
OPERATOR_COLUMNS = [
    "stage",
    "label",
    "operator",
    "shapes",
    "dtype",
    "calls",
    "own_us",
    "flops",
    "bytes",
]

# The columns each stored table must hold, beside its ``replicate``.
REQUIRED = {
    "intervals": INTERVAL_COLUMNS,
    "requests": REQUEST_COLUMNS,
    "queries": QUERY_COLUMNS,
    "operators": OPERATOR_COLUMNS,
}


@dataclass(frozen=True)
class Spooled:
    """A table still on disk as Parquet files, one per replicate (``(file, replicate)``): the
    archive copies it into a set a row group at a time, so it is never held whole."""

    parts: tuple[tuple[Path, int], ...]

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError("a spooled table needs at least one part")


def arrow_on_the_system_allocator() -> None:
    """Give Arrow's buffers to the C allocator, which hands big freed blocks back at once:
    Arrow's own keeps freed pages for reuse, some 30 MB over a big set's reading, in a process
    whose peak memory is a measured fact (a run) or a stated cost (``show``). An explicit
    ``ARROW_DEFAULT_MEMORY_POOL`` is left alone."""
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        pa.set_memory_pool(pa.system_memory_pool())


def problem(name: str, columns: Sequence[str]) -> str:
    """What is wrong with stored table ``name`` of these ``columns`` ("" when nothing is)."""
    missing = [c for c in (*REQUIRED.get(name, ()), "replicate") if c not in columns]
    return f"table {name} lacks {', '.join(missing)}" if missing else ""


def intervals_frame(intervals: Sequence[Interval]) -> pd.DataFrame:
    """Raw intervals as a DataFrame (the stored table), one row per interval."""
    rows = [tuple(getattr(i, name) for name in INTERVAL_COLUMNS) for i in intervals]
    frame = pd.DataFrame(rows, columns=INTERVAL_COLUMNS)
    return frame.astype({"thread": "int64", "start_ns": "int64", "end_ns": "int64"})


def request_keys(replicate: pd.Series | np.ndarray, request: pd.Series | np.ndarray) -> np.ndarray:
    """One int64 per (replicate, request), ordered as they are."""
    replicate, request = np.asarray(replicate, np.int64), np.asarray(request, np.int64)
    return (replicate << 32) | (request + (1 << 31))


def by_replicate(frame: pd.DataFrame) -> Iterator[tuple[int, pd.DataFrame]]:
    """Each replicate's rows of a stored table, in replicate order."""
    for key, group in frame.groupby("replicate", sort=True):
        yield int(cast(int, key)), group


def frame_intervals(frame: pd.DataFrame) -> list[Interval]:
    """The inverse of :func:`intervals_frame` (other columns, such as ``replicate``, ignored)."""
    columns = [frame[name].tolist() for name in INTERVAL_COLUMNS]
    return [Interval(*values) for values in zip(*columns, strict=True)]


def _versioned(schema: pa.Schema) -> pa.Schema:
    """``schema`` whose metadata carries the schema version the table is written with."""
    return schema.with_metadata(
        {**(schema.metadata or {}), b"gapbench_schema_version": b"%d" % SCHEMA_VERSION}
    )


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """A table as Parquet bytes (see :func:`_versioned`)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    buffer = io.BytesIO()
    versioned = table.replace_schema_metadata(_versioned(table.schema).metadata)
    pq.write_table(versioned, buffer, row_group_size=ROW_GROUP_ROWS)
    return buffer.getvalue()


def copy_spooled(spooled: Spooled, handle: IO[bytes]) -> None:
    """Every part's row groups, each given its ``replicate``, written one at a time."""
    writer = None
    for file, replicate in spooled.parts:
        source = pq.ParquetFile(file)
        if writer is None:
            tagged = source.schema_arrow.append(pa.field("replicate", pa.int64()))
            writer = pq.ParquetWriter(handle, _versioned(tagged))
        for i in range(source.num_row_groups):
            group = source.read_row_group(i)
            column = pa.array(np.full(group.num_rows, replicate, np.int64))
            writer.write_table(group.append_column("replicate", column))
    if writer is not None:
        writer.close()
