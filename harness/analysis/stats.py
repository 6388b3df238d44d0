"""The statistics every reader uses: latency percentiles with their sample floors, and the
bootstrap (of a ratio of medians, and its draws for other statistics)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# Sample floors below which a percentile is only indicative (MLPerf LoadGen).
PERCENTILE_FLOORS = {50: 1, 90: 64, 99: 662, 99.9: 6_600}


def sample_floor(percentile: float) -> int:
    """Samples a percentile needs before it is more than indicative: the floor of the next
    percentile that has one, where this one has none (p95 takes p99's)."""
    known = [p for p in sorted(PERCENTILE_FLOORS) if p >= percentile]
    return PERCENTILE_FLOORS[known[0]] if known else max(PERCENTILE_FLOORS.values())


NOISE_THRESHOLD = 0.1  # IQR / median, as torch.utils.benchmark warns
BOOTSTRAP_ROUNDS = 2000
BOOTSTRAP_DRAWS = 10_000_000  # rounds x samples at most: 200 rounds of 50,000 requests
MIN_ROUNDS = 200  # fewer would leave the 2.5% and 97.5% points to a handful of rounds
SLICE_DRAWS = 2_000_000  # indices drawn at once (16 MB of them)


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


def median_ratio(numerator: np.ndarray, denominator: np.ndarray) -> float:
    """median(numerator) / median(denominator); NaN when either is empty."""
    if len(numerator) == 0 or len(denominator) == 0:
        return float("nan")
    return float(np.median(numerator) / np.median(denominator))


def redraws(n: int, rounds: int = MIN_ROUNDS, seed: int = 0) -> Iterator[np.ndarray]:
    """The bootstrap's draws, a round at a time: ``n`` indices of ``n`` things, with
    replacement, for a statistic that cannot be taken over many rounds at once."""
    rng = np.random.default_rng(seed)
    for _ in range(rounds if n else 0):
        yield rng.integers(0, n, size=n)


def bootstrap_ratio(
    numerator: np.ndarray,
    denominator: np.ndarray,
    *,
    paired: bool,
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
) -> tuple[float, float]:
    """A 95% percentile-bootstrap interval of median(numerator) / median(denominator).

    ``paired``: the two arrays are measured on the same units (requests, interleaved blocks),
    so each round resamples the same indices of both. Otherwise each side is resampled on its
    own (the replicates of two different sets). Resample what is independent: replicates,
    blocks, never the requests of one process when more than one process ran.

    On a large sample the rounds shrink so that rounds x samples stays within
    ``BOOTSTRAP_DRAWS`` (never below ``MIN_ROUNDS``), and they are drawn a slice at a time:
    a 50,000-request set costs half a second and tens of megabytes, not a gigabyte.
    """
    numerator, denominator = np.asarray(numerator), np.asarray(denominator)
    if len(numerator) == 0 or len(denominator) == 0:
        return (float("nan"), float("nan"))
    n, m = len(numerator), len(denominator)
    rounds = max(min(rounds, BOOTSTRAP_DRAWS // max(n, m)), min(rounds, MIN_ROUNDS))
    rng = np.random.default_rng(seed)
    if rounds * (n + m) <= SLICE_DRAWS:
        top = rng.integers(0, n, size=(rounds, n))
        bottom = top if paired else rng.integers(0, m, size=(rounds, m))
        ratios = np.median(numerator[top], axis=1) / np.median(denominator[bottom], axis=1)
    else:
        step = max(SLICE_DRAWS // (n + m), 1)
        parts = []
        for done in range(0, rounds, step):
            k = min(step, rounds - done)
            top = rng.integers(0, n, size=(k, n))
            bottom = top if paired else rng.integers(0, m, size=(k, m))
            parts.append(np.median(numerator[top], axis=1) / np.median(denominator[bottom], axis=1))
        ratios = np.concatenate(parts)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)
