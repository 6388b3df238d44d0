"""The agent workload end to end: both transports, both handoff modes, the split across the
process boundary, a skewed server clock, and bad tool traffic that fails one request only."""

from __future__ import annotations

import json

import pytest

from harness.analysis.attribution import split_request
from harness.analysis.invariants import check_invariants
from harness.analysis.tool_calls import tool_calls
from harness.archive.schema import RunLength
from harness.archive.store import Archive
from harness.cli import main
from harness.machine.threads import threads
from harness.measure.driver import RequestDriver
from harness.measure.process import measure
from harness.params import resolve
from harness.workload import SetupContext
from workloads import agent as agent_module
from workloads.agent import Agent, Call

pytest.importorskip("mcp")
FAST = ["--quick", "--min-requests", "8", "--min-duration", "0", "--warmup", "1", "--no-progress"]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return str(tmp_path_factory.mktemp("agent") / "results")


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("handoffs", ["serial", "parallel"])
def test_agent_runs_over_both_transports_in_both_handoff_modes(
    transport, handoffs, archive, capsys
):
    sets = ["--set", f"transport={transport}", "--set", f"handoffs={handoffs}"]
    status, out, err = _run(capsys, "run", "agent", *FAST, *sets, "--results", archive, "--json")
    assert status == 0, err
    (summary,) = json.loads(out)
    assert summary["errors"] == 0 and summary["invariants"]["violation_count"] == 0
    assert summary["config"]["execution"]["params"] == {
        "handoffs": handoffs, "timeout_s": 30.0, "transport": transport,
    }  # fmt: skip
    tools = {row["tool"]: row for row in summary["tools"]}
    assert tools, "no tool call was recorded"
    for row in tools.values():
        # Every call's round trip is split: the request, the server, the reply, the hand-over.
        assert row["request_ms"] > 0 and row["reply_ms"] > 0 and row["hand_over_ms"] >= 0
        assert row["sent_bytes"] > 0 and row["received_bytes"] > 0
    if "search_docs" in tools:
        assert tools["search_docs"]["compute_ms"] > tools["search_docs"]["server_ms"]
    if "fetch_remote" in tools:
        assert tools["fetch_remote"]["waiting_ms"] > 1.0  # the simulated service, on `remote`
    for row in tools.values():
        # What stays of the client's blocked wait is the hand-over to its event loop and back:
        # the server's work, and the messages both ways, replaced the rest.
        assert row["hand_over_ms"] < row["round_trip_ms"] / 2
    loaded = Archive(archive).load(summary["id"])
    calls = tool_calls(loaded)
    total = calls[["request_ns", "reply_ns", "hand_over_ns"]].sum(axis=1)
    total += calls[["server_ns", "compute_ns", "waiting_ns", "movement_ns"]].sum(axis=1)
    assert (total <= calls["round_trip_ns"]).all()  # nothing counted twice


@pytest.mark.slow
def test_compare_of_stdio_and_http_answers_what_the_transport_costs(archive, capsys, tmp_path):
    ids = []
    for transport in ("stdio", "http"):
        status, out, err = _run(
            capsys, "run", "agent", *FAST, "--set", f"transport={transport}",
            "--results", archive, "--json",
        )  # fmt: skip
        assert status == 0, err
        ids.append(json.loads(out)[0]["id"])
    status, out, err = _run(capsys, "compare", *ids, "--results", archive, "--json")
    assert status == 0, err
    assert "params.transport" in out
    # Its trace carries the GenAI and MCP conventions on every tool call.
    trace = tmp_path / "trace.json"
    status, _, err = _run(capsys, "trace", ids[1], "--results", archive, "-o", str(trace))
    assert status == 0, err
    calls = [
        e
        for e in json.loads(trace.read_text())["traceEvents"]
        if "gen_ai.tool.name" in e.get("args", {})
    ]
    assert calls and {e["args"]["gen_ai.operation.name"] for e in calls} == {"execute_tool"}
    assert {e["args"]["mcp.method.name"] for e in calls} == {"tools/call"}


def _agent(**params) -> tuple[Agent, SetupContext]:
    setup = SetupContext(size="quick", params=resolve(Agent.params, params))
    workload = Agent()
    workload.setup(setup)
    return workload, setup


@pytest.mark.slow
def test_a_skewed_server_clock_leaves_the_split_right(monkeypatch):
    monkeypatch.setenv(agent_module.SKEW_VARIABLE, str(-3_000_000_000))
    workload, setup = _agent(mix="cpu+wait")
    try:
        assert abs(workload.server.offset.offset_ns + 3_000_000_000) < 50_000_000
        driver = RequestDriver(workload, setup)
        payloads = workload.requests(setup)
        with threads(1):
            outcomes = [driver(i, payloads[i]) for i in range(4)]
        driver.close()
    finally:
        workload.teardown()
    for outcome in outcomes:
        assert not outcome.error
        intervals = outcome.recorder.intervals
        split = split_request(intervals, Agent.stages)
        assert check_invariants(intervals, split) == []
        tools = split.stage("tools")
        remote = dict(tools.by_resource)
        # search_docs' encoder ran on the server: its compute is there, inside the calls.
        assert remote.get(("compute", "remote"), 0) > 1_000_000
        assert remote.get(("scheduling", "remote"), 0) < tools.wall_ns / 2


class _Troubled(Agent):
    """An agent whose planner now and then asks for trouble: bad arguments, or a crash."""

    def _arguments(self, tool, asked, index):
        if asked.id == 2 and index == 0:
            return Call("lookup", {"customer_id": "not a number"})
        if asked.id == 4 and index == 0:
            return Call("gapbench_fault", {"kind": "crash"})
        return super()._arguments(tool, asked, index)


@pytest.mark.slow
def test_bad_tool_traffic_fails_its_request_and_the_run_goes_on(monkeypatch):
    monkeypatch.setenv(agent_module.FAULTS_VARIABLE, "1")
    setup = SetupContext(size="quick", params=resolve(Agent.params, {}))
    result = measure(_Troubled(), setup, RunLength(warmup=0, min_requests=8, min_duration_s=0.0))
    errors = dict(zip(result.requests["request"], result.requests["error"], strict=True))
    assert "refused the call" in errors[2] and "lookup" in errors[2]
    assert "gapbench_fault" in errors[4] and "Connection closed" in errors[4]
    assert [r for r, e in errors.items() if e] == [2, 4]  # the others went on
    assert result.facts.setup_facts["tool_server_restarts"] == 1  # after the crash
    assert len(result.facts.setup_facts["tool_server_clock"]) == 2  # each start's offset
    assert not result.facts.teardown_error


def test_parameters_are_checked_before_the_server_starts(capsys, tmp_path):
    for bad in ("transport=pigeon", "handoffs=sometimes", "timeout_s=0", "mix=all"):
        status, _, err = _run(capsys, "run", "agent", "--set", bad, "--results", str(tmp_path))
        assert status == 2 and err.count("\n") == 1, err


def test_the_planner_chooses_different_tools_for_different_requests():
    import torch

    from harness.record.probes import Recorder
    from harness.workload import StageContext
    from workloads import text
    from workloads.models import Decoder, DecoderConfig

    workload, setup = Agent(), SetupContext(size="quick", params=resolve(Agent.params, {}))
    workload.tokenizer = text.Tokenizer()
    workload.device, workload.candidates = "cpu", agent_module.MIXES["planned"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        workload.decoder = Decoder(DecoderConfig(vocab_size=workload.tokenizer.vocab_size)).eval()
    chosen = set()
    for i, payload in enumerate(workload.requests(setup)[:16]):
        ctx = StageContext(setup, Recorder(i), "plan", i)
        planned = workload.plan(ctx, workload.parse(ctx, payload))
        assert planned.calls and all(c.tool in agent_module.TOOLS for c in planned.calls)
        chosen.add(tuple(c.tool for c in planned.calls))
    assert len(chosen) > 2  # the fan-out is decided at run time, request by request
