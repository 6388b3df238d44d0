"""Generation metrics of the requests that decode, with vLLM's definitions, and goodput.

From each request's token marks (``StageContext.token``): time to first token (TTFT, from the
request's arrival, or its scheduled arrival under LoadGen), time per output token after the
first (TPOT, (e2e - TTFT) / (tokens - 1)), inter-token latency (ITL, every gap between
consecutive tokens) and end to end; output tokens a second over the measured time. Goodput is
the rate of requests that met every service-level objective given (``--slo``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.analysis.load import rank_percentile
from harness.archive.result_set import ResultSet
from harness.archive.tables import TOKEN_COLUMN
from harness.errors import UserError, in_range

PERCENTILES = (50.0, 90.0, 99.0)
SLO_METRICS = ("ttft", "tpot", "itl", "e2e")
SLO_MS = (0.001, 86_400_000.0)
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
_SLO = re.compile(r"^(?P<value>[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)(?P<unit>us|ms|s)$")


def parse_slo(text: str) -> dict[str, float]:
    """``ttft=200ms,tpot=50ms,e2e=2s`` as milliseconds by metric (itl: every gap)."""
    slo: dict[str, float] = {}
    for part in text.split(","):
        name, _, value = part.strip().partition("=")
        name = name.strip().lower()
        if name not in SLO_METRICS:
            raise UserError(
                f"--slo {text!r}: {name or 'an empty part'!r} is not one of "
                f"{', '.join(SLO_METRICS)} (e.g. ttft=200ms,tpot=50ms,e2e=2s)"
            )
        if name in slo:
            raise UserError(f"--slo {text!r}: {name} is given twice")
        match = _SLO.match(value.strip().lower())
        if match is None:
            raise UserError(
                f"--slo {text!r}: {name}={value!r} needs a time with its unit: "
                "us, ms or s (e.g. 200ms)"
            )
        slo[name] = float(match["value"]) * _UNITS[match["unit"]]
        in_range(f"--slo {name}", slo[name], *SLO_MS)
    return slo


@dataclass(frozen=True)
class Goodput:
    """Requests a second that met every objective, and the share of requests that did
    (a failed request met none)."""

    slo_ms: dict[str, float]
    requests_per_s: float
    share: float


@dataclass(frozen=True)
class Generation:
    """Generation metrics over the requests that produced tokens (ms by percentile, taken as
    LoadGen takes them)."""

    requests: int
    output_tokens: int
    ttft_ms: dict[float, float]
    tpot_ms: dict[float, float]
    itl_ms: dict[float, float]
    e2e_ms: dict[float, float]
    output_tokens_per_s: float


def per_request(result: ResultSet) -> pd.DataFrame:
    """One row per successful request: e2e, and where it marked tokens ttft, tpot and its
    longest gap between tokens (ms; NaN without tokens), and its token count."""
    ok = result.requests[result.requests["ok"]]
    if ok.empty:  # nothing measured (a run stopped in its warm-up keeps no columns to read)
        return pd.DataFrame(columns=["ttft_ms", "tpot_ms", "e2e_ms", "tokens", "itl_max_ms"])
    lag_ns = _lag_ns(result, ok)
    e2e = ok["latency_s"].to_numpy() * 1e9 + lag_ns
    marks = (
        ok[TOKEN_COLUMN].map(lambda t: np.asarray(t, dtype=np.int64))
        if TOKEN_COLUMN in ok.columns
        else pd.Series([np.zeros(0, np.int64)] * len(ok), index=ok.index)
    )
    count = marks.map(len).to_numpy()
    first = marks.map(lambda t: t[0] if len(t) else -1).to_numpy() + lag_ns
    ttft = np.where(count > 0, first, np.nan)
    tpot = np.where(count > 1, (e2e - first) / np.maximum(count - 1, 1), np.nan)
    gap = marks.map(lambda t: float(np.diff(t).max()) if len(t) > 1 else math.nan).to_numpy()
    return pd.DataFrame(
        {
            "ttft_ms": ttft / 1e6,
            "tpot_ms": tpot / 1e6,
            "e2e_ms": e2e / 1e6,
            "tokens": count,
            "itl_max_ms": gap / 1e6,
        },
        index=ok.index,
    )


def generation(result: ResultSet, measured_s: float) -> Generation | None:
    """The set's generation metrics (None when no request marked a token)."""
    rows = per_request(result)
    rows = rows[rows["tokens"] > 0]
    if rows.empty:
        return None
    marks = result.requests.loc[rows.index, TOKEN_COLUMN]
    gaps = np.concatenate([np.diff(np.asarray(t, dtype=np.int64)) for t in marks]) / 1e6

    def pct(values: np.ndarray) -> dict[float, float]:
        values = values[~np.isnan(values)]
        return {p: rank_percentile(values, p) for p in PERCENTILES}

    tokens = int(rows["tokens"].sum())
    return Generation(
        requests=len(rows),
        output_tokens=tokens,
        ttft_ms=pct(rows["ttft_ms"].to_numpy()),
        tpot_ms=pct(rows["tpot_ms"].to_numpy()),
        itl_ms=pct(gaps),
        e2e_ms=pct(rows["e2e_ms"].to_numpy()),
        output_tokens_per_s=tokens / measured_s if measured_s > 0 else math.nan,
    )


_COLUMNS = {"ttft": "ttft_ms", "tpot": "tpot_ms", "itl": "itl_max_ms", "e2e": "e2e_ms"}


def marks_tokens(result: ResultSet) -> bool:
    """Whether any request of the set marked an output token."""
    requests = result.requests
    return TOKEN_COLUMN in requests.columns and bool((requests[TOKEN_COLUMN].map(len) > 0).any())


def goodput(result: ResultSet, measured_s: float, slo_ms: dict[str, float]) -> Goodput:
    """The rate of requests that met every objective in ``slo_ms``; token objectives on a
    set whose requests marked no token are refused (only e2e can be judged there)."""
    rows = per_request(result)
    token_slo = sorted(set(slo_ms) - {"e2e"})
    if token_slo and not marks_tokens(result):
        raise UserError(
            f"{result.id} marks no output tokens: --slo {', '.join(token_slo)} cannot be "
            "judged on it (e2e can)"
        )
    one_token = rows["tokens"].to_numpy() == 1
    met = np.ones(len(rows), dtype=bool)
    for name, bound in slo_ms.items():
        values = rows[_COLUMNS[name]].to_numpy()
        if name in ("tpot", "itl"):  # a lone token has no gap to exceed
            values = np.where(one_token, 0.0, values)
        met &= values <= bound  # NaN (no token at all) meets nothing
    share = float(met.sum()) / len(result.requests) if len(result.requests) else math.nan
    rate = float(met.sum()) / measured_s if measured_s > 0 else math.nan
    return Goodput(dict(slo_ms), rate, share)


def _lag_ns(result: ResultSet, ok: pd.DataFrame) -> np.ndarray:
    """Each request's generator lag under LoadGen (scheduled to issued), else zeros: every
    time then counts from the scheduled arrival."""
    queries = result.queries
    if queries is None or queries.empty:
        return np.zeros(len(ok), dtype=np.int64)
    lag = queries.groupby(["replicate", "request"])["lag_ns"].max()
    keys = pd.MultiIndex.from_frame(ok[["replicate", "request"]])
    return lag.reindex(keys).fillna(0).to_numpy(dtype=np.int64)
