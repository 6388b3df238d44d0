"""What two sets' outputs kept in common: top-k ids and tokens, compared request by request.

Outputs are compared as a rate, never as a pass: a backend or a dtype may reorder near-ties
and still be the same pipeline, and the rate says how often that happened.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from harness.archive.result_set import ResultSet

_KEY = ["replicate", "request"]


def _outputs(result: ResultSet) -> pd.DataFrame:
    """One row per successful request that kept outputs: its key and each output's value."""
    ok = result.requests.loc[result.requests["ok"]]
    if "outputs" not in ok.columns:
        return pd.DataFrame(columns=_KEY)
    bodies = ok["outputs"].map(_parsed)
    kept = bodies.map(bool)
    rows = pd.DataFrame(bodies[kept].tolist(), index=ok.index[kept])
    # Lists compare as wholes: a tuple is one value to pandas, a list is not.
    rows = rows.map(lambda v: tuple(v) if isinstance(v, list) else v)
    return pd.concat([ok.loc[kept, _KEY], rows], axis=1)


def _parsed(text: Any) -> dict[str, Any]:
    try:
        body = json.loads(text) if isinstance(text, str) and text else None
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def output_agreement(a: ResultSet, b: ResultSet) -> dict[str, float] | None:
    """Per output both sets keep (top-k ids, tokens), the share of requests (paired by stream
    position in each replicate) whose value in B equals A's; None without outputs in common."""
    both = _outputs(a).merge(_outputs(b), on=_KEY, suffixes=("_a", "_b"))
    if both.empty:
        return None
    names = sorted(c[:-2] for c in both.columns if c.endswith("_a") and f"{c[:-2]}_b" in both)
    return {n: float((both[f"{n}_a"] == both[f"{n}_b"]).mean()) for n in names} or None
