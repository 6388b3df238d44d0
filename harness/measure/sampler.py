"""Telemetry sampled beside the measured repetitions: CPU, memory, GPU, energy, and its own cost."""

from __future__ import annotations

import os
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from harness.archive.schema import SamplerCost
from harness.measure.telemetry_sources import Reading, Source, default_sources

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["t_ns", "source", "device", "metric", "value", "unit"]
"""The samples table, one row per reading (long format: a new metric never changes the schema).

``t_ns`` is the sampler's clock (``time.perf_counter_ns`` by default, the probes' clock). Units
are SI or a share: ``fraction`` (0..1, utilisation), ``Hz``, ``bytes``, ``W``, ``J``."""


class Sampler:
    """Samples every source every ``interval_s`` on a daemon thread, around measured work.

    ``with Sampler() as sampler: ...`` then ``sampler.samples()`` (the table in ``COLUMNS``) and
    ``sampler.cost()``. Sources are set up on entry, in the caller's thread; a sample is taken at
    once and a last one at stop, so counters cover the whole span. A source that raises is
    dropped at its first error and noted in ``notes``; the run and the other sources go on.
    """

    def __init__(
        self,
        interval_s: float = 0.5,
        *,
        psutil: Any = None,
        nvml: Any = None,
        rapl_root: str | os.PathLike[str] = "/",
        sources: Sequence[Source] | None = None,
        clock: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.interval_s, self.clock = interval_s, clock
        self.notes: list[str] = []
        self._given, self._setup = sources, (psutil, nvml, rapl_root)
        self._all: list[Source] = []
        self._live: list[Source] = []  # a failed source leaves this list, not _all
        # Readings go to typed arrays, not per-row Python objects: no garbage for the collector
        # to walk while the measured work runs, and 24 bytes a reading.
        self._keys: dict[tuple[str, str, str, str], int] = {}
        self._t, self._k, self._v = array("q"), array("q"), array("d")
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread: threading.Thread | None = None
        self._count = self._cpu_ns = self._sample_ns = self._began_ns = self._ended_ns = 0

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Sampler:
        """Set up the sources and start sampling; a Sampler runs once."""
        if self._thread is not None:
            raise RuntimeError("a Sampler runs once; make a new one")
        if self._given is None:
            self._all, _ = default_sources(*self._setup, self.notes)
        else:
            self._all = list(self._given)
        self._live = list(self._all)
        self._began_ns = time.perf_counter_ns()
        self._thread = threading.Thread(target=self._run, name="gapbench-telemetry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take a last sample and end the thread; safe to call twice."""
        if self._thread is not None and not self._ended_ns:
            self._stop.set()
            self._thread.join()
            self._ended_ns = time.perf_counter_ns()

    def _run(self) -> None:
        cpu_began = time.thread_time_ns()
        step, due = round(self.interval_s * 1e9), time.perf_counter_ns()
        try:
            while True:
                self._sample()
                self._cpu_ns = time.thread_time_ns() - cpu_began
                now = time.perf_counter_ns()
                # A fixed grid, so slow samples do not stretch the interval; after a stall, one
                # sample at once rather than a burst to catch up.
                due = max(due + step, now)
                if self._stop.wait((due - now) / 1e9):
                    break
            self._sample()
        except Exception as error:  # a bug here must not take the run down with it
            self.notes.append(f"sampler stopped: {type(error).__name__}: {error}")
        for source in self._all:
            try:
                if source.close is not None:
                    source.close()
            except Exception as error:
                self.notes.append(f"{source.name}: close failed: {type(error).__name__}: {error}")
        self._cpu_ns = time.thread_time_ns() - cpu_began

    def _sample(self) -> None:
        began, t_ns = time.perf_counter_ns(), self.clock()
        rows: list[Reading] = []
        for source in list(self._live):
            try:
                rows += [(s, d, m, u, float(v)) for s, d, m, u, v in source.read()]
            except Exception as error:  # one broken probe must not end the others or the run
                self._live.remove(source)
                self.notes.append(f"{source.name}: disabled after {type(error).__name__}: {error}")
        with self._lock:
            for name, device, metric, unit, value in rows:
                self._t.append(t_ns)
                key = (name, device, metric, unit)
                self._k.append(self._keys.setdefault(key, len(self._keys)))
                self._v.append(value)
            self._count += 1
            self._sample_ns += time.perf_counter_ns() - began

    def samples(self) -> pd.DataFrame:
        """Every reading so far, one row each, in the columns of ``COLUMNS``."""
        import numpy as np
        import pandas as pd

        with self._lock:
            t, k, v = (np.array(column) for column in (self._t, self._k, self._v))
            keys = np.array(list(self._keys), dtype=object).reshape(-1, 4)
        source, device, metric, unit = (keys[k, i] for i in range(4))
        columns = {"t_ns": t, "source": source, "device": device, "metric": metric}
        return pd.DataFrame({**columns, "value": v, "unit": unit}, columns=COLUMNS)

    def cost(self) -> SamplerCost:
        """The sampler's own CPU and wall time, so far or over the whole span once stopped."""
        with self._lock:
            count, sample_ns = self._count, self._sample_ns
        wall_ns = (self._ended_ns or time.perf_counter_ns()) - self._began_ns
        return SamplerCost(
            samples=count,
            cpu_s=self._cpu_ns / 1e9,
            wall_s=wall_ns / 1e9 if self._began_ns else 0.0,
            cpu_fraction=self._cpu_ns / wall_ns if self._began_ns and wall_ns > 0 else 0.0,
            mean_sample_us=sample_ns / count / 1e3 if count else 0.0,
        )
