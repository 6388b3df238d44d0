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

REPLAY_SAMPLE = 4_000  # side-by-side requests replayed at most by default (0: every one)
SEED = 0  # one fixed sample: projecting a set twice gives the same figures
PERCENTILES = {"p50": 50.0, "p99": 99.0}
ROUNDS = 100  # bootstrap redraws of the sample


@dataclass(frozen=True)
class ReplaySample:
    """The rows of the split table the event loop replays, and every row's weight."""

    rows: np.ndarray  # replayed, in row order
    weights: np.ndarray  # per row: 1, or the requests a sampled one stands for; 0: left out
    side_by_side: int  # requests whose stages ran side by side (the sample is drawn from them)

    @property
    def sampled(self) -> bool:
        return len(self.rows) < self.side_by_side


def choose(side_by_side: np.ndarray, rows: int, size: int = REPLAY_SAMPLE) -> ReplaySample:
    """Every row of ``side_by_side`` (of a table of ``rows``), or a seeded sample of ``size``
    of them when there are more (``size`` 0: every one)."""
    weights = np.ones(rows)
    if size <= 0 or len(side_by_side) <= size:
        return ReplaySample(np.sort(side_by_side), weights, len(side_by_side))
    picked = np.sort(np.random.default_rng(SEED).choice(side_by_side, size, replace=False))
    weights[side_by_side] = 0.0
    weights[picked] = len(side_by_side) / size
    return ReplaySample(picked, weights, len(side_by_side))


def percentile(values: np.ndarray, weights: np.ndarray | None, q: float) -> float:
    """The ``q``-th percentile of ``values``, each counted ``weights`` times: numpy's default
    (linear) percentile of the values repeated so, for any weights, whole or not."""
    if weights is None:
        return float(np.percentile(values, q))
    keep = weights > 0
    order = np.argsort(values[keep], kind="stable")
    ranked, w = values[keep][order], weights[keep][order]
    # A value of weight w fills the positions [S - w, S - 1] of the repeated array (S: the
    # weights so far); between them, the linear interpolation numpy makes.
    ends = np.cumsum(w)
    starts = ends - w
    positions = np.column_stack([starts, np.maximum(ends - 1, starts)]).ravel()
    at = q / 100.0 * max(float(ends[-1]) - 1.0, 0.0)
    return float(np.interp(at, positions, np.repeat(ranked, 2)))


def sampling_error(
    sample: ReplaySample, replayed: np.ndarray, *known: np.ndarray, rounds: int = ROUNDS
) -> dict[str, float]:
    """Per percentile, how far the sample may put it from every request's (relative): the
    larger of what its weights do to quantities ``known`` for every request, and the 95%
    bootstrap spread of the ``replayed`` percentile over redrawn samples."""
    rng = np.random.default_rng(SEED)
    base = sample.weights.copy()
    base[sample.rows] = 0.0
    each = sample.side_by_side / max(len(sample.rows), 1)
    redrawn = []
    for _ in range(rounds):
        drawn = rng.choice(sample.rows, len(sample.rows), replace=True)
        redrawn.append(base + np.bincount(drawn, minlength=len(base)) * each)
    out = {}
    for name, q in PERCENTILES.items():
        errors = [
            abs(percentile(v, sample.weights, q) / percentile(v, None, q) - 1.0) for v in known
        ]
        estimate = percentile(replayed, sample.weights, q)
        spread = [abs(percentile(replayed, w, q) / estimate - 1.0) for w in redrawn]
        errors.append(float(np.percentile(spread, 95)) if spread else 0.0)
        out[name] = max(errors)
    return out
