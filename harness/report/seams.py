"""The seams between processes and between pieces of work: tool calls across the process
boundary (one set's, and two sets' side by side) and the serialisation losses found in a set."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from harness.record.remote import OFFSET_FACT

if TYPE_CHECKING:
    import pandas as pd

    from harness.archive.schema import ReplicateFacts
    from harness.projection.serialisation import Losses


def serialisation(losses: Losses) -> list[Any]:
    """Where independent work ran in turn, and p50 had it overlapped on this machine."""
    table = Table(title="serialisation losses: independent work that ran in turn")
    table.add_column("where")
    table.add_column("requests", justify="right")
    for f in losses.findings:
        table.add_row(Text(f.where), str(f.requests))
    m, o, bound = losses.measured, losses.overlapped, losses.one_lock
    return [
        table,
        Text(
            f"had it overlapped on these {losses.cores:g} cores: p50 {o.value_ms:.2f} ms "
            f"instead of {m.value_ms:.2f} ms ({losses.gain:.2f}x), replayed over "
            f"{losses.replayed} requests; if all of its CPU work held one interpreter lock, "
            f"{bound.value_ms:.2f} ms (this set cannot tell how much of it did)",
            style="bold",
        ),
    ]


def _server_clock(replicates: Sequence[ReplicateFacts]) -> str:
    """What the request/reply split of a tool call is sure to: the server clock's offset."""
    said = [r.setup_facts.get(OFFSET_FACT) for r in replicates]
    known = [c for each in said if isinstance(each, list) for c in each if isinstance(c, dict)]
    if not known:
        return "the server's clock offset was not recorded: request and reply are not split"
    worst = max(c["error_ns"] for c in known) / 1e6
    offsets = ", ".join(f"{c['offset_ns'] / 1e6:+.3f}" for c in known)
    return (
        f"the tool server's clock is {offsets} ms off this one (to within {worst:.3f} ms): a "
        "call's request and reply are told apart to that error; their sum is exact, and so "
        "are the server's and the tool's own times"
    )


def tool_table(tools: pd.DataFrame, replicates: Sequence[ReplicateFacts]) -> list[Any]:
    """Per tool, where a call's round trip went (medians per call): the JSON-RPC request and
    reply, the server's SDK around the tool (arguments checked, result converted), the tool's
    own compute and waiting, and the hand-over to the client's event loop and back."""
    table = Table(title="tool calls across the process boundary (ms, medians per call)")
    columns = (
        ("tool", None),
        ("calls", None),
        ("round trip", "round_trip_ms"),
        ("request", "request_ms"),
        ("server SDK", "server_ms"),
        ("compute", "compute_ms"),
        ("waiting", "waiting_ms"),
        ("reply", "reply_ms"),
        ("hand-over", "hand_over_ms"),
        ("bytes out/in", None),
    )
    for name, _ in columns:
        table.add_column(name, justify="left" if name == "tool" else "right")
    for row in tools.to_dict(orient="records"):
        cells: list[Any] = [Text(str(row["tool"])), str(row["calls"])]
        cells += [f"{row[key]:.2f}" for _, key in columns[2:-1] if key is not None]
        cells.append(f"{row['sent_bytes']:,.0f}/{row['received_bytes']:,.0f}")
        table.add_row(*cells)
    return [table, Text(_server_clock(replicates), style="dim")]


def tools_side_by_side(base: pd.DataFrame, candidate: pd.DataFrame) -> Table:
    """Each tool's call, BASE -> CANDIDATE (medians per call): what a transport or a server
    changes, piece by piece."""
    table = Table(title="tool calls, BASE -> CANDIDATE (ms, medians per call)")
    pieces = (
        ("round trip", "round_trip_ms"),
        ("request", "request_ms"),
        ("server SDK", "server_ms"),
        ("tool", None),
        ("reply", "reply_ms"),
        ("hand-over", "hand_over_ms"),
    )
    table.add_column("tool")
    for name, _ in pieces:
        table.add_column(name, justify="right")
    a, b = base.set_index("tool"), candidate.set_index("tool")
    work = ["compute_ms", "waiting_ms", "movement_ms"]
    for tool in sorted(set(a.index) & set(b.index)):
        cells = [tool]
        for _, key in pieces:
            before = a.loc[tool, work].sum() if key is None else a.loc[tool, key]
            after = b.loc[tool, work].sum() if key is None else b.loc[tool, key]
            cells.append(f"{before:.2f} -> {after:.2f}")
        table.add_row(*cells)
    return table
