"""The HTML report's sections as plain tables: every string from a set escaped on its way in."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape

from harness.analysis.stats import sample_floor
from harness.projection.compare import MIN_REPLICATES, Speedup
from harness.report.against import ProjectedRow
from harness.report.page import CATEGORIES, Page, SetView, how
from harness.report.terminal import backend_name


class Safe(str):
    """HTML written here, to be placed as it is (anything else is escaped)."""


class Figure(Safe):
    """A number written here: placed as it is, aligned as numbers are."""


Cell = str | int | None  # text is escaped, a Safe placed as it is; None: nothing to show


def cell(value: Cell) -> str:
    if isinstance(value, Figure):
        return f'<td class="num">{value}</td>'
    if isinstance(value, Safe):
        return f"<td>{value}</td>"
    if value is None:
        return '<td class="num">-</td>'
    if isinstance(value, int):
        return f'<td class="num">{value:,}</td>'
    return f"<td>{escape(value)}</td>"


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell]]) -> Safe:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(f"<tr>{''.join(cell(c) for c in row)}</tr>" for row in rows)
    return Safe(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def number(value: float | None, digits: int = 2, unit: str = "", rough: bool = False) -> Figure:
    """A figure as the tables write it: fixed digits, ``~`` when indicative, ``-`` for none."""
    if value is None or not math.isfinite(value):
        return Figure('<span class="dim">-</span>')
    return Figure(f"{'~' if rough else ''}{value:,.{digits}f}{unit}")


def paragraphs(items: Iterable[str], css: str) -> Safe:
    return Safe("".join(f'<p class="{css}">{escape(i)}</p>' for i in items))


def verdict(view: SetView) -> Safe:
    valid = view.summary.verdict.valid
    return Safe(
        '<span class="valid">valid</span>' if valid else '<span class="invalid">INVALID</span>'
    )


def sets_section(page: Page) -> Safe:
    """What ran where, and each set's verdict with its problems (its notes folded away)."""
    runs, machines = [], []
    for v in page.sets:
        m, execution = v.summary.result.manifest, v.summary.result.manifest.execution
        params = {**m.work.params, **execution.params}
        given = ", ".join(f"{k}={val}" for k, val in sorted(params.items()))
        runs.append(
            (
                f"[{v.index}]",
                Safe(f"<code>{escape(v.id)}</code>"),
                f"{m.workload} ({m.work.size})" + (f"; {given}" if given else ""),
                f"work {v.work}",
                backend_name(execution),
                execution.device,
                "unknown" if execution.threads is None else execution.threads,
                execution.repeat,
                m.created_utc,
                verdict(v),
            )
        )
        machines.append(
            (
                f"[{v.index}]",
                v.machine.cpu,
                v.machine.cores,
                v.machine.memory,
                v.machine.accelerators,
                v.machine.system,
            )
        )
    headers = ("", "set", "workload", "work", "backend", "device", "threads", "processes")
    found = [table((*headers, "made (UTC)", "verdict"), runs)]
    machine_headers = ("", "CPU", "cores", "memory", "accelerators", "system")
    said = "Sets with the same work number were given the same work: only they are compared."
    found.append(paragraphs([said], "dim"))
    for v in page.sets:
        verdict_of = v.summary.verdict
        found.append(paragraphs([f"[{v.index}] {p}" for p in verdict_of.problems], "problem"))
        if verdict_of.notes:
            notes = paragraphs(verdict_of.notes, "note")
            found.append(Safe(f"<details><summary>[{v.index}] notes</summary>{notes}</details>"))
    found.append(Safe("<h3>Machines</h3>"))
    found.append(paragraphs([page.machines.sentence()], "note"))
    found.append(paragraphs(page.machines.warnings(), "problem"))
    found.append(table(machine_headers, machines))
    return Safe("".join(found))


def breakdown_section(page: Page, figures: Mapping[str, Safe]) -> Safe:
    headers = ("set", "stage", "layer", "wall p50 (ms)", *(f"{c} (ms)" for c in CATEGORIES))
    rows = [
        (
            f"[{v.index}]",
            s.stage,
            s.layer,
            number(s.wall_p50_ms, 3),
            *(number(getattr(s, f"{c}_ms"), 3) for c in CATEGORIES),
        )
        for v in page.sets
        for s in v.stages
    ]
    coverage = "; ".join(f"[{v.index}] {v.summary.coverage:.1%}" for v in page.sets)
    said = (
        "Medians per request of each stage's wall time and of its split. Unattributed is the "
        f"time no probe explains, shown apart, never as scheduling. Probe coverage: {coverage}."
    )
    return Safe(figures["breakdown"] + paragraphs([said], "dim") + table(headers, rows))


def latency_section(page: Page, figures: Mapping[str, Safe]) -> Safe:
    rows = []
    for v in page.sets:
        e = v.summary.end_to_end
        rows.append(
            (
                f"[{v.index}] {v.id}",
                e.n,
                number(e.p50 * 1e3),
                number(e.p90 * 1e3, rough=e.indicative(90)),
                number(e.p99 * 1e3, rough=e.indicative(99)),
                number(e.p999 * 1e3, rough=e.indicative(99.9)),
                number(e.iqr_over_median, 3, " (noisy)" if e.noisy else ""),
            )
        )
    headers = ("set", "ok requests", "p50 (ms)", "p90", "p99", "p99.9", "IQR / median")
    said = "~ marks a percentile over fewer requests than it needs to mean much."
    return Safe(figures["latency"] + table(headers, rows) + paragraphs([said], "dim"))


def throughput_section(page: Page, figures: Mapping[str, Safe]) -> Safe:
    priced = any(v.cost is not None for v in page.sets)
    rows = []
    for v in page.sets:
        row: list[Cell] = [
            f"[{v.index}] {v.id}",
            f"work {v.work}",
            how(v.summary),
            number(v.requests_per_s),
            number(v.tokens_per_s, 1) if v.tokens_per_s is not None else None,
            v.requests_per_joule,
        ]
        if priced:
            c = v.cost
            row += (
                [None, None, None]
                if c is None
                else [
                    number(c.usd_per_hour),
                    number(c.requests_per_dollar, 0),
                    number(c.usd_per_million_requests),
                ]
            )
        rows.append(row)
    headers = ["set", "work", "how requests arrived", "requests/s", "output tokens/s"]
    headers.append("requests/J")
    if priced:
        headers += ["USD/hour", "requests/USD", "USD/M requests"]
    said = (
        "At each set's own pace: one request at a time, or the load it ran under; only sets of "
        "the same work are to be set side by side. Energy from the counters the machine "
        "exposes (RAPL, NVML): unknown where it exposes none."
    )
    found = figures["throughput"] + figures.get("tokens", "")
    return Safe(found + table(headers, rows) + paragraphs([said], "dim"))


def load_section(page: Page, figures: Mapping[str, Safe]) -> Safe:
    rows = [
        (
            f"[{p.index}]",
            f"work {p.work}",
            p.how,
            number(p.throughput_qps),
            number(p.p50_ms),
            number(p.p99_ms, rough=p.indicative),
        )
        for p in page.load
    ]
    headers = ("set", "work", "load", "requests/s", "p50 (ms)", "p99 (ms)")
    said = (
        "Under a load, latency counts from each query's scheduled arrival; sets of the same work "
        "run one request at a time are drawn beside them."
    )
    return Safe(figures["load"] + paragraphs([said], "dim") + table(headers, rows))


def _details(summary: str, items: Sequence[str]) -> Safe:
    listed = "<br>".join(escape(i) for i in items)
    return Safe(f"<details><summary>{escape(summary)}</summary>{listed}</details>")


def _significance(s: Speedup) -> str:
    if s.low is None:
        return f"not judged (fewer than {MIN_REPLICATES} replicates a side)"
    return "significant" if s.significant else "not significant"


def _stage(s: Speedup) -> str:
    return (
        f"{s.name}: {s.base_ms:.2f} -> {s.candidate_ms:.2f} ms, {s.ratio:.3f}x, {_significance(s)}"
    )


def _interval(s: Speedup | None) -> Figure:
    if s is None or s.low is None or s.high is None:
        return Figure('<span class="dim">-</span>')
    return Figure(f"{s.low:.3f}-{s.high:.3f}")


_COMPARED = (
    *("sets", "base p50 (ms)", "other p50 (ms)", "speedup", "95% interval"),
    *("significance", "both valid", "outputs equal", "per stage", "execution differences"),
)
_PROJECTED = (
    *("claim", "made", "claimed", "naive", "replay", "delivered by", "delivered"),
    *("95% interval", "replay error", "note"),
)


def projected_section(page: Page, figures: Mapping[str, Safe]) -> Safe:
    """Each other set beside the base, then each projection beside what was delivered."""
    found: list[Safe] = []
    rows = []
    for pairing in page.pairings:
        c = pairing.comparison
        if c is None:
            found.append(paragraphs([f"[{pairing.index}] not compared: {pairing.why_not}"], "note"))
            continue
        e2e = c.end_to_end
        differences = [f"{k}: {a} -> {b}" for k, (a, b) in c.differences.items()]
        rows.append(
            (
                f"[1] -> [{pairing.index}]",
                number(e2e.base_ms),
                number(e2e.candidate_ms),
                # As pyperf says it: inside the noise there is no ratio to read.
                "not significant"
                if e2e.low is not None and not e2e.significant
                else number(e2e.ratio, 3, "x", rough=e2e.low is None),
                _interval(e2e),
                _significance(e2e),
                "yes" if c.trustworthy else "no: a set is INVALID",
                ", ".join(f"{k} {v:.0%}" for k, v in (c.agreement or {}).items()) or "-",
                _details(f"{len(c.stages)} stages", [_stage(s) for s in c.stages]),
                _details(f"{len(c.differences)} settings", differences) if differences else "none",
            )
        )
    if rows:
        found.insert(0, table(_COMPARED, rows))
    if page.projected:
        found.append(figures["projected"])
        found.append(table(_PROJECTED, (_projected_row(r) for r in page.projected)))
        said = (
            "Naive: Amdahl on summed time; replay: the recorded dependency graph replayed with "
            "scaled intervals. Claimed: what the claim gives the work it matched, taken alone. "
            "Replay error: the replayed speedup against the delivered one (+: it promised more)."
        )
        found.append(paragraphs([said], "dim"))
    elif not rows:
        found.append(
            paragraphs(["No projection was kept beside the base and no claim given."], "dim")
        )
    return Safe("".join(found))


def _projected_row(r: ProjectedRow) -> tuple[Cell, ...]:
    delivered = r.delivered
    error = (
        r.replay / delivered.ratio - 1 if delivered is not None and delivered.ratio > 0 else None
    )
    return (
        r.claim,
        r.made,
        number(r.claimed, 3, "x") if r.claimed is not None else None,
        number(r.naive, 3, "x"),
        number(r.replay, 3, "x"),
        f"[{r.against}]" if r.against is not None else "no set of the same work",
        number(delivered.ratio, 3, "x") if delivered is not None else None,
        _interval(delivered),
        Figure(f"{error:+.1%}") if error is not None and math.isfinite(error) else None,
        r.note,
    )


def reliability_section(page: Page) -> Safe:
    rows = []
    for v in page.sets:
        common = v.errors[0] if v.errors else None
        load = v.summary.load
        loadgen = ""
        if load is not None and load.loadgen:
            judged = sum(1 for s in load.loadgen if s.valid)
            loadgen = f"{judged} of {len(load.loadgen)} replicates valid"
        rows.append(
            (
                f"[{v.index}] {v.id}",
                v.requests,
                v.summary.failed,
                Figure(f"{v.error_rate:.2%}") if math.isfinite(v.error_rate) else None,
                f"{common[0]} (x{common[1]})" if common else "",
                loadgen,
            )
        )
    headers = ("set", "requests", "failed", "error rate", "most common error", "LoadGen")
    found = [table(headers, rows)]
    for v in page.sets:
        load = v.summary.load
        if load is None:
            continue
        found.append(paragraphs([f"[{v.index}] load run: {p}" for p in load.problems], "problem"))
        found.append(paragraphs([f"[{v.index}] load run: {n}" for n in load.notes], "note"))
    floor = sample_floor(99.0)
    said = f"Failed requests are left out of every percentile; p99 needs {floor} requests."
    found.append(paragraphs([said], "dim"))
    return Safe("".join(found))
