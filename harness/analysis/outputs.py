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
    """Per output either set keeps (top-k ids, tokens), the share of requests (paired by stream
    position in each replicate) whose value in B equals A's; an output one side lacks counts
    as unequal, one both lack as equal. None without outputs on requests in common."""
    mine, theirs = _outputs(a), _outputs(b)
    names = sorted((set(mine.columns) | set(theirs.columns)) - set(_KEY))
    columns = [*_KEY, *names]
    both = mine.reindex(columns=columns).merge(
        theirs.reindex(columns=columns), on=_KEY, suffixes=("_a", "_b")
    )
    if both.empty or not names:
        return None

    def equal(name: str) -> float:
        left, right = (both[f"{name}{side}"].astype(object) for side in ("_a", "_b"))
        return float(((left == right) | (left.isna() & right.isna())).mean())

    return {n: equal(n) for n in names}
