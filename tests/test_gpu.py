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
    assert not summarize(result).verdict.broken


def test_device_compute_keeps_the_time_its_host_thread_waited_for_the_gpu():
    """A host thread blocked on the device is the device computing: no off-CPU wait is split
    out of device compute, however little CPU the thread used meanwhile."""
    from harness.analysis.attribution import split_request
    from harness.record.probes import Recorder
    from harness.words import OFF_CPU, Kind
    from harness.workload import SetupContext, Stage, StageContext

    recorder = Recorder(0)
    ctx = StageContext(SetupContext(device="cuda"), recorder, "s", 0)
    x = torch.randn(2048, 2048, device="cuda")
    with recorder.span(Kind.STAGE, stage="s"), ctx.compute():
        for _ in range(20):
            x = torch.tanh(x @ x)
        torch.cuda.synchronize()
    start = min(iv.start_ns for iv in recorder.intervals)
    end = max(iv.end_ns for iv in recorder.intervals)
    recorder.add(Kind.REQUEST, start, end)
    split = split_request(recorder.intervals, (Stage("s", "inference"),)).stage("s")
    assert OFF_CPU not in dict(split.waits)
    assert (
        split.compute_ns == next(iv for iv in recorder.intervals if iv.kind == "probe").duration_ns
    )
