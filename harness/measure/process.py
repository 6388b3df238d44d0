"""Measure a workload in this process: set up, warm up (discarded), then measured requests."""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from harness import plugins
from harness.archive.codec import DecodeError, from_dict
from harness.archive.schema import Agreement, ClockAnchor, Load, ReplicateFacts, RunLength
from harness.archive.tables import REQUEST_COLUMNS, TOKEN_COLUMN
from harness.errors import UserError
from harness.machine.sysfs import CpuTimes, cpu_times
from harness.measure.config import FAIL_FAST, RunConfig
from harness.measure.driver import RequestDriver, RequestOutcome, describe
from harness.measure.probe_cost import probe_cost_ns
from harness.measure.profiling import Profile, profile_requests
from harness.measure.progress import ProgressBar
from harness.measure.sampler import Sampler
from harness.measure.spool import IntervalSpool
from harness.measure.under_load import Sink, serve
from harness.params import resolve
from harness.record.gpu_timing import SYNC, device_timer
from harness.record.probes import Clock, DeviceTimer
from harness.record.virtual import Spinner, Virtual
from harness.workload import SetupContext, Workload

TELEMETRY_INTERVAL_S = 0.5
SAVING = "saving"  # the phase once measuring is over: what it measured is being put together


@dataclass(frozen=True)
class ProcessResult:
    """What one process measured: its raw intervals (a Parquet file, never held whole) and
    per-request rows, plus its facts."""

    intervals: Path
    requests: pd.DataFrame
    facts: ReplicateFacts
    interrupted: bool = False
    profile: Profile | None = None
    telemetry: pd.DataFrame | None = None
    # The folder ``intervals`` lies in when no caller gave one: removed with this result.
    scratch: tempfile.TemporaryDirectory | None = field(default=None, repr=False, compare=False)
    queries: pd.DataFrame | None = None  # each query LoadGen scheduled (a run under LoadGen)


def _steal(before: CpuTimes | None, after: CpuTimes | None) -> float | None:
    """Share of the machine's CPU time the hypervisor gave to others while we measured."""
    if before is None or after is None:
        return None
    return after.since(before).steal_fraction


def peak_rss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # Windows has no getrusage
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators, for plugins that use them."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def hook(workload: Workload, name: str, call: Callable[..., Any], *args: Any) -> Any:
    """A plugin hook called before any request: one that fails stops the run in one line that
    says where (a request's failure, by contrast, is that request's, and the run goes on)."""
    try:
        said = call(*args)
    except UserError:
        raise
    except (Exception, SystemExit) as exc:  # a hook that exits stops the run, said in one line
        raise UserError(f"workload {type(workload).name!r}: {describe(name, exc)}") from exc
    if name in MAPPING_HOOKS and not isinstance(said, Mapping):
        raise UserError(f"workload {type(workload).name!r}: {name}() returned {said!r}, not a dict")
    return said


# The hooks whose answer is a mapping (``requests`` gives a sequence, ``setup`` nothing).
MAPPING_HOOKS = frozenset({"execution", "setup_facts", "agreement", "work"})


def _agreement(workload: Workload) -> Agreement | None:
    """The workload's agreement with its reference backend, read through the stored schema so
    a hook that returns the wrong keys is named at once."""
    said = dict(hook(workload, "agreement", workload.agreement))
    if not said:
        return None
    try:
        return from_dict(Agreement, said)
    except DecodeError as exc:
        raise UserError(f"workload {type(workload).name!r}: agreement(): {exc}") from None


def measure(
    workload: Workload,
    setup: SetupContext,
    length: RunLength,
    *,
    clock: Clock = time.perf_counter_ns,
    progress: Callable[[int, float], None] | None = None,
    phase: Callable[[str], None] | None = None,
    timing: str = SYNC,
    profile: int = 0,
    virtual: Virtual | None = None,
    replicate: int = 0,
    scratch: Path | None = None,
    load: Load | None = None,
) -> ProcessResult:
    """Set up, warm up (discarded), then measure until both minimums are met.

    ``phase(name)`` announces setup, warm-up, measurement, profiling and saving;
    ``progress(requests_done, seconds_elapsed)`` is called after each measured request. A
    failed request keeps its error, is counted, and the run goes on. Ctrl-C stops measuring
    and returns what finished.
    ``timing`` says how probes time an asynchronous device (harness.record.gpu_timing).
    ``profile`` requests more run afterwards under a profiler (torch's, or the backend's own),
    apart from the timed ones. The intervals are spooled to ``scratch`` (a folder the caller
    removes; by default one removed with the result). Under a ``load`` (a LoadGen scenario,
    or clients in a closed loop) requests are served by threads, several at once.
    """
    import torch

    announce = phase or (lambda name: None)
    threads, interop_threads = torch.get_num_threads(), torch.get_num_interop_threads()
    seed_everything(setup.seed)
    probe_cost = probe_cost_ns()  # in this process, before the workload loads
    anchor = ClockAnchor(time.perf_counter_ns(), time.time_ns())
    announce("setup")
    started = clock()
    hook(workload, "setup", workload.setup, setup)
    model_load_s = (clock() - started) / 1e9
    execution = dict(hook(workload, "execution", workload.execution))
    agreement = _agreement(workload)
    stream: Sequence[Any] = hook(workload, "requests", workload.requests, setup)
    if not stream:
        raise UserError(f"workload {type(workload).name!r} produced no requests")
    work = dict(hook(workload, "work", workload.work))
    timer: DeviceTimer | None = device_timer(setup.device, timing, clock)
    if virtual is not None:
        timer = Spinner(virtual, timer)  # everything but one stage stretched (record.virtual)
    in_flight = max(load.workers, load.concurrency) if load else 1
    driver = RequestDriver(workload, setup, clock, timer, in_flight=in_flight)
    rows: list[dict[str, Any]] = []
    queries = None
    sink: Sink | None = None
    owned = None
    if scratch is None:
        owned = tempfile.TemporaryDirectory(prefix="gapbench-")
        scratch = Path(owned.name)
    spool = IntervalSpool(scratch / "intervals.parquet")
    interrupted = False
    profiled = None
    measured: dict[str, Any] = {}  # facts known only once measuring got that far
    # A light thread sampling utilisation, clocks, memory and energy while requests are timed.
    sampler = Sampler(interval_s=TELEMETRY_INTERVAL_S, clock=clock)
    try:
        announce("warm-up")
        for i in range(length.warmup):
            outcome = driver(-1 - i, stream[i % len(stream)])
            if i == 0:
                measured["first_request_s"] = (outcome.response_ns - outcome.arrival_ns) / 1e9
        if setup.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        # What setup and warm-up built stays for the run: out of the collector's passes, so a
        # pass costs the same at the last request as at the first. (Process-wide: the
        # unfreeze below also thaws what an embedding program froze itself.)
        gc.collect()
        gc.freeze()
        announce("measuring")
        sampler.start()
        ticks_before = cpu_times()
        if load is not None:
            sink = Sink(workload, _request_row, spool, length, clock, progress)
            rows = sink.rows  # what finished stays, if Ctrl-C stops serving
            served = serve(load, driver, stream, sink, scratch / "loadgen", setup.seed)
            measured["load"], queries = served.facts, served.queries
            measured["failed_fast"] = sink.failed_fast
            elapsed, n, progress_ns = served.facts.measured_s, len(rows), sink.progress_ns
            cap = math.inf
        else:
            elapsed, n, progress_ns = _one_at_a_time(
                driver, workload, stream, length, clock, progress, spool, rows, measured
            )
            cap = length.request_cap
        measured["hit_max_duration"] = elapsed >= length.max_duration_s
        # Stopped by the cap, not by --min-requests asking for exactly that many.
        measured["hit_max_requests"] = (
            n >= cap and n > length.min_requests and elapsed < length.min_duration_s
        )
        measured["measured_s"] = elapsed
        measured["progress_s"] = progress_ns / 1e9
        measured["cpu_steal_fraction"] = _steal(ticks_before, cpu_times())
        sampler.stop()
        if profile:
            announce("profiling")
            try:
                profiled = profile_requests(driver, stream, profile, workload.profiler())
            except Exception as exc:  # the timed requests are done: keep them, say why
                measured["profile_error"] = describe("profiling", exc)
    except KeyboardInterrupt:
        interrupted = True
        if sink is not None and "load" not in measured:  # LoadGen's own record is lost
            measured["load"] = sink.partial_facts()
    except BaseException:
        spool.close()
        raise
    finally:
        announce(SAVING)  # from here on, what was measured is put together and kept
        gc.unfreeze()
        sampler.stop()
        driver.close()
    if setup.device == "cuda":
        measured["gpu_peak_bytes"] = torch.cuda.max_memory_allocated()
    # Read once measuring is over: what setup built may have had to be built again since. A
    # hook that fails now says so in the facts rather than lose what was measured.
    try:
        setup_facts = dict(hook(workload, "setup_facts", workload.setup_facts))
    except UserError as exc:
        setup_facts = {"error": str(exc)}
    facts = ReplicateFacts(
        replicate=replicate,
        threads=threads,
        interop_threads=interop_threads,
        probe_cost_ns=probe_cost,
        model_load_s=model_load_s,
        execution=execution,
        agreement=agreement,
        work=work,
        distinct_requests=len(stream),
        inputs_sha256=inputs_digest(list(stream)),
        telemetry_cost=sampler.cost(),
        telemetry_notes=tuple(sampler.notes),
        stage_threads=dict(driver.stage_threads),
        requests_measured=len(rows),
        requests_failed=sum(1 for row in rows if not row["ok"]),
        peak_rss_bytes=peak_rss_bytes(),
        pid=os.getpid(),
        clock_anchor=anchor,
        setup_facts=setup_facts,
        **measured,
    )
    try:
        workload.teardown()
    except (Exception, SystemExit) as exc:  # what was measured is kept; the verdict says so
        facts = replace(facts, teardown_error=describe("teardown", exc))
    columns = [*REQUEST_COLUMNS, TOKEN_COLUMN]
    requests = pd.DataFrame(list(rows), columns=columns).sort_values("request")
    return ProcessResult(
        spool.finish(),
        requests.reset_index(drop=True),
        facts,
        interrupted,
        profiled,
        sampler.samples(),
        owned,
        queries,
    )


def _one_at_a_time(
    driver: RequestDriver,
    workload: Workload,
    stream: Sequence[Any],
    length: RunLength,
    clock: Clock,
    progress: Callable[[int, float], None] | None,
    spool: IntervalSpool,
    rows: list[dict[str, Any]],
    measured: dict[str, Any],
) -> tuple[float, int, int]:
    """gapbench's own loop: one request at a time until both minimums are met. Returns the
    seconds measured, the requests and the progress bar's own ns."""
    begin = clock()
    elapsed = 0.0
    progress_ns = 0
    n = 0
    while length.wants_more(n, elapsed):
        payload = stream[n % len(stream)]
        outcome = driver(n, payload)
        if n == 0 and length.warmup == 0:
            measured["first_request_s"] = (outcome.response_ns - outcome.arrival_ns) / 1e9
        rows.append(_request_row(workload, n, payload, outcome))
        spool.add(outcome.recorder)
        n += 1
        if n == FAIL_FAST and not any(row["ok"] for row in rows):
            measured["failed_fast"] = True  # a broken workload: no use going on
            break
        elapsed = (clock() - begin) / 1e9
        if progress is not None:
            # Between requests, never inside one; its cost is still the harness's to count.
            drawn = time.perf_counter_ns()
            progress(n, elapsed)
            progress_ns += time.perf_counter_ns() - drawn
    return elapsed, n, progress_ns


def measure_config(
    config: RunConfig,
    device: str,
    label: str,
    replicate: int,
    scratch: Path | None = None,
    phase: Callable[[str], None] | None = None,
) -> ProcessResult:
    """Measure ``config`` in this process on ``device``, with a progress bar on stderr when
    asked; its intervals are spooled to ``scratch`` and each phase announced to ``phase``
    (see :func:`measure`)."""
    cls = plugins.load(config.workload)
    setup = SetupContext(
        device=device,
        size=config.size,
        seed=config.seed,
        backend=config.backend,
        providers=config.providers,
        params=resolve(cls.params, config.params),
    )
    virtual = Virtual.parse(config.virtual) if config.virtual else None
    length = config.measurement
    options: dict[str, Any] = {
        "timing": config.gpu_timing,
        "profile": config.profile,
        "virtual": virtual,
        "replicate": replicate,
        "scratch": scratch,
        "load": config.load,
    }
    told = phase or (lambda name: None)
    if not config.show_progress:
        return measure(cls(), setup, length, phase=told, **options)
    with ProgressBar(label, length.min_requests, length.min_duration_s) as bar:

        def both(name: str) -> None:
            bar.phase(name)
            told(name)

        return measure(cls(), setup, length, progress=bar.update, phase=both, **options)


def _request_row(workload: Workload, n: int, payload: Any, outcome: RequestOutcome) -> dict:
    error, outputs = outcome.error, "{}"
    if not error:
        # A plugin's output hook failing is that request's failure, not the run's.
        try:
            outputs = json.dumps(workload.outputs(outcome.response), sort_keys=True, default=str)
        except Exception as exc:
            error = describe("outputs", exc)
    try:
        samples = int(workload.samples(payload))
    except Exception as exc:
        error, samples = error or describe("samples", exc), 1
    return {
        "request": n,
        "ok": not error,
        "error": error,
        "arrival_ns": outcome.arrival_ns,
        "response_ns": outcome.response_ns,
        "latency_s": (outcome.response_ns - outcome.arrival_ns) / 1e9,
        "samples": samples,
        "outputs": outputs,
        TOKEN_COLUMN: [t - outcome.arrival_ns for t in outcome.recorder.tokens],
    }


def inputs_digest(payloads: list[Any]) -> str:
    """A checksum of the request stream, so two sets can be shown to have had the same inputs."""
    digest = hashlib.sha256()
    for payload in payloads:
        if isinstance(payload, str):
            payload = payload.encode()
        elif not isinstance(payload, bytes | bytearray):
            payload = json.dumps(payload, sort_keys=True, default=repr).encode()
        digest.update(len(payload).to_bytes(8, "little"))
        digest.update(payload)
    return digest.hexdigest()
