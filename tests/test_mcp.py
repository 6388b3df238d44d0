"""The MCP tool server gapbench starts: both transports, loopback only, the clock offset, and
bad tool traffic (bad arguments, a crash, a kill mid-call, a hang) that fails one call, restarts
the server and never hangs."""

from __future__ import annotations

import os
import threading
import time

import psutil
import pytest

from harness.backends.mcp import HTTP, STDIO, ToolFailure, ToolServer, server_command
from harness.record.remote import ClockOffset, estimate_offset, read_carried
from workloads.tool_server import remote_latency_s

pytest.importorskip("mcp")


def started(database, transport=STDIO, *extra: str, timeout_s: float = 30.0) -> ToolServer:
    args = ["--db", str(database), "--remote-ms", "2", "--threads", "1", *extra]
    server = ToolServer(server_command("workloads.tool_server", *args), transport, timeout_s)
    server.start()
    return server


@pytest.fixture(scope="module", params=[STDIO, HTTP])
def server(request, database):
    running = started(database, request.param)
    yield running
    running.close()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_the_offset_is_the_mean_of_the_one_way_differences_of_the_tightest_trip():
    # Server clock 1000 ahead; the first trip is slow one way (asymmetric), the second tight.
    samples = [(0, 1500, 1600, 900), (2000, 3020, 3030, 2060)]
    offset = estimate_offset(samples)
    assert offset == ClockOffset(offset_ns=995, error_ns=25, round_trips=2)
    with pytest.raises(ValueError):
        estimate_offset([])


def test_carried_timing_is_put_on_the_client_clock_and_inside_its_wait():
    offset = ClockOffset(offset_ns=1_000, error_ns=5, round_trips=3)
    rows = [["compute", "x", 1_110, 1_200, 0, 70]]  # 70 ns of the server thread's CPU
    meta = {"gapbench": {"v": 1, "in": 1_095, "out": 1_300, "rows": rows}}
    carried = read_carried(meta, offset, (100, 290))
    assert (carried.began_ns, carried.ended_ns) == (100, 290)  # clipped: the offset's error
    assert carried.rows == (("compute", "x", 110, 200, 0, 70),)
    assert read_carried({"gapbench": {"v": 99}}, offset, (0, 1)) is None
    assert read_carried(None, offset, (0, 1)) is None


def test_tools_answer_and_carry_their_own_timing(server):
    assert server.offset is not None and server.offset.error_ns < 50_000_000
    reply = server.call("lookup", {"customer_id": 7})
    assert not reply.is_error and reply.structured["customer_id"] == 7
    carried = read_carried(reply.meta, server.offset, (reply.sent_ns, reply.received_ns))
    assert carried is not None
    assert [row[1] for row in carried.rows] == ["sql query"]
    reply = server.call("fetch_remote", {"url": "https://service.example/a"})
    waited = read_carried(reply.meta, server.offset, (reply.sent_ns, reply.received_ns)).rows
    (category, label, start, end, _, cpu) = waited[0]
    assert (category, label) == ("scheduling", "remote service")
    expected = remote_latency_s("https://service.example/a", 2.0, 0) * 1e9
    assert end - start >= expected  # slept at least that (a busy machine may add to it)
    assert 0 <= cpu < (end - start) / 2  # a sleep is off the CPU


def test_arguments_that_break_the_schema_are_an_error_reply_not_a_failure(server):
    restarts = server.restarts
    reply = server.call("lookup", {"customer_id": "seven"})
    assert reply.is_error and "customer_id" in reply.text
    assert server.call("lookup", {"customer_id": 8}).structured["customer_id"] == 8
    assert server.restarts == restarts  # nothing was wrong with the server


def test_the_http_server_listens_on_loopback_only(database):
    server = started(database, HTTP)
    pid = server.pid
    try:
        sockets = psutil.Process(pid).net_connections(kind="inet")
        listening = [c for c in sockets if c.status == psutil.CONN_LISTEN]
        assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening)
    finally:
        server.close()
    assert not _alive(pid)
    server.close()  # again: harmless


def test_a_skewed_server_clock_is_measured_not_assumed(database):
    skew = 5_000_000_000
    server = started(database, STDIO, "--clock-skew-ns", str(skew))
    try:
        offset = server.offset
        assert abs(offset.offset_ns - skew) <= offset.error_ns + 1_000_000
        reply = server.call("search_docs", {"query": "where is the widget", "k": 3})
        carried = read_carried(reply.meta, offset, (reply.sent_ns, reply.received_ns))
        encode = next(r for r in carried.rows if r[1] == "encode")
        # Put on the client's clock, the tool's work lies inside the call, not at its edge.
        assert reply.sent_ns < encode[2] < encode[3] < reply.received_ns
        assert encode[3] - encode[2] > 100_000
    finally:
        server.close()


@pytest.mark.slow
@pytest.mark.parametrize("transport", [STDIO, HTTP])
def test_a_crash_a_kill_and_a_hang_fail_one_call_each_and_the_server_comes_back(
    database, transport
):
    server = started(database, transport, "--faults", "--remote-ms", "5000", timeout_s=2.0)
    last = server.pid
    try:
        first = server.pid
        with pytest.raises(ToolFailure):
            server.call("gapbench_fault", {"kind": "crash"})
        assert server.call("lookup", {"customer_id": 1}).structured["customer_id"] == 1
        assert server.restarts == 1 and server.pid != first and not _alive(first)

        # Killed mid-call: the call fails at once, not at its timeout.
        failed: list[BaseException] = []

        def slow_call():
            try:
                server.call("fetch_remote", {"url": "https://service.example/slow"})
            except ToolFailure as exc:
                failed.append(exc)

        caller = threading.Thread(target=slow_call)
        began = time.monotonic()
        caller.start()
        time.sleep(0.5)
        os.kill(server.pid, 9)
        caller.join(timeout=30)
        assert failed and time.monotonic() - began < 10
        assert server.call("lookup", {"customer_id": 2}).structured["customer_id"] == 2
        assert server.restarts == 2

        hung, began = server.pid, time.monotonic()
        with pytest.raises(ToolFailure, match=r"gave no reply in 2 s|timed out|Timeout"):
            server.call("gapbench_fault", {"kind": "hang"})
        assert time.monotonic() - began < 15  # the timeout, the hung server's end, a restart
        assert server.call("lookup", {"customer_id": 3}).structured["customer_id"] == 3
        assert server.restarts == 3 and not _alive(hung)
        last = server.pid
    finally:
        server.close()
    assert not _alive(last)
    assert len(server.offsets) == 4  # measured again at every start
