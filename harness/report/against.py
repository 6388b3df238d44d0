"""The report's base against its other sets: compared where they were given the same work, and
each projection from the base beside the speedup one of them delivered."""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.archive.schema import KeptProjection
from harness.projection.compare import Comparison, Speedup
from harness.projection.lineup import Lineup
from harness.projection.project import Projection


@dataclass(frozen=True)
class Pairing:
    """The base beside another set: compared, or why not."""

    index: int
    comparison: Comparison | None
    why_not: str = ""


@dataclass(frozen=True)
class ProjectedRow:
    """A projection from the base beside what one other set delivered end to end at p50."""

    claim: str
    made: str  # "now" for a claim given to the report, else when it was kept
    claimed: float | None  # what the claim gives the work it matched (None: not kept)
    naive: float
    replay: float
    against: int | None  # the set that delivered (None: no set of the same work to check)
    delivered: Speedup | None
    note: str = ""


def against(
    lined: Lineup | None,
    made: tuple[Projection, ...],
    kept: tuple[KeptProjection, ...],
) -> tuple[tuple[Pairing, ...], tuple[ProjectedRow, ...]]:
    """The base beside each other set of ``lined`` (None: the base alone); the projections
    ``made`` now and ``kept`` earlier, each against every set that delivered on the same work,
    or as projected alone when none did."""
    pairings, rows = [], []
    for other in lined.summaries[1:] if lined is not None else ():
        set_id = other.result.id
        index = int(lined.tag(set_id).strip("[]")) if lined is not None else 0
        found = lined.pair(set_id) if lined is not None else None
        if found is None:
            why = lined.apart.get(set_id, "") if lined is not None else ""
            pairings.append(Pairing(index, None, why))
            continue
        pairings.append(Pairing(index, found))
        notes = [_trust(p) for p in made] + [""] * len(found.kept)
        for checked, note in zip((*found.checked, *found.kept), notes, strict=True):
            claimed = checked.claimed if math.isfinite(checked.claimed) else None
            rows.append(
                ProjectedRow(
                    checked.claim,
                    checked.made_utc or "now",
                    claimed,
                    checked.naive,
                    checked.replay,
                    index,
                    found.end_to_end,
                    note,
                )
            )
    if not any(p.comparison for p in pairings):
        rows = [_unchecked(p) for p in made] + [_unchecked_kept(k) for k in kept]
    return tuple(pairings), tuple(rows)


def _trust(made: Projection) -> str:
    if made.model_off:
        return f"the replay misses the recorded latency by {made.replay_identity_error:.0%}"
    return ""


def _unchecked(made: Projection) -> ProjectedRow:
    naive, replay = made.speedup("naive"), made.speedup("replay")
    return ProjectedRow(
        made.claim.name, "now", made.claimed, naive, replay, None, None, _trust(made)
    )


def _unchecked_kept(kept: KeptProjection) -> ProjectedRow:
    naive, replay = kept.speedup["naive"]["p50"], kept.speedup["replay"]["p50"]
    return ProjectedRow(kept.claim_name, kept.made_utc, None, naive, replay, None, None)
