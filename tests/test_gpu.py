"""CUDA paths: run only where torch sees a GPU, skipped cleanly elsewhere."""

from __future__ import annotations

import pytest
import torch
from conftest import live_fingerprint

from harness.analysis.invariants import set_invariants
from harness.analysis.summary import summarize
from harness.archive.schema import RunLength
from harness.archive.store import Archive
from harness.measure.config import RunConfig
from harness.measure.replicates import run
from harness.record.gpu_timing import EVENTS, SYNC

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("timing", [SYNC, EVENTS])
def test_rag_on_cuda_records_link_movement_and_device_compute(tmp_path, timing):
    config = RunConfig(
        "rag",
        device="cuda",
        size="quick",
        measurement=RunLength(warmup=2, min_requests=8, min_duration_s=0),
        show_progress=False,
        gpu_timing=timing,
    )
    result = run(config, Archive(tmp_path), fingerprint=live_fingerprint())
    execution = result.manifest.execution
    assert execution.device == "cuda" and execution.timing_mode == timing
    device = result.intervals[result.intervals["kind"] == "device"]
    assert (len(device) > 0) == (timing == EVENTS)
    assert set_invariants(result).violation_count == 0
    probes = result.intervals[result.intervals["kind"] == "probe"]
    link = probes[probes["resource"] == "link"]
    assert len(link) > 0 and (link["nbytes"] > 0).all()
    assert (probes[probes["label"] == "encoder"]["resource"] == "device").all()
    assert (result.manifest.replicates[0].gpu_peak_bytes or 0) > 0
    assert not summarize(result).verdict.own_problems
