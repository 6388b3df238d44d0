"""Several sets of the same work lined up against the first: a buyer's table of candidates.

Each candidate is compared with the first as a pair (``compare``): speedups with significance
from replicates, execution differences, projections checked, outputs agreed. Around the pairs
the lineup says what differs in the machines, what each set got through a second, a joule and
a dollar, and which candidates are slower than a CI gate allows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.analysis.machines import MachineDifferences, differences
from harness.analysis.price import Cost, cost
from harness.analysis.summary import Summary
from harness.archive.result_set import ResultSet
from harness.archive.schema import KeptProjection
from harness.errors import UserError
from harness.projection.compare import MIN_REPLICATES, Comparison, compare
from harness.projection.project import Projection
from harness.projection.serialisation import Losses

END_TO_END = "end to end"
MAX_ALLOWED = 10.0  # --fail-if-slower: at most 1000%, a tenfold slowdown


@dataclass(frozen=True)
class Lineup:
    summaries: tuple[Summary, ...]  # the first is the base every speedup is taken against
    pairs: tuple[Comparison, ...]  # the base against each other set it compares with, in order
    machines: MachineDifferences
    costs: dict[str, Cost] = field(default_factory=dict)  # by set id, where a price was given
    apart: dict[str, str] = field(default_factory=dict)  # set id -> why it is not compared

    @property
    def base(self) -> Summary:
        return self.summaries[0]

    def tag(self, set_id: str) -> str:
        """``[n]``: the set's place in the lineup, from 1 for the base."""
        return f"[{[s.result.id for s in self.summaries].index(set_id) + 1}]"

    def pair(self, set_id: str) -> Comparison | None:
        """The base against the set ``set_id`` (None: the base itself, or set apart)."""
        return next((p for p in self.pairs if p.candidate.result.id == set_id), None)

    def table(self) -> pd.DataFrame:
        """One row per set and stage (end to end first): its p50, and against the base its
        speedup, 95% interval over replicates and whether it is significant."""
        frames = []
        for s in self.summaries:
            own = pd.DataFrame(
                {
                    "name": [END_TO_END, *s.stages["stage"].astype(str)],
                    "p50_ms": [s.end_to_end.p50 * 1e3, *s.stages["wall_p50_ms"]],
                }
            )
            p = self.pair(s.result.id)
            found = () if p is None else (p.end_to_end, *p.stages)
            against = pd.DataFrame(
                [(f.name, f.ratio, f.low, f.high, f.significant) for f in found],
                columns=["name", "speedup", "low", "high", "significant"],
            )
            frames.append(own.merge(against, on="name", how="left").assign(set=s.result.id))
        return pd.concat(frames, ignore_index=True)

    def slower(self, allowed: float) -> list[Comparison]:
        """The candidates significantly slower end to end than the base by more than
        ``allowed`` (0.05: five percent), as pytest-benchmark's compare-fail does."""
        return [
            p
            for p in self.pairs
            if p.end_to_end.significant and p.end_to_end.ratio < 1.0 / (1.0 + allowed)
        ]

    def energy_warning(self) -> str:
        """A line when the sets' requests a joule count different counters (one a CPU package
        and a GPU, another a GPU alone): then they are not to be set side by side."""
        counted = {
            tuple(s.throughput.power_w)
            for s in self.summaries
            if s.throughput is not None and s.throughput.power_w
        }
        if len(counted) < 2:
            return ""
        kinds = " / ".join(" + ".join(c) for c in sorted(counted))
        return f"requests/J counts different energy counters across sets ({kinds}): not comparable"

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base.result.id,
            "energy_warning": self.energy_warning(),
            "sets": [s.result.id for s in self.summaries],
            "machines": self.machines.to_dict(),
            "software_warnings": self.machines.warnings(),
            "speedups": [_json_row(r) for r in self.table().to_dict(orient="records")],
            "throughput": {
                s.result.id: None if s.throughput is None else s.throughput.to_dict()
                for s in self.summaries
            },
            "cost": {k: v.to_dict() for k, v in self.costs.items()},
            "candidates": [p.to_dict() for p in self.pairs],
            "not_compared": self.apart,
        }


def _json_row(row: dict[Any, Any]) -> dict[str, Any]:
    # JSON has no NaN: a speedup the base has no partner for is null.
    return {str(k): None if isinstance(v, float) and v != v else v for k, v in row.items()}


def lineup(
    summaries: Sequence[Summary],
    projections: tuple[Projection, ...] = (),
    kept: tuple[KeptProjection, ...] = (),
    losses: Mapping[str, Losses] | None = None,
    prices: Mapping[str, float] | None = None,
    set_apart: bool = False,
) -> Lineup:
    """The first of ``summaries`` against each of the others (``losses`` by candidate id: the
    base's serialisation losses, checked against a candidate that overlapped). A set that
    cannot be compared with the base (other work, a check run) is refused, or with
    ``set_apart`` kept beside the others with the reason."""
    if len(summaries) < 2:
        raise UserError("compare takes two sets or more: BASE and a CANDIDATE at least")
    distinct([s.result for s in summaries])
    base = summaries[0]
    pairs, apart = [], {}
    for s in summaries[1:]:
        try:
            pairs.append(compare(base, s, projections, kept, (losses or {}).get(s.result.id)))
        except UserError as exc:
            if not set_apart:
                raise
            apart[s.result.id] = str(exc)
    priced = {
        s.result.id: cost(s.throughput, (prices or {})[s.result.id])
        for s in summaries
        if s.throughput is not None and s.result.id in (prices or {})
    }
    costs = {k: v for k, v in priced.items() if v is not None}
    machines = differences([s.result for s in summaries])
    return Lineup(tuple(summaries), tuple(pairs), machines, costs, apart)


def allowed_slowdown(text: str) -> float:
    """``--fail-if-slower``'s share: ``5%`` (with its sign: is a bare 0.05 five percent, or
    five hundredths of one?), 0% to 1000%."""
    if not text.strip().endswith("%"):
        raise UserError(f"--fail-if-slower {text!r}: give a percentage with its sign, e.g. 5%")
    number = text.strip().removesuffix("%")
    try:
        share = float(number) / 100.0
    except ValueError:
        raise UserError(f"--fail-if-slower {text!r}: give a percentage such as 5%") from None
    if not 0.0 <= share <= MAX_ALLOWED:  # NaN fails this too
        raise UserError(f"--fail-if-slower {text!r}: a percentage from 0% to 1000%")
    return share


def distinct(results: Sequence[ResultSet]) -> None:
    """Refuse a set named twice: a set compared with itself says nothing."""
    ids = [r.id for r in results]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise UserError(f"{repeated[0]} is given twice: a set compared with itself says nothing")


def judgeable(results: Sequence[ResultSet]) -> None:
    """A CI gate judges significance over replicates: refuse, before any work, a set with too
    few replicates that answered to give any."""
    for r in results:
        answered = r.requests.loc[r.requests["ok"], "replicate"].nunique()
        if answered < MIN_REPLICATES:
            raise UserError(
                f"--fail-if-slower judges significance over replicates: {r.id} has {answered} "
                f"with an answered request (run --repeat {MIN_REPLICATES} or more)"
            )


def unjudged(lined: Lineup) -> list[str]:
    """Why the gate cannot judge a candidate: an invalid set, or no interval to judge by."""
    said = []
    for p in lined.pairs:
        if not p.trustworthy:
            invalid = p.base if not p.base.verdict.valid else p.candidate
            said.append(f"{invalid.result.id} is INVALID: a gate on it judges nothing")
        elif p.end_to_end.low is None:
            set_id = p.candidate.result.id
            said.append(f"{lined.tag(set_id)} {set_id} has no interval against [1]")
    return said
