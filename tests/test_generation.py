"""Generation metrics from token marks, and goodput against service-level objectives."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import measured_set

from harness.analysis.generation import generation, goodput, parse_slo, per_request
from harness.archive.schema import Load, RunLength
from harness.archive.tables import TOKEN_COLUMN
from harness.errors import UserError

DECODER = """
import time
from harness.workload import Stage, Workload

TOKENS, GAP_S, PREFILL_S = 5, 0.002, 0.004


class Decoder(Workload):
    name = "decoder"
    stages = (Stage("prefill", layer="inference"), Stage("decode", layer="inference",
              after=("prefill",)))

    def requests(self, ctx):
        return [{"id": i} for i in range(4)]

    def prefill(self, ctx, payload):
        with ctx.compute(label="prefill"):
            time.sleep(PREFILL_S)
        ctx.token()
        return payload

    def decode(self, ctx, payload):
        for _ in range(TOKENS - 1):
            with ctx.compute(label="decode"):
                time.sleep(GAP_S)
            ctx.token()
        return payload
"""


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("decoder")
    plugin = folder / "decoder.py"
    plugin.write_text(DECODER)
    length = RunLength(warmup=1, min_requests=12, min_duration_s=0)
    return measured_set(folder / "results", f"{plugin}:Decoder", length)


def test_every_token_is_marked_in_order_within_its_request(decoded):
    marks = decoded.requests[TOKEN_COLUMN]
    assert (marks.map(len) == 5).all()
    for t, latency_s in zip(marks, decoded.requests["latency_s"], strict=True):
        t = np.asarray(t)
        assert (np.diff(t) >= 0.002 * 1e9).all() and t[0] >= 0.004 * 1e9
        assert t[-1] <= latency_s * 1e9


def test_metrics_follow_vllm_s_definitions(decoded):
    rows = per_request(decoded)
    marks = decoded.requests[TOKEN_COLUMN].map(np.asarray)
    ttft = marks.map(lambda t: t[0] / 1e6).to_numpy()
    e2e = decoded.requests["latency_s"].to_numpy() * 1e3
    assert rows["ttft_ms"].to_numpy() == pytest.approx(ttft)
    assert rows["tpot_ms"].to_numpy() == pytest.approx((e2e - ttft) / 4)
    assert rows["itl_max_ms"].to_numpy() == pytest.approx(
        marks.map(lambda t: np.diff(t).max() / 1e6).to_numpy()
    )
    measured_s = sum(r.measured_s for r in decoded.manifest.replicates)
    found = generation(decoded, measured_s)
    assert found is not None and found.output_tokens == 5 * len(decoded.requests)
    assert found.output_tokens_per_s == pytest.approx(found.output_tokens / measured_s)
    assert found.itl_ms[50.0] >= 2.0 and found.ttft_ms[50.0] >= 4.0


def test_goodput_counts_the_requests_that_meet_every_objective(decoded):
    measured_s = sum(r.measured_s for r in decoded.manifest.replicates)
    generous = goodput(decoded, measured_s, parse_slo("ttft=10s,tpot=10s,itl=10s,e2e=10s"))
    assert generous.share == 1.0
    assert generous.requests_per_s == pytest.approx(len(decoded.requests) / measured_s)
    rows = per_request(decoded)
    bound = float(np.median(rows["ttft_ms"]))
    half = goodput(decoded, measured_s, {"ttft": bound})
    assert half.share == pytest.approx((rows["ttft_ms"] <= bound).mean())
    both = goodput(decoded, measured_s, {"ttft": bound, "e2e": float(rows["e2e_ms"].min())})
    assert both.share == pytest.approx(
        ((rows["ttft_ms"] <= bound) & (rows["e2e_ms"] <= rows["e2e_ms"].min())).mean()
    )
    assert goodput(decoded, measured_s, parse_slo("e2e=1us")).share == 0.0


def test_token_objectives_need_token_marks_and_e2e_does_not(tmp_path, capsys):
    from harness.cli import main

    length = RunLength(warmup=1, min_requests=6, min_duration_s=0)
    result = measured_set(tmp_path, "calibration", length, service_ms=1.0)
    assert generation(result, 1.0) is None
    assert goodput(result, 1.0, {"e2e": 10_000.0}).share == 1.0
    with pytest.raises(UserError, match="marks no output tokens"):
        goodput(result, 1.0, {"ttft": 10_000.0})
    # `run` with a token objective on such a workload keeps the run and says what it left out.
    argv = ["run", "calibration", "--quick", "--set", "service_ms=1", "--min-requests", "4"]
    argv += ["--min-duration", "0", "--results", str(tmp_path), "--slo", "ttft=1s,e2e=10s"]
    assert main(argv) == 0
    said = capsys.readouterr()
    assert "--slo ttft left out" in said.err and "goodput" in said.out
    argv = ["show", result.id, "--results", str(tmp_path)]
    assert main([*argv, "--slo", "e2e=10s"]) == 0
    assert "goodput" in capsys.readouterr().out
    assert main([*argv, "--slo", "ttft=1s"]) == 2
    assert main([*argv, "--slo", "ttft=1"]) == 2


def test_under_loadgen_every_time_counts_from_the_scheduled_arrival(tmp_path):
    pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is not installed")
    plugin = tmp_path / "decoder.py"
    plugin.write_text(DECODER)
    length = RunLength(warmup=1, min_requests=20, min_duration_s=0.5)
    load = Load("server", qps=30.0, workers=2)
    result = measured_set(tmp_path / "results", f"{plugin}:Decoder", length, load)
    rows = per_request(result).join(result.requests[["replicate", "request", TOKEN_COLUMN]])
    lag = result.queries.set_index(["replicate", "request"])["lag_ns"]
    for row in rows.itertuples():
        behind = lag.loc[(row.replicate, row.request)]
        assert row.ttft_ms == pytest.approx((row.token_ns[0] + behind) / 1e6)
    # LoadGen's latency holds the lag too: a request's e2e is within its query's.
    queries = result.queries.set_index(["replicate", "request"])
    theirs = queries.loc[list(zip(rows["replicate"], rows["request"], strict=True)), "latency_ns"]
    assert (rows["e2e_ms"].to_numpy() <= theirs.to_numpy() / 1e6 + 1e-6).all()


def test_objectives_are_times_with_units_in_range():
    assert parse_slo("ttft=200ms, tpot=50ms,e2e=2s,itl=500us") == {
        "ttft": 200.0,
        "tpot": 50.0,
        "e2e": 2000.0,
        "itl": 0.5,
    }
    for bad in (
        "",
        "ttft=200",
        "ttft=fast",
        "speed=2s",
        "ttft=1ms,ttft=2ms",
        "e2e=0s",
        "e2e=2days",
        "ttft=-1ms",
        "e2e=1e9s",
    ):
        with pytest.raises(UserError):
            parse_slo(bad)
