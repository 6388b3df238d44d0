"""Tables for projections and comparisons (rich); the numbers come from the library unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from harness.projection.project import SAMPLING_ROUGH
from harness.projection.sentences import headline, interval_text
from harness.report import load, seams

if TYPE_CHECKING:
    from harness.analysis.summary import Summary
    from harness.experiments.validate import Validation
    from harness.projection.compare import Comparison, OverlapCheck
    from harness.projection.project import Estimate, Projection


def _estimate(e: Estimate, indicative: bool = False) -> str:
    mark = "~" if indicative else ""
    if e.low_ms is None:
        return f"{mark}{e.value_ms:.2f}"
    return f"{mark}{e.value_ms:.2f} ({e.low_ms:.2f}-{e.high_ms:.2f})"


def _verdict_line(tag: str, summary: Summary) -> list[Any]:
    v = summary.verdict
    lines: list[Any] = [
        Text.assemble(
            (f"{tag}{summary.result.id}", "bold"),
            ": ",
            ("valid", "green") if v.valid else ("INVALID", "red"),
        )
    ]
    lines += [Text(f"  ! {p}", style="red") for p in v.problems]
    lines += [Text(f"  - {n}", style="yellow") for n in v.notes if n not in v.sampling]
    return lines


def projections(summary: Summary, made: Sequence[Projection], kept: Sequence[str]) -> Group:
    """Several claims side by side on one set: percentiles by each model, where keys applied."""
    parts: list[Any] = _verdict_line("", summary)
    first = made[0]
    replicates = f"range over {first.replicates} replicates" if first.replicates > 1 else ""
    table = Table(
        title=f"projected end to end (ms; {replicates or 'one replicate: run --repeat K'}), "
        f"replayed on {first.cores:g} cores"
    )
    for name in ("claim", "matched", "model", "p50", "x p50", "p99", "x p99"):
        table.add_column(name, justify="left" if name in ("claim", "model") else "right")
    for p in made:
        rows = (("measured", p.measured), ("naive", p.naive), ("replay", p.replay))
        for i, (model, est) in enumerate(rows):
            table.add_row(
                p.claim.name if i == 0 else "",
                f"{p.matched_share:.1%}" if i == 0 else "",
                model,
                _estimate(est["p50"], p.indicative(model, "p50")),
                "" if model == "measured" else f"{p.speedup(model, 'p50'):.3f}",
                _estimate(est["p99"], p.indicative(model, "p99")),
                "" if model == "measured" else f"{p.speedup(model, 'p99'):.3f}",
            )
    parts.append(table)
    parts += _sample_note(made)
    keys = Table(title="which key applied to what (share of end-to-end time, critical path)")
    for name in ("claim", "key", "factor", "share", "applied to"):
        keys.add_column(name, justify="right" if name in ("factor", "share") else "left")
    for p in made:
        for m in p.matches:
            where = ", ".join(m.where) if m.where else "nothing"
            keys.add_row(p.claim.name, m.key, f"{m.factor:g}", f"{m.share:.1%}", where)
    parts.append(keys)
    parts += [Text(headline(p), style="bold") for p in made]
    limits = sorted({line for p in made for line in p.limits})
    parts += [Text(f"  ! {line}", style="yellow") for line in limits]
    for p in made:
        if p.model_off:
            parts.append(
                Text(
                    f"! the replay without a claim misses the recorded latency by "
                    f"{p.replay_identity_error:.1%} (median): its model of this set is off",
                    style="red",
                )
            )
    if kept:
        parts.append(Text(f"kept beside {summary.result.id}: {', '.join(kept)}", style="dim"))
    return Group(*parts)


def _sample_note(made: Sequence[Projection]) -> list[Text]:
    """Say how the replay covered the set's side-by-side requests, and, per claim, how far
    sampling may have moved its replayed percentiles."""
    sampled = [p for p in made if p.sampling_error is not None]
    if not sampled:
        return []
    p = sampled[0]
    rest = p.requests - p.side_by_side
    exact = f" (the other {rest:,} replay exactly as their scaled sum)" if rest else ""

    def moved(q: Projection) -> str:
        error = q.sampling_error or {}
        return f"p50 by up to {error['p50']:.2%} and p99 by up to {error['p99']:.2%}"

    if len(sampled) == 1:
        said = f"measured on this set, sampling moves {moved(p)}"
    else:
        said = "measured on this set, sampling moves " + "; ".join(
            f"{q.claim.name}: {moved(q)}" for q in sampled
        )
    return [
        Text(
            f"replay: a seeded sample of {p.replayed:,} of the {p.side_by_side:,} requests whose "
            f"stages ran side by side, each standing for about "
            f"{p.side_by_side / p.replayed:.1f}{exact}; {said} (~ where more than "
            f"{SAMPLING_ROUGH:.0%}; --replay-sample 0 replays every one)",
            style="dim",
        )
    ]


def _overlap(check: OverlapCheck) -> list[Any]:
    """BASE's serialised work, overlapped by the replay, beside CANDIDATE as measured."""
    losses = check.losses
    lines: list[Any] = [
        Text(
            f"BASE ran independent work in turn ({losses.findings[0].where}"
            f"{' and more' if len(losses.findings) > 1 else ''}): overlapped, its p50 would be "
            f"{losses.overlapped.value_ms:.2f} ms; CANDIDATE measured {check.candidate_ms:.2f} "
            f"ms: error {check.error:+.1%} ({'slower' if check.error > 0 else 'faster'} than "
            "predicted)",
            style="bold",
        )
    ]
    if len(check.pairs) > 1:
        table = Table(title="overlap predicted from BASE beside CANDIDATE, replicate by replicate")
        for name in ("replicate", "predicted ms", "measured ms", "error"):
            table.add_column(name, justify="right")
        for (r, predicted, measured), error in zip(check.pairs, check.pair_errors(), strict=True):
            table.add_row(str(r), f"{predicted:.2f}", f"{measured:.2f}", f"{error:+.1%}")
        lines.append(table)
    return lines


def comparison(c: Comparison) -> Group:
    """Verdicts, what differs, measured speedups, and the projections from BASE beside them."""
    parts: list[Any] = _verdict_line("BASE ", c.base) + _verdict_line("CANDIDATE ", c.candidate)
    if not c.trustworthy:
        parts.append(Text("! a set is invalid: this comparison is not trustworthy", style="red"))
    for key, (a, b) in c.differences.items():
        parts.append(Text(f"execution differs in {key}: {a} -> {b}", style="dim"))
    loads = (c.base.result.manifest.execution.load, c.candidate.result.manifest.execution.load)
    if loads[0] != loads[1]:
        parts.append(
            Text(
                "! the sets ran under different loads: their latencies differ by the load as "
                "much as by the system",
                style="red",
            )
        )
    if c.base.load is not None and c.candidate.load is not None:
        parts.append(load.load_beside(c.base.load, c.candidate.load))
    table = Table(title="measured: BASE p50 / CANDIDATE p50 (95% bootstrap over replicates)")
    for name in ("", "BASE ms", "CANDIDATE ms", "speedup", "interval", "significant"):
        table.add_column(name, justify="left" if not name else "right")
    for s in (c.end_to_end, *c.stages):
        table.add_row(
            Text(s.name, style="bold" if s is c.end_to_end else ""),
            f"{s.base_ms:.2f}",
            f"{s.candidate_ms:.2f}",
            f"{s.ratio:.3f}",
            interval_text(s),
            "yes" if s.significant else "no",
        )
    parts.append(table)
    if c.checked:
        proj = Table(title="projected from BASE beside what was delivered (end to end, p50)")
        for name in ("claim", "claimed", "naive", "replay", "delivered", "gap", "replay err"):
            proj.add_column(name, justify="left" if name == "claim" else "right")
        for p, k in zip(c.projections, c.checked, strict=True):
            # As in the project table: a replayed figure the sample may have moved is marked,
            # and so is its error against what was delivered, which moves with it.
            mark = "~" if p.indicative("replay", "p50") else ""
            proj.add_row(
                k.claim,
                f"{k.claimed:.3f}",
                f"{k.naive:.3f}",
                f"{mark}{k.replay:.3f}",
                f"{k.delivered:.3f}",
                f"{k.gap:+.3f}",
                f"{mark}{k.error('replay'):+.1%}",
            )
        parts.append(proj)
        parts += _sample_note(c.projections)
    if len(c.base.tools) and len(c.candidate.tools):
        parts.append(seams.tools_side_by_side(c.base.tools, c.candidate.tools))
    if c.overlap is not None:
        parts += _overlap(c.overlap)
    if c.kept:
        kept = Table(title="projections kept beside BASE earlier, against what was delivered")
        for name in ("made", "claim", "naive", "replay", "delivered", "replay err"):
            kept.add_column(name, justify="left" if name in ("made", "claim") else "right")
        for k in c.kept:
            kept.add_row(
                k.made_utc[:19],
                k.claim,
                f"{k.naive:.3f}",
                f"{k.replay:.3f}",
                f"{k.delivered:.3f}",
                f"{k.error('replay'):+.1%}",
            )
        parts.append(kept)
    parts.append(Text(c.sentence, style="bold"))
    return Group(*parts)


def _transfers(v: Validation) -> list[Any]:
    """The conditions whose change a vendor's numbers state: one ratio beside by class."""
    stated = [o for o in v.outcomes if o.transfer is not None]
    if not stated:
        return []
    table = Table(
        title="the change as a vendor states it (large GEMM and STREAM, or the bytes saved), "
        "projected from A: one ratio on all compute beside by class"
    )
    columns = ("condition", "measured", "one ratio", "err", "by class", "err", "noise floor",
               "within 10%", "limiting class", "outputs equal")  # fmt: skip
    for name in columns:
        table.add_column(
            name, justify="left" if name in ("condition", "limiting class") else "right"
        )
    for o in stated:
        d = o.to_dict()
        t = d["transfer"]
        agree = ", ".join(f"{k} {r:.0%}" for k, r in (o.agreement or {}).items()) or "-"
        table.add_row(
            f"{o.trial.condition.name} ({o.trial.workload})",
            f"{d['measured_speedup']:.3f}",
            f"{t['one_ratio_speedup']:.3f}",
            f"{t['one_ratio_error']:.1%}",
            f"{t['by_class_speedup']:.3f}",
            f"{t['by_class_error']:.1%}",
            f"{d['noise_floor']:.1%}",
            Text("yes", "green") if t["within_target"] else Text("no", "red"),
            t["limiting"],
            agree,
        )
    notes = sorted({n for o in stated for n in (o.transfer.notes if o.transfer else ())})
    moved = [
        Text(f"  ! {o.trial.condition.name}: moved unlike its claim: {'; '.join(unlike)}", "yellow")
        for o in stated
        if o.transfer is not None and (unlike := o.transfer.unlike())
    ]
    return [table, *moved, *(Text(f"  - {n}", style="dim") for n in notes)]


def validation(v: Validation) -> Group:
    """Per condition: component speedups, measured, both projections, errors and noise floor."""
    table = Table(title="projections from A checked against B (p50 speedups, medians over pairs)")
    columns = (
        "condition",
        "A -> B (one component)",
        "component (alone)",
        "measured",
        "naive",
        "replay",
        "naive err",
        "replay err",
        "noise floor",
        "within",
        "replay, parts in situ",
        "one lock",
    )
    for name in columns:
        table.add_column(name, justify="left" if name in columns[:3] else "right")
    for o in v.outcomes:
        d = o.to_dict()
        component = ", ".join(f"{stage} {x:.2f}x" for stage, x in o.component.items()) or "-"
        table.add_row(
            f"{o.trial.condition.name} ({o.trial.workload})",
            o.trial.condition.what,
            component,
            f"{d['measured_speedup']:.3f}",
            f"{d['naive_speedup']:.3f}",
            f"{d['replay_speedup']:.3f}",
            f"{d['naive_error']:.1%}",
            f"{d['replay_error']:.1%}",
            f"{d['noise_floor']:.1%}",
            Text("yes", "green") if o.passes else Text("no", "red"),
            f"{d['in_pipeline_replay_speedup']:.3f} ({d['in_pipeline_replay_error']:.1%})",
            "-" if d["lock_speedup"] is None else f"{d['lock_speedup']:.3f}",
        )
    parts: list[Any] = [table] if v.outcomes else []
    parts += _transfers(v)
    if v.virtual:
        coz = Table(title="virtual speedup (COZ-style: the other stages stretched), apart")
        for name in ("stage", "factor", "virtual", "naive", "replay", "naive err", "replay err"):
            coz.add_column(name, justify="left" if name == "stage" else "right")
        for check in v.virtual:
            d = check.to_dict()
            coz.add_row(
                f"{check.stage} ({check.workload})",
                f"{check.factor:g}",
                f"{d['virtual_speedup']:.3f}",
                f"{d['naive_speedup']:.3f}",
                f"{d['replay_speedup']:.3f}",
                f"{d['naive_error']:.1%}",
                f"{d['replay_error']:.1%}",
            )
        parts.append(coz)
    parts += [Text(f"  ! {name}: could not be checked: {why}", "red") for name, why in v.failed]
    parts.append(
        Text(
            f"replay within max(3%, noise floor) in {v.passed} of {len(v.outcomes)} conditions; "
            f"{v.pairs} paired replicates each; {v.seconds:.0f} s",
            style="bold",
        )
    )
    return Group(*parts)
