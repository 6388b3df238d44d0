"""A claim by class of compute on one set: what each stage's compute becomes, the one-ratio
reading beside the class-aware one, and the class that limits the gain."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from harness.analysis.roofline import CLASSES
from harness.projection.project import Projection
from harness.projection.transfer import Transfer
from harness.report.units import ms


def transfer(t: Transfer, naive: Projection, aware: Projection) -> Group:
    ratios = ", ".join(f"{k} {r:.3g}x ({how})" for k, (r, how) in t.ratios.items())
    given = ratios or "from the claim's class keys"
    table = Table(title=f"{t.claim.name}: each stage's compute by class ({given})")
    table.add_column("stage")
    table.add_column("compute ms", justify="right")
    for klass in CLASSES:
        table.add_column(f"{klass} ms (share)", justify="right")
    table.add_column("x compute", justify="right")
    speedups = {target.scope_name: f for target, f in t.aware.speedups if target.scope}
    for stage, rows in t.stages.groupby("stage", sort=False):
        by = {str(k): (m, s) for k, m, s in rows[["class", "ms", "share"]].itertuples(False)}
        cells = [f"{ms(by[k][0])} ({by[k][1]:.0%})" if by[k][0] else "-" for k in CLASSES]
        total = float(rows["ms"].sum())
        factor = speedups.get(str(stage))
        table.add_row(str(stage), ms(total), *cells, f"{factor:.3f}" if factor else "-")
    left = t.left()
    limiting = (
        f"the limiting class is {t.limiting}: {ms(left[t.limiting])} ms a request of compute "
        f"left in it under the claim, of {ms(sum(left.values()))} ms"
        if t.limiting in left
        else "no compute to class"
    )
    parts: list[Any] = [
        table,
        Text(
            f"one ratio on all compute: {naive.speedup('replay'):.3f}x end to end at p50; "
            f"by class: {aware.speedup('replay'):.3f}x; {limiting}",
            style="bold",
        ),
    ]
    parts += [Text(f"  - {note}", style="dim") for note in t.notes]
    if t.roofline.not_visible:
        hidden = ", ".join(t.roofline.not_visible)
        parts.append(
            Text(
                f"  - not visible to the profiler (no operators for most of their time), opaque: "
                f"{hidden}",
                style="dim",
            )
        )
    return Group(*parts)


def to_dict(t: Transfer, naive: Projection, aware: Projection) -> dict[str, Any]:
    return {
        "claim": t.claim.name,
        "ratios": {k: {"ratio": r, "from": how} for k, (r, how) in t.ratios.items()},
        "stages": t.stages.to_dict(orient="records"),
        "limiting": t.limiting,
        "left_ms": t.left(),
        "one_ratio_speedup": {m: naive.speedup(m) for m in ("naive", "replay")},
        "by_class_speedup": {m: aware.speedup(m) for m in ("naive", "replay")},
        "notes": list(t.notes),
        "not_visible": list(t.roofline.not_visible),
    }
