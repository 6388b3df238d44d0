"""CUDA paths: run only where torch sees a GPU, skipped cleanly elsewhere."""

from __future__ import annotations

import pytest
import torch

from harness.record.gpu_timing import EVENTS, SYNC
from harness.measure.replicates import RunConfig, run
from harness.measure.process import Measurement
from harness.archive.store import Archive
from harness.analysis.summary import summarize

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("timing", [SYNC, EVENTS])
def test_rag_on_cuda_records_link_movement_and_device_compute(tmp_path, timing):
    config = RunConfig(
        "rag",
        device="cuda",
        size="quick",
        measurement=Measurement(warmup=2, min_requests=8, min_duration_s=0),
        show_progress=False,
        gpu_timing=timing,
    )
    result = run(config, Archive(tmp_path), fingerprint={})
    execution = result.manifest["config"]["execution"]
    assert execution["device"] == "cuda" and execution["timing_mode"] == timing
    device = result.intervals[result.intervals["kind"] == "device"]
    assert (len(device) > 0) == (timing == EVENTS)
    assert result.manifest["invariants"]["violation_count"] == 0
    probes = result.intervals[result.intervals["kind"] == "probe"]
    link = probes[probes["resource"] == "link"]
    assert len(link) > 0 and (link["nbytes"] > 0).all()
    assert (probes[probes["label"] == "encoder"]["resource"] == "device").all()
    assert result.manifest["replicates"][0]["gpu_peak_bytes"] > 0
    assert summarize(result).verdict.valid
