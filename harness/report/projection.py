"""Tables for projections and comparisons (rich); the numbers come from the library unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from harness.projection.project import SAMPLING_ROUGH
from harness.projection.sentences import headline

if TYPE_CHECKING:
    from harness.analysis.summary import Summary
    from harness.experiments.validate import Validation
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
    parts += sample_note(made)
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


def sample_note(made: Sequence[Projection]) -> list[Text]:
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
