"""Tables a terminal can hold: essential columns whole at 80 columns, COLUMNS honoured when
piped, every column with --wide; the listing's columns and filters; show's ratio column."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import CALIBRATION_SET, ORT_SET, RAG_SET

from harness.cli import main


@pytest.fixture
def archive(tmp_path):
    for kept in (RAG_SET, ORT_SET, CALIBRATION_SET):
        shutil.copytree(kept, tmp_path / kept.name)
    return str(tmp_path)


def tmp_path_of(archive: str):
    from pathlib import Path

    return Path(archive)


def _out(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_the_stage_table_keeps_its_numbers_whole_at_80_columns(archive, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out = _out(capsys, "show", RAG_SET.name, "--results", archive)
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "left out for width" in out and "--wide shows every column" in " ".join(out.split())
    table = out[out.index("per stage") :]
    assert "70.51" in table  # generate's p50, whole
    assert "compute" in table and "unattrib." in table  # the split stays
    wide = _out(capsys, "show", RAG_SET.name, "--results", archive, "--wide")
    header = next(line for line in wide.splitlines() if "scheduling" in line and "p90" in line)
    assert "coverage" in header and "on-CPU" in header
    assert "left out for width" not in wide


@pytest.mark.parametrize(("columns", "widest"), [("100", 100), ("60", 60), (None, 132)])
def test_piped_output_honours_columns(archive, capsys, monkeypatch, columns, widest):
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    out = _out(capsys, "show", RAG_SET.name, "--results", archive)
    assert max(len(line) for line in out.splitlines()) <= widest
    stages = out[out.index("per stage") : out.index("waits on the critical path")]
    for whole in ("8.89", "70.51", "70.40", "83.4%"):  # embed's and generate's, never cut
        assert whole in stages
    assert "…" not in out


def test_a_table_too_narrow_for_its_essential_columns_says_each_row_as_pairs(
    archive, capsys, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "80")
    out = _out(capsys, "compare", RAG_SET.name, ORT_SET.name, "--results", archive)
    assert "1.493" in out and "…" not in out  # the kept projection's naive figure, whole
    monkeypatch.setenv("COLUMNS", "40")
    out = _out(capsys, "show", RAG_SET.name, "--results", archive)
    stages = out[out.index("per stage") : out.index("waits on the critical path")]
    assert "p50 70.51" in stages and "compute 70.40" in stages


def test_results_lists_date_host_p50_and_verdict_and_filters(archive, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = _out(capsys, "results", "--results", archive)
    header = next(line for line in out.splitlines() if "verdict" in line)
    for name in ("date (UTC)", "host", "workload", "p50 ms", "verdict"):
        assert name in header
    row = next(line for line in out.splitlines() if RAG_SET.name in line)
    assert "2026-12-01 21:54:55" in row and " vm " in row and "85.71" in row and "valid" in row
    out = _out(capsys, "results", "--results", archive, "--workload", "calibration")
    assert CALIBRATION_SET.name in out and RAG_SET.name not in out
    said = json.loads(_out(capsys, "results", "--results", archive, "--host", "vm", "--json"))
    assert {r["id"] for r in said} == {RAG_SET.name, ORT_SET.name, CALIBRATION_SET.name}
    rag = next(r for r in said if r["id"] == RAG_SET.name)
    assert (
        rag["valid"] is True
        and rag["host"] == "vm"
        and rag["p50_ms"] == pytest.approx(85.71, abs=0.01)
    )
    assert "no result sets matching" in _out(capsys, "results", "--results", archive, "--host", "x")
    failed = tmp_path_of(archive) / "20261207T050000Z-vm-rag-deadbeef"
    failed.mkdir()
    record = {"id": failed.name, "created_utc": "2026-12-07T05:00:00+00:00", "reason": "OOM",
              "gapbench_version": "0.1.0", "workload": "rag", "schema_version": 1}  # fmt: skip
    (failed / "failed.json").write_text(json.dumps(record))
    monkeypatch.setenv("COLUMNS", "80")
    out = _out(capsys, "results", "--results", archive)
    row = next(line for line in out.splitlines() if failed.name in line)
    assert "failed: OOM" in row  # the reason stays where a narrow terminal keeps the verdict


def test_show_of_two_sets_of_the_same_work_has_a_ratio_column(archive, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = _out(capsys, "show", RAG_SET.name, ORT_SET.name, "--results", archive)
    assert "[2] x [1]" in out
    end = next(line for line in out.splitlines() if line.startswith("│ end to end"))
    assert "1.349" in end  # 85.71 / 63.52
    out = _out(capsys, "show", RAG_SET.name, CALIBRATION_SET.name, "--results", archive)
    assert "[2] x [1]" not in out and "not comparable" in out
