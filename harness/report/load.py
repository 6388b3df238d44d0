"""A load run for the terminal: latency by percentile, queue wait beside theory, lag, clocks."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from harness.analysis.generation import Generation
    from harness.analysis.load import LoadReport
    from harness.experiments.capacity import Capacity


def _ms(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}"


def how(report: LoadReport) -> str:
    """The load in words: its scenario, rate and servers."""
    if not report.by_loadgen:
        return f"closed loop of {report.concurrency} clients"
    rate = f" at {report.target_qps:g} qps" if report.target_qps is not None else ""
    workers = f"{report.workers} worker{'s' if report.workers != 1 else ''}"
    return f"{report.scenario}{rate} (LoadGen), {workers}"


def load_lines(report: LoadReport) -> list[Any]:
    """What `run` and `show` print of a set run under a load."""
    parts: list[Any] = [
        Text(
            f"under load: {how(report)}: {report.queries:,} queries in "
            f"{report.measured_s:.1f} s, {report.throughput_qps:.1f} queries/s answered, "
            f"{report.samples_per_s:.1f} samples/s",
            style="bold",
        )
    ]
    since = "its scheduled arrival" if report.by_loadgen else "its send"
    shown = ", ".join(f"p{p:g} {_ms(v)}" for p, v in report.latency_ms.items())
    parts.append(Text(f"latency from {since} (ms): {shown}"))
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
                f"queue wait: measured mean {_ms(queue.measured_mean_ms)} ms "
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
                f"harness lag (the generator behind its schedule): p50 {_ms(lag['p50'])} ms, "
                f"p99 {_ms(lag['p99'])} ms, max {_ms(lag['max'])} ms; bound "
                f"{_ms(report.lag_bound_ms)} ms",
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
        line = f"{said}: {verdict}" + (
            f"; early-stopping estimates: {estimates}" if estimates else ""
        )
        parts.append(Text(line, style="dim"))
    return parts


def _clock_table(report: LoadReport) -> Table:
    table = Table(title="latency from the scheduled arrival: gapbench's clock against LoadGen's")
    for name in ("percentile", "LoadGen trace", "LoadGen summary", "gapbench", "apart", "agrees"):
        table.add_column(name, justify="right" if name != "agrees" else "left")
    for c in report.clocks:
        table.add_row(
            f"p{c.percentile:g}",
            _ms(c.loadgen_ms),
            _ms(c.summary_ms),
            _ms(c.gapbench_ms),
            f"{c.difference:.2%}",
            "yes" if c.agrees else "NO",
        )
    return table


def capacity_table(found: Capacity) -> Group:
    """A sweep's or a search's steps as a latency-throughput table, and a search's answer."""
    search = found.p99_bound_ms is not None
    workers = f"{found.workers} worker{'s' if found.workers != 1 else ''}"
    title = f"{found.workload} under LoadGen's server scenario, {workers}: latency from the "
    title += "scheduled arrival (~: p99 over fewer than 662 queries, indicative)"
    table = Table(title=title)
    columns = ["target qps", "answered/s", "queries", "p50 ms", "p99 ms", "queue ms"]
    columns += ["M/G/c ms", "lag p99 ms", "wall s"] + (["p99 bound"] if search else []) + ["set"]
    for name in columns:
        table.add_column(name, justify="left" if name in ("set", "p99 bound") else "right")
    for s in found.steps:
        row = [
            f"{s.target_qps:.2f}",
            f"{s.throughput_qps:.2f}",
            f"{s.queries:,}",
            _ms(s.p50_ms),
            ("~" if s.p99_indicative else "") + _ms(s.p99_ms),
            _ms(s.queue_ms),
            _ms(s.predicted_queue_ms) if s.predicted_queue_ms is not None else "unbounded",
            _ms(s.lag_p99_ms),
            f"{s.wall_s:.0f}",
        ]
        if search:
            row.append("pass" if s.passed else f"FAIL: {s.failed_because}")
        table.add_row(*row, s.set_id)
    parts: list[Any] = [table]
    cost = f"{len(found.steps)} server runs in {found.wall_s:.0f} s of wall time"
    if search:
        if found.max_qps is None:
            answer = f"no rate kept p99 within {found.p99_bound_ms:g} ms"
        else:
            answer = (
                f"at most {found.max_qps:.2f} queries/s keep p99 within {found.p99_bound_ms:g} ms"
            )
        ceiling = f"; a closed loop of {workers} answered {found.probe_qps:.2f}/s"
        parts.append(Text(answer + ceiling, style="bold"))
    parts.append(Text(cost, style="dim"))
    return Group(*parts)


def generation_lines(found: Generation) -> list[Any]:
    """Time to first token, per output token, between tokens, end to end; goodput if asked."""

    def pcts(values: dict[float, float]) -> str:
        return "/".join(_ms(v) for v in values.values())

    parts: list[Any] = [
        Text(
            f"generation over {found.requests:,} requests, {found.output_tokens:,} tokens, "
            f"{found.output_tokens_per_s:.1f} output tokens/s; p50/p90/p99 (ms): TTFT "
            f"{pcts(found.ttft_ms)}, TPOT {pcts(found.tpot_ms)}, ITL {pcts(found.itl_ms)}, "
            f"e2e {pcts(found.e2e_ms)}"
        )
    ]
    if found.goodput is not None:
        g = found.goodput
        slo = ", ".join(f"{k} {v:g} ms" for k, v in g.slo_ms.items())
        parts.append(
            Text(
                f"goodput: {g.requests_per_s:.2f} requests/s met every objective ({slo}): "
                f"{g.share:.0%} of requests",
                style="bold",
            )
        )
    return parts


def load_beside(base: LoadReport, candidate: LoadReport) -> Table:
    """Two sets' loads side by side: what `compare` adds for sets run under load."""
    table = Table(title=f"under load: BASE {how(base)}; CANDIDATE {how(candidate)}")
    for name in ("", "BASE", "CANDIDATE", "CANDIDATE / BASE"):
        table.add_column(name, justify="left" if not name else "right")

    def row(name: str, a: float | None, b: float | None) -> None:
        known = a is not None and b is not None and math.isfinite(a) and math.isfinite(b)
        ratio = f"{b / a:.3f}" if known and a else "-"  # type: ignore[operator]
        table.add_row(name, _ms(a), _ms(b), ratio)

    row("answered queries/s", base.throughput_qps, candidate.throughput_qps)
    row("samples/s", base.samples_per_s, candidate.samples_per_s)
    for p in (50.0, 99.0):
        row(f"p{p:g} from arrival, ms", base.latency_ms[p], candidate.latency_ms[p])
    queues = (base.queue, candidate.queue)
    if all(q is not None for q in queues):
        row("queue wait, ms", *(q.measured_mean_ms for q in queues))  # type: ignore[union-attr]
    return table
