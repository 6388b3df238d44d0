"""Statistics read from a result set's raw intervals: the per-stage breakdown and the answer."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.analysis.attribution import SEGMENT_WAITS, UNATTRIBUTED, RequestSplit, split_request
from harness.record.probes import Category, Interval, Resource
from harness.measure.process import frame_intervals
from harness.archive.store import ResultSet
from harness.workload import Stage

# Sample floors below which a percentile is only indicative (MLPerf LoadGen).
PERCENTILE_FLOORS = {50: 1, 90: 64, 99: 662, 99.9: 6_600}
NOISE_THRESHOLD = 0.1  # IQR / median, as torch.utils.benchmark warns
DEFAULT_FACTOR = 1.5


def stages_of(result: ResultSet) -> list[Stage]:
    return [Stage.from_dict(s) for s in result.manifest["stages"]]


def ok_requests(
    intervals: pd.DataFrame, requests: pd.DataFrame
) -> Iterator[tuple[int, list[Interval]]]:
    """(replicate, raw intervals) of every successful request, in (replicate, request) order."""
    ok = requests.loc[requests["ok"]]
    wanted = set(zip(ok["replicate"], ok["request"], strict=True))
    for key, group in intervals.groupby(["replicate", "request"]):
        if key in wanted:
            yield key[0], frame_intervals(group.drop(columns="replicate"))


def request_splits(result: ResultSet) -> list[RequestSplit]:
    """The split of every successful request, in (replicate, request) order."""
    stages = stages_of(result)
    return [
        split_request(rows, stages) for _, rows in ok_requests(result.intervals, result.requests)
    ]


@dataclass(frozen=True)
class Percentiles:
    """Latency percentiles in seconds, with whether each has enough samples to be meaningful."""

    n: int
    p50: float
    p90: float
    p99: float
    iqr_over_median: float
    p999: float = float("nan")

    @classmethod
    def of(cls, values_s: np.ndarray) -> Percentiles:
        if len(values_s) == 0:
            return cls(0, float("nan"), float("nan"), float("nan"), float("nan"))
        p25, p50, p75, p90, p99, p999 = np.percentile(values_s, [25, 50, 75, 90, 99, 99.9])
        noise = (p75 - p25) / p50 if p50 > 0 else float("nan")
        return cls(len(values_s), p50, p90, p99, noise, p999)

    def indicative(self, percentile: float) -> bool:
        return self.n < PERCENTILE_FLOORS[percentile]

    @property
    def noisy(self) -> bool:
        return self.iqr_over_median >= NOISE_THRESHOLD


def stage_table(result: ResultSet, splits: list[RequestSplit] | None = None) -> pd.DataFrame:
    """One row per stage plus the waits between stages: wall percentiles and the category split.

    Category columns are medians over requests; ``share`` is the stage's time on the critical
    path over all end-to-end time (so the rows' shares add up to 1 with the waits).
    """
    splits = request_splits(result) if splits is None else splits
    total_ns = sum(s.latency_ns for s in splits) or 1
    rows = []
    for stage in stages_of(result):
        per = [
            (r, r.stage(stage.name)) for r in splits if any(s.stage == stage.name for s in r.stages)
        ]
        wall = np.array([s.wall_ns for _, s in per], dtype=float) / 1e9
        pct = Percentiles.of(wall)
        critical = sum(s.wall_ns for r, s in per if stage.name in r.critical_stages)
        measured = sum(s.measured_ns for _, s in per)
        cpu = [s.cpu_ns for _, s in per if s.cpu_ns >= 0]
        rows.append(
            {
                "stage": stage.name,
                "layer": stage.layer,
                "wall_p50_ms": pct.p50 * 1e3,
                "wall_p90_ms": pct.p90 * 1e3,
                "wall_p99_ms": pct.p99 * 1e3,
                "compute_ms": _median_ms([s.compute_ns for _, s in per]),
                "movement_ms": _median_ms([s.movement_ns for _, s in per]),
                "scheduling_ms": _median_ms([s.scheduling_ns for _, s in per]),
                "unattributed_ms": _median_ms([s.unattributed_ns for _, s in per]),
                "on_cpu_ms": _median_ms(cpu),
                "bytes_moved": float(np.median([s.nbytes for _, s in per])) if per else 0.0,
                "share": critical / total_ns,
                "coverage": measured / max(sum(s.wall_ns for _, s in per), 1),
            }
        )
    for kind in ("lag", "queue", "handoff"):
        waits = [r.wait_ns(kind) for r in splits]
        if kind == "lag" and not any(waits):
            continue  # a closed loop has no schedule to fall behind
        rows.append(
            {
                "stage": SEGMENT_WAITS[kind],
                "layer": "",
                "wall_p50_ms": _median_ms(waits),
                "scheduling_ms": _median_ms(waits),
                "share": sum(waits) / total_ns,
                "coverage": 1.0,
            }
        )
    return pd.DataFrame(rows)


def wait_table(splits: list[RequestSplit]) -> pd.DataFrame:
    """Scheduling along the critical path by kind: lag, queue, handoff, and each named wait."""
    total_ns = sum(s.latency_ns for s in splits) or 1
    per_request = [split.waits() for split in splits]
    kinds = sorted({kind for waits in per_request for kind in waits})
    rows = []
    for kind in kinds:
        values = [waits.get(kind, 0) for waits in per_request]
        rows.append(
            {
                "wait": kind,
                "median_ms": _median_ms(values),
                "p90_ms": float(np.percentile(values, 90)) / 1e6,
                "share": sum(values) / total_ns,
            }
        )
    return pd.DataFrame(rows, columns=["wait", "median_ms", "p90_ms", "share"])


def _median_ms(values_ns: list[int]) -> float:
    return float(np.median(values_ns)) / 1e6 if values_ns else float("nan")


def end_to_end(result: ResultSet) -> Percentiles:
    ok = result.requests.loc[result.requests["ok"], "latency_s"].to_numpy(dtype=float)
    return Percentiles.of(ok)


def category_shares(splits: list[RequestSplit]) -> dict[tuple[str, str], float]:
    """Share of all end-to-end time per (category, resource), along each critical path."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for split in splits:
        for key, ns in split.by_resource().items():
            totals[key] += ns
    whole = sum(s.latency_ns for s in splits) or 1
    return {key: ns / whole for key, ns in sorted(totals.items())}


@dataclass(frozen=True)
class Answer:
    """The sentence a buyer came for, and the numbers it is made of."""

    target: str  # e.g. "host compute"
    target_share: float
    factor: float
    speedup: float
    interval: tuple[float, float]
    interval_basis: str
    movement_share: float
    waiting_share: float
    unattributed_share: float
    sentence: str


def answer(
    result: ResultSet, splits: list[RequestSplit] | None = None, factor: float = DEFAULT_FACTOR
) -> Answer:
    """What a chip ``factor``x faster at compute would do end to end, at p50 (naive Amdahl).

    The interval is the spread over replicates when there are several, otherwise a bootstrap
    over this set's requests (which are not independent samples, and say so).
    """
    splits = request_splits(result) if splits is None else splits
    if not splits:
        nan = float("nan")
        return Answer(
            "",
            0.0,
            factor,
            nan,
            (nan, nan),
            "",
            0.0,
            0.0,
            0.0,
            "no request succeeded: there is nothing to project.",
        )
    on_device = result.manifest["config"]["execution"]["device"] != "cpu"
    resource = Resource.DEVICE.value if on_device else Resource.HOST_CPU.value
    target = "device compute" if on_device else "host compute"
    chip = "GPU" if on_device else "CPU"
    key = (Category.COMPUTE.value, resource)
    latency = np.array([s.latency_ns for s in splits], dtype=float)
    targeted = np.array([s.by_resource().get(key, 0) for s in splits], dtype=float)
    projected = latency - targeted + targeted / factor
    speedup = _p50_ratio(latency, projected)
    replicates = _replicate_of(result, splits)
    if len(set(replicates)) > 1:
        ratios = [
            _p50_ratio(latency[replicates == r], projected[replicates == r])
            for r in sorted(set(replicates))
        ]
        interval, basis = (min(ratios), max(ratios)), f"range over {len(ratios)} replicates"
    else:
        interval, basis = _bootstrap(latency, projected), "95% bootstrap over requests"
    shares = category_shares(splits)
    by_category = defaultdict(float)
    for (category, _), share in shares.items():
        by_category[category] += share
    target_share = shares.get(key, 0.0)
    movement = by_category[Category.MOVEMENT.value]
    waiting = by_category[Category.SCHEDULING.value]
    sentence = (
        f"{target} is {_pct(target_share)} of end-to-end time here: a {chip} {factor:g}x faster "
        f"at compute would make this pipeline about {speedup:.2f}x faster at p50 "
        f"({interval[0]:.2f}-{interval[1]:.2f}, {basis}); {_pct(movement)} is data movement "
        f"and {_pct(waiting)} waiting, which it does not shorten; "
        f"{_pct(by_category[UNATTRIBUTED])} unattributed."
    )
    return Answer(
        target=target,
        target_share=target_share,
        factor=factor,
        speedup=speedup,
        interval=interval,
        interval_basis=basis,
        movement_share=movement,
        waiting_share=waiting,
        unattributed_share=by_category[UNATTRIBUTED],
        sentence=sentence,
    )


def _pct(share: float) -> str:
    # Small shares keep a decimal: "0%" would hide a real, measured 0.4%.
    return f"{share:.0%}" if share >= 0.1 else f"{share:.1%}"


def _p50_ratio(latency: np.ndarray, projected: np.ndarray) -> float:
    if len(latency) == 0:
        return float("nan")
    return float(np.median(latency) / np.median(projected))


def _bootstrap(
    latency: np.ndarray, projected: np.ndarray, rounds: int = 400
) -> tuple[float, float]:
    if len(latency) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(latency), size=(rounds, len(latency)))
    ratios = np.median(latency[picks], axis=1) / np.median(projected[picks], axis=1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def _replicate_of(result: ResultSet, splits: list[RequestSplit]) -> np.ndarray:
    # request_splits yields requests in (replicate, request) order
    ok = result.requests.loc[result.requests["ok"]].sort_values(["replicate", "request"])
    return ok["replicate"].to_numpy()[: len(splits)]
