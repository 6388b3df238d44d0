"""A set's intervals read in parts: blocks of whole requests, a few columns, a few kinds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import LAST_V1_SET, RAG_SET, SETS
from fsspec.implementations.local import LocalFileSystem

from harness.analysis.columns import split_frame, split_table
from harness.archive import intervals
from harness.archive.checksums import checksum
from harness.archive.names import load
from harness.archive.store import MANIFEST
from harness.archive.tables import INTERVAL_STRINGS, frame_intervals
from harness.errors import UserError
from harness.words import Kind

FOLDERS = sorted(p.name for p in SETS.iterdir() if p.is_dir())


def regrouped(tmp_path: Path, source: Path, group_rows: int, order=None) -> Path:
    """A copy of the set at ``source`` whose intervals file holds row groups of ``group_rows``
    (its rows put in ``order`` when given)."""
    folder = tmp_path / source.name
    shutil.copytree(source, folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    path = folder / manifest["tables"]["intervals"]
    table = pq.read_table(path)
    if order is not None:
        table = table.take(pa.array(order))
    pq.write_table(table, path, row_group_size=group_rows)
    if manifest.get("checksums"):  # the rewrite is deliberate: record it as the writer would
        manifest["checksums"][path.name] = checksum(LocalFileSystem(), str(path))
        (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


def keys(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["replicate"].tolist(), frame["request"].tolist(), strict=True))


@pytest.mark.parametrize("folder", FOLDERS)
def test_blocks_hold_whole_requests_and_give_back_the_table(tmp_path, folder, monkeypatch):
    monkeypatch.setattr(intervals, "BATCH_ROWS", 7)  # batches that straddle requests and blocks
    whole = load(str(SETS / folder)).intervals
    result = load(str(regrouped(tmp_path, SETS / folder, group_rows=13)))
    rows = len(whole) // 6
    blocks = list(result.interval_table.blocks(rows=rows))
    assert len(blocks) > 2
    assert all(len(b) >= rows for b in blocks[:-1])
    assert frame_intervals(pd.concat(blocks)) == frame_intervals(whole)
    seen: set[tuple[int, int]] = set()
    for block in blocks:
        assert not keys(block) & seen  # no request in two blocks
        seen |= keys(block)


def test_a_table_stored_as_one_row_group_is_still_read_a_block_at_a_time(tmp_path):
    # Sets written before the spool kept a table as one row group: it streams all the same.
    whole = load(str(RAG_SET)).intervals
    result = load(str(regrouped(tmp_path, RAG_SET, group_rows=10**6)))
    blocks = list(result.interval_table.blocks(rows=50))
    assert len(blocks) >= 4 and all(len(b) >= 50 for b in blocks[:-1])
    assert frame_intervals(pd.concat(blocks)) == frame_intervals(whole)


def test_requests_whose_rows_interleave_are_one_block(tmp_path):
    n = len(load(str(RAG_SET)).intervals)
    order = np.arange(n)
    order[[5, 30]] = order[[30, 5]]  # one row of the first request among the second's
    result = load(str(regrouped(tmp_path, RAG_SET, group_rows=37, order=order)))
    blocks = list(result.interval_table.blocks(rows=100))
    assert [len(b) for b in blocks] == [n]


@pytest.mark.parametrize("folder", FOLDERS)
def test_a_set_split_a_block_at_a_time_is_split_as_whole(tmp_path, folder):
    result = load(str(regrouped(tmp_path, SETS / folder, group_rows=13)))
    stages, requests = result.manifest.stages, result.requests
    whole = split_frame(result.intervals, requests, stages)
    blocks = list(result.interval_table.blocks(rows=len(result.intervals) // 6))
    assert len(blocks) > 2
    for given in (blocks, blocks[::-1]):  # in stored order, and out of it
        table = split_frame([b.copy() for b in given], requests, stages)
        for name in ("requests", "stages", "charges", "waits"):
            pd.testing.assert_frame_equal(getattr(table, name), getattr(whole, name))
        assert [(rows, split) for rows, split in table.odd] == list(whole.odd)


def test_columns_and_kinds_are_read_alone(tmp_path):
    whole = load(str(RAG_SET)).intervals
    table = load(str(regrouped(tmp_path, RAG_SET, group_rows=37))).interval_table
    pd.testing.assert_frame_equal(
        table.frame(["request", "kind"]), whole[["request", "kind"]], check_categorical=False
    )
    stages = table.of_kinds([Kind.STAGE.value], ["stage", "start_ns"])
    want = whole.loc[whole["kind"] == Kind.STAGE.value, ["stage", "start_ns"]]
    assert stages["stage"].tolist() == want["stage"].tolist()
    assert stages["start_ns"].tolist() == want["start_ns"].tolist()


@pytest.mark.parametrize("batch", [7, intervals.BATCH_ROWS])
def test_blocks_and_kinds_keep_their_strings_as_categories(tmp_path, monkeypatch, batch):
    # Each row group has a dictionary of its own: a block or a filter stitched from several
    # must still hold a code a row, not a string object a row.
    monkeypatch.setattr(intervals, "BATCH_ROWS", batch)
    whole = load(str(RAG_SET)).intervals
    table = load(str(regrouped(tmp_path, RAG_SET, group_rows=13))).interval_table
    strings = [c for c in INTERVAL_STRINGS if c in whole]
    blocks = list(table.blocks(rows=len(whole) // 6))
    assert len(blocks) > 2
    kinds = [Kind.STAGE.value, Kind.PROBE.value]
    chosen = table.of_kinds(kinds, [*strings, "start_ns"])
    for frame in (*blocks, chosen):
        for name in strings:
            assert isinstance(frame[name].dtype, pd.CategoricalDtype), name
    joined = pd.concat(blocks, ignore_index=True)
    want = whole.loc[whole["kind"].isin(kinds)].reset_index(drop=True)
    for name in [*strings, "start_ns"]:
        assert joined[name].tolist() == whole[name].tolist(), name
        assert chosen[name].tolist() == want[name].tolist(), name


def test_a_set_that_recorded_no_interval_gives_no_interval_of_any_kind(tmp_path):
    folder = regrouped(tmp_path, RAG_SET, group_rows=37)
    manifest = json.loads((folder / MANIFEST).read_text())
    path = folder / manifest["tables"]["intervals"]
    pq.write_table(pq.read_table(path).slice(0, 0), path)
    table = load(str(folder)).interval_table
    assert len(table) == 0
    chosen = table.of_kinds([Kind.STAGE.value], ["stage", "start_ns"])
    assert list(chosen.columns) == ["stage", "start_ns"] and len(chosen) == 0
    (block,) = table.blocks(["request", "kind"])
    assert list(block.columns) == ["request", "kind"] and len(block) == 0


def test_an_older_set_is_brought_up_to_date_in_every_part(tmp_path):
    table = load(str(regrouped(tmp_path, LAST_V1_SET, group_rows=37))).interval_table
    assert "cpu_ns" in table.columns  # version 1 never read thread CPU time
    assert (table.frame(["cpu_ns"])["cpu_ns"] == -1).all()
    assert all((b["cpu_ns"] == -1).all() for b in table.blocks(rows=100))


def test_intervals_that_will_not_read_when_asked_are_one_line(tmp_path):
    folder = regrouped(tmp_path, RAG_SET, group_rows=37)
    result = load(str(folder))
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / manifest["tables"]["intervals"]).unlink()  # gone after the set was loaded
    with pytest.raises(UserError, match=r"table intervals-\w+\.parquet is unreadable"):
        split_table(result)


def test_a_request_given_in_two_blocks_is_refused():
    result = load(str(RAG_SET))
    whole = result.intervals
    halves = [whole.iloc[:10], whole.iloc[10:]]  # the first request cut in two
    with pytest.raises(RuntimeError, match="more than one block"):
        split_frame(halves, result.requests, result.manifest.stages)


def test_a_request_given_in_two_blocks_out_of_order_is_refused():
    result = load(str(RAG_SET))
    whole = result.intervals
    key = whole["replicate"] * 10**6 + whole["request"]
    first, middle, last = np.array_split(np.unique(key), 3)
    part = [whole[key.isin(keys)] for keys in (first, middle, last)]
    stages = result.manifest.stages
    # Out of order, apart: split as the whole.
    assert len(split_frame([part[2], part[0], part[1]], result.requests, stages)) == len(
        split_frame(whole, result.requests, stages)
    )
    # In order until one comes back to a request an earlier block held.
    again = part[0][key[part[0].index] == first[-1]]
    for given in ([part[0], part[1], again], [part[2], part[0], again], [part[1], part[1]]):
        with pytest.raises(RuntimeError, match="more than one block"):
            split_frame(given, result.requests, stages)


def test_a_request_without_its_request_interval_is_left_out_not_a_crash():
    result = load(str(RAG_SET))
    whole = result.intervals
    first = (whole["request"] == 0) & (whole["replicate"] == 0)
    broken = whole[~(first & (whole["kind"] == Kind.REQUEST.value))]
    table = split_frame(broken, result.requests, result.manifest.stages)
    kept = set(zip(table.requests["replicate"], table.requests["request"], strict=True))
    assert (0, 0) not in kept and len(kept) == int(result.requests["ok"].sum()) - 1
