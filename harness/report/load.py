"""A load run for the terminal: latency by percentile, queue wait beside theory, lag, clocks."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from harness.analysis.stats import sample_floor
from harness.report.units import ms

if TYPE_CHECKING:
    from harness.analysis.load import LoadReport


def how(report: LoadReport) -> str:
    """The load in words: its scenario, rate and servers."""
    if not report.by_loadgen:
        return f"closed loop of {report.concurrency} clients"
    rate = f" at {report.target_qps:g} qps" if report.target_qps is not None else ""
    workers = f"{report.workers} worker{'s' if report.workers != 1 else ''}"
    return f"{report.scenario}{rate} (LoadGen), {workers}"


def load_lines(report: LoadReport) -> list[Any]:
    """What `run` and `show` print of a set run under a load."""
    # LoadGen's offline and multi-stream queries carry several samples: each is counted.
    each = "samples" if report.scenario in ("offline", "multi-stream") else "queries"
    parts: list[Any] = [
        Text(
            f"under load: {how(report)}: {report.queries:,} {each} in "
            f"{report.measured_s:.1f} s, {report.throughput_qps:.1f} {each}/s answered, "
            f"{report.samples_per_s:.1f} samples/s",
            style="bold",
        )
    ]
    since = (
        "its scheduled arrival"
        if report.lag_ms
        else "its issue"
        if report.by_loadgen
        else "its send"
    )
    shown = ", ".join(
        f"p{p:g} {ms(v, report.counted < sample_floor(p))}" for p, v in report.latency_ms.items()
    )
    parts.append(Text(f"latency from {since} (ms; ~: too few queries for it): {shown}"))
    queue = report.queue
    if queue is not None:
        p = queue.predicted
        predicted = (
            f"{queue.predicted_mean_ms:.2f} ms ({p.p_wait:.0%})"
            if math.isfinite(queue.predicted_mean_ms)
            else "a queue that grows without bound"
        )
        parts.append(
            Text(
                f"wait for a free worker: measured mean {ms(queue.measured_mean_ms)} ms "
                f"({queue.measured_p_wait:.0%} of queries found every worker busy); "
                f"M/G/{p.servers} predicts {predicted} "
                f"from service mean {p.service_mean_s * 1e3:.2f} ms, cv² {p.service_cv2:.2f}, "
                f"utilisation {p.utilisation:.2f} at the {queue.arrival_qps:.1f} arrivals/s "
                "LoadGen drew"
            )
        )
    if report.lag_ms:
        lag = report.lag_ms
        parts.append(
            Text(
                f"harness lag (the generator behind its schedule): p50 {ms(lag['p50'])} ms, "
                f"p99 {ms(lag['p99'])} ms, max {ms(lag['max'])} ms; bound "
                f"{ms(report.lag_bound_ms)} ms",
                style="dim",
            )
        )
    if report.worker_on_cpu is not None:
        parts.append(
            Text(
                f"serving threads were on the CPU {report.worker_on_cpu:.0%} of their wall "
                "time (the rest: the interpreter lock, I/O, or the model's own threads)",
                style="dim",
            )
        )
    if report.clocks:
        parts.append(_clock_table(report))
    for index, summary in enumerate(report.loadgen):
        verdict = "VALID" if summary.valid else "INVALID"
        estimates = "; ".join(
            f"{what} {ns / 1e6:.2f} ms" for what, ns in summary.early_stopping.items()
        )
        said = f"LoadGen's verdict{f' (replicate {index})' if len(report.loadgen) > 1 else ''}"
        line = f"{said}: {verdict}"
        if estimates:
            line += f"; early-stopping estimates: {estimates}"
        elif summary.early_stopping_said:
            line += f"; early stopping: {' '.join(summary.early_stopping_said)}"
        parts.append(Text(line, style="dim"))
    return parts


def _clock_table(report: LoadReport) -> Table:
    table = Table(title="latency from the scheduled arrival: gapbench's clock against LoadGen's")
    for name in ("replicate", "percentile", "LoadGen trace", "LoadGen summary", "gapbench"):
        table.add_column(name, justify="right")
    for name in ("apart", "agrees"):
        table.add_column(name, justify="right" if name != "agrees" else "left")
    for c in report.clocks:
        table.add_row(
            str(c.replicate),
            f"p{c.percentile:g}",
            ms(c.loadgen_ms),
            ms(c.summary_ms),
            ms(c.gapbench_ms),
            f"{c.difference:.2%}",
            "yes" if c.agrees else "NO",
        )
    return table


def load_beside(base: LoadReport, candidate: LoadReport) -> Table:
    """Two sets' loads side by side: what `compare` adds for sets run under load."""
    table = Table(title=f"under load: BASE {how(base)}; CANDIDATE {how(candidate)}")
    for name in ("", "BASE", "CANDIDATE", "CANDIDATE / BASE"):
        table.add_column(name, justify="left" if not name else "right")

    def row(name: str, a: float | None, b: float | None) -> None:
        known = a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
        ratio = f"{b / a:.3f}" if known and a else "-"  # type: ignore[operator]
        table.add_row(name, ms(a), ms(b), ratio)

    row("answered queries/s", base.throughput_qps, candidate.throughput_qps)
    row("samples/s", base.samples_per_s, candidate.samples_per_s)
    for p in (50.0, 99.0):
        row(f"p{p:g} from arrival, ms", base.latency_ms[p], candidate.latency_ms[p])
    queues = (base.queue, candidate.queue)
    if all(q is not None for q in queues):
        row("queue wait, ms", *(q.measured_mean_ms for q in queues))  # type: ignore[union-attr]
    return table
