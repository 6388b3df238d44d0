"""A run's intervals on their way to the set: Arrow blocks spooled to a Parquet file as they come.

Holding every recorded interval as a Python object until the run ends makes the heap, and the
garbage collector's passes over it, grow with the run, and that cost lands inside the measured
requests. Between requests the spool takes each request's rows as plain tuples and, once a
block is full, writes it out as one Parquet row group, so what the process holds stays flat.
The archive later copies the file into the set a row group at a time (``Spooled``).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harness.archive.tables import INTERVAL_SCHEMA, ROW_GROUP_ROWS
from harness.record.probes import Recorder


class IntervalSpool:
    """Collects the intervals of many requests, a block at a time, in the Parquet file ``path``
    (which its caller removes)."""

    def __init__(self, path: Path, block_rows: int = ROW_GROUP_ROWS) -> None:
        self.path, self.block_rows = path, block_rows
        self._pending: list[tuple] = []
        # Opened at once: a run that recorded nothing still leaves a readable, empty table.
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(path, INTERVAL_SCHEMA)
        self.blocks = 0  # row groups written so far

    def add(self, recorder: Recorder) -> None:
        """Take one finished request's intervals; a full block goes to disk."""
        self._pending += recorder.tuples()
        if len(self._pending) >= self.block_rows:
            self.flush()

    def flush(self) -> None:
        if not self._pending or self._writer is None:
            return
        columns = zip(*self._pending, strict=True)
        arrays = [
            pa.array(values, type=f.type)
            for values, f in zip(columns, INTERVAL_SCHEMA, strict=True)
        ]
        self._writer.write_batch(pa.record_batch(arrays, schema=INTERVAL_SCHEMA))
        self._pending = []
        self.blocks += 1

    def finish(self) -> Path:
        """Write what is pending and close the file: everything taken, ready to archive."""
        self.flush()
        self.close()
        return self.path

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
