"""The wall time a long computation may take, and the one line it stops with past it.

A replay of every request of a big set (``--replay-sample 0``), or one a claim makes very slow,
may take hours. It is checked as it goes: once its pace says the rest would take well past the
budget, or the budget is spent, it stops and says how far it got and what it would need,
rather than running on with no output.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from harness.errors import UserError, in_range, number

BUDGET_S = 600.0  # a projection's replays, by default
BUDGET = (1.0, 86_400.0)  # what --budget may give, inclusive
JUDGED_AFTER_S = 1.0  # the pace is judged on a second of work at least
SLACK = 1.5  # stopped early only when the pace says the rest would take this much past it
EVERY = 32  # items between looks at the clock

T = TypeVar("T")


class Budget:
    """Seconds of wall time, from when it is made, that the loops given to ``each`` share."""

    def __init__(self, seconds: float = BUDGET_S, clock: Callable[[], float] = time.monotonic):
        in_range("--budget", seconds, *BUDGET)  # NaN or 0 would never stop, or stop at once
        self.seconds, self._clock = seconds, clock
        self._start = clock()

    def each(self, items: Sequence[T], doing: str) -> Iterator[T]:
        """``items`` one by one, stopped with a UserError once ``doing`` them would outrun
        the budget (judged from the pace so far) or has spent it."""
        begun, total = self._clock(), len(items)
        for done, item in enumerate(items):
            if done % EVERY == 0:
                self._check(begun, done, total, doing)
            yield item

    def _check(self, begun: float, done: int, total: int, doing: str) -> None:
        now = self._clock()
        spent, pace = now - self._start, (now - begun) / max(done, 1)
        needed = spent + pace * (total - done)
        limit = f"the budget of {number(self.seconds)} s (--budget)"
        where = f"after {done:,} of {total:,} requests in {spent:.1f} s"
        if spent > self.seconds:
            raise UserError(f"{doing} ran out of {limit} {where}: {_advice(needed)}")
        if done and now - begun >= JUDGED_AFTER_S and needed > SLACK * self.seconds:
            raise UserError(f"{doing} would outrun {limit}: {where}; {_advice(needed)}")


def _advice(needed: float) -> str:
    return f"it needs about {needed:,.0f} s: give more, or a smaller --replay-sample"
