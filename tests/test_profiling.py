"""The torch.profiler pass: apart from the timed requests, and in agreement with the probes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.store import Archive

pytestmark = pytest.mark.slow

# The probes of the model stages (the inference layer); top-k is retrieval, judged apart.
MODEL_PROBES = {("embed", "encoder"), ("generate", "prefill"), ("generate", "decode")}


def test_profiled_model_compute_agrees_with_the_profiler_within_5_percent(tmp_path):
    # In a fresh process, as a user runs it: the profiler's Python tracer is process-wide, and
    # what other tests left behind in this one must not decide the outcome.
    argv = ["run", "rag", "--quick", "--device", "cpu", "--profile", "4", "--warmup", "2"]
    argv += ["--min-requests", "6", "--min-duration", "0", "--no-progress", "--json"]
    argv += ["--results", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "harness", *argv], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    archive = Archive(tmp_path)
    result = archive.load("latest")
    assert "profile" in result.manifest, result.manifest["replicates"][0].get("profile_error")
    profile = result.manifest["profile"]
    checks = {(c["stage"], c["label"]): c for c in profile["checks"]}
    assert set(checks) >= MODEL_PROBES
    for key in MODEL_PROBES:
        assert checks[key]["calls"] == 4  # one probe of each per request
        # gapbench's compute time against the profiler's operators and modules inside it
        assert checks[key]["judged"] and checks[key]["agreement"] <= 0.05, checks[key]
        # and the profiler's own scope saw the same span as the probe
        scope, probe = checks[key]["profiler_scope_ms"], checks[key]["gapbench_ms"]
        assert abs(scope - probe) <= 0.05 * probe
    assert profile["agrees"]
    # the profiled requests are not among the timed ones
    assert len(result.requests) == 6 and (result.requests["request"] >= 0).all()
    trace = json.loads(archive.attachment(result.id, "profile.json"))
    names = {event.get("name", "") for event in trace["traceEvents"]}
    assert "gapbench:generate:decode" in names
