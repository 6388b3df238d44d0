"""A light progress bar for measured repetitions: redrawn from the runner's thread, rarely."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

# Redrawing costs the measured process time; four times a second is plenty for a person and
# keeps the bar off the critical path of all but a few requests.
REFRESH_S = 0.25


class ProgressBar:
    """Shows requests done against the minimum count, and time against the minimum duration.

    No background thread: ``update`` redraws only when ``REFRESH_S`` has passed, so its cost
    lands between requests, never inside one.
    """

    def __init__(self, label: str, min_requests: int, min_duration_s: float) -> None:
        self.min_requests = min_requests
        self.min_duration_s = min_duration_s
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            auto_refresh=False,
            transient=True,
        )
        self.label = label
        self._task = self._progress.add_task(label, total=1.0, detail="")
        self._last = 0.0

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def phase(self, name: str) -> None:
        """Say what the run is doing before measurement starts (setup, warm-up)."""
        self._progress.update(self._task, description=f"{self.label}: {name}")
        self._progress.refresh()

    def update(self, done: int, elapsed_s: float) -> None:
        now = time.monotonic()
        if now - self._last < REFRESH_S:
            return
        self._last = now
        by_time = elapsed_s / self.min_duration_s if self.min_duration_s > 0 else 1.0
        fraction = min(done / self.min_requests, by_time, 1.0)
        detail = f"{done}/{self.min_requests} requests, {elapsed_s:.0f}/{self.min_duration_s:.0f} s"
        self._progress.update(self._task, completed=fraction, detail=detail)
        self._progress.refresh()
