"""The archive: manifest last, incomplete sets, schema versions, ids, fsspec URLs."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime, timezone

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import interval, make_manifest

from harness.archive.names import load, new_id
from harness.archive.schema import FailedRun
from harness.archive.store import MANIFEST, SCHEMA_VERSION, Archive
from harness.archive.tables import (
    INTERVAL_STRINGS,
    REQUEST_COLUMNS,
    Spooled,
    frame_intervals,
    intervals_frame,
)
from harness.cli import main
from harness.errors import UserError
from harness.measure.spool import IntervalSpool
from harness.record.probes import Recorder
from harness.words import Kind
from harness.workload import Stage


def tables():
    request = interval(Kind.REQUEST, 1, 3)
    intervals = intervals_frame([request, replace(request, start_ns=2, end_ns=4)]).assign(
        replicate=0
    )
    requests = pd.DataFrame(
        [[0, True, "", 1, 3, 0.5, 1, "{}", 0]], columns=[*REQUEST_COLUMNS, "replicate"]
    )
    return {"intervals": intervals, "requests": requests}


def write(archive: Archive, set_id: str, **fields) -> str:
    return archive.write(make_manifest(set_id=set_id, **fields), tables())


@pytest.fixture(params=["local", "memory", "s3"])
def archive(request, tmp_path) -> Archive:
    """The same archive on a local folder, fsspec's in-memory filesystem (no atomic rename,
    like an object store), and a real S3-compatible server on loopback."""
    if request.param == "local":
        return Archive(tmp_path / "results")
    if request.param == "s3":
        return Archive(request.getfixturevalue("s3_url"))
    return Archive(f"memory://gapbench-{uuid.uuid4().hex}")


def test_round_trip_as_dataframes(archive: Archive):
    write(archive, "20260101T000000Z-h-w-0001")
    loaded = archive.load("20260101T000000Z-h-w-0001")
    assert loaded.manifest.schema_version == SCHEMA_VERSION
    assert loaded.complete
    # The intervals' few distinct strings come back as categories, the values as written.
    assert all(isinstance(loaded.intervals[c].dtype, pd.CategoricalDtype) for c in INTERVAL_STRINGS)
    pd.testing.assert_frame_equal(
        loaded.intervals, tables()["intervals"], check_categorical=False, check_dtype=False
    )
    assert frame_intervals(loaded.intervals) == frame_intervals(tables()["intervals"])
    pd.testing.assert_frame_equal(loaded.requests, tables()["requests"])


def test_a_spooled_table_is_copied_a_row_group_at_a_time(archive: Archive, tmp_path):
    parts, recorded, blocks = [], [], 0
    for replicate, count in ((0, 5), (3, 2)):
        spool = IntervalSpool(tmp_path / f"spool-{replicate}.parquet", block_rows=2)
        for i in range(count):
            recorder = Recorder(i, clock=iter(range(100 * i, 100 * i + 4)).__next__)
            recorder.add(Kind.REQUEST, 100 * i, 100 * i + 10)
            recorder.add(Kind.WAIT, 100 * i, 100 * i + 1, stage="s", label="queue wait")
            spool.add(recorder)
            recorded += [(replicate, iv) for iv in recorder.intervals]
        parts.append((spool.finish(), replicate))
        blocks += spool.blocks
    set_id = "20260101T000000Z-h-w-0002"
    manifest = make_manifest((Stage("s", "ingress"),), set_id=set_id, replicates=4)
    archive.write(manifest, {**tables(), "intervals": Spooled(tuple(parts))})
    manifest = archive.load(set_id).manifest
    with archive.fs.open(archive._path(set_id, manifest.tables["intervals"]), "rb") as handle:
        stored = pq.ParquetFile(handle)
        assert stored.num_row_groups == blocks == 7  # each spool's blocks, as they were written
        assert stored.schema_arrow.metadata[b"gapbench_schema_version"] == b"%d" % SCHEMA_VERSION
    loaded = archive.load(set_id).intervals
    assert list(loaded["replicate"]) == [r for r, _ in recorded]
    assert frame_intervals(loaded) == [iv for _, iv in recorded]


def test_ids_resolve_newest_first_by_prefix_and_latest(archive: Archive):
    for stamp in ("20260101T000000Z-h-w-aaaa", "20260102T000000Z-h-w-bbbb"):
        write(archive, stamp)
    assert archive.ids() == ["20260102T000000Z-h-w-bbbb", "20260101T000000Z-h-w-aaaa"]
    assert archive.resolve("latest") == "20260102T000000Z-h-w-bbbb"
    assert archive.resolve("20260101") == "20260101T000000Z-h-w-aaaa"
    with pytest.raises(UserError, match="matches 2"):
        archive.resolve("2026")
    with pytest.raises(UserError, match="no result set"):
        archive.resolve("nope")


def test_a_set_without_manifest_is_listed_but_never_loads(archive: Archive):
    write(archive, "20260101T000000Z-h-w-aaaa")
    archive.fs.makedirs(archive._path("20260103T000000Z-h-w-dead"), exist_ok=True)
    archive.fs.pipe_file(archive._path("20260103T000000Z-h-w-dead", "intervals-x.parquet"), b"x")
    listing = archive.listings()
    assert [(e.id, e.manifest is None) for e in listing] == [
        ("20260103T000000Z-h-w-dead", True),
        ("20260101T000000Z-h-w-aaaa", False),
    ]
    assert "no manifest" in listing[0].problem
    assert archive.resolve("latest") == "20260101T000000Z-h-w-aaaa"
    with pytest.raises(UserError, match="no manifest"):
        archive.load("20260103T000000Z-h-w-dead")


def test_newer_schema_is_refused_and_corrupt_files_are_named(archive: Archive):
    set_id = write(archive, "20260101T000000Z-h-w-aaaa")
    path = archive._path(set_id, MANIFEST)
    manifest = json.loads(archive.fs.cat_file(path))
    archive.fs.pipe_file(path, json.dumps({**manifest, "schema_version": 99}).encode())
    with pytest.raises(UserError, match="newer than this gapbench"):
        archive.load(set_id)
    archive.fs.pipe_file(path, json.dumps({**manifest, "schema_version": 0}).encode())
    with pytest.raises(UserError, match="unknown schema_version 0"):
        archive.load(set_id)
    archive.fs.pipe_file(path, b"{not json")
    with pytest.raises(UserError, match="corrupt"):
        archive.load(set_id)
    assert "corrupt" in archive.listings()[0].problem  # listed, not fatal to the listing
    without_tables = {k: v for k, v in manifest.items() if k != "tables"}
    archive.fs.pipe_file(path, json.dumps(without_tables).encode())
    with pytest.raises(UserError, match="corrupt: missing 'tables'"):
        archive.load(set_id)
    archive.fs.pipe_file(path, json.dumps(manifest).encode())
    archive.fs.pipe_file(archive._path(set_id, manifest["tables"]["requests"]), b"garbage")
    with pytest.raises(UserError, match=r"requests-.*is damaged"):  # its checksum says so
        archive.load(set_id)
    # From version 7 a file without its checksum was tampered with ...
    archive.fs.pipe_file(path, json.dumps({**manifest, "checksums": {}}).encode())
    with pytest.raises(UserError, match=r"intervals-.*damaged: the manifest keeps no checksum"):
        archive.load(set_id)
    # ... while a version 6 set may be from before they were kept: the file itself is unreadable.
    older = {**manifest, "checksums": {}, "schema_version": 6}
    archive.fs.pipe_file(path, json.dumps(older).encode())
    with pytest.raises(UserError, match=r"requests-.*unreadable"):
        archive.load(set_id)


def test_a_manifest_that_breaks_the_reader_is_its_own_set_s_problem(tmp_path):
    archive = Archive(tmp_path)
    nested, folder, huge, whole = (write(archive, f"2026010{i}T000000Z-h-w-aaaa") for i in range(4))
    (tmp_path / nested / MANIFEST).write_text("[" * 100_000 + "]" * 100_000)  # past the stack
    (tmp_path / folder / MANIFEST).unlink()
    (tmp_path / folder / MANIFEST).mkdir()
    body = json.loads((tmp_path / huge / MANIFEST).read_text())
    body["config"]["execution"]["threads"] = 10**400  # overflows any float
    (tmp_path / huge / MANIFEST).write_text(json.dumps(body))
    problems = {e.id: e.problem for e in archive.listings()}  # the others still listed
    assert problems == {
        whole: "",
        nested: "manifest.json is corrupt",
        folder: "manifest.json is unreadable: Is a directory",
        huge: "manifest.json is corrupt: config.execution.threads: an integer beyond 64 bits",
    }
    for set_id in (nested, folder, huge):
        assert archive.verify(set_id) and "\n" not in archive.verify(set_id)
    archive.remove(folder)  # removable, its manifest a folder or not
    assert folder not in archive.ids()


def test_sets_are_immutable(archive: Archive):
    write(archive, "20260101T000000Z-h-w-aaaa")
    with pytest.raises(UserError, match="already exists"):
        write(archive, "20260101T000000Z-h-w-aaaa")


def test_a_failed_workload_is_recorded_listed_and_removed(archive: Archive):
    kept = write(archive, "20260101T000000Z-h-w-aaaa")
    reason = "workload 'w': its process crashed: killed by SIGSEGV"
    failed = FailedRun("20260102T000000Z-h-w-bbbb", "2026-01-02T00:00:00+00:00", "0", "w", reason)
    archive.record_failure(failed)
    listing = archive.listings()
    assert [(e.id, e.failed) for e in listing] == [(failed.id, failed), (kept, None)]
    assert archive.resolve("latest") == kept  # never the latest set: it is none
    with pytest.raises(UserError, match="failed before any replicate finished: workload 'w'"):
        archive.load(failed.id)
    assert archive.verify(failed.id) == ""  # intact
    with pytest.raises(UserError, match="already exists"):
        archive.record_failure(failed)
    archive.remove(failed.id)
    archive.remove(kept)
    assert archive.ids() == []


@pytest.mark.slow
def test_a_run_archives_to_an_object_store_and_every_verb_reads_it(s3_url, capsys):
    fast = ["--quick", "--min-requests", "8", "--min-duration", "0", "--warmup", "1"]
    assert main(["run", "calibration", *fast, "--no-progress", "--results", s3_url]) == 0
    (set_id,) = Archive(s3_url).ids()
    for verb in (
        ["results"],
        ["show", "latest"],
        ["verify"],
        ["project", set_id[:20], "--speedup", "host-cpu.compute=2"],
        ["compare", set_id, set_id, "--speedup", "host-cpu.compute=2"],
    ):
        status = main([*verb, "--results", s3_url])
        out, err = capsys.readouterr()
        assert status == (2 if verb[0] == "compare" else 0), (verb, err)
        assert set_id[:20] in out + err
    assert len(Archive(s3_url).projections(set_id)) == 1  # kept beside it, in the bucket
    assert main(["rm", set_id, "--yes", "--results", s3_url]) == 0
    assert Archive(s3_url).ids() == []


def test_a_bucket_is_never_made_by_a_typo(s3_url, capsys):
    misspelt = s3_url.replace("gapbench-", "gapbnech-", 1)
    status = main(["run", "calibration", "--quick", "--results", misspelt])
    _, err = capsys.readouterr()
    assert status == 2 and "does not exist" in err and err.count("\n") == 1, err
    import s3fs

    assert not s3fs.S3FileSystem().exists(misspelt.removeprefix("s3://").split("/")[0])


def test_a_store_that_fails_in_its_own_terms_is_one_line(monkeypatch, capsys):
    import s3fs

    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance to ask for them
    s3fs.S3FileSystem.clear_instance_cache()
    for verb in (["results"], ["show", "latest"], ["run", "calibration", "--quick"]):
        status = main([*verb, "--results", "s3://gapbench-nocredentials/archive"])
        _, err = capsys.readouterr()
        assert status == 2 and err.count("\n") == 1, err
        assert "NoCredentialsError" in err and "gapbench-nocredentials" in err
    status = main(["results", "--results", "ftp://127.0.0.1:9/archive"])  # nothing listens
    _, err = capsys.readouterr()
    assert status == 2 and err.count("\n") == 1 and "cannot open the archive" in err


def test_a_set_its_archive_refuses_as_it_is_written_is_kept_locally(tmp_path, monkeypatch, capsys):
    import errno

    written = Archive.write

    def disk_full(self, *args, **kwargs):
        if self.location == "memory://full":
            raise OSError(errno.ENOSPC, "No space left on device")
        return written(self, *args, **kwargs)

    monkeypatch.setattr(Archive, "write", disk_full)
    monkeypatch.chdir(tmp_path)
    fast = ["--quick", "--min-requests", "8", "--min-duration", "0", "--warmup", "1"]
    status = main(["run", "calibration", *fast, "--no-progress", "--results", "memory://full"])
    _, err = capsys.readouterr()
    assert status == 2 and err.count("\n") == 1, err
    assert "No space left on device" in err and "gapbench-unsaved" in err
    kept = Archive(tmp_path / "gapbench-unsaved").load("latest")  # whole, with its checksums
    assert kept.complete and len(kept.requests) >= 8 and kept.id in err


def test_new_ids_sort_by_time_and_name_the_host():
    early = new_id("rag", datetime(2026, 1, 1, tzinfo=timezone.utc))
    late = new_id("rag", datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert early < late and early.startswith("20260101T000000Z-") and "-rag-" in early


def test_default_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GAPBENCH_RESULTS", str(tmp_path / "elsewhere"))
    assert Archive().location == str(tmp_path / "elsewhere")
    monkeypatch.delenv("GAPBENCH_RESULTS")
    assert Archive().location == "results"


def test_tables_carry_the_schema_version(tmp_path):
    import pyarrow.parquet as pq

    archive = Archive(tmp_path)
    set_id = write(archive, "20260101T000000Z-h-w-aaaa")
    manifest = archive.load(set_id).manifest
    table = pq.read_table(tmp_path / set_id / manifest.tables["intervals"])
    assert table.schema.metadata[b"gapbench_schema_version"] == str(SCHEMA_VERSION).encode()


def test_a_set_loads_from_its_own_folder_and_bad_archives_are_named(tmp_path):
    set_id = write(Archive(tmp_path / "a"), "20260101T000000Z-h-w-aaaa")
    assert load(str(tmp_path / "a" / set_id)).id == set_id
    assert load(set_id, tmp_path / "a").id == set_id
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        Archive(tmp_path / "file").listings()
    with pytest.raises(UserError, match="cannot open the archive"):
        Archive("nosuchproto://x")


def test_a_version_1_set_migrates_on_load(tmp_path):
    archive = Archive(tmp_path)
    set_id = write(archive, "20260101T000000Z-h-w-aaaa")
    path = tmp_path / set_id / MANIFEST
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "schema_version": 1}))
    loaded = archive.load(set_id)
    assert loaded.manifest.schema_version == SCHEMA_VERSION
    assert loaded.manifest.migrated_from == 1
    assert list(loaded.intervals["cpu_ns"]) == [-1, -1]
