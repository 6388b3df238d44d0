"""Several sets against the first, for the terminal: the machines first, then what each
delivered; the numbers come from the library unchanged."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from harness.analysis.comparability import differences_line
from harness.projection.lineup import END_TO_END
from harness.projection.sentences import comparison_sentence
from harness.report import load, seams
from harness.report.fit import Fit
from harness.report.projection import sample_note
from harness.report.terminal import header
from harness.report.units import ms

if TYPE_CHECKING:
    from harness.projection.compare import Comparison, OverlapCheck
    from harness.projection.lineup import Lineup

SPEEDUP = (
    "speedup: [1]'s p50 over the set's (above 1: faster); 'not significant' where the 95% "
    "bootstrap interval over replicates holds 1; ~: fewer than 3 replicates a side, no interval"
)
GAP = "gap: the claimed speedup minus the delivered one (the coordination gap)"


def lineup(c: Lineup, verbose: bool = False) -> Group:
    """Machines, verdicts, what differs in execution, speedups, throughput, then per pair."""
    parts: list[Any] = machines(c)
    for i, s in enumerate(c.summaries):
        v = s.verdict
        parts.append(header(s, f"[{i + 1}] "))
        parts += [Text(f"  ! {p}", style="red") for p in v.problems]
        # What a quick run's sample size implies is said once by each set's own `show`.
        parts += [Text(f"  - {n}", style="yellow") for n in v.notes if n not in v.sampling]
    if not all(p.trustworthy for p in c.pairs):
        parts.append(Text("! a set is invalid: this comparison is not trustworthy", style="red"))
    for p in c.pairs:
        parts += _differences(p, c.tag(p.candidate.result.id), verbose)
    parts += [Text(f"{c.tag(i)} not compared: {why}", style="yellow") for i, why in c.apart.items()]
    parts.append(speedups(c))
    parts.append(throughput(c))
    parts += _energy(c)
    for p in c.pairs:
        parts += pair(p, c.tag(p.candidate.result.id))
    return Group(*parts)


def machines(c: Lineup) -> list[Any]:
    """What differs in the hardware, as a table, and software that differs, as warnings."""
    m = c.machines
    if m.same_machine:
        parts: list[Any] = [Text(m.sentence(), style="dim")]
    else:
        table = Fit(title=m.sentence())
        table.add_column("", justify="left")
        for i in range(len(c.summaries)):
            table.add_column(f"[{i + 1}]", justify="left", no_wrap=False)
        for label, row in m.hardware.iterrows():
            table.add_row(Text(str(label), style="bold"), *(Text(str(v)) for v in row))
        parts = [table]
    return parts + [Text(f"  ! {w}", style="yellow") for w in m.warnings()]


def _differences(p: Comparison, tag: str, verbose: bool) -> list[Any]:
    if not p.differences:
        return [Text(f"{tag} ran as [1] did", style="dim")]
    if verbose:
        return [
            Text(f"{tag} execution differs in {key}: {a} -> {b}", style="dim")
            for key, (a, b) in p.differences.items()
        ]
    more = " (--verbose lists every setting)" if len(p.differences) > 1 else ""
    return [Text(f"{tag} execution differs: {differences_line(p.differences)}{more}", "dim")]


def _speedup_cell(row: Mapping[Any, Any]) -> Text:
    """A row of the lineup's table as its speedup: ~ without an interval, and said as not
    significant, not as a ratio, where its interval holds 1."""
    ratio, low = row.get("speedup"), row.get("low")
    if ratio is None or not math.isfinite(ratio):
        return Text("-")
    if low is None or not math.isfinite(low):
        return Text(f"~{ratio:.3f}")
    if not row.get("significant"):
        return Text("not significant", style="dim")
    return Text(f"{ratio:.3f}", style="green" if ratio > 1 else "red")


def _interval_cell(row: Mapping[Any, Any]) -> str:
    low, high = row.get("low"), row.get("high")
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return "-"
    return f"{low:.3f}-{high:.3f}"


def speedups(c: Lineup) -> Fit:
    """p50 per stage for every set, and each candidate's speedup against [1], from the
    lineup's table."""
    table = Fit(title="p50 (ms) per set, and speedup against [1]", caption=SPEEDUP)
    table.add_column("stage", justify="left")
    frame = c.table()
    ids = list(dict.fromkeys(frame["set"]))
    compared = {p.candidate.result.id for p in c.pairs}
    for set_id in ids:
        tag = c.tag(set_id)
        table.add_column(f"{tag} ms", drop=2)
        if set_id in compared:
            table.add_column(f"{tag} speedup")
            table.add_column(f"{tag} interval", drop=1)
    by = {(r["set"], r["name"]): r for r in frame.to_dict(orient="records")}
    for name in dict.fromkeys(frame.loc[frame["set"] == ids[0], "name"]):
        cells: list[Any] = [Text(str(name), style="bold" if name == END_TO_END else "")]
        for set_id in ids:
            row = by.get((set_id, name), {})
            cells.append(ms(row.get("p50_ms")))
            if set_id in compared:
                cells += [_speedup_cell(row), _interval_cell(row)]
        table.add_row(*cells)
    return table


def throughput(c: Lineup) -> Fit:
    """Requests a second (and tokens), a joule and a dollar, per set."""
    table = Fit(
        title="throughput, energy and cost per set",
        caption="at each set's own pace (one request at a time, or the load it ran under); "
        "energy from the counters each machine exposes, unknown where none",
    )
    table.add_column("set", justify="left")
    for name, drop in (("requests/s", None), ("tokens/s", 3), ("requests/J", 2)):
        table.add_column(name, drop=drop)
    if c.costs:
        for name, drop in (("USD/hour", 1), ("requests/USD", None), ("USD/M requests", None)):
            table.add_column(name, drop=drop)
    for i, s in enumerate(c.summaries, start=1):
        t = s.throughput
        if t is None:
            continue
        cells = [
            f"[{i}]" + (" under load" if t.load else ""),
            _number(t.requests_per_s),
            _number(t.output_tokens_per_s),
            t.per_joule_text(),
        ]
        cost = c.costs.get(s.result.id)
        if c.costs:
            cells += (
                ["-", "-", "-"]
                if cost is None
                else [
                    f"{cost.usd_per_hour:g}",
                    _number(cost.requests_per_dollar),
                    _number(cost.usd_per_million_requests),
                ]
            )
        table.add_row(*cells)
    return table


def _energy(c: Lineup) -> list[Text]:
    said = c.energy_warning()
    return [Text(f"  ! {said}", style="yellow")] if said else []


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:#.3g}"


def pair(p: Comparison, tag: str) -> list[Any]:
    """What is known of one candidate beside [1]: loads, outputs, projections, tools."""
    parts: list[Any] = []
    loads = (p.base.result.manifest.execution.load, p.candidate.result.manifest.execution.load)
    if loads[0] != loads[1]:
        parts.append(
            Text(
                f"! [1] and {tag} ran under different loads: their latencies differ by the load "
                "as much as by the system",
                style="red",
            )
        )
    if p.base.load is not None and p.candidate.load is not None:
        parts.append(load.load_beside(p.base.load, p.candidate.load))
    if p.agreement:
        rates = ", ".join(f"{name} {rate:.0%}" for name, rate in p.agreement.items())
        parts.append(Text(f"{tag} outputs equal to [1]'s: {rates} of requests", style="dim"))
    parts += _projections(p, tag)
    if len(p.base.tools) and len(p.candidate.tools):
        parts.append(seams.tools_side_by_side(p.base.tools, p.candidate.tools))
    if p.overlap is not None:
        parts += _overlap(p.overlap)
    parts.append(Text(comparison_sentence(p, tag), style="bold"))
    return parts


def _projections(p: Comparison, tag: str) -> list[Any]:
    parts: list[Any] = []
    if p.checked:
        proj = Fit(
            title=f"projected from [1] beside what {tag} delivered (end to end, p50)", caption=GAP
        )
        for name, drop in (("claim", None), ("claimed", 2), ("naive", 3), ("replay", None),
                           ("delivered", None), ("gap", 1), ("replay err", None)):  # fmt: skip
            left = name == "claim"
            proj.add_column(name, "left" if left else "right", drop, no_wrap=not left)
        for made, k in zip(p.projections, p.checked, strict=True):
            # As in the project table: a replayed figure the sample may have moved is marked,
            # and so is its error against what was delivered, which moves with it.
            mark = "~" if made.indicative("replay", "p50") else ""
            proj.add_row(
                Text(k.claim),
                f"{k.claimed:.3f}",
                f"{k.naive:.3f}",
                f"{mark}{k.replay:.3f}",
                f"{k.delivered:.3f}",
                f"{k.gap:+.3f}",
                f"{mark}{k.error('replay'):+.1%}",
            )
        parts.append(proj)
        parts += sample_note(p.projections)
    if p.kept:
        kept = Fit(title=f"projections kept beside [1] earlier, against what {tag} delivered")
        for name, drop in (("made", 1), ("claim", None), ("naive", 2), ("replay", None),
                           ("delivered", None), ("replay err", None)):  # fmt: skip
            left = name in ("made", "claim")
            kept.add_column(name, "left" if left else "right", drop, no_wrap=name != "claim")
        for k in p.kept:
            kept.add_row(
                k.made_utc[:19],
                Text(k.claim),
                f"{k.naive:.3f}",
                f"{k.replay:.3f}",
                f"{k.delivered:.3f}",
                f"{k.error('replay'):+.1%}",
            )
        parts.append(kept)
    return parts


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
