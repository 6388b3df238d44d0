"""Intervals recorded in another process (a tool server), carried back with its reply.

The server times its own work with probes of its own, on its own clock; the reply carries them
(in MCP, in the result's ``_meta``, where trace context travels) with when the server began and
ended handling the call. The client puts them on its clock through an offset measured at
start-up (several round trips, the tightest kept, its error stored) and nests them inside the
wait it spent blocked on the call, on the `remote` resource: innermost wins, so the server's
work replaces the blocked wait on the critical path and only what it does not cover stays
waiting.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.record.probes import Recorder
from harness.words import Category, Kind, Resource

META_KEY = "gapbench"  # the key of the carried timing in a reply's _meta
# A workload's setup fact: its tool server's offsets (ClockOffset.to_dict()), one per start.
OFFSET_FACT = "tool_server_clock"
META_VERSION = 1
_REMOTE = Resource.REMOTE.value

# [category, label, start_ns, end_ns, nbytes, cpu_ns]: times on the server's clock, cpu_ns the
# server thread's CPU time over the probe (its time off the CPU is a wait, as on the client).
ServerRow = list[Any]


@dataclass(frozen=True)
class ClockOffset:
    """The server's clock less the client's, from the tightest of several round trips.

    ``error_ns`` bounds it: half that round trip (the server read its clock somewhere in it).
    """

    offset_ns: int
    error_ns: int
    round_trips: int

    def to_client(self, server_ns: int) -> int:
        return server_ns - self.offset_ns

    def to_dict(self) -> dict[str, int]:
        return {
            "offset_ns": self.offset_ns,
            "error_ns": self.error_ns,
            "round_trips": self.round_trips,
        }


def estimate_offset(samples: Sequence[tuple[int, int, int, int]]) -> ClockOffset:
    """The offset from round trips (client sent, server received, server replied, client got
    the reply), as NTP takes it: the mean of the two one-way differences, off by at most half
    the time spent between the processes. The round trip with the least of that is kept."""
    if not samples:
        raise ValueError("no round trip to estimate a clock offset from")

    def between(s: tuple[int, int, int, int]) -> int:
        return (s[3] - s[0]) - (s[2] - s[1])

    sent, received, replied, got = min(samples, key=between)
    offset = ((received - sent) + (replied - got)) // 2
    return ClockOffset(offset, (between((sent, received, replied, got)) + 1) // 2, len(samples))


# --- the server's side -------------------------------------------------------------------------

_calls: contextvars.ContextVar[list[ServerRow] | None] = contextvars.ContextVar(
    "gapbench_server_call", default=None
)


class ServerClock:
    """The server's probe clock; ``skew_ns`` shifts it (only tests set one, to prove the offset
    is measured rather than assumed)."""

    def __init__(self, skew_ns: int = 0, clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self.skew_ns, self._clock = skew_ns, clock

    def __call__(self) -> int:
        return self._clock() + self.skew_ns


@contextlib.contextmanager
def server_probe(
    clock: ServerClock, category: str, label: str = "", nbytes: int = 0
) -> Iterator[ServerRow]:
    """Time a block of a tool's own work on the server; recorded only inside a timed call (the
    row is yielded so a late byte count can be set: ``row[4] = n``)."""
    rows = _calls.get()
    cpu = time.thread_time_ns()
    row: ServerRow = [category, label, clock(), 0, nbytes, 0]
    try:
        yield row
    finally:
        row[3] = clock()
        row[5] = time.thread_time_ns() - cpu
        if rows is not None:
            rows.append(row)


async def timed_call(clock: ServerClock, call: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """Run a call's handling (``await call()``) with its probes collected; the result and the
    timing to carry back in its ``_meta``. Tool code in worker threads sees the collection
    through the context, which the SDK copies into them."""
    rows: list[ServerRow] = []
    token = _calls.set(rows)
    began = clock()
    try:
        result = await call()
    finally:
        _calls.reset(token)
    ended = clock()
    return result, {"v": META_VERSION, "in": began, "out": ended, "rows": rows}


# --- the client's side -------------------------------------------------------------------------


@dataclass(frozen=True)
class Carried:
    """What a reply carried back, on the client's clock, clipped to the client's wait."""

    began_ns: int
    ended_ns: int
    rows: tuple[tuple[str, str, int, int, int, int], ...]  # category, label, start, end,
    # nbytes, cpu_ns (-1: not carried)


def read_carried(
    meta: Mapping[str, Any] | None, offset: ClockOffset, within: tuple[int, int]
) -> Carried | None:
    """The carried timing of a reply's ``_meta``, on the client's clock and inside ``within``
    (an offset's error can push an edge a few microseconds past the client's own readings);
    None when the reply carried none or a version this gapbench does not read."""
    body = (meta or {}).get(META_KEY)
    if not isinstance(body, Mapping) or body.get("v") != META_VERSION:
        return None
    lo, hi = within

    def clip(server_ns: Any) -> int:
        return min(max(offset.to_client(int(server_ns)), lo), hi)

    try:
        began, ended = clip(body["in"]), clip(body["out"])
        rows = tuple(
            (str(r[0]), str(r[1]), max(clip(r[2]), began), min(clip(r[3]), ended), int(r[4]),
             int(r[5]) if len(r) > 5 else -1)
            for r in body["rows"]
        )  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None
    return Carried(began, ended, tuple(sorted(rows, key=lambda r: (r[2], r[3]))))


CALL_PREFIX = "tool "  # a client's wait on one tool call is labelled "tool NAME"
REQUEST, REPLY = "json-rpc request", "json-rpc reply"
SERVER_SUFFIX = " server"  # the server's handling of a call, "NAME server"
_HOST_MEMORY = Resource.HOST_MEMORY.value


def conventions(kind: str, category: str, resource: str, label: str) -> dict[str, str]:
    """The OpenTelemetry GenAI and MCP attributes of a tool call's intervals: the client's wait
    on the call and the server's handling of it; {} for any other interval."""
    if kind != Kind.PROBE.value or resource != _REMOTE:
        return {}
    if category == Category.SCHEDULING.value and label.startswith(CALL_PREFIX):
        tool = label.removeprefix(CALL_PREFIX)
    elif category == Category.MOVEMENT.value and label.endswith(SERVER_SUFFIX):
        tool = label.removesuffix(SERVER_SUFFIX)
    else:
        return {}
    return {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": tool,
        "mcp.method.name": "tools/call",
    }


def call_label(tool: str) -> str:
    """The label of the client's wait on a call of ``tool``."""
    return f"{CALL_PREFIX}{tool}"


def record_call(
    recorder: Recorder,
    stage: str,
    parent: int,
    tool: str,
    window: tuple[int, int],
    carried: Carried,
    nbytes: tuple[int, int],
) -> None:
    """Record one call's time across the process boundary inside the client's wait
    ``parent`` (a span id), on this thread.

    ``window`` is when the client's event loop sent the call and had its reply. From the send
    to the server's first reading is the request (serialised, through the pipe or socket,
    parsed): movement in host memory, both processes being on this host, of ``nbytes[0]``
    bytes; from the server's last reading to the reply's arrival, the reply likewise
    (``nbytes[1]``). Between, the server's handling is
    movement on `remote` (what the SDK does around the tool: validating arguments, converting
    the result), with the tool's own probes nested in it, on `remote` too. What is left of the
    wait, the hand-over to the client's event loop and back, stays waiting.
    """
    sent, received = window
    movement = Category.MOVEMENT.value
    recorder.add(
        Kind.PROBE, sent, carried.began_ns, stage=stage, category=movement,
        resource=_HOST_MEMORY, label=REQUEST, nbytes=nbytes[0], parent=parent,
    )  # fmt: skip
    handling = next(recorder._ids)
    recorder.add(
        Kind.PROBE, carried.began_ns, carried.ended_ns, stage=stage, category=movement,
        resource=_REMOTE, label=f"{tool}{SERVER_SUFFIX}", parent=parent, span=handling,
    )  # fmt: skip
    cursor = carried.began_ns
    for category, label, start, end, size, cpu in carried.rows:
        # Overlapping rows (a tool's probes run in several threads) keep the first's time.
        start = max(start, cursor)
        if end <= start:
            continue
        recorder.add(
            Kind.PROBE, start, end, stage=stage, category=category, resource=_REMOTE,
            label=label, nbytes=size, parent=handling, cpu_ns=cpu,
        )  # fmt: skip
        cursor = end
    recorder.add(
        Kind.PROBE, carried.ended_ns, received, stage=stage, category=movement,
        resource=_HOST_MEMORY, label=REPLY, nbytes=nbytes[1], parent=parent,
    )  # fmt: skip
