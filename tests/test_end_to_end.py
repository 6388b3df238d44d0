"""The main job as a user runs it: `gapbench run rag --quick` in a fresh process, then `show`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.analysis.invariants import set_invariants
from harness.archive.store import Archive

pytestmark = pytest.mark.slow


def gapbench(*argv: str, cwd) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "harness", *argv]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_quick_rag_run_is_valid_attributed_and_repeatable(tmp_path):
    # CPU explicitly: on a CUDA machine `auto` would pick the GPU (tests/test_gpu.py covers it).
    args = ["run", "rag", "--quick", "--device", "cpu", "--json"]
    args += ["--min-requests", "24", "--min-duration", "0"]
    first = gapbench(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (summary,) = json.loads(first.stdout)
    verdict = summary["verdict"]
    assert set(verdict["problems"]) <= set(verdict["busy"]), verdict  # a busy machine aside
    assert [s["stage"] for s in summary["stages"]][:5] == [
        "parse",
        "embed",
        "retrieve",
        "generate",
        "assemble",
    ]
    # The model stages are probed almost entirely: compute dominates their wall time.
    for stage in summary["stages"][:5]:
        assert stage["coverage"] > 0.5, stage
    generate = next(s for s in summary["stages"] if s["stage"] == "generate")
    # Compute, and its thread's time off the CPU when the machine is busy (a wait now).
    assert generate["compute_ms"] + generate["scheduling_ms"] > 0.9 * generate["wall_p50_ms"]
    assert summary["probe_coverage"] > 0.9
    assert summary["config"]["execution"]["device"] == "cpu"

    # The default archive is ./results of the working directory.
    archive = Archive(tmp_path / "results")
    loaded = archive.load(summary["id"])
    assert summary["invariants"]["violation_count"] == 0
    assert set_invariants(loaded).requests_checked == summary["requests"]
    assert loaded.manifest.fingerprint.host.host_processor_vcpu_count >= 1
    outputs = [json.loads(o) for o in loaded.requests["outputs"]]
    assert all(len(o["top_k"]) == 3 and len(o["tokens"]) > 0 for o in outputs)

    # Same seed, same work: identical inputs, and the outputs agree request for request.
    second = gapbench(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    again = archive.load(json.loads(second.stdout)[0]["id"])
    work = loaded.manifest.work
    assert again.manifest.work == work
    n = min(len(loaded.requests), len(again.requests))
    assert list(again.requests["outputs"][:n]) == list(loaded.requests["outputs"][:n])

    shown = gapbench("show", str(tmp_path / "results" / summary["id"]), cwd=tmp_path)
    assert shown.returncode == 0 and "host compute is" in shown.stdout
    listed = gapbench("results", "--json", cwd=tmp_path)
    assert {r["id"] for r in json.loads(listed.stdout)} == {summary["id"], again.id}
