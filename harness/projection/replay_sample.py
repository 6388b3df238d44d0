"""Which requests the replay runs on a big set, what each stands for, and what sampling costs.

A request whose stages ran one after another replays exactly as its scaled sum, in columns. One
whose stages ran side by side goes through the event loop, about a quarter of a millisecond
each: past a few thousand of them, a seeded random sample is replayed instead, each sampled
request standing for its share of the rest. The error this makes is measured, not assumed: the
same weights applied to the measured latency and the naive projection, both known for every
request, say how far the sample moves p50 and p99 from the whole set's, and redrawing the
sample (a bootstrap) says how far the replayed ones may move; the larger is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.analysis.stats import MIN_ROUNDS, redraws
from harness.errors import UserError

REPLAY_SAMPLE = 4_000  # side-by-side requests replayed at most by default (0: every one)
REPLAY_SAMPLE_MAX = 10**7
SEED = 0  # one fixed sample: projecting a set twice gives the same figures
PERCENTILES = {"p50": 50.0, "p99": 99.0}


@dataclass(frozen=True)
class ReplaySample:
    """The rows of the split table the event loop replays, and every row's weight."""

    rows: np.ndarray  # replayed, in row order
    weights: np.ndarray  # per row: 1, or the requests a sampled one stands for; 0: left out
    side_by_side: int  # requests whose stages ran side by side (the sample is drawn from them)

    @property
    def sampled(self) -> bool:
        return len(self.rows) < self.side_by_side


def checked(size: int) -> int:
    """A sample size as given: 0 (every request), or 100 to 10^7 (a sample of a few would
    say little); else a UserError naming ``--replay-sample``."""
    if size != 0 and not 100 <= size <= REPLAY_SAMPLE_MAX:
        raise UserError(
            f"--replay-sample must be 0 (every request) or from 100 to 10^7, not {size}"
        )
    return int(size)


def choose(
    side_by_side: np.ndarray,
    rows: int,
    size: int = REPLAY_SAMPLE,
    replicate_of: np.ndarray | None = None,
) -> ReplaySample:
    """Every row of ``side_by_side`` (of a table of ``rows``), or a seeded sample of about
    ``size`` of them when there are more (``size`` 0: every one): drawn from each replicate
    (``replicate_of``, per row) in proportion, at least one from each, so every replicate's
    own percentiles stay defined."""
    weights = np.ones(rows)
    side_by_side = np.sort(side_by_side)
    if size <= 0 or len(side_by_side) <= size:
        return ReplaySample(side_by_side, weights, len(side_by_side))
    rng = np.random.default_rng(SEED)
    groups = replicate_of[side_by_side] if replicate_of is not None else np.zeros(len(side_by_side))
    picked = []
    weights[side_by_side] = 0.0
    for group in np.unique(groups):
        mine = side_by_side[groups == group]
        take = min(max(round(size * len(mine) / len(side_by_side)), 1), len(mine))
        drawn = rng.choice(mine, take, replace=False)
        weights[drawn] = len(mine) / take
        picked.append(drawn)
    return ReplaySample(np.sort(np.concatenate(picked)), weights, len(side_by_side))


def percentile(values: np.ndarray, weights: np.ndarray | None, q: float) -> float:
    """The ``q``-th percentile of ``values``, each counted ``weights`` times: numpy's default
    (linear) percentile of the values repeated so, for any weights, whole or not."""
    if weights is None:
        return float(np.percentile(values, q))
    order = np.argsort(values, kind="stable")
    return _sorted_percentile(values[order], weights[order], q)


def _sorted_percentile(ranked: np.ndarray, weights: np.ndarray, q: float) -> float:
    keep = weights > 0
    if not keep.any():
        raise ValueError("a percentile of nothing: every weight is 0")
    ranked, w = ranked[keep], weights[keep]
    # A value of weight w fills the positions [S - w, S - 1] of the repeated array (S: the
    # weights so far); between them, the linear interpolation numpy makes.
    ends = np.cumsum(w)
    starts = ends - w
    positions = np.column_stack([starts, np.maximum(ends - 1, starts)]).ravel()
    at = q / 100.0 * max(float(ends[-1]) - 1.0, 0.0)
    return float(np.interp(at, positions, np.repeat(ranked, 2)))


def sampling_error(
    sample: ReplaySample, replayed: np.ndarray, *known: np.ndarray, rounds: int = MIN_ROUNDS
) -> dict[str, float]:
    """Per percentile, how far the sample may put it from every request's (relative): the
    larger of what its weights do to quantities ``known`` for every request, and the 95%
    bootstrap spread of the ``replayed`` percentile over redrawn samples (the sampled requests
    drawn again with replacement, each keeping its weight). Every request replayed: none."""
    if not sample.sampled:
        return dict.fromkeys(PERCENTILES, 0.0)
    order = np.argsort(replayed, kind="stable")
    ranked = replayed[order]
    estimate = {
        name: _sorted_percentile(ranked, sample.weights[order], q)
        for name, q in PERCENTILES.items()
    }
    base = sample.weights.copy()
    base[sample.rows] = 0.0
    # Each round's percentiles taken as it is drawn: a round's weights are as long as the set.
    spread: dict[str, list[float]] = {name: [] for name in PERCENTILES}
    for drawn in redraws(len(sample.rows), rounds, SEED):
        rows = sample.rows[drawn]
        weights = base + np.bincount(rows, weights=sample.weights[rows], minlength=len(base))
        weights = weights[order]
        for name, q in PERCENTILES.items():
            spread[name].append(abs(_sorted_percentile(ranked, weights, q) / estimate[name] - 1.0))
    out = {}
    for name, q in PERCENTILES.items():
        errors = [
            abs(percentile(v, sample.weights, q) / percentile(v, None, q) - 1.0) for v in known
        ]
        errors.append(float(np.percentile(spread[name], 95)) if spread[name] else 0.0)
        out[name] = max(errors)
    return out
