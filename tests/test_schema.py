"""The stored schema: sets written by an earlier gapbench load and show, every key is checked on
read, each version step migrates what it changed, and newer files are refused."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from conftest import (
    CALIBRATION_SET,
    EARLY_V6_SET,
    FIRST_V2_SET,
    FIRST_V7_SET,
    FIRST_V8_SET,
    FIRST_V9_SET,
    LAST_V1_SET,
    LAST_V4_SET,
    LAST_V5_SET,
    LAST_V6_SET,
    ORT_SET,
    RAG_SET,
    SETS,
)

from harness.analysis.summary import summarize
from harness.archive import history, migrations
from harness.archive.codec import DecodeError, from_dict, to_dict
from harness.archive.history import HISTORY, SCHEMA_VERSION
from harness.archive.names import load
from harness.archive.result_set import ResultSet
from harness.archive.schema import Manifest, ReplicateFacts
from harness.archive.store import MANIFEST, Archive
from harness.cli import main
from harness.errors import UserError
from harness.machine import fingerprint
from harness.projection.answer import answer
from harness.projection.compare import compare

OLD_SETS = (RAG_SET, ORT_SET, CALIBRATION_SET, FIRST_V2_SET, LAST_V1_SET, LAST_V4_SET, LAST_V5_SET)
# Every set kept, each written by the real code of its version (its commit is in its manifest).
WRITTEN_SETS = (
    *OLD_SETS,
    EARLY_V6_SET,
    LAST_V6_SET,
    FIRST_V7_SET,
    FIRST_V8_SET,
    FIRST_V9_SET,
)
# Versions no commit ever wrote: version 3 was a step of one migration chain (2 -> 4).
NEVER_WRITTEN = {3}


def test_every_version_has_its_history_and_its_migration():
    assert sorted(HISTORY) == list(range(1, SCHEMA_VERSION + 1))
    assert sorted(migrations.MIGRATIONS) == list(range(1, SCHEMA_VERSION))
    assert sorted(migrations.FINGERPRINT_MIGRATIONS) == list(range(1, fingerprint.SCHEMA_VERSION))
    assert sorted(fingerprint.HISTORY) == list(range(1, fingerprint.SCHEMA_VERSION + 1))
    assert sorted(history.PROJECTION_HISTORY) == list(range(1, history.PROJECTION_VERSION + 1))


def test_every_version_ever_written_has_a_set_written_by_its_own_code():
    written = {json.loads((f / MANIFEST).read_text())["schema_version"] for f in WRITTEN_SETS}
    assert written == set(range(1, SCHEMA_VERSION + 1)) - NEVER_WRITTEN
    for folder in WRITTEN_SETS:
        git = json.loads((folder / MANIFEST).read_text()).get("git")
        commit = git["commit"][:7]
        assert not git["dirty"] and commit in (SETS / "README.md").read_text(), folder.name


@pytest.mark.parametrize("folder", WRITTEN_SETS, ids=lambda p: p.name)
def test_sets_written_by_earlier_versions_load_and_show(folder: Path, capsys):
    written = json.loads((folder / MANIFEST).read_text())
    old = written["schema_version"] < SCHEMA_VERSION
    result = load(str(folder))
    assert result.manifest.migrated_from == (written["schema_version"] if old else None)
    assert result.manifest.fingerprint.usable_cores == 2.0  # read back from its checks
    summary = summarize(result)
    assert not set(summary.verdict.problems) - set(summary.verdict.busy), summary.verdict
    # A verdict frozen in by versions 1 and 2 is gone; computed again now, it still finds
    # nothing broken.
    assert "invariants" not in to_dict(result.manifest)
    assert summary.invariants.violation_count == 0
    if "invariants" in written:
        assert written["invariants"]["violation_count"] == 0
        assert summary.invariants.requests_checked == written["invariants"]["requests_checked"]
    assert len(result.requests) == sum(r["requests_measured"] for r in written["replicates"])
    assert "faster" in answer(result).sentence
    assert main(["show", str(folder)]) == 0
    assert result.id in capsys.readouterr().out


def test_a_workload_s_setup_facts_move_apart_from_gapbench_s_own():
    facts = load(str(ORT_SET)).manifest.replicates[0]
    assert set(facts.setup_facts) == {"onnx_export", "agreement_check_s"}
    assert facts.agreement is not None and facts.agreement.backend == "onnxruntime"
    torch_facts = load(str(RAG_SET)).manifest.replicates[1]
    assert torch_facts.setup_facts == {} and torch_facts.agreement is None  # was {}
    assert summarize(load(str(ORT_SET))).facts.export_s == pytest.approx(13.94, abs=0.01)


@pytest.mark.parametrize("folder", WRITTEN_SETS, ids=lambda p: p.name)
def test_the_work_digest_is_computed_as_it_always_was(folder: Path):
    # Recomputed from the stored fields, the digest is what the old code wrote: a set of the
    # same work run today compares with the old one.
    assert load(str(folder)).manifest.work.digest_holds


def test_a_projection_kept_by_an_earlier_gapbench_reads_back():
    (kept,) = Archive(SETS).projections(RAG_SET.name)
    assert kept.claim_name == "host-cpu.compute=1.5" and kept.set_id == RAG_SET.name
    assert kept.speedup["replay"]["p50"] == pytest.approx(1.493, abs=0.001)
    result, again = load(str(RAG_SET)), load(str(RAG_SET))
    other = ResultSet.of(replace(again.manifest, id="again"), again.intervals, again.requests)
    done = compare(summarize(result), summarize(other), kept=(kept,))
    assert done.kept[0].error("replay") == pytest.approx(0.493, abs=0.001)


def _broken(tmp_path: Path, change) -> str:
    """A copy of the fixture rag set whose manifest ``change`` edits in place."""
    folder = tmp_path / RAG_SET.name
    shutil.copytree(RAG_SET, folder)
    body = json.loads((folder / MANIFEST).read_text())
    change(body)
    (folder / MANIFEST).write_text(json.dumps(body))
    return str(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["config"].pop("work"), "manifest.json is corrupt: config: missing 'work'"),
        (
            lambda m: m["config"]["work"]["request_stream"].pop("arrival"),
            "config.work.request_stream: missing 'arrival'",
        ),
        (
            lambda m: m["replicates"][0].update(threads="two"),
            "replicates[0].threads: expected an integer, not a string",
        ),
        (lambda m: m["stages"][0].update(layer="cloud"), "stages[0]: stage 'parse': unknown layer"),
        (lambda m: m["fingerprint"].update(schema_version=9), "newer than this gapbench"),
        (
            lambda m: m["tables"].update(intervals=m["tables"]["requests"]),
            "table intervals lacks span, parent",
        ),
        (lambda m: m["replicates"][1].update(replicate=5), "no facts of replicate 1"),
        (
            lambda m: m["stages"][1].update(after=["nowhere"]),
            "stages: stage 'embed' comes after unknown stage 'nowhere'",
        ),
        (lambda m: m.update(stages=m["stages"][:1]), "intervals of a stage it does not have"),
        (lambda m: m.update(id="20260101T000000Z-x-rag-0"), "holds result set 20260101T000000Z"),
        (lambda m: m.update(schema_version=99), "newer than this gapbench understands"),
        (lambda m: m.pop("schema_version"), "has no integer schema_version"),
        (
            lambda m: m["fingerprint"].update(schema_version=2, usable_cores=float("nan")),
            "fingerprint.usable_cores: nan is not a positive count",
        ),
        (
            lambda m: m["fingerprint"].update(schema_version=2, usable_cores=-2),
            "fingerprint.usable_cores: -2",
        ),
        (
            lambda m: m["config"]["execution"].update(threads=0),
            "config.execution.threads: 0 is not a positive count",
        ),
    ],
)
def test_a_broken_manifest_is_one_line_and_exit_2(tmp_path, capsys, change, message):
    folder = _broken(tmp_path, change)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load(folder)
    assert main(["show", folder]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("gapbench: error: ") and message in err
    assert "Traceback" not in out + err


def test_a_broken_manifest_is_listed_with_its_problem(tmp_path):
    folder = Path(_broken(tmp_path, lambda m: m["config"]["work"].pop("seed")))
    (listing,) = Archive(folder.parent).listings()
    assert listing.manifest is None and "config.work: missing 'seed'" in listing.problem


def test_a_manifest_written_now_reads_back_equal(tmp_path):
    manifest = load(str(RAG_SET)).manifest
    assert from_dict(Manifest, json.loads(json.dumps(to_dict(manifest)))) == manifest


@dataclass(frozen=True)
class _Inner:
    name: str
    sizes: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Outer:
    inner: _Inner
    share: float
    maybe: str | None = None


def test_the_codec_checks_types_and_names_the_key():
    assert from_dict(_Outer, {"inner": {"name": "a", "sizes": [1, 2]}, "share": 1}) == _Outer(
        _Inner("a", (1, 2)), 1.0
    )
    for body, problem in [
        ({"share": 1.0}, "missing 'inner'"),
        ({"inner": {"name": 3}, "share": 1.0}, "inner.name: expected a string, not an integer"),
        ({"inner": {"name": "a", "sizes": [1, True]}, "share": 1}, "inner.sizes[1]"),
        ({"inner": {"name": "a"}, "share": "x"}, "share: expected a number, not a string"),
        ({"inner": [], "share": 1}, "inner: expected an object, not a list"),
        (
            {"inner": {"name": "a"}, "share": 1, "maybe": 2},
            "maybe: expected a string, not an integer",
        ),
    ]:
        with pytest.raises(DecodeError, match=problem.replace("[", r"\[").replace("]", r"\]")):
            from_dict(_Outer, body)


def test_replicate_facts_from_a_worker_round_trip():
    facts = load(str(ORT_SET)).manifest.replicates[0]
    assert from_dict(ReplicateFacts, json.loads(json.dumps(to_dict(facts)))) == facts


def test_kept_projections_newer_than_this_gapbench_are_refused(tmp_path):
    archive = Archive(tmp_path)
    shutil.copytree(RAG_SET, tmp_path / RAG_SET.name)
    (path,) = (tmp_path / RAG_SET.name / "projections").iterdir()
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": 7}))
    with pytest.raises(UserError, match=r"projection .* newer than this gapbench"):
        archive.projections(RAG_SET.name)
    with pytest.raises(UserError, match="would not read back: missing 'made_utc'"):
        archive.add_projection(RAG_SET.name, {"schema_version": 1})


def test_the_fixture_folder_holds_only_old_sets():
    kept = sorted(p.name for p in WRITTEN_SETS)
    assert sorted(p.name for p in SETS.iterdir() if p.is_dir()) == kept


def test_a_set_is_split_once_per_load_however_many_readers_ask(monkeypatch):
    import harness.analysis.columns as columns
    from harness.projection.claims import from_arguments
    from harness.projection.project import project

    calls = []
    original = columns.split_frame

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(columns, "split_frame", counted)
    base, again = load(str(RAG_SET)), load(str(RAG_SET))
    candidate = ResultSet.of(replace(again.manifest, id="again"), again.intervals, again.requests)
    made = (project(base, from_arguments(["compute=2"])),)
    done = compare(summarize(base), summarize(candidate), made)
    assert columns.split_table(base).requests["replicate"].tolist()[:1] == [0]
    assert len(calls) == 2  # each set split once
    assert done.end_to_end.ratio == pytest.approx(1.0)  # the same set, twice


def test_a_profile_from_the_middle_of_version_2_reads_back(tmp_path):
    # Before a backend could bring its own profiler, a profile named no tool; before the check
    # judged model stages only, its checks named no layer.
    check = {
        "stage": "generate",
        "label": "decode",
        "calls": 4,
        "gapbench_ms": 40.0,
        "profiler_scope_ms": 40.5,
        "profiler_operator_ms": 39.8,
    }
    folder = _broken(tmp_path, lambda m: m.update(profile={"requests": 4, "checks": [check]}))
    profile = load(folder).manifest.profile
    assert profile is not None and profile.tool == "torch.profiler"
    assert profile.checks[0].layer == "inference" and profile.checks[0].judged and profile.agrees


def test_an_archive_that_cannot_be_written_is_refused_before_measuring(tmp_path):
    if not Path("/proc/1").is_dir():
        pytest.skip("needs /proc")
    with pytest.raises(UserError, match="cannot write the archive '/proc/1'"):
        Archive("/proc/1").ensure()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is not a folder"):
        Archive(tmp_path / "file").ensure()
    assert Archive(tmp_path / "new").ensure().ids() == []


def test_a_set_from_before_checksums_loads_and_verify_says_it_has_none(tmp_path, capsys):
    for folder in (EARLY_V6_SET, LAST_V6_SET):
        shutil.copytree(folder, tmp_path / folder.name)
    status = main(["verify", "--results", str(tmp_path), "--json"])
    assert status == 0
    said = {entry["id"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert said[EARLY_V6_SET.name]["ok"] and not said[EARLY_V6_SET.name]["checksums"]
    assert said[LAST_V6_SET.name]["ok"] and said[LAST_V6_SET.name]["checksums"]


def test_work_edited_since_it_was_written_is_refused_before_it_compares(tmp_path):
    folder = tmp_path / FIRST_V7_SET.name
    shutil.copytree(FIRST_V7_SET, folder)
    body = json.loads((folder / MANIFEST).read_text())
    body["config"]["work"]["seed"] += 1  # two sets of different work made to look alike
    (folder / MANIFEST).write_text(json.dumps(body))
    with pytest.raises(UserError, match=r"config\.work does not match its work_sha256"):
        load(str(folder))
