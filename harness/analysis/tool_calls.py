"""Tool calls across a process boundary, call by call and per tool: where a round trip went.

A call is the client's wait labelled ``tool NAME`` (``harness.record.remote.record_call``):
inside it, the JSON-RPC request and reply (movement in host memory), the server's handling
(movement on `remote`) and, nested in that, the tool's own work by category; what no carried
interval covers is the hand-over to the client's event loop and back.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.archive.result_set import ResultSet
from harness.record.remote import CALL_PREFIX, REPLY, REQUEST, SERVER_SUFFIX
from harness.words import Category, Kind, Resource

_COLUMNS = ["replicate", "request", "span", "parent", "category", "resource", "label"]
_COLUMNS += ["start_ns", "end_ns", "nbytes"]
_KEY = ["replicate", "request"]
CALL_COLUMNS = (
    "round_trip_ns",
    "request_ns",
    "server_ns",
    "compute_ns",
    "waiting_ns",
    "movement_ns",
    "reply_ns",
    "hand_over_ns",
    "sent_bytes",
    "received_bytes",
)


def tool_calls(result: ResultSet) -> pd.DataFrame:
    """One row per tool call of the set's successful requests: the tool, and ``CALL_COLUMNS``
    (``server_ns`` is the server's own handling outside the tool's probes; ``compute_ns``,
    ``waiting_ns`` and ``movement_ns`` the tool's probes by category)."""
    probes = result.interval_table.of_kinds([Kind.PROBE.value], _COLUMNS)
    if "replicate" not in probes:
        probes = probes.assign(replicate=0)
    ok = result.requests.loc[result.requests["ok"], ["request", "replicate"]]
    ok = ok if "replicate" in ok else ok.assign(replicate=0)
    probes = probes.merge(ok, on=_KEY)
    label = probes["label"].astype(str)
    is_call = (
        label.str.startswith(CALL_PREFIX)
        & (probes["category"].astype(str) == Category.SCHEDULING.value)
        & (probes["resource"].astype(str) == Resource.REMOTE.value)
    )
    calls = probes.loc[is_call, [*_KEY, "span", "label", "start_ns", "end_ns"]].copy()
    if calls.empty:
        return pd.DataFrame(columns=["tool", *_KEY, *CALL_COLUMNS])
    calls["tool"] = calls.pop("label").astype(str).str.removeprefix(CALL_PREFIX)
    calls["round_trip_ns"] = calls["end_ns"] - calls["start_ns"]
    probes["ns"] = probes["end_ns"] - probes["start_ns"]
    children = probes.merge(
        calls[[*_KEY, "span"]].rename(columns={"span": "parent"}), on=[*_KEY, "parent"]
    )
    child_label = children["label"].astype(str)

    def per_call(rows: pd.DataFrame, value: str = "ns", by: str = "parent") -> pd.Series:
        summed = rows.groupby([*_KEY, by], observed=True)[value].sum()
        keys = pd.MultiIndex.from_frame(calls[[*_KEY, "span"]])
        return pd.Series(summed.reindex(keys, fill_value=0).to_numpy(), index=calls.index)

    request = children[child_label == REQUEST]
    reply = children[child_label == REPLY]
    handling = children[child_label.str.endswith(SERVER_SUFFIX)]
    calls["request_ns"] = per_call(request)
    calls["reply_ns"] = per_call(reply)
    calls["sent_bytes"] = per_call(request, "nbytes")
    calls["received_bytes"] = per_call(reply, "nbytes")
    handled = per_call(handling)
    # The tool's own probes: the handling's children, each summed to its call.
    work = probes.merge(
        handling[[*_KEY, "span", "parent"]].rename(columns={"span": "h", "parent": "call"}),
        left_on=[*_KEY, "parent"],
        right_on=[*_KEY, "h"],
    )
    category = work["category"].astype(str)
    for column, name in (
        ("compute_ns", Category.COMPUTE.value),
        ("waiting_ns", Category.SCHEDULING.value),
        ("movement_ns", Category.MOVEMENT.value),
    ):
        calls[column] = per_call(work[category == name], by="call")
    tool_ns = calls[["compute_ns", "waiting_ns", "movement_ns"]].sum(axis=1)
    calls["server_ns"] = handled - tool_ns
    calls["hand_over_ns"] = calls["round_trip_ns"] - calls["request_ns"] - handled
    calls["hand_over_ns"] -= calls["reply_ns"]
    return calls[["tool", *_KEY, *CALL_COLUMNS]].reset_index(drop=True)


def tool_table(result: ResultSet) -> pd.DataFrame:
    """Per tool: its calls, and each column's median per call (ms; bytes as they are)."""
    calls = tool_calls(result)
    if calls.empty:
        return pd.DataFrame()
    rows = []
    for tool, mine in calls.groupby("tool", sort=True):
        row: dict[str, object] = {"tool": tool, "calls": len(mine)}
        for column in CALL_COLUMNS:
            values = mine[column].to_numpy(dtype=float)
            median = float(np.median(values))
            row[column.replace("_ns", "_ms")] = median / 1e6 if column.endswith("_ns") else median
        rows.append(row)
    return pd.DataFrame(rows)
