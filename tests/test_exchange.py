"""Sharing result sets: `gapbench export [--anonymize]` and `gapbench import`."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import uuid
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FIRST_V9_SET, RAG_SET, SETS

from harness.archive.codec import from_dict
from harness.archive.exchange import FORMAT_VERSION, INDEX
from harness.archive.schema import FailedRun, Work
from harness.archive.store import Archive
from harness.cli import main

FIXTURES = sorted(p for p in SETS.iterdir() if (p / "manifest.json").is_file())
VM = re.compile(r"(?<![A-Za-z0-9-])vm(?![A-Za-z0-9-])")  # the host `hostname` printed
PERSONAL = (b"/tmp/", b"/root", b"/home", b"alice")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def archive_of(folder: Path, *sets: Path) -> Path:
    """A fresh archive holding copies of ``sets`` (fixtures are never written to)."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in sets:
        shutil.copytree(source, folder / source.name)
    return folder


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def sha256(body: bytes) -> str:
    return f"sha256:{hashlib.sha256(body).hexdigest()}"


def personal_set(
    results: Path, set_id: str = "20261208T010203Z-vm-batch-inference-0badcafe"
) -> str:
    """A copy of the profiled fixture set under a new id from the same host, given what a
    person's machine puts in one: paths, a user, personal variables, a request's error."""
    folder = results / set_id
    shutil.copytree(FIRST_V9_SET, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["id"] = set_id
    manifest["stopped_by"] = "OSError: cannot open /home/alice/corpus/part-1.txt"
    manifest["config"]["execution"]["thread_variables"] = {
        "LD_PRELOAD": "/home/alice/lib/libjemalloc.so.2"
    }
    manifest["fingerprint"]["environment"].append(
        {"name": "cpu_quota", "value": "no limit", "status": "ok", "detail": "/root/cgroup"}
    )
    facts = manifest["replicates"][0]
    facts["setup_facts"] = {"HOME": "/root", "USER": "alice", "note": "run by alice on vm"}
    facts["teardown_error"] = "PermissionError: '/tmp/gapbench-x/lock' (HOME=/home/alice)"
    work = manifest["config"]["work"]
    work["workload_config"]["corpus"] = "~alice/corpus.txt"
    work["work_sha256"] = from_dict(Work, work).fields_digest()  # as the writer seals it
    requests = folder / manifest["tables"]["requests"]
    table = pq.read_table(requests)
    errors = table.column("error").to_pylist()
    errors[0] = "FileNotFoundError: [Errno 2] No such file: '/home/alice/prompts.txt'"
    at = table.schema.get_field_index("error")
    table = table.set_column(
        at, table.schema.field(at), pa.array(errors, table.schema.field(at).type)
    )
    pq.write_table(table, requests)
    manifest["checksums"][requests.name] = sha256(requests.read_bytes())
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return set_id


def test_a_round_trip_keeps_every_set_byte_for_byte_and_each_loads_and_verifies(tmp_path, capsys):
    source = archive_of(tmp_path / "a", *FIXTURES)
    shared, target = tmp_path / "sets.zip", tmp_path / "b"
    ids = [p.name for p in FIXTURES]
    status, out, err = run_cli(capsys, "export", *ids, "-o", shared, "--results", source, "--json")
    assert status == 0, err
    assert [s["exported_as"] for s in json.loads(out)["sets"]] == ids
    status, out, err = run_cli(capsys, "import", shared, "--results", target, "--json")
    assert status == 0, err
    assert sorted(json.loads(out)["imported"]) == ids
    for folder in FIXTURES:  # the files a set is made of, nothing else (no leftovers)
        assert files_of(target / folder.name) == files_of(folder)
    status, out, err = run_cli(capsys, "verify", "--results", target, "--json")
    assert status == 0 and all(r["ok"] for r in json.loads(out)), err
    for set_id in ids:
        status, _, err = run_cli(capsys, "show", set_id, "--results", target)
        assert status == 0, err
    # Again: each set is there, identical, and left as it was.
    before = files_of(target)
    status, out, err = run_cli(capsys, "import", shared, "--results", target, "--json")
    assert status == 0, err
    assert json.loads(out)["imported"] == [] and sorted(json.loads(out)["identical"]) == ids
    assert files_of(target) == before


def test_a_projection_kept_since_is_added_beside_an_identical_set(tmp_path, capsys):
    source = archive_of(tmp_path / "a", RAG_SET)
    target = archive_of(tmp_path / "b", RAG_SET)
    kept = next((target / RAG_SET.name / "projections").iterdir())
    kept.unlink()
    status, _, err = run_cli(
        capsys, "export", "latest", "-o", tmp_path / "x.zip", "--results", source
    )
    assert status == 0, err
    status, out, err = run_cli(capsys, "import", tmp_path / "x.zip", "--results", target, "--json")
    assert status == 0, err
    assert json.loads(out)["projections_added"] == 1
    assert files_of(target) == files_of(source)


def members(shared: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(shared) as bundle:
        return {name: bundle.read(name) for name in bundle.namelist()}


def strings_of_parquet(body: bytes) -> list[str]:
    table = pq.read_table(pa.BufferReader(body))
    found: list[str] = []
    for column in table.columns:
        found += [str(v) for v in column.to_pylist() if v is not None]
    return found


def test_an_anonymized_export_names_no_host_user_path_or_personal_value(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("LOGNAME", "alice")  # the login of the one who exports
    source = archive_of(tmp_path / "a", *FIXTURES)
    mine = personal_set(source)
    failed = FailedRun(
        "20261208T020000Z-vm-rag-0dead000",
        "2026-12-08T02:00:00+00:00",
        "0.1.0",
        "rag",
        "the worker crashed in /home/alice/.venv/lib/python3.11/site-packages/torch/x.py",
    )
    Archive(source).record_failure(failed)
    assert b"/home/alice" in (source / mine / "manifest.json").read_bytes()  # there to find
    ids = [*(p.name for p in FIXTURES), mine, failed.id]
    shared = tmp_path / "shared.zip"
    argv = ("export", *ids, "--anonymize", "-o", shared, "--results", source, "--json")
    status, out, err = run_cli(capsys, *argv)
    assert status == 0, err
    renamed = {s["id"]: s["exported_as"] for s in json.loads(out)["sets"]}
    vm = label_of(next(iter(renamed.values())))
    assert all(new == old.replace("-vm-", f"-{vm}-") for old, new in renamed.items())
    found = members(shared)
    for name, body in found.items():
        assert "-vm-" not in name
        assert not [p for p in PERSONAL if p in body], name
        text = body.decode(errors="replace") if not name.endswith(".parquet") else ""
        values = strings_of_parquet(body) if name.endswith(".parquet") else [text]
        assert not [v for v in values if VM.search(v) or "alice" in v], name
    index = json.loads(found[INDEX])
    assert index["anonymized"] is True and sorted(index["sets"]) == sorted(renamed.values())
    new = renamed[mine]
    manifest = json.loads(found[f"sets/{new}/manifest.json"])
    original = json.loads((source / mine / "manifest.json").read_text())
    assert manifest["id"] == new
    assert manifest["fingerprint"]["host"] == original["fingerprint"]["host"]  # facts stay
    assert manifest["fingerprint"]["software"] == original["fingerprint"]["software"]
    assert manifest["config"]["execution"]["thread_variables"] == {
        "LD_PRELOAD": "<path>/libjemalloc.so.2"  # which allocator ran is a fact; where, not
    }
    setup = manifest["replicates"][0]["setup_facts"]
    assert setup == {"HOME": "<removed>", "USER": "<removed>", "note": f"run by user on {vm}"}
    assert manifest["config"]["work"]["work_sha256"] != original["config"]["work"]["work_sha256"]
    requests = manifest["tables"]["requests"]
    shared_requests = pq.read_table(pa.BufferReader(found[f"sets/{new}/{requests}"]))
    own_requests = pq.read_table(source / mine / requests)
    assert shared_requests.schema == own_requests.schema  # the table as it was, but its error
    assert shared_requests.drop(["error"]).equals(own_requests.drop(["error"]))
    error = shared_requests.column("error")[0].as_py()
    assert error == "FileNotFoundError: [Errno 2] No such file: '<path>/prompts.txt'"
    assert manifest["checksums"][requests] == sha256(found[f"sets/{new}/{requests}"])
    profile = json.loads(found[f"sets/{new}/{manifest['attachments']['profile.json']}"])
    assert profile["host_name"] == vm and profile["traceName"] == "<path>/trace.json"
    projection = next(n for n in found if "/projections/" in n)
    assert json.loads(found[projection])["set_id"] == renamed[RAG_SET.name]
    # What was shared reads back whole: checksums recomputed, the work's digest resealed.
    target = tmp_path / "b"
    status, _, err = run_cli(capsys, "import", shared, "--results", target)
    assert status == 0, err
    status, out, err = run_cli(capsys, "verify", "--results", target, "--json")
    assert status == 0 and len(json.loads(out)) == len(ids), err
    for set_id in (new, renamed[RAG_SET.name], renamed[FIRST_V9_SET.name]):
        status, _, err = run_cli(capsys, "show", set_id, "--results", target)
        assert status == 0, err
    assert Archive(target).failure(renamed[failed.id]).reason.endswith("<path>/x.py")


def test_every_host_gets_one_name_the_same_in_every_set(tmp_path, capsys):
    source = archive_of(tmp_path / "a", RAG_SET, FIRST_V9_SET)
    other = "20261203T000000Z-lab-7-rag-12345678"  # the same set, as made on host lab-7
    shutil.copytree(RAG_SET, source / other)
    manifest = json.loads((source / other / "manifest.json").read_text())
    (source / other / "manifest.json").write_text(json.dumps({**manifest, "id": other}))
    shared = tmp_path / "x.zip"
    argv = ("export", RAG_SET.name, other, FIRST_V9_SET.name, "--anonymize", "-o", shared)
    status, out, err = run_cli(capsys, *argv, "--results", source, "--json")
    assert status == 0, err
    exported = [s["exported_as"] for s in json.loads(out)["sets"]]
    vm, lab = label_of(exported[0]), label_of(exported[1])
    assert vm != lab and label_of(exported[2]) == vm
    assert exported == [
        RAG_SET.name.replace("-vm-", f"-{vm}-"),
        other.replace("-lab-7-", f"-{lab}-"),
        FIRST_V9_SET.name.replace("-vm-", f"-{vm}-"),
    ]
    names = {n.split("/")[1] for n in members(shared) if n != INDEX}
    assert names == set(exported)
    # Another export from the same archive labels each host alike; another archive does not.
    again = tmp_path / "again.zip"
    status, out, err = run_cli(
        capsys, "export", other, "--anonymize", "-o", again, "--results", source, "--json"
    )
    assert status == 0 and label_of(json.loads(out)["sets"][0]["exported_as"]) == lab, err
    elsewhere = archive_of(tmp_path / "c", RAG_SET)
    status, out, err = run_cli(
        capsys, "export", RAG_SET.name, "--anonymize", "-o", tmp_path / "c.zip",
        "--results", elsewhere, "--json",
    )  # fmt: skip
    assert status == 0 and label_of(json.loads(out)["sets"][0]["exported_as"]) != vm, err
    assert not [p for p in Archive(source).ids() if "anonymize" in p]  # the key is no set


def label_of(set_id: str) -> str:
    """The anonymized host an exported id names: ``host-`` and eight hex digits."""
    found = re.fullmatch(r"\d{8}T\d{6}Z-(host-[0-9a-f]{8})-.+", set_id)
    assert found is not None, set_id
    return found.group(1)


def data_offset(shared: Path, name: str) -> tuple[int, int]:
    """Where member ``name``'s stored bytes begin in the file, and how many there are."""
    with zipfile.ZipFile(shared) as bundle:
        info = bundle.getinfo(name)
    body = shared.read_bytes()
    lengths = struct.unpack("<HH", body[info.header_offset + 26 : info.header_offset + 30])
    return info.header_offset + 30 + sum(lengths), info.compress_size


@pytest.fixture
def shared(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    source = archive_of(tmp_path / "a", RAG_SET, FIRST_V9_SET)
    path = tmp_path / "shared.zip"
    status, _, err = run_cli(
        capsys, "export", RAG_SET.name, "latest", "-o", path, "--results", source
    )
    assert status == 0, err
    return path


def rezipped(shared: Path, change: dict[str, bytes]) -> None:
    """``shared`` written again with some members' bodies replaced (its index's too)."""
    found = {**members(shared), **change}
    with zipfile.ZipFile(shared, "w") as bundle:
        for name, body in found.items():
            bundle.writestr(name, body)


def refused(capsys: pytest.CaptureFixture[str], shared: Path, target: Path, message: str) -> None:
    status, out, err = run_cli(capsys, "import", shared, "--results", target)
    assert status == 2 and message in err and err.count("\n") == 1 and out == "", err
    assert "Traceback" not in err


def test_a_flipped_byte_is_refused_and_nothing_written(shared, tmp_path, capsys):
    name = next(n for n in members(shared) if n.endswith(".parquet"))
    start, size = data_offset(shared, name)
    body = bytearray(shared.read_bytes())
    body[start + size // 2] ^= 0xFF
    shared.write_bytes(bytes(body))
    refused(capsys, shared, tmp_path / "b", "is not a whole gapbench export")
    assert not (tmp_path / "b").exists()


def test_a_member_changed_behind_its_index_is_refused(shared, tmp_path, capsys):
    name = next(n for n in members(shared) if n.endswith("manifest.json"))
    rezipped(shared, {name: members(shared)[name].replace(b'"complete": true', b'"complete": 1')})
    refused(capsys, shared, tmp_path / "b", f"{name} is not what its index recorded")
    assert not (tmp_path / "b").exists()


def test_a_set_whose_own_checksums_fail_is_refused(shared, tmp_path, capsys):
    """Index and member agree, but the table is not what its set's manifest recorded."""
    found = members(shared)
    name = next(n for n in found if "batch-inference" in n and "/requests-" in n)
    body = found[name][:-10]
    index = json.loads(found[INDEX])
    index["members"][name] = sha256(body)
    rezipped(shared, {name: body, INDEX: json.dumps(index).encode()})
    refused(capsys, shared, tmp_path / "b", "is damaged: its checksum is not the one the manifest")
    assert not (tmp_path / "b").exists()


def test_a_truncated_file_is_refused(shared, tmp_path, capsys):
    shared.write_bytes(shared.read_bytes()[: shared.stat().st_size // 2])
    refused(capsys, shared, tmp_path / "b", "is not a whole gapbench export (cut short")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (FORMAT_VERSION + 1, "newer than this gapbench reads"),
        (0, "unknown format_version 0"),
        ("1", "unknown format_version '1'"),
    ],
)
def test_a_newer_or_unknown_format_version_is_refused(shared, tmp_path, capsys, version, message):
    index = json.loads(members(shared)[INDEX])
    rezipped(shared, {INDEX: json.dumps({**index, "format_version": version}).encode()})
    refused(capsys, shared, tmp_path / "b", message)
    assert not (tmp_path / "b").exists()


def test_a_set_archived_already_but_different_is_refused_untouched(shared, tmp_path, capsys):
    target = archive_of(tmp_path / "b", RAG_SET)
    manifest = target / RAG_SET.name / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"interrupted": false', '"interrupted":false'))
    before = files_of(target)
    refused(
        capsys, shared, target, f"result set {RAG_SET.name} is in {target} already, and differs"
    )
    assert files_of(target) == before  # nor was the other set of the file written


def test_a_set_folder_cut_short_is_named_with_what_to_do(shared, tmp_path, capsys):
    target = tmp_path / "b"
    (target / RAG_SET.name).mkdir(parents=True)
    refused(capsys, shared, target, "without its manifest (a run or an import cut short)")
    assert [p.name for p in target.iterdir()] == [RAG_SET.name]


def test_a_file_that_is_no_export_is_refused(tmp_path, capsys):
    other = tmp_path / "notes.zip"
    with zipfile.ZipFile(other, "w") as bundle:
        bundle.writestr("readme.txt", "hello")
    refused(capsys, other, tmp_path / "b", "is not a gapbench export: it holds no index.json")
    (tmp_path / "notes.txt").write_text("hello")
    refused(capsys, tmp_path / "notes.txt", tmp_path / "b", "is not a whole gapbench export")
    refused(capsys, tmp_path / "missing.zip", tmp_path / "b", "no file")
    assert not (tmp_path / "b").exists()


def test_export_refuses_writing_inside_the_archive_or_over_a_file(tmp_path, capsys):
    source = archive_of(tmp_path / "a", RAG_SET)
    inside = source / "sets.zip"
    status, _, err = run_cli(capsys, "export", "latest", "-o", inside, "--results", source)
    assert status == 2 and "is inside the archive" in err and not inside.exists()
    existing = tmp_path / "sets.zip"
    existing.write_text("mine")
    status, _, err = run_cli(capsys, "export", "latest", "-o", existing, "--results", source)
    assert status == 2 and "exists" in err and "--force" in err
    assert existing.read_text() == "mine"
    argv = ("export", "latest", "-o", existing, "--force", "--results", source)
    status, _, err = run_cli(capsys, *argv)
    assert status == 0 and zipfile.is_zipfile(existing), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "sets.zip"]  # no draft left


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "nosuchset", "-o", "x.zip"], "no result set 'nosuchset'"),
        (["export", RAG_SET.name], "the following arguments are required: -o/--output"),
        (["export", RAG_SET.name, "-o", "nofolder/x.zip"], "there is no folder nofolder"),
        (["export", RAG_SET.name, "-o", "."], "is a folder"),
        (["import"], "the following arguments are required: FILE"),
        (["import", "."], "is a folder, not a file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    archive_of(tmp_path / "results", RAG_SET)
    monkeypatch.chdir(tmp_path)
    status, _, err = run_cli(capsys, *argv)
    assert status == 2 and message in err and err.count("\n") == 1, err


def test_every_option_says_what_it_does():
    from harness.cli import build_parser

    verbs = next(a for a in build_parser()._actions if a.dest == "verb")
    for name in ("export", "import"):
        parser = verbs.choices[name]
        assert parser.description
        assert all(a.help for a in parser._actions), name


def test_sets_travel_through_an_archive_without_atomic_rename(tmp_path, capsys):
    """fsspec's in-memory filesystem, like an object store: files written under their names,
    the manifest last."""
    memory = f"memory://gapbench-{uuid.uuid4().hex}"
    source = archive_of(tmp_path / "a", RAG_SET, FIRST_V9_SET)
    first, second = tmp_path / "1.zip", tmp_path / "2.zip"
    assert (
        run_cli(capsys, "export", RAG_SET.name, "latest", "-o", first, "--results", source)[0] == 0
    )
    status, _, err = run_cli(capsys, "import", first, "--results", memory)
    assert status == 0, err
    assert not Archive(memory).verify(RAG_SET.name) and not Archive(memory).verify("latest")
    status, _, err = run_cli(
        capsys, "export", RAG_SET.name, "latest", "-o", second, "--results", memory
    )
    assert status == 0, err
    assert run_cli(capsys, "import", second, "--results", tmp_path / "b")[0] == 0
    assert files_of(tmp_path / "b") == files_of(source)


def _renamed_copy(results: Path, source: Path, set_id: str, **facts: str) -> str:
    """``source`` under ``set_id`` (so from the host it names), with ``facts`` set up as its
    first replicate's setup facts."""
    folder = results / set_id
    shutil.copytree(source, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["id"] = set_id
    manifest["replicates"][0]["setup_facts"] = dict(facts)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return set_id


def test_names_learnt_in_one_set_are_rewritten_in_every_set(tmp_path, capsys, monkeypatch):
    from conftest import FIRST_V8_SET

    monkeypatch.setenv("LOGNAME", "nobody")  # the exporter is not the one who ran them
    source = tmp_path / "a"
    source.mkdir()
    first = _renamed_copy(
        source, RAG_SET, "20261201T215455Z-bob-laptop-rag-00000001", note="owner bob, at 10.2.3.4"
    )
    second = _renamed_copy(
        source,
        RAG_SET,
        "20261201T215456Z-bob-laptop-rag-00000002",
        cache="/home/bob/.cache/gapbench",
        url="http://10.2.3.4:6333/collections and http://127.0.0.1:9/x",
        peer="bob-laptop.corp.example.com answered",
    )
    # A host named as one of the set's settings: the setting stays, the id's host goes.
    server = _renamed_copy(source, FIRST_V8_SET, "20261206T231356Z-server-rag-00000003")
    shared = tmp_path / "shared.zip"
    argv = ("export", first, second, server, "--anonymize", "-o", shared, "--results", source)
    status, _, err = run_cli(capsys, *argv, "--json")
    assert status == 0, err
    found = members(shared)
    text = b" ".join(body for name, body in found.items() if not name.endswith(".parquet"))
    for leak in (b"bob", b"corp.example.com", b"10.2.3.4"):
        assert leak not in text, text[max(0, text.find(leak) - 200) : text.find(leak) + 50]
    assert b"127.0.0.1" in text  # loopback names no one's machine
    manifests = {n: json.loads(b) for n, b in found.items() if n.endswith("/manifest.json")}
    notes = [m["replicates"][0]["setup_facts"] for m in manifests.values()]
    assert {"note": "owner user, at <address>"} in notes
    laptop = label_of(next(m["id"] for m in manifests.values() if m["id"].endswith("0001")))
    assert any(f.get("peer") == f"{laptop} answered" for f in notes)
    (v8,) = [m for m in manifests.values() if m["id"].endswith("00000003")]
    assert label_of(v8["id"]) != laptop
    assert v8["config"]["execution"]["scenario"] == "server"
    status, _, err = run_cli(capsys, "import", shared, "--results", tmp_path / "b")
    assert status == 0, err


def test_a_damaged_set_is_not_exported_anonymized_or_not(tmp_path, capsys):
    source = archive_of(tmp_path / "a", RAG_SET)
    requests = next((source / RAG_SET.name).glob("requests-*.parquet"))
    requests.write_bytes(requests.read_bytes()[:-40])
    for extra in ((), ("--anonymize",)):
        argv = ("export", RAG_SET.name, *extra, "-o", tmp_path / "x.zip", "--results", source)
        status, _, err = run_cli(capsys, *argv)
        assert status == 2 and "nothing exported" in err and err.count("\n") == 1, err
        assert not (tmp_path / "x.zip").exists()


def test_the_archive_s_key_is_made_once_kept_whole_and_never_exported(tmp_path, capsys):
    source = archive_of(tmp_path / "a", RAG_SET)
    shared = tmp_path / "x.zip"
    argv = ("export", RAG_SET.name, "--anonymize", "-o", shared, "--results", source)
    assert run_cli(capsys, *argv)[0] == 0
    key = (source / ".anonymize" / "key").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    body = shared.read_bytes()
    assert key.encode() not in body and bytes.fromhex(key) not in body
    assert not [n for n in members(shared) if "anonymize" in n]
    (source / ".anonymize" / "key").write_text("")  # a cut key would make labels guessable
    status, _, err = run_cli(capsys, *argv, "--force")
    assert status == 2 and "key" in err and "damaged" in err and err.count("\n") == 1


def test_an_address_under_a_host_key_is_an_address_not_a_host(tmp_path):
    from harness.archive.anonymize import Anonymizer

    anonymizer = Anonymizer({RAG_SET.name: "rag"}, b"k" * 32)
    anonymizer.learning = True
    anonymizer.value({"host": "10.0.0.5", "node": "127.0.0.1", "hostname": "box-7.lab.example"})
    anonymizer.learning = False
    said = anonymizer.value(
        {"host": "10.0.0.5", "node": "127.0.0.1", "note": "replicate 10 on box-7"}
    )
    assert said["host"] == "<address>" and said["node"] == "127.0.0.1"
    assert said["note"].startswith("replicate 10 on host-") and "box-7" not in said["note"]
