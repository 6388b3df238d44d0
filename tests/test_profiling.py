"""The torch.profiler pass: apart from the timed requests, and in agreement with the probes."""

from __future__ import annotations

import json

import pytest

from harness.run import RunConfig, run
from harness.runner import Measurement
from harness.store import Archive

pytestmark = pytest.mark.slow

MODEL_PROBES = {
    ("embed", "encoder"),
    ("retrieve", "top-k"),
    ("generate", "prefill"),
    ("generate", "decode"),
}


def test_profiled_model_compute_agrees_with_the_profiler_within_5_percent(tmp_path):
    config = RunConfig(
        "rag",
        device="cpu",
        size="quick",
        measurement=Measurement(warmup=2, min_requests=6, min_duration_s=0),
        show_progress=False,
        profile=4,
    )
    archive = Archive(tmp_path)
    result = run(config, archive, fingerprint={})
    profile = result.manifest["profile"]
    checks = {(c["stage"], c["label"]): c for c in profile["checks"]}
    assert set(checks) >= MODEL_PROBES
    for key in MODEL_PROBES:
        assert checks[key]["calls"] == 4  # one probe of each per request
        assert checks[key]["agreement"] <= 0.05, checks[key]
        # operators fill most of a model probe; the rest is dispatch between them
        assert 0.8 <= checks[key]["operator_share"] <= 1.0, checks[key]
    assert profile["agrees"]
    # the profiled requests are not among the timed ones
    assert len(result.requests) == 6 and (result.requests["request"] >= 0).all()
    trace = json.loads(archive.attachment(result.id, "profile.json"))
    names = {event.get("name", "") for event in trace["traceEvents"]}
    assert "gapbench:generate:decode" in names
