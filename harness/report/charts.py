"""The report's charts as plotly figures, drawn from the page's computed numbers.

Every string from a set is HTML-escaped before plotly sees it: plotly reads a subset of HTML
in its labels (``<a href>``, ``<br>``, entities), so an escaped name is shown as it is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

import plotly.graph_objects as go

from harness.projection.compare import Speedup
from harness.report.against import ProjectedRow
from harness.report.page import CATEGORIES, Page, SetView

COLOURS = {
    "compute": "#4c78a8",
    "movement": "#f58518",
    "scheduling": "#e45756",
    "unattributed": "#bab0ac",
}
MODEL_COLOURS = {"naive": "#9ecae9", "replay": "#4c78a8", "delivered": "#54a24b"}
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2")
SPREAD = 20.0  # latencies further apart than this are drawn on a log axis


@dataclass(frozen=True)
class Chart:
    key: str  # the section it belongs to, and its div's id
    figure: go.Figure


def charts(page: Page) -> list[Chart]:
    """Every chart the page has data for, in the order the page shows them."""
    found = [
        Chart("breakdown", breakdown(page)),
        Chart("latency", latency(page)),
        Chart("throughput", throughput(page)),
    ]
    if any(v.tokens_per_s is not None for v in page.sets):
        found.append(Chart("tokens", tokens(page)))
    if page.load:
        found.append(Chart("load", load(page)))
    if page.projected:
        found.append(Chart("projected", projected(page)))
    return found


def _layout(figure: go.Figure, title: str, height: int = 420) -> go.Figure:
    figure.update_layout(
        title={"text": title, "x": 0.0, "font": {"size": 15}},
        height=height,
        margin={"l": 60, "r": 20, "t": 50, "b": 60},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
        font={"family": "system-ui, sans-serif", "size": 12},
    )
    return figure


def _label(view: SetView) -> str:
    return escape(view.label)


def breakdown(page: Page) -> go.Figure:
    """Per stage, a bar per set, stacked by category (medians per request, ms)."""
    stages = list(dict.fromkeys(s.stage for v in page.sets for s in v.stages))
    rows = [
        (stage, view, split)
        for stage in stages
        for view in page.sets
        for split in view.stages
        if split.stage == stage
    ]
    figure = go.Figure()
    for category in CATEGORIES:
        figure.add_trace(
            go.Bar(
                name=category,
                x=[
                    [escape(stage) for stage, _, _ in rows],
                    [f"[{view.index}]" for _, view, _ in rows],
                ],
                y=[getattr(split, f"{category}_ms") for _, _, split in rows],
                marker_color=COLOURS[category],
                customdata=[_label(view) for _, view, _ in rows],
                hovertemplate=f"%{{customdata}}<br>{category}: %{{y:.3f}} ms<extra></extra>",
            )
        )
    figure.update_layout(barmode="stack")
    figure.update_yaxes(title_text="median per request (ms)")
    height = 460 if len(rows) <= 24 else 560
    title = "Where each stage's time goes: compute, movement, scheduling, unattributed"
    return _layout(figure, title, height)


def latency(page: Page) -> go.Figure:
    """Each set's end-to-end latency of its ok requests, as an empirical distribution."""
    figure = go.Figure()
    for view in page.sets:
        figure.add_trace(
            go.Scatter(
                name=_label(view),
                x=list(view.ecdf_ms),
                y=list(view.ecdf_share),
                mode="lines+markers" if len(view.ecdf_ms) <= 50 else "lines",
                line_shape="hv",
                hovertemplate="%{x:.2f} ms: %{y:.1%} of requests at or under<extra></extra>",
            )
        )
    values = [x for v in page.sets for x in v.ecdf_ms if x > 0]
    log = bool(values) and max(values) / min(values) > SPREAD
    figure.update_xaxes(title_text="end-to-end latency (ms)", type="log" if log else "linear")
    figure.update_yaxes(title_text="share of ok requests", tickformat=".0%", range=[0, 1.02])
    return _layout(figure, "End-to-end latency of the ok requests (cumulative)")


def throughput(page: Page) -> go.Figure:
    """Requests answered a second, per set."""
    values = [v.requests_per_s if math.isfinite(v.requests_per_s) else None for v in page.sets]
    figure = go.Figure(
        go.Bar(
            x=[_label(v) for v in page.sets],
            y=values,
            text=[f"{y:.2f}" if y is not None else "unknown" for y in values],
            textposition="auto",
            marker_color="#4c78a8",
            hovertemplate="%{x}: %{y:.2f} requests/s<extra></extra>",
        )
    )
    figure.update_yaxes(title_text="requests answered per second")
    return _layout(figure, "Throughput: requests answered a second of measured time", 380)


def tokens(page: Page) -> go.Figure:
    """Output tokens a second, per set that decodes."""
    decoding = [v for v in page.sets if v.tokens_per_s is not None]
    figure = go.Figure(
        go.Bar(
            x=[_label(v) for v in decoding],
            y=[v.tokens_per_s for v in decoding],
            marker_color="#72b7b2",
            hovertemplate="%{x}: %{y:.1f} output tokens/s<extra></extra>",
        )
    )
    figure.update_yaxes(title_text="output tokens per second")
    return _layout(figure, "Throughput: output tokens a second", 380)


def load(page: Page) -> go.Figure:
    """Latency against throughput, p50 and p99, a line through each work's sets."""
    figure = go.Figure()
    for n, work in enumerate(sorted({p.work for p in page.load})):
        colour = PALETTE[n % len(PALETTE)]
        points = sorted((p for p in page.load if p.work == work), key=lambda p: p.throughput_qps)
        labels = [escape(f"[{p.index}] {p.how}") for p in points]
        for name, key, dash in (("p50", "p50_ms", "solid"), ("p99", "p99_ms", "dot")):
            marks = ["~" if name == "p99" and p.indicative else "" for p in points]
            figure.add_trace(
                go.Scatter(
                    name=f"work {work}: {name}",
                    x=[p.throughput_qps for p in points],
                    y=[getattr(p, key) for p in points],
                    customdata=[[label, mark] for label, mark in zip(labels, marks, strict=True)],
                    mode="lines+markers",
                    line={"dash": dash, "color": colour},
                    hovertemplate=(
                        "%{customdata[0]}<br>%{x:.2f} requests/s, "
                        f"{name} %{{customdata[1]}}%{{y:.2f}} ms<extra></extra>"
                    ),
                )
            )
    figure.update_xaxes(title_text="requests answered per second")
    figure.update_yaxes(title_text="latency (ms)")
    return _layout(figure, "Latency under load against throughput")


def row_label(row: ProjectedRow) -> str:
    """A projection's name on the chart: its claim, when it was made, what it is checked by."""
    against = f" vs [{row.against}]" if row.against is not None else ""
    made = "" if row.made == "now" else f" (kept {row.made[:10]})"
    return escape(f"{row.claim}{made}{against}")


def _intervals(delivered: list[Speedup | None]) -> dict[str, object] | None:
    """The delivered speedups' 95% intervals over replicates, as error bars (None: none has
    one, each side having too few replicates)."""
    if all(d is None or d.low is None or d.high is None for d in delivered):
        return None
    above = [d.high - d.ratio if d is not None and d.high is not None else 0 for d in delivered]
    below = [d.ratio - d.low if d is not None and d.low is not None else 0 for d in delivered]
    return {"type": "data", "array": above, "arrayminus": below, "visible": True}


def projected(page: Page) -> go.Figure:
    """Each projection's naive and replayed speedup beside the one delivered."""
    rows = page.projected
    labels = [row_label(r) for r in rows]
    figure = go.Figure()
    for model in ("naive", "replay"):
        figure.add_trace(
            go.Bar(
                name=f"projected ({model})",
                x=labels,
                y=[getattr(r, model) for r in rows],
                marker_color=MODEL_COLOURS[model],
                hovertemplate=f"%{{x}}<br>{model}: %{{y:.3f}}x<extra></extra>",
            )
        )
    delivered = [r.delivered for r in rows]
    if any(d is not None for d in delivered):
        figure.add_trace(
            go.Bar(
                name="delivered (p50)",
                x=labels,
                y=[d.ratio if d is not None else None for d in delivered],
                error_y=_intervals(delivered),
                marker_color=MODEL_COLOURS["delivered"],
                hovertemplate="%{x}<br>delivered: %{y:.3f}x<extra></extra>",
            )
        )
    figure.add_hline(y=1.0, line_dash="dash", line_color="#888")
    figure.update_layout(barmode="group")
    figure.update_yaxes(title_text="end-to-end speedup at p50 (x)")
    return _layout(figure, "Projected against delivered: end-to-end speedup from the base")
