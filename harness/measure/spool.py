"""A run's intervals on their way to the set: Arrow blocks spooled to a Parquet file as they come.

Holding every recorded interval as a Python object until the run ends makes the heap, and the
garbage collector's passes over it, grow with the run, and that cost lands inside the measured
requests. Between requests the spool takes each request's rows as plain tuples and, once a
block is full, writes it out as one Parquet row group, so what the process holds stays flat.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.archive.tables import INTERVAL_COLUMNS, intervals_frame
from harness.record.probes import Recorder

BLOCK_ROWS = 16_384  # about 1 MB of Arrow buffers: a write every few thousand requests
_STRINGS = {"kind", "stage", "category", "resource", "label", "task"}
SCHEMA = pa.schema(
    [(name, pa.string() if name in _STRINGS else pa.int64()) for name in INTERVAL_COLUMNS]
)


class IntervalSpool:
    """Collects the intervals of many requests, a block at a time, in a private temp file."""

    def __init__(self, block_rows: int = BLOCK_ROWS) -> None:
        self.block_rows = block_rows
        self._folder = tempfile.TemporaryDirectory(prefix="gapbench-spool-")
        self._path = Path(self._folder.name) / "intervals.parquet"
        self._pending: list[tuple] = []
        self._writer: pq.ParquetWriter | None = None
        self.blocks = 0  # row groups written so far

    def add(self, recorder: Recorder) -> None:
        """Take one finished request's intervals; a full block goes to disk."""
        self._pending += recorder.tuples()
        if len(self._pending) >= self.block_rows:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        columns = zip(*self._pending, strict=True)
        arrays = [pa.array(values, type=f.type) for values, f in zip(columns, SCHEMA, strict=True)]
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._path, SCHEMA)
        self._writer.write_batch(pa.record_batch(arrays, schema=SCHEMA))
        self._pending = []
        self.blocks += 1

    def frame(self) -> pd.DataFrame:
        """Everything taken so far as the stored intervals table; the spool is then removed."""
        self.flush()
        if self._writer is None:
            frame = intervals_frame([])
        else:
            self._writer.close()
            frame = pq.read_table(self._path).to_pandas()
        self.close()
        return frame

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._folder.cleanup()
