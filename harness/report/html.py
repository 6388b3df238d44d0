"""`gapbench report` as one self-contained HTML page: plotly.js inline once, plotly chosen over
altair because its JavaScript ships inside its Python wheel, so an offline page needs no other
package (altair needs vl-convert to inline Vega); tables in plain HTML with inline CSS."""

from __future__ import annotations

import contextlib
import os
import secrets
from html import escape
from pathlib import Path

import plotly.io as pio
from plotly.offline import get_plotlyjs

from harness.errors import UserError
from harness.report.charts import Chart, charts
from harness.report.page import Page
from harness.report.sections import (
    Safe,
    breakdown_section,
    latency_section,
    load_section,
    paragraphs,
    projected_section,
    reliability_section,
    sets_section,
    throughput_section,
)
from harness.report.trace import refuse_overwrite

# Nothing may load from elsewhere, whatever a set's strings hold: the page is the whole report.
POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:"
)
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
  max-width: 1200px; padding: 1.5rem; color: #1f2933; background: #fff; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2.2rem; border-bottom: 1px solid #d9dee4;
  padding-bottom: 0.3rem; }
h3 { font-size: 1rem; margin-top: 1.4rem; }
nav a { margin-right: 1rem; color: #2f5d8a; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.85rem; }
th, td { border: 1px solid #d9dee4; padding: 0.3rem 0.55rem; vertical-align: top; }
th { background: #f2f5f8; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.valid { color: #1a7f37; font-weight: 600; }
.invalid, .problem { color: #c62828; }
.invalid { font-weight: 600; }
.note, .dim { color: #5f6b7a; }
p.problem, p.note, p.dim { margin: 0.3rem 0; font-size: 0.9rem; }
.chart { margin: 0.5rem 0 1rem; }
code { font-size: 0.85em; }
"""


def figure_html(chart: Chart) -> Safe:
    """A chart's div and the script that draws it (plotly.js itself is in the page's head).
    plotly writes the figure as JSON with ``<``, ``>`` and ``/`` escaped: no string closes it."""
    height = chart.figure.layout.height or 420
    drawn = pio.to_html(
        chart.figure,
        full_html=False,
        include_plotlyjs=False,
        div_id=f"chart-{chart.key}",
        config={"displaylogo": False, "responsive": True},
        default_height=f"{height}px",
    )
    return Safe(f'<div class="chart">{drawn}</div>')


def sections(page: Page) -> list[tuple[str, str, Safe]]:
    """The page's sections in order: (anchor, heading, content)."""
    figures = {chart.key: figure_html(chart) for chart in charts(page)}
    found = [
        ("sets", "Sets and machines", sets_section(page)),
        ("breakdown", "Where the time goes", breakdown_section(page, figures)),
        ("latency", "Latency", latency_section(page, figures)),
        ("throughput", "Throughput", throughput_section(page, figures)),
    ]
    if page.load:
        found.append(("load", "Latency under load", load_section(page, figures)))
    if len(page.sets) > 1 or page.projected:
        found.append(("projected", "Projected against measured", projected_section(page, figures)))
    found.append(("reliability", "Reliability", reliability_section(page)))
    return found


def render(page: Page) -> str:
    """The whole page as text."""
    count = len(page.sets)
    title = f"gapbench report: {count} result set{'s' if count != 1 else ''}"
    intro = f"Made {page.made_utc} by gapbench {page.gapbench}."
    if count > 1:
        intro += f" [1] {page.base.id} is the base the others are compared with."
    parts = sections(page)
    nav = " ".join(f'<a href="#{key}">{escape(name)}</a>' for key, name, _ in parts)
    body = "\n".join(
        f'<section id="{key}">\n<h2>{escape(name)}</h2>\n{content}\n</section>'
        for key, name, content in parts
    )
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title>",
            f"<style>{STYLE}</style>",
            f'<script type="text/javascript">{get_plotlyjs()}</script>',
            "</head>",
            "<body>",
            f"<header><h1>{escape(title)}</h1><p>{escape(intro)}</p></header>",
            f"<nav>{nav}</nav>",
            body,
            f"<footer>{paragraphs(page.notes, 'note')}</footer>",
            "</body>",
            "</html>",
            "",
        ]
    )


def write(page: Page, path: str | os.PathLike[str], overwrite: bool = False) -> int:
    """Write the page to ``path`` (refused where a file is, unless ``overwrite``); returns its
    size in bytes. Written beside it first and moved into place: never half a page."""
    refuse_overwrite(path, overwrite)
    text = render(page).encode()
    target = Path(path)
    # Named by hand, not by tempfile: its files are private (0600), a page is for sharing.
    made = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(made, "xb") as out:
            out.write(text)
        os.replace(made, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            made.unlink()
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return len(text)
