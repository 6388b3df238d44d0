"""Generation metrics and goodput for the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from harness.analysis.stats import sample_floor
from harness.report.units import ms

if TYPE_CHECKING:
    from harness.analysis.generation import Generation, Goodput


def generation_line(found: Generation) -> Text:
    """Time to first token, per output token, between tokens and end to end; tokens/s."""

    def pcts(values: dict[float, float]) -> str:
        return "/".join(ms(v, found.requests < sample_floor(p)) for p, v in values.items())

    return Text(
        f"generation over {found.requests:,} requests, {found.output_tokens:,} tokens, "
        f"{found.output_tokens_per_s:.1f} output tokens/s; p50/p90/p99 (ms): TTFT "
        f"{pcts(found.ttft_ms)}, TPOT {pcts(found.tpot_ms)}, ITL {pcts(found.itl_ms)}, "
        f"e2e {pcts(found.e2e_ms)}"
    )


def goodput_line(g: Goodput) -> Text:
    """The rate of requests meeting every objective given."""
    slo = ", ".join(f"{k} {v:g} ms" for k, v in g.slo_ms.items())
    return Text(
        f"goodput: {g.requests_per_s:.2f} requests/s met every objective ({slo}): "
        f"{g.share:.0%} of requests",
        style="bold",
    )
