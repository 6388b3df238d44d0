"""A set's intervals as its readers ask for them: whole, a few columns, or whole requests a block
at a time.

A 50,000-request set holds half a million intervals. Most readers want a few columns (the
overhead figure: kinds and request keys) or can work through the set a block at a time (the
split table), so a verb holds what it reads, not the whole table. A set built in memory (a
test, one replicate's slice) answers the same questions from its DataFrame.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandas.api.types import union_categoricals

from harness.archive.tables import INTERVAL_STRINGS, request_keys
from harness.errors import UserError

BLOCK_ROWS = 65_536  # intervals a block holds at least (about 5 MB), unless the set is smaller
# Intervals read from the file at once, at most: a batch never spans row groups, so a spooled
# set (a row group every ROW_GROUP_ROWS) reads a group at a time, and only a set written as one
# big row group, before the spool, is read in parts this long.
BATCH_ROWS = 32_768
Columns = Sequence[str] | None  # None: every column


class Intervals:
    """The intervals of one set (the stored table, ``replicate`` included)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    @property
    def columns(self) -> list[str]:
        return list(self._frame.columns)

    def __len__(self) -> int:
        return len(self._frame)

    def frame(self, columns: Columns = None) -> pd.DataFrame:
        """The table, or only ``columns`` of it."""
        return self._frame if columns is None else self._frame[list(columns)]

    def of_kinds(self, kinds: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
        """``columns`` of the intervals of these ``kind`` values only."""
        frame = self.frame(_with_kind(columns))
        return frame.loc[frame["kind"].isin(kinds), list(columns)].reset_index(drop=True)

    def blocks(self, columns: Columns = None, rows: int = BLOCK_ROWS) -> Iterator[pd.DataFrame]:
        """The table in blocks of at least ``rows`` intervals (the last may hold fewer), each
        holding every interval of the requests it has: a request is never cut in two."""
        yield self.frame(columns)


class StoredIntervals(Intervals):
    """The intervals table of an archived set, read from its Parquet file when asked.

    ``open_file`` opens the file for reading; ``migrate`` brings what is read from the version
    the set was written with up to date (it may only add or rewrite columns, row by row);
    ``where`` names the table in errors: a part that will not read is a ``UserError``.
    """

    def __init__(
        self,
        open_file: Callable[[], IO[bytes]],
        migrate: Callable[[pd.DataFrame], pd.DataFrame],
        where: str,
    ) -> None:
        self._open, self._migrate, self._where = open_file, migrate, where
        with self._open() as handle:
            meta = pq.ParquetFile(handle).metadata
        self._stored = list(meta.schema.to_arrow_schema().names)
        self._rows = meta.num_rows

    @functools.cached_property
    def columns(self) -> list[str]:
        return list(self._migrate(pd.DataFrame(columns=self._stored)).columns)

    def __len__(self) -> int:
        return self._rows

    @functools.cached_property
    def _whole(self) -> pd.DataFrame:
        return self._read(None)

    def frame(self, columns: Columns = None) -> pd.DataFrame:
        """The table (read once and kept), or only ``columns`` of it (read each time asked)."""
        if columns is None:
            return self._whole
        if "_whole" in self.__dict__:
            return self._whole[list(columns)]
        return self._read(columns)

    def of_kinds(self, kinds: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
        if "_whole" in self.__dict__:
            return super().of_kinds(kinds, columns)
        # A batch at a time, each filtered before the next is read.
        kept = [
            batch.loc[batch["kind"].isin(kinds), list(columns)]
            for batch in self._batches(_with_kind(columns))
        ]
        return _joined(kept)

    def blocks(self, columns: Columns = None, rows: int = BLOCK_ROWS) -> Iterator[pd.DataFrame]:
        cuts = self._cuts(rows)
        if cuts is None:  # small, or a request's rows not together: the table is one block
            yield self.frame(columns)
            return
        # The file streamed a batch at a time (see BATCH_ROWS), so a block is stitched from
        # several batches, and rows past a cut wait for the next block.
        pending: list[pd.DataFrame] = []
        held, at = 0, 0  # rows pending; where the pending rows begin in the table
        batches = self._batches(columns)
        for cut in cuts[1:].tolist():
            while held < cut - at:
                batch = next(batches)
                pending.append(batch)
                held += len(batch)
            joined = _joined(pending)
            yield joined.iloc[: cut - at].reset_index(drop=True)
            rest = joined.iloc[cut - at :].reset_index(drop=True)
            pending, held, at = ([rest] if len(rest) else []), len(rest), cut

    def _cuts(self, rows: int) -> np.ndarray | None:
        """Where blocks begin and end (row positions), each at least ``rows`` long and cut
        between requests; None when the table is one block."""
        if self._rows <= rows:
            return None
        keys = self._read(["replicate", "request"])
        key = request_keys(keys["replicate"], keys["request"])
        changes = np.flatnonzero(key[1:] != key[:-1]) + 1
        if len(changes) + 1 != len(np.unique(key)):
            return None
        between = np.append(changes, self._rows)
        cuts = [0]
        while cuts[-1] < self._rows:
            at = min(int(np.searchsorted(between, cuts[-1] + rows)), len(between) - 1)
            cuts.append(int(between[at]))
        return np.array(cuts, np.int64)

    def _batches(self, columns: Columns) -> Iterator[pd.DataFrame]:
        """The table in order, at most ``BATCH_ROWS`` rows at a time (each batch within one row
        group), strings as categories, migrated; an empty table gives one empty batch, so a
        reader always has the columns it asked for."""
        wanted = None if columns is None else [c for c in columns if c in self._stored]
        strings = [c for c in INTERVAL_STRINGS if wanted is None or c in wanted]
        try:
            with self._open() as handle:
                source = pq.ParquetFile(handle, read_dictionary=strings or None)
                if self._rows:
                    parts: Iterable[pa.RecordBatch | pa.Table] = source.iter_batches(
                        BATCH_ROWS, columns=wanted, use_threads=False
                    )
                else:
                    empty = source.schema_arrow.empty_table()
                    parts = [empty if wanted is None else empty.select(wanted)]
                for part in parts:
                    frame = self._migrate(part.to_pandas())
                    yield frame if columns is None else frame[list(columns)]
        except Exception as exc:  # read when asked, long after load: still one clear line
            raise UserError(f"{self._where} is unreadable") from exc

    def _read(self, columns: Columns) -> pd.DataFrame:
        wanted = None if columns is None else [c for c in columns if c in self._stored]
        try:
            with self._open() as handle:
                frame = read_parquet(handle, INTERVAL_STRINGS, wanted)
        except Exception as exc:  # read when asked, long after load: still one clear line
            raise UserError(f"{self._where} is unreadable") from exc
        frame = self._migrate(frame)
        return frame if columns is None else frame[list(columns)]


def _with_kind(columns: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*columns, "kind"]))


def _joined(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """``frames`` one after another, their columns of categories still categories.

    Each row group's strings come with a dictionary of their own, and pd.concat turns
    categories that differ into plain strings, every row's text again: their categories are
    joined instead, so a row stays a code, as read."""
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    joined = {}
    for name in frames[0].columns:
        parts = [frame[name] for frame in frames]
        if all(isinstance(part.dtype, pd.CategoricalDtype) for part in parts):
            joined[name] = pd.Series(union_categoricals(parts), name=name)
        else:
            joined[name] = pd.concat(parts, ignore_index=True)
    return pd.DataFrame(joined, columns=frames[0].columns, copy=False)


def read_parquet(
    handle: IO[bytes],
    strings: Sequence[str] = (),
    columns: Columns = None,
) -> pd.DataFrame:
    """A stored table (only ``columns`` when given) as a DataFrame, the columns ``strings`` as
    categories (a code a row, each distinct string once).

    Read a row group at a time into columns allocated once: reading the whole Arrow table and
    converting it holds three copies of a big set at the peak, this about one."""
    present = pq.ParquetFile(handle).schema_arrow.names
    names = present if columns is None else [c for c in present if c in columns]
    strings = [name for name in strings if name in names]
    source = pq.ParquetFile(handle, read_dictionary=strings or None)
    chosen = list(range(source.num_row_groups))
    fields = [source.schema_arrow.field(name) for name in names]
    plain = all(
        pa.types.is_dictionary(f.type) or pa.types.is_integer(f.type) or pa.types.is_boolean(f.type)
        for f in fields
    )
    n = sum(source.metadata.row_group(g).num_rows for g in chosen)

    def whole() -> pd.DataFrame:
        return source.read_row_groups(chosen, columns=names, use_threads=False).to_pandas()

    if not strings or not plain or n == 0:
        return whole()
    out = {
        f.name: np.empty(n, np.int32 if f.name in strings else f.type.to_pandas_dtype())
        for f in fields
    }
    categories: dict[str, dict[str, int]] = {name: {} for name in strings}
    at = 0
    for group in chosen:
        # On one thread: reader threads each keep an allocator arena of their own.
        batch = source.read_row_group(group, columns=names, use_threads=False)
        rows = batch.num_rows
        for name, values in zip(batch.column_names, batch.columns, strict=True):
            if values.null_count:  # only a corrupt table: read it plainly, checks will say
                return whole()
            if name in categories:
                values = values.unify_dictionaries().combine_chunks()
                seen = categories[name]
                remap = np.array(
                    [seen.setdefault(v, len(seen)) for v in values.dictionary.to_pylist()],
                    np.int32,
                )
                out[name][at : at + rows] = remap[values.indices.to_numpy()]
            else:
                out[name][at : at + rows] = values.to_numpy()
        at += rows
    frame = {
        name: pd.Categorical.from_codes(out[name], pd.Index(list(categories[name])))
        if name in categories
        else values
        for name, values in out.items()
    }
    return pd.DataFrame(frame, copy=False)
