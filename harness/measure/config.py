"""What one `gapbench run` is asked to do, checked whole before any work starts.

Every number a user can type has a range, every name is looked up, and a backend a workload
cannot run, or execution providers this onnxruntime lacks, are refused before minutes (or a
hardware scan) are spent on the good part of the command.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness import plugins
from harness.archive.schema import CLOSED_LOOP, Load, RunLength
from harness.errors import EXIT_FAILED, EXIT_INTERRUPTED, UserError, in_range
from harness.machine.devices import resolve_device
from harness.machine.threads import THREADS
from harness.params import Given
from harness.record.gpu_timing import MODES, SYNC
from harness.record.virtual import Virtual
from harness.workload import BACKENDS, SIZES, Workload

# The ranges of what a user can type, inclusive.
REPEAT = (1, 100)
WARMUP = (0, 100_000)
MIN_REQUESTS = (1, 10_000_000)
MIN_DURATION_S = (0.0, 86_400.0)
PROFILE = (0, 10_000)
SEED = (0, 2**32 - 1)
TIMEOUT_S = (1.0, 604_800.0)  # a workload process's time limit: up to a week
QUICK_CAP = 1_000  # a quick run's most requests, unless --min-requests asks for more
FAIL_FAST = 20  # measuring stops when the first this many requests all failed
# LoadGen's scenarios, and the numbers of a load
SCENARIOS = ("single-stream", "multi-stream", "server", "offline")
WORKERS = (1, 1024)
CONCURRENCY = (1, 1024)
BATCH = (1, 65_536)
SAMPLES_PER_QUERY = (1, 65_536)
QPS = (0.001, 1_000_000.0)
RATES = (1, 64)  # rates a sweep may list
STEPS = (1, 20)  # bisection steps of a search for the highest rate
P99_BOUND_MS = (0.001, 3_600_000.0)


def check_load(load: Load) -> None:
    """Refuse a scenario gapbench does not know, or a number outside its range."""
    known = (*SCENARIOS, CLOSED_LOOP)
    if load.scenario not in known:
        raise UserError(f"--scenario {load.scenario!r}: one of {', '.join(known)}")
    if load.scenario == "server" and load.qps is None:
        raise UserError("--scenario server needs --qps, the rate of Poisson arrivals")
    if load.qps is not None:
        in_range("--qps", load.qps, *QPS)
    in_range("--workers", load.workers, *WORKERS)
    in_range("--concurrency", load.concurrency, *CONCURRENCY)
    in_range("--batch", load.batch, *BATCH)
    in_range("--samples-per-query", load.samples_per_query, *SAMPLES_PER_QUERY)
    if load.p99_bound_ms is not None:
        if load.scenario != "server":
            raise UserError("--p99-bound applies to --scenario server")
        in_range("--p99-bound", load.p99_bound_ms, *P99_BOUND_MS)


@dataclass(frozen=True)
class RunConfig:
    """One workload's run: the work (workload, size, seed) and how it is executed."""

    workload: str
    device: str = "auto"
    size: str = "default"
    seed: int = 0
    repeat: int = 1
    measurement: RunLength = field(default_factory=RunLength)
    gpu_timing: str = SYNC
    profile: int = 0  # requests of a profiling pass after the timed ones (first replicate)
    show_progress: bool = True
    backend: str = "torch"
    providers: tuple[str, ...] = ()  # onnxruntime execution providers, in order; () = default
    # "STAGE=FACTOR": every other stage's probes stretched (harness.record.virtual)
    virtual: str = ""
    # Replicates in their own processes (independent: pyperf's rule), or one after another in
    # this one (faster; caches and allocator state carry over).
    separate_processes: bool = True
    # The workload's parameters, every one (harness.params): given, or its default.
    params: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None  # intra-op threads of the model stages; None: the machine's
    # Each worker process's time limit. Given, every replicate runs in a worker of its own
    # (even one): a crash, a hang or running out of memory fails this workload, not gapbench.
    timeout_s: float | None = None
    load: Load | None = None  # how requests arrive; None: one at a time, gapbench's own loop

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise UserError(f"unknown size {self.size!r} (one of {', '.join(SIZES)})")
        if self.backend not in BACKENDS:
            raise UserError(f"unknown backend {self.backend!r} (one of {', '.join(BACKENDS)})")
        if self.virtual:
            try:
                Virtual.parse(self.virtual)
            except ValueError as exc:
                raise UserError(str(exc)) from None
        if self.providers and self.backend != "onnxruntime":
            raise UserError("--providers applies to --backend onnxruntime only")
        if self.gpu_timing not in MODES:
            raise UserError(f"unknown GPU timing {self.gpu_timing!r} (one of {', '.join(MODES)})")
        in_range("--repeat", self.repeat, *REPEAT)
        in_range("--profile", self.profile, *PROFILE)
        in_range("--seed", self.seed, *SEED)
        if self.threads is not None:
            in_range("--threads", self.threads, *THREADS)
        in_range("--warmup", self.measurement.warmup, *WARMUP)
        in_range("--min-requests", self.measurement.min_requests, *MIN_REQUESTS)
        in_range("--min-duration", self.measurement.min_duration_s, *MIN_DURATION_S)
        if self.timeout_s is not None:
            in_range("--timeout", self.timeout_s, *TIMEOUT_S)
        if self.load is not None:
            check_load(self.load)
            self._fits_in_time(self.load)

    def _fits_in_time(self, load: Load) -> None:
        """Refuse a server run whose minimum query count at its rate cannot finish in time:
        Poisson arrivals at R a second bring N queries in about N / R seconds."""
        if load.scenario != "server" or load.qps is None:
            return
        needs = self.measurement.min_requests / load.qps
        limit = min(self.measurement.max_duration_s, self.timeout_s or math.inf)
        if needs > limit:
            raise UserError(
                f"--scenario server at {load.qps:g} qps needs about {needs:,.0f} s for its "
                f"{self.measurement.min_requests:,} queries (--min-requests), past its limit of "
                f"{limit:,.0f} s: raise --qps or lower --min-requests"
            )


def run_length(
    size: str,
    warmup: int | None = None,
    min_requests: int | None = None,
    min_duration_s: float | None = None,
) -> RunLength:
    """The size's run length, with what the user gave in its place."""
    # quick: enough for p90 (64 samples), not for p99 (662): its p99 is indicative; and a
    # few seconds, but never more than QUICK_CAP requests however fast each one is.
    quick = RunLength(warmup=5, min_requests=64, min_duration_s=3.0, max_requests=QUICK_CAP)
    base = quick if size == "quick" else RunLength()
    return RunLength(
        warmup=base.warmup if warmup is None else warmup,
        min_requests=base.min_requests if min_requests is None else min_requests,
        min_duration_s=base.min_duration_s if min_duration_s is None else min_duration_s,
        max_duration_s=base.max_duration_s,
        max_requests=base.max_requests,
    )


def default_timeout(length: RunLength) -> float:
    """A worker's time limit when none is given: its measurement's safety stop, and half an
    hour for setup (a model export), warm-up and a profile."""
    return max(length.min_duration_s, length.max_duration_s) + 1800.0


def parse_providers(text: str | None) -> tuple[str, ...]:
    """``--providers A,B`` as a tuple (none given: the backend's own choice)."""
    if text is None:
        return ()
    names = tuple(p.strip() for p in text.split(","))
    if not all(names):
        raise UserError(f"--providers {text!r}: name each provider, e.g. CPUExecutionProvider")
    return names


def check_backend(cls: type[Workload], backend: str) -> None:
    """Refuse a backend the workload cannot run its model stages on."""
    if backend not in cls.backends:
        raise UserError(
            f"workload {cls.name!r} runs on {', '.join(cls.backends)}, not on {backend}"
        )


def check_load_for(cls: type[Workload], load: Load | None) -> None:
    """Refuse a load the workload cannot take: several requests at once where its contract
    says it serves one at a time, batches where it cannot batch."""
    if load is None:
        return
    if max(load.workers, load.concurrency) > 1 and not cls.concurrent:
        raise UserError(
            f"workload {cls.name!r} serves one request at a time: --workers and "
            "--concurrency must be 1"
        )
    if load.batch > 1 and cls.batch is Workload.batch:
        raise UserError(f"workload {cls.name!r} cannot batch samples: --batch must be 1")


def plan(
    workloads: Sequence[str], template: RunConfig, given: Given | None = None
) -> list[RunConfig]:
    """One config per workload (the suite when none is named), each like ``template`` with
    the parameters ``given`` for it, and all of them checked: the workloads load, run on the
    backend, take the parameters given, and the device and the execution providers exist here."""
    names = list(workloads) or plugins.suite()
    if not names:
        raise UserError("no workload is installed: name one as module:Class or file.py:Class")
    classes = [plugins.load(name) for name in names]
    given = given or Given({}, {})
    given.check_names({cls.name: cls.params for cls in classes})
    configs = [
        replace(template, workload=name, params=given.values(cls.name, cls.params))
        for name, cls in zip(names, classes, strict=True)
    ]
    for cls in classes:
        check_backend(cls, template.backend)
        check_load_for(cls, template.load)
    device = resolve_device(template.device)
    if template.backend == "onnxruntime":
        from harness.backends.ort import choose_providers

        choose_providers(device, template.providers)
    return configs


def exit_status(stopped_by: str) -> int:
    """The exit status of a run whose set says it stopped for ``stopped_by`` ("" = finished;
    else interrupted, or a replicate failed)."""
    if not stopped_by:
        return 0
    return EXIT_INTERRUPTED if stopped_by == "interrupted" else EXIT_FAILED
