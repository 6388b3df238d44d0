"""Readable tables for the terminal (rich); the data comes from the library, unchanged."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # pandas-heavy; `gapbench detect` must stay fast
    from harness.archive.store import Listing
    from harness.analysis.summary import Summary


def _ms(value: float | None, indicative: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{'~' if indicative else ''}{value:.2f}"


def summary(s: Summary) -> Group:
    """Verdict first, then end to end, the per-stage table and the answer."""
    m = s.result.manifest
    parts: list[Any] = [header(s)]
    parts += [Text(f"  ! {p}", style="red") for p in s.verdict.problems]
    parts += [Text(f"  - {n}", style="yellow") for n in s.verdict.notes]
    e = s.end_to_end
    errors = int((~s.result.requests["ok"]).sum())
    parts.append(
        Text(
            f"end to end over {e.n} requests ({errors} failed): p50 {_ms(e.p50 * 1e3)} ms, "
            f"p90 {_ms(e.p90 * 1e3, e.indicative(90))} ms, "
            f"p99 {_ms(e.p99 * 1e3, e.indicative(99))} ms, "
            f"p99.9 {_ms(e.p999 * 1e3, e.indicative(99.9))} ms; coverage {s.coverage:.1%}, "
            f"overlap {_ms(s.overlap_ms)} ms"
        )
    )
    parts.append(Text(_facts(m["replicates"]), style="dim"))
    if m.get("agreement"):
        parts.append(Text(agreement(m["agreement"]), style="dim"))
    if s.telemetry:
        parts.append(Text(_telemetry(s.telemetry, m["replicates"]), style="dim"))
    if s.overhead:
        o = s.overhead
        each_us = o["probe_cost_ns"] / 1e3
        text = f"probing costs about {o['share_of_p50']:.2%} of p50: "
        text += f"{o['probes_per_request']:.0f} intervals a request x {each_us:.1f} us each"
        drawn = sum(r.get("progress_s") or 0.0 for r in m["replicates"])
        sampled = sum((r.get("telemetry_cost") or {}).get("cpu_s", 0.0) for r in m["replicates"])
        measured = sum(r.get("measured_s") or 0.0 for r in m["replicates"])
        if measured:
            text += f"; the progress bar took {drawn / measured:.2%} of the measured time"
            text += f" and the telemetry sampler {sampled / measured:.2%} of a CPU"
        parts.append(Text(text, style="dim"))
    parts.append(stage_table(s))
    if len(s.waits):
        parts.append(wait_table(s))
    if "profile" in m:
        parts.append(profile_table(m["profile"]))
    parts.append(Text(s.answer.sentence, style="bold"))
    return Group(*parts)


def header(s: Summary, tag: str = "") -> Text:
    """The set's id, what ran where, and its verdict in one line."""
    m = s.result.manifest
    execution = m["config"]["execution"]
    return Text.assemble(
        (f"{tag}{s.result.id}", "bold"),
        f"  {m['workload']} ({m['config']['work']['size']}) on {execution['device']} with "
        f"{backend_name(execution)}, {execution['threads']} threads, "
        f"{execution['repeat']} process(es): ",
        ("valid", "green") if s.verdict.valid else ("INVALID", "red"),
    )


def backend_name(execution: dict[str, Any]) -> str:
    """``torch``, or ``onnxruntime (CPUExecutionProvider)``: the backend and what it ran on."""
    backend = execution.get("backend", "torch")
    providers = execution.get("backend_config", {}).get("providers_in_use")
    return f"{backend} ({', '.join(providers)})" if providers else backend


def agreement(a: dict[str, Any]) -> str:
    return (
        f"agreement with {a['reference']} over {a['requests']} requests: top-k ids "
        f"{a['top_k_equal']:.0%}, tokens {a['tokens_equal']:.0%} (positions "
        f"{a['token_positions_equal']:.0%}), largest logit difference "
        f"{a['max_abs_logit_diff']:.1e} (tolerance {a['logit_tolerance']:g})"
    )


def _facts(replicates: list[dict[str, Any]]) -> str:
    def spread(key: str, unit: str, scale: float = 1.0, fmt: str = "{:.2f}") -> str:
        values = [r[key] * scale for r in replicates if r.get(key) is not None]
        if not values:
            return "unknown"
        low, high = min(values), max(values)
        text = fmt.format(low) if low == high else f"{fmt.format(low)}-{fmt.format(high)}"
        return f"{text}{unit}"

    facts = [
        f"model load {spread('model_load_s', ' s')}",
        f"first request {spread('first_request_s', ' ms', 1e3, '{:.1f}')}",
        f"peak RSS {spread('peak_rss_bytes', ' MiB', 2**-20, '{:.0f}')}",
    ]
    if any(r.get("gpu_peak_bytes") is not None for r in replicates):
        facts.append(f"GPU peak {spread('gpu_peak_bytes', ' MiB', 2**-20, '{:.0f}')}")
    facts.append(f"CPU steal {spread('cpu_steal_fraction', '%', 100)} while measuring")
    exports = [r["onnx_export"] for r in replicates if r.get("onnx_export")]
    if exports:
        cold = [
            sum(e["seconds"] for e in x.values())
            for x in exports
            if not all(e["cached"] for e in x.values())
        ]
        facts.append(f"graphs exported in {max(cold):.1f} s" if cold else "graphs from the cache")
    checked = [r["agreement_check_s"] for r in replicates if r.get("agreement_check_s")]
    if checked:
        facts.append(f"agreement check {max(checked):.1f} s (both inside the model load)")
    return ", ".join(facts)


def _telemetry(t: dict[str, dict[str, Any]], replicates: list[dict[str, Any]]) -> str:
    def med(key: str, scale: float = 1.0, fmt: str = "{:.0f}") -> str | None:
        entry = t.get(key)
        return None if entry is None else fmt.format(entry["median"] * scale)

    parts = []
    if (busy := med("cpu.utilization", 100)) is not None:
        parts.append(f"CPU busy {busy}% (mean over cores, median over the run)")
    if (freq := med("cpu.frequency", 1e-9, "{:.2f}")) is not None:
        drop = t["cpu.frequency"].get("largest_drop")
        parts.append(f"{freq} GHz" + (f", largest drop {drop:.0%}" if drop is not None else ""))
    if (rss := med("memory.rss[process]", 2**-20)) is not None:
        parts.append(f"RSS {rss} MiB")
    gpus = [k for k in t if k.startswith("gpu.utilization[")]
    for key in gpus:
        parts.append(f"GPU {key[16:-1]} busy {t[key]['median'] * 100:.0f}%")
    for source, name in (("gpu.energy", "GPU"), ("rapl.energy", "CPU package")):
        used = t.get(source, {}).get("used")
        parts.append(f"{name} energy {used:.1f} J" if used is not None else "")
    notes = sorted({n for r in replicates for n in r.get("telemetry_notes", [])})
    return "telemetry: " + ", ".join(p for p in [*parts, *notes] if p)


def side_by_side(summaries: list[Summary]) -> Group:
    """Several sets' verdicts, then their per-stage medians in one table (no significance:
    each set is shown as measured)."""
    parts: list[Any] = []
    for i, s in enumerate(summaries):
        parts.append(header(s, f"[{i + 1}] "))
        parts += [Text(f"  ! {p}", style="red") for p in s.verdict.problems]
    works = {s.result.manifest["config"]["work"].get("work_sha256") for s in summaries}
    if len(works) > 1:
        parts.append(Text("  ! these sets were given different work: not comparable", "red"))
    table = Table(title="p50 and category medians per stage (ms)")
    table.add_column("stage", no_wrap=True)
    for i in range(len(summaries)):
        for name in ("p50", "compute", "movement"):
            table.add_column(f"[{i + 1}] {name}", justify="right")
    stages = dict.fromkeys(r for s in summaries for r in s.stages["stage"])
    rows = [{r["stage"]: r for r in s.stages.to_dict(orient="records")} for s in summaries]
    for stage in stages:
        cells = []
        for by_stage in rows:
            row = by_stage.get(stage, {})
            cells += [_ms(row.get(k)) for k in ("wall_p50_ms", "compute_ms", "movement_ms")]
        table.add_row(stage, *cells)
    end_to_end = []
    for s in summaries:
        end_to_end += [_ms(s.end_to_end.p50 * 1e3), "", ""]
    table.add_row(Text("end to end", style="bold"), *end_to_end)
    parts.append(table)
    return Group(*parts)


def stage_table(s: Summary) -> Table:
    e = s.end_to_end
    table = Table(title="per stage (ms; category columns are medians; ~ = indicative)")
    table.add_column("stage", no_wrap=True)
    table.add_column("layer")
    for name in ("p50", "p90", "p99", "compute", "movement", "scheduling", "unattrib.", "on-CPU"):
        table.add_column(name, justify="right")
    table.add_column("share", justify="right")
    table.add_column("coverage", justify="right")
    for row in s.stages.to_dict(orient="records"):
        table.add_row(
            row["stage"],
            row["layer"],
            _ms(row["wall_p50_ms"]),
            _ms(row.get("wall_p90_ms"), e.indicative(90)),
            _ms(row.get("wall_p99_ms"), e.indicative(99)),
            _ms(row.get("compute_ms")),
            _ms(row.get("movement_ms")),
            _ms(row.get("scheduling_ms")),
            _ms(row.get("unattributed_ms")),
            _ms(row.get("on_cpu_ms")),
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
        table.add_row(Text(row["wait"]), _ms(row["median_ms"]), _ms(row["p90_ms"]), share)
    return table


def profile_table(profile: dict[str, Any]) -> Table:
    verdict = "agrees" if profile["agrees"] else "DISAGREES"
    tool = profile.get("tool", "torch.profiler")
    table = Table(title=f"{tool} cross-check over {profile['requests']} extra requests: {verdict}")
    # torch: judged on the operators inside each probe's scope; onnxruntime: on the session
    # runs, with their node kernels beside them.
    torch_like = tool == "torch.profiler"
    judged_on, other = ("operators", "scope") if torch_like else ("session runs", "node kernels")
    columns = ("stage", "probe", "gapbench ms", f"{judged_on} ms", "diff", f"{other} ms", "judged")
    for name in columns:
        table.add_column(name, justify="left" if name in ("stage", "probe") else "right")
    for c in profile["checks"]:
        reference, beside = c["profiler_operator_ms"], c["profiler_scope_ms"]
        if not torch_like:
            reference, beside = beside, reference
        table.add_row(
            Text(c["stage"]),
            Text(c["label"]),
            _ms(c["gapbench_ms"]),
            _ms(reference),
            "-" if c["agreement"] is None else f"{c['agreement']:.1%}",
            _ms(beside),
            "yes" if c.get("judged") else "",
        )
    return table


def results(listings: Iterable[Listing]) -> Table:
    table = Table(title="result sets, newest first")
    for name in ("id", "workload", "size", "device", "backend", "requests", "complete"):
        table.add_column(name)
    for entry in listings:
        m = entry.manifest
        if m is None:
            problem = Text(entry.problem.strip(": "), "red")
            table.add_row(entry.id, "-", "-", "-", "-", "-", problem)
            continue
        requests = sum(r.get("requests_measured", 0) for r in m.get("replicates", []))
        table.add_row(
            entry.id,
            m.get("workload", "?"),
            m["config"]["work"]["size"],
            m["config"]["execution"]["device"],
            m["config"]["execution"].get("backend", "torch"),
            str(requests),
            "yes" if m.get("complete") else "[yellow]no (interrupted)[/]",
        )
    return table


def workloads(found: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="workloads")
    for name in ("name", "from", "description", "stages (layer, after)"):
        table.add_column(name)
    for name, info in found.items():
        stages = ", ".join(
            f"{s['name']} ({s['layer']}{', after ' + '+'.join(s['after']) if s['after'] else ''})"
            for s in info["stages"]
        )
        table.add_row(Text(name), Text(info["ref"]), Text(info["description"]), Text(stages))
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
