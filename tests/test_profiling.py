"""The torch.profiler pass: apart from the timed requests, and in agreement with the probes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.analysis.roofline import timed_call_ms
from harness.archive.store import Archive
from harness.measure.profiling import _checks
from harness.record.probes import Interval

# The probes of the model stages (the inference layer); top-k is retrieval, judged apart.
MODEL_PROBES = {("embed", "encoder"), ("generate", "prefill"), ("generate", "decode")}


@pytest.mark.slow
def test_profiled_model_compute_agrees_with_the_profiler_within_5_percent(calibrated_archive):
    tmp_path = calibrated_archive
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
    profile = result.manifest.profile
    assert profile is not None, result.manifest.replicates[0].profile_error
    checks = {(c.stage, c.label): c for c in profile.checks}
    assert set(checks) >= MODEL_PROBES
    for key in MODEL_PROBES:
        assert checks[key].calls == 4  # one probe of each per request
        # gapbench's compute time against the profiler's operators and modules inside it
        assert checks[key].judged() and checks[key].agreement <= 0.05, checks[key]
        # and the profiler's own scope saw the same span as the probe
        scope, probe = checks[key].profiler_scope_ms, checks[key].gapbench_ms
        assert abs(scope - probe) <= 0.05 * probe
    assert profile.agrees(timed_call_ms(result))
    # The tokenizer's Python is not the profiler's to see: never judged, said as such.
    tokenize = checks[("parse", "tokenize")]
    assert not tokenize.visible and not tokenize.judged(
        timed_call_ms(result)[("parse", "tokenize")]
    )
    # the profiled requests are not among the timed ones
    assert len(result.requests) == 6 and (result.requests["request"] >= 0).all()
    trace = json.loads(archive.attachment(result.id, "profile.json"))
    names = {event.get("name", "") for event in trace["traceEvents"]}
    assert "gapbench:generate:decode" in names


def test_operators_are_found_by_time_on_the_scope_s_thread_and_counted_once():
    # A scope on thread 1 [0, 100]: a module [10, 60] around an operator [20, 30] (its tree
    # links missing, as some torch versions leave them), an operator [70, 80], the host
    # waiting for the device [80, 95]; Python glue between them is not an operator. An
    # operator on thread 2 at the same time is someone else's.
    def x(name, ts, dur, tid=1):
        return {"ph": "X", "name": name, "ts": ts, "dur": dur, "tid": tid}

    trace = {
        "traceEvents": [
            x("gapbench:embed:encoder", 0, 100),
            x("nn.Module: Encoder_0", 10, 50),
            x("aten::addmm", 20, 10),
            x("workloads/backends.py(61): encode", 5, 90),
            x("aten::argmax", 70, 10),
            x("cudaDeviceSynchronize", 80, 15),
            x("aten::mm", 0, 100, tid=2),
        ]
    }
    probe = Interval(
        0, 1, -1, "probe", "embed", "compute", "device", "encoder", 0, 100_000, 0, 1, ""
    )
    (check,) = _checks([probe], trace, {"embed": "inference"})
    assert (check.profiler_scope_ms, check.profiler_operator_ms) == (0.1, 0.075)
    assert check.gapbench_ms == 0.1 and check.judged() is False  # 0.1 ms: below the floor
    assert check.visible and check.judged(timed_call_ms=2.0)  # as the timed run saw it
