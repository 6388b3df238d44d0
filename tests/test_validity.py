"""The verdict's checks on hand-made result sets: each fires on its case and only there."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from conftest import make_manifest
from test_attribution import DIAMOND, diamond

from harness.analysis.stats import Percentiles
from harness.analysis.validity import max_concurrency, verdict
from harness.archive.result_set import ResultSet
from harness.archive.schema import Agreement
from harness.archive.tables import intervals_frame
from harness.words import UNKNOWN_BYTES


def result_set(
    intervals, *, device="cpu", stage_threads=None, vcpus=2, inputs="x", **fields
) -> ResultSet:
    frame = intervals_frame(intervals).assign(replicate=0)
    requests = pd.DataFrame({"request": [0], "ok": [True], "latency_s": [1.0], "replicate": [0]})
    stream = replace(make_manifest().work.request_stream, inputs_sha256=inputs)
    manifest = make_manifest(
        DIAMOND,
        device=device,
        stage_threads=stage_threads,
        cores=vcpus,
        work={"request_stream": stream, "size": "default"},
        **fields,
    )
    return ResultSet.of(manifest, frame, requests)


E2E = Percentiles.of(pd.Series([1.0] * 700).to_numpy())


def test_concurrency_counts_stages_running_at_once():
    assert max_concurrency(intervals_frame(diamond(c_end=30)).assign(replicate=0)) == 2


def test_parallel_branches_times_threads_beyond_the_cores_is_noted():
    busy = result_set(diamond(c_end=30), stage_threads={"b": 2, "c": 2})
    assert any("contend for the cores" in n for n in verdict(busy, E2E, 1.0).notes)
    roomy = result_set(diamond(c_end=30), stage_threads={"b": 2, "c": 2}, vcpus=4)
    assert not any("contend" in n for n in verdict(roomy, E2E, 1.0).notes)


def test_incomplete_sets_and_mixed_inputs_are_invalid():
    stopped = result_set(diamond(30), complete=False, stopped_by="interrupted")
    assert not verdict(stopped, E2E, 1.0).valid
    mixed = result_set(diamond(30), inputs=("a", "b"))
    assert any("different inputs" in p for p in verdict(mixed, E2E, 1.0).problems)


def test_movement_without_bytes_is_noted():
    from test_attribution import probe_iv

    sized = [*diamond(30), probe_iv("b", "movement", 13, 14, span=9, parent=2, nbytes=8)]
    assert not any("byte count" in n for n in verdict(result_set(sized), E2E, 1.0).notes)
    # 0 bytes: pointers handed over, nothing copied (a session's IO binding), and said so
    handed = [*diamond(30), probe_iv("b", "movement", 13, 14, span=9, parent=2)]
    assert not any("byte count" in n for n in verdict(result_set(handed), E2E, 1.0).notes)
    unknown = UNKNOWN_BYTES
    unsized = [*diamond(30), probe_iv("b", "movement", 13, 14, span=9, parent=2, nbytes=unknown)]
    notes = verdict(result_set(unsized), E2E, 1.0).notes
    assert (
        "1 movement intervals carry no byte count (a copy of unknown size): their rate is unknown"
    ) in notes


def test_a_stage_blocked_in_its_join_does_not_count_beside_its_branches():
    from test_attribution import fan_out_request

    assert max_concurrency(intervals_frame(fan_out_request(60)).assign(replicate=0)) == 2


def test_a_falling_cpu_frequency_is_noted_as_throttling():
    rows = [
        (int(t * 1e9), "cpu", str(core), "frequency", hz, "Hz")
        for t, hz in ((0.0, 2.6e9), (1.0, 2.6e9), (3.0, 2.0e9), (4.0, 2.0e9))
        for core in (0, 1)
    ]
    telemetry = pd.DataFrame(rows, columns=["t_ns", "source", "device", "metric", "value", "unit"])
    throttled = result_set(diamond(30))
    throttled = ResultSet.of(throttled.manifest, throttled.intervals, throttled.requests, telemetry)
    assert "CPU frequency fell 23% during the run: throttling" in verdict(throttled, E2E, 1.0).notes
    steady = telemetry.assign(value=2.6e9)
    calm = ResultSet.of(throttled.manifest, throttled.intervals, throttled.requests, steady)
    assert not any("throttling" in n for n in verdict(calm, E2E, 1.0).notes)


def _agreement(**changes):
    return Agreement(
        **{
            "reference": "torch",
            "backend": "onnxruntime",
            "requests": 8,
            "top_k_equal": 1.0,
            "tokens_equal": 1.0,
            "token_positions_equal": 1.0,
            "max_abs_logit_diff": 1e-6,
            "logit_tolerance": 1e-3,
            "logits_within_tolerance": True,
            **changes,
        }
    )


def test_a_backend_that_did_other_work_is_invalid_and_a_near_tie_is_a_note():
    alike = verdict(result_set(diamond(30), agreement=_agreement()), E2E, 1.0)
    assert alike.valid and not any("onnxruntime" in n for n in alike.notes)
    other = _agreement(top_k_equal=0.875, max_abs_logit_diff=0.2, logits_within_tolerance=False)
    judged = verdict(result_set(diamond(30), agreement=other), E2E, 1.0)
    assert not judged.valid
    assert "onnxruntime retrieved other passages than torch (88% alike)" in judged.problems
    assert "onnxruntime's logits differ from torch's by 0.2 > 0.001" in judged.problems
    tie = verdict(result_set(diamond(30), agreement=_agreement(tokens_equal=0.75)), E2E, 1.0)
    assert tie.valid and any("tokens in 75% of the checked requests" in n for n in tie.notes)


def _widest_by_hand(intervals) -> int:
    """The sweep written out request by request: the reference for the columnar one."""
    from collections import defaultdict

    spans = intervals[intervals["kind"].isin(("stage", "branch"))]
    best = 0
    for _, group in spans.groupby(["replicate", "request"]):
        fanned = set(group.loc[group["kind"] == "branch", "stage"])
        leaves = group[(group["kind"] == "branch") | ~group["stage"].isin(fanned)]
        rows = list(zip(leaves["start_ns"], leaves["end_ns"], leaves["thread"], strict=True))
        edges = sorted([(s, 1, th) for s, _, th in rows] + [(e, -1, th) for _, e, th in rows])
        open_per_thread: dict[int, int] = defaultdict(int)
        for _, step, thread in edges:
            open_per_thread[thread] += step
            best = max(best, sum(1 for n in open_per_thread.values() if n > 0))
    return best


def test_concurrency_in_columns_matches_the_sweep_by_hand():
    from test_columns import CHAIN, DIAMOND, generated, tables

    for seed in range(4):
        for stages in (DIAMOND, CHAIN):
            intervals, _ = tables(generated(seed, stages))
            assert max_concurrency(intervals) == _widest_by_hand(intervals)
    assert max_concurrency(intervals.iloc[:0]) == 0


def test_replicates_that_disagree_are_a_problem_and_agreeing_ones_are_not():
    from conftest import RAG_SET

    from harness.archive.names import load

    result = load(str(RAG_SET))  # two replicates of the same work
    e2e = Percentiles.of(result.requests["latency_s"].to_numpy())
    assert not any("disagree" in p for p in verdict(result, e2e, 1.0).problems)
    slow = result.requests.copy()
    slow.loc[slow["replicate"] == 1, "latency_s"] *= 40  # a job beside it took its cores
    judged = verdict(ResultSet.of(result.manifest, result.intervals, slow), e2e, 1.0)
    (said,) = [p for p in judged.problems if "disagree" in p]
    assert "replicate 1 is 3" in said and "x slower" in said  # of two, the slower is named
    assert not judged.valid
    # The cause is put on the machine only where its telemetry saw other load.
    assert said.endswith("; the machine's load was not recorded") and said not in judged.busy
    load = pd.DataFrame(
        [(1, "load", "others", "cpu_share", 0.01, "fraction", r) for r in (0, 1)],
        columns=["t_ns", "source", "device", "metric", "value", "unit", "replicate"],
    )
    for seen, ends in (
        (0.01, "no other load was seen: the difference is the run's own"),
        (0.5, "(another job, a throttle or a placement changed the machine)"),
    ):
        telemetry = load.assign(value=seen)
        judged = verdict(ResultSet.of(result.manifest, result.intervals, slow, telemetry), e2e, 1.0)
        (said,) = [p for p in judged.problems if "disagree" in p]
        assert said.endswith(ends)
        assert (said in judged.busy) == (seen == 0.5)
    fast = result.requests.copy()
    fast.loc[fast["replicate"] == 0, "latency_s"] *= 1.05  # within the floor: noise
    judged = verdict(ResultSet.of(result.manifest, result.intervals, fast), e2e, 1.0)
    assert not any("disagree" in p for p in judged.problems)


def test_a_replicate_of_a_few_requests_is_too_few_to_disagree():
    latency = np.r_[np.full(200, 0.05), [0.5, 0.5, 0.5]]  # an interrupted replicate of three
    requests = pd.DataFrame({"request": np.arange(203), "ok": True, "latency_s": latency})
    requests["replicate"] = np.r_[np.zeros(200, int), np.ones(3, int)]
    result = result_set(diamond(c_end=30))
    judged = verdict(ResultSet.of(result.manifest, result.intervals, requests), E2E, 1.0)
    assert not any("disagree" in p for p in judged.problems)


def test_of_three_replicates_the_one_off_the_others_is_named():
    rng = np.random.default_rng(0)
    latency = rng.lognormal(np.log(0.05), 0.1, 300)
    replicate = np.repeat([0, 1, 2], 100)
    latency[replicate == 2] *= 1.5
    requests = pd.DataFrame({"request": np.tile(np.arange(100), 3), "ok": True})
    result = result_set(diamond(c_end=30))
    requests = requests.assign(latency_s=latency, replicate=replicate)
    judged = verdict(ResultSet.of(result.manifest, result.intervals, requests), E2E, 1.0)
    (said,) = [p for p in judged.problems if "disagree" in p]
    assert "replicate 2 is 1.4" in said and "the other replicates' p50" in said


def test_noise_far_above_the_threshold_is_a_problem_and_a_costly_probe_a_note():
    noisy = Percentiles.of(pd.Series([1.0, 1.0, 3.0, 9.0] * 200).to_numpy())
    judged = verdict(result_set(diamond(c_end=30)), noisy, 1.0)
    (said,) = [p for p in judged.problems if p.startswith("very noisy")]
    assert "load was not recorded" in said and said not in judged.busy  # not blamed on load
    quiet = pd.DataFrame(
        [(1, "load", "others", "cpu_share", 0.01, "fraction", 0)],
        columns=["t_ns", "source", "device", "metric", "value", "unit", "replicate"],
    )
    calm = result_set(diamond(c_end=30))
    calm = ResultSet.of(calm.manifest, calm.intervals, calm.requests, quiet)
    (said,) = [p for p in verdict(calm, noisy, 1.0).problems if p.startswith("very noisy")]
    assert "no other load was seen" in said
    busy = quiet.assign(value=0.5)
    loaded = ResultSet.of(calm.manifest, calm.intervals, calm.requests, busy)
    assert any(p.startswith("very noisy") for p in verdict(loaded, noisy, 1.0).busy)
    few = Percentiles.of(np.array([1.0, 1.0, 3.0, 9.0] * 4))  # 16 requests: a note
    assert not any(p.startswith("very noisy") for p in verdict(calm, few, 1.0).problems)
    costly = result_set(diamond(c_end=30))
    facts = replace(costly.manifest.replicates[0], probe_cost_ns=1e8)  # 0.1 s a probe
    costly = ResultSet.of(
        replace(costly.manifest, replicates=(facts,)), costly.intervals, costly.requests
    )
    assert any("probing costs" in n for n in verdict(costly, E2E, 1.0).notes)
    assert not any(
        "probing costs" in n for n in verdict(result_set(diamond(c_end=30)), E2E, 1.0).notes
    )
