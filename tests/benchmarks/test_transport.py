"""What a tool call costs over each transport: the round trip of a call that does no work.

``pytest tests/benchmarks/test_transport.py --benchmark-enable`` gives the median per call over
stdio and over streamable HTTP on loopback, from the calling thread (the hand-over to the
client's event loop included, as a workload's stage pays it).
"""

from __future__ import annotations

import pytest

from harness.backends.mcp import CLOCK_TOOL, HTTP, STDIO, ToolServer, server_command

pytest.importorskip("mcp")


@pytest.mark.parametrize("transport", [STDIO, HTTP])
def test_a_call_that_does_no_work(benchmark, database, transport):
    command = server_command("workloads.tool_server", "--db", str(database), "--threads", "1")
    server = ToolServer(command, transport)
    server.start()
    try:
        reply = benchmark(server.call, CLOCK_TOOL, {})
    finally:
        server.close()
    assert not reply.is_error and reply.structured["pid"] > 0
