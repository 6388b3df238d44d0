"""Readable tables for the terminal (rich); the data comes from the library, unchanged."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from harness.report import generation, load, roofline, seams
from harness.report.fit import Fit
from harness.report.units import ms

if TYPE_CHECKING:  # pandas-heavy; `gapbench detect` must stay fast
    from harness.analysis.overhead import Overhead
    from harness.analysis.summary import RunFacts, Spread, Summary
    from harness.archive.schema import Agreement, Execution, ProfileRecord
    from harness.plugins import Entry
    from harness.projection.answer import Answer
    from harness.projection.serialisation import Losses


def summary(s: Summary, answer: Answer | None = None, losses: Losses | None = None) -> Group:
    """Verdict first, then end to end, the run's facts, the per-stage table and the answer."""
    m = s.result.manifest
    parts: list[Any] = [header(s)]
    parts += [Text(f"  ! {p}", style="red") for p in s.verdict.problems]
    if s.verdict.busy:
        parts.append(Text("  ! the machine was busy: measure again when it is quiet", style="red"))
    parts += [Text(f"  - {n}", style="yellow") for n in s.verdict.notes]
    e = s.end_to_end
    parts.append(
        Text(
            f"end to end over {e.n} requests ({s.failed} failed): p50 {ms(e.p50 * 1e3)} ms, "
            f"p90 {ms(e.p90 * 1e3, e.indicative(90))} ms, "
            f"p99 {ms(e.p99 * 1e3, e.indicative(99))} ms, "
            f"p99.9 {ms(e.p999 * 1e3, e.indicative(99.9))} ms; coverage {s.coverage:.1%}, "
            f"overlap {ms(s.overlap_ms)} ms"
        )
    )
    if len(s.replicate_p50_s) > 1:
        each = ", ".join(f"{v * 1e3:.4g}" for v in s.replicate_p50_s.values())
        parts.append(Text(f"p50 per replicate: {each} ms"))
    if s.load is not None:
        parts += load.load_lines(s.load)
    if s.generation is not None:
        parts.append(generation.generation_line(s.generation))
    if s.goodput is not None:
        parts.append(generation.goodput_line(s.goodput))
    if s.throughput is not None:
        parts.append(_throughput(s))
    parts.append(Text(_facts(s.facts), style="dim"))
    if m.agreement is not None:
        parts.append(Text(agreement(m.agreement), style="dim"))
    if s.telemetry:
        parts.append(Text(_telemetry(s.telemetry, s.telemetry_notes), style="dim"))
    if s.overhead is not None:
        parts.append(Text(_overhead(s.overhead), style="dim"))
    parts.append(stage_table(s))
    if len(s.waits):
        parts.append(wait_table(s))
    if len(s.tools):
        parts += seams.tool_table(s.tools, m.replicates)
    if m.profile is not None:
        parts.append(profile_table(m.profile, s.timed_call_ms))
    if s.roofline is not None:
        parts += roofline.roofline_table(s.roofline)
    if losses is not None and losses.findings:
        parts += seams.serialisation(losses)
    if answer is not None:
        parts.append(Text(answer.sentence, style="bold"))
    return Group(*parts)


def _overhead(o: Overhead) -> str:
    text = f"probing costs about {o.share_of_p50:.2%} of p50: "
    text += f"{o.probes_per_request:.0f} intervals a request x {o.probe_cost_ns / 1e3:.1f} us each"
    own = []
    if o.progress_share is not None:
        own.append(f"the progress bar took {o.progress_share:.2%} of the measured time")
    if o.sampler_cpu_share is not None:
        own.append(f"the telemetry sampler {o.sampler_cpu_share:.2%} of a CPU")
    if own:
        text += "; " + " and ".join(own)
    return text


def header(s: Summary, tag: str = "") -> Text:
    """The set's id, what ran where, and its verdict in one line."""
    m = s.result.manifest
    execution = m.execution
    threads = execution.threads
    processes = execution.repeat
    params = {**m.work.params, **execution.params}
    given = f"; set {', '.join(f'{k}={v}' for k, v in sorted(params.items()))}" if params else ""
    # The parameters last: where the line is cut short, what ran where stays.
    return Text.assemble(
        (f"{tag}{s.result.id}", "bold"),
        f"  {m.workload} ({m.work.size}) on {execution.device} with "
        f"{backend_name(execution)}, {_count(threads, 'thread')}, "
        f"{_count(processes, 'process', 'processes')}: ",
        ("valid", "green") if s.verdict.valid else ("INVALID", "red"),
        given,
    )


def _count(n: int | None, one: str, many: str = "") -> str:
    if n is None:
        return f"unknown {many or one + 's'}"
    return f"{n} {one if n == 1 else many or one + 's'}"


def backend_name(execution: Execution) -> str:
    """``torch``, or ``onnxruntime (CPUExecutionProvider)``: the backend and what it ran on."""
    providers = execution.backend_config.get("providers_in_use")
    return f"{execution.backend} ({', '.join(providers)})" if providers else execution.backend


def agreement(a: Agreement) -> str:
    return (
        f"agreement with {a.reference} over {a.requests} requests: top-k ids "
        f"{a.top_k_equal:.0%}, tokens {a.tokens_equal:.0%} (positions "
        f"{a.token_positions_equal:.0%}), largest logit difference "
        f"{a.max_abs_logit_diff:.1e} (tolerance {a.logit_tolerance:g})"
    )


def _facts(f: RunFacts) -> str:
    def spread(value: Spread | None, unit: str, scale: float = 1.0, fmt: str = "{:.2f}") -> str:
        if value is None:
            return "unknown"
        low, high = fmt.format(value.low * scale), fmt.format(value.high * scale)
        return f"{low}{unit}" if low == high else f"{low}-{high}{unit}"

    facts = [
        f"model load {spread(f.model_load_s, ' s')}",
        f"first request {spread(f.first_request_s, ' ms', 1e3, '{:.1f}')}",
        f"peak RSS {spread(f.peak_rss_bytes, ' MiB', 2**-20, '{:.0f}')}",
    ]
    if f.gpu_peak_bytes is not None:
        facts.append(f"GPU peak {spread(f.gpu_peak_bytes, ' MiB', 2**-20, '{:.0f}')}")
    facts.append(f"CPU steal {spread(f.cpu_steal_fraction, '%', 100)} while measuring")
    if f.export_s is not None:
        facts.append(f"graphs exported in {f.export_s:.1f} s")
    elif f.graphs_cached:
        facts.append("graphs from the cache")
    if f.agreement_check_s:
        facts.append(f"agreement check {f.agreement_check_s:.1f} s (both inside the model load)")
    return ", ".join(facts)


def _telemetry(t: dict[str, dict[str, Any]], notes: tuple[str, ...]) -> str:
    def med(key: str, scale: float = 1.0, fmt: str = "{:.0f}") -> str | None:
        entry = t.get(key)
        return None if entry is None else fmt.format(entry["median"] * scale)

    parts = []
    if (busy := med("cpu.utilization", 100)) is not None:
        parts.append(f"CPU busy {busy}% (mean over cores, median over the run)")
    if (freq := med("cpu.frequency", 1e-9, "{:.2f}")) is not None:
        drop = t["cpu.frequency"].get("largest_drop")
        parts.append(f"{freq} GHz" + (f", largest drop {drop:.0%}" if drop is not None else ""))
    if (others := med("load.cpu_share[others]", 100)) is not None:
        parts.append(f"other processes {others}% of the run's CPUs (median)")
    if (rss := med("memory.rss[process]", 2**-20)) is not None:
        parts.append(f"RSS {rss} MiB")
    gpus = [k for k in t if k.startswith("gpu.utilization[")]
    for key in gpus:
        parts.append(f"GPU {key[16:-1]} busy {t[key]['median'] * 100:.0f}%")
    for source, name in (("gpu.energy", "GPU"), ("rapl.energy", "CPU package")):
        used = t.get(source, {}).get("used")
        parts.append(f"{name} energy {used:.1f} J" if used is not None else "")
    return "telemetry: " + ", ".join(p for p in [*parts, *notes] if p)


def side_by_side(summaries: list[Summary], same_work: bool) -> Group:
    """Several sets' verdicts, then their per-stage medians in one table, each against [1] as a
    ratio (no significance: each set is shown as measured; `compare` judges it)."""
    parts: list[Any] = []
    for i, s in enumerate(summaries):
        parts.append(header(s, f"[{i + 1}] "))
        parts += [Text(f"  ! {p}", style="red") for p in s.verdict.problems]
    if not same_work:
        parts.append(Text("  ! these sets were given different work: not comparable", "red"))
    table = Fit(
        title="p50 and category medians per stage (ms)",
        caption="x [1]: [1]'s p50 over the set's (above 1: faster), as measured; "
        "gapbench compare says whether it is significant",
    )
    table.add_column("stage", justify="left")
    for i in range(len(summaries)):
        table.add_column(f"[{i + 1}] p50")
        if i and same_work:  # a ratio across different work means nothing
            table.add_column(f"[{i + 1}] x [1]")
        for name in ("compute", "movement"):
            table.add_column(f"[{i + 1}] {name}", drop=1 if name == "movement" else 2)
    stages = dict.fromkeys(r for s in summaries for r in s.stages["stage"])
    rows = [{r["stage"]: r for r in s.stages.to_dict(orient="records")} for s in summaries]
    for stage in [*stages, "end to end"]:
        cells: list[Any] = [Text(stage, style="bold" if stage == "end to end" else "")]
        p50s = [
            s.end_to_end.p50 * 1e3
            if stage == "end to end"
            else by.get(stage, {}).get("wall_p50_ms")
            for s, by in zip(summaries, rows, strict=True)
        ]
        for i, by_stage in enumerate(rows):
            row = by_stage.get(stage, {})
            cells.append(ms(p50s[i]))
            if i and same_work:
                cells.append(_ratio(p50s[0], p50s[i]))
            cells += [ms(row.get(k)) for k in ("compute_ms", "movement_ms")]
        table.add_row(*cells)
    parts.append(table)
    parts += [_throughput(s, f"[{i + 1}] ") for i, s in enumerate(summaries) if s.throughput]
    return Group(*parts)


P50 = "wall_p50_ms"


def _ratio(base: float | None, other: float | None) -> str:
    if base is None or other is None or not other > 0 or math.isnan(base):
        return "-"
    return f"{base / other:.3f}"


def _throughput(s: Summary, tag: str = "") -> Text:
    """Requests (and tokens) a second, and a joule where a counter was read."""
    t = s.throughput
    assert t is not None
    said = f"{tag}throughput {t.requests_per_s:.4g} requests/s"
    if t.output_tokens_per_s is not None:
        said += f", {t.output_tokens_per_s:.4g} output tokens/s"
    pace = "under its load" if t.load else "one request at a time"
    energy = (
        "energy unknown (no counter read)"
        if not t.power_w
        else (f"{t.per_joule_text()} requests/J")
    )
    return Text(f"{said} ({pace}); {energy}", style="dim")


def stage_table(s: Summary) -> Fit:
    e = s.end_to_end
    table = Fit(title="per stage (ms; category columns are medians; ~ = indicative)")
    table.add_column("stage", justify="left")
    table.add_column("layer", justify="left", drop=3)
    columns = (("p50", None), ("p90", 4), ("p99", 5), ("compute", None), ("movement", None),
               ("scheduling", None), ("unattrib.", None), ("on-CPU", 2), ("share", 6),
               ("coverage", 1))  # fmt: skip
    for name, drop in columns:
        table.add_column(name, drop=drop)
    for row in s.stages.to_dict(orient="records"):
        table.add_row(
            Text(row["stage"]),
            Text(row["layer"]),
            ms(row["wall_p50_ms"]),
            ms(row.get("wall_p90_ms"), e.indicative(90)),
            ms(row.get("wall_p99_ms"), e.indicative(99)),
            ms(row.get("compute_ms")),
            ms(row.get("movement_ms")),
            ms(row.get("scheduling_ms")),
            ms(row.get("unattributed_ms")),
            ms(row.get("on_cpu_ms")),
            f"{row['share']:.1%}",
            f"{row['coverage']:.0%}",
        )
    return table


def wait_table(s: Summary) -> Table:
    table = Table(title="waits on the critical path, by kind (ms)")
    for name in ("wait", "median", "p90", "share"):
        table.add_column(name, justify="left" if name == "wait" else "right")
    for row in s.waits.to_dict(orient="records"):
        share = f"{row['share']:.1%}"
        table.add_row(Text(row["wait"]), ms(row["median_ms"]), ms(row["p90_ms"]), share)
    return table


def profile_table(
    profile: ProfileRecord, timed_call_ms: dict[tuple[str, str], float] | None = None
) -> Table:
    timed = timed_call_ms or {}
    verdict = "agrees" if profile.agrees(timed) else "DISAGREES"
    tool = profile.tool
    table = Table(title=f"{tool} cross-check over {profile.requests} extra requests: {verdict}")
    # torch: judged on the operators inside each probe's scope; onnxruntime: on the session
    # runs, with their node kernels beside them.
    torch_like = tool == "torch.profiler"
    judged_on, other = ("operators", "scope") if torch_like else ("session runs", "node kernels")
    columns = (
        "stage",
        "probe",
        "gapbench ms",
        f"{judged_on} ms",
        "diff",
        f"{other} ms",
        "timed ms a call",
        "judged",
    )
    for name in columns:
        table.add_column(name, justify="left" if name in ("stage", "probe") else "right")
    for c in profile.checks:
        reference, beside = c.profiler_operator_ms, c.profiler_scope_ms
        if not torch_like:
            reference, beside = beside, reference
        table.add_row(
            Text(c.stage),
            Text(c.label),
            ms(c.gapbench_ms),
            ms(reference),
            "-" if math.isnan(c.agreement) else f"{c.agreement:.1%}",
            ms(beside),
            ms(timed[(c.stage, c.label)]) if (c.stage, c.label) in timed else "-",
            "yes"
            if c.judged(timed.get((c.stage, c.label)))
            else ""
            if c.visible
            else "not visible",
        )
    return table


def workloads(entries: Iterable[Entry]) -> Table:
    table = Table(title="workloads")
    for name in ("name", "from", "description", "stages (layer, after)", "parameters"):
        table.add_column(name)
    for e in entries:
        stages = ", ".join(
            f"{s.name} ({s.layer}{', after ' + '+'.join(s.after) if s.after else ''})"
            for s in e.stages
        )
        # NAME=DEFAULT (allowed; what it changes): the line a user copies into --set.
        params = "\n".join(f"{p.name}={p.default} ({p.allowed()}; {p.changes})" for p in e.params)
        description = Text(f"broken: {e.problem}", "red") if e.problem else Text(e.description)
        table.add_row(Text(e.name), Text(e.ref), description, Text(stages), Text(params or "-"))
    return table


def detect(fingerprint: dict[str, Any]) -> Group:
    """The fingerprint's headline fields and every environment check."""
    table = Table(title="hardware and software", show_header=False)
    table.add_column("field")
    table.add_column("value")
    for key, value in _flatten(fingerprint):
        if key.startswith("environment"):
            continue
        table.add_row(Text(key), Text(str(value)))
    checks = Table(title="environment checks")
    for name in ("check", "value", "status", "detail"):
        checks.add_column(name)
    colours = {"ok": "green", "warn": "yellow", "unknown": "dim"}
    for check in fingerprint.get("environment", []):
        colour = colours.get(check["status"], "white")
        # Text, not markup: values such as "always [madvise] never" hold brackets.
        checks.add_row(
            Text(check["name"]),
            Text(check["value"]),
            Text(check["status"], colour),
            Text(check["detail"]),
        )
    return Group(table, checks)


def _flatten(value: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        for i, inner in enumerate(value):
            yield from _flatten(inner, f"{prefix}[{i}]")
    elif isinstance(value, list):
        yield prefix, " ".join(map(str, value)) if value else "none"
    else:
        yield prefix, "unknown" if value is None else value
