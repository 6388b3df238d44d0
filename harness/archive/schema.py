"""What a result set stores, as frozen dataclasses: its manifest, config, replicates' facts.

A set's ``manifest.json`` is a :class:`Manifest`; ``harness.archive.codec`` writes and reads it,
checking every key, and ``harness.archive.migrations`` brings an older one up to date first.

Its format's history is ``harness.archive.history``, one entry per ``schema_version``; the
fingerprint inside a manifest (``harness.machine.fingerprint.HISTORY``) and each kept
projection carry versions of their own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from harness.archive.history import FAILED_RUN_VERSION, PROJECTION_VERSION, SCHEMA_VERSION
from harness.archive.profile_record import ProfileRecord
from harness.machine.fingerprint import Fingerprint
from harness.workload import Stage


@dataclass(frozen=True)
class RunLength:
    """How long to measure: warm-up (discarded), then until both a minimum request count and a
    minimum time are met (LoadGen's rule), stopping at a safety maximum."""

    warmup: int = 20
    min_requests: int = 700
    min_duration_s: float = 60.0
    # A safety stop so a slow machine still finishes; a run that stops here says so.
    max_duration_s: float = 1800.0
    # Past min_requests, the most requests min_duration_s may ask for (None: no cap). A quick
    # run of a fast workload would otherwise measure tens of thousands of them.
    max_requests: int | None = None

    @property
    def request_cap(self) -> float:
        """The most requests this run measures: never below min_requests."""
        if self.max_requests is None:
            return float("inf")
        return max(self.max_requests, self.min_requests)

    def wants_more(self, requests: int, elapsed_s: float) -> bool:
        """Whether to send another request after ``requests`` in ``elapsed_s``: until both
        minimums are met, stopping at the safety maximum and at the request cap."""
        short = requests < self.min_requests or elapsed_s < self.min_duration_s
        return short and elapsed_s < self.max_duration_s and requests < self.request_cap


CLOSED_LOOP = "closed-loop"


@dataclass(frozen=True)
class Load:
    """How requests arrived: a LoadGen scenario (single-stream, multi-stream, server, offline)
    or ``closed-loop``, clients each sending its next request when its last one is answered."""

    scenario: str
    qps: float | None = None  # server: the Poisson rate; offline: LoadGen's expected rate
    workers: int = 1  # threads serving LoadGen's queries at once
    concurrency: int = 1  # closed loop: the clients
    batch: int = 1  # the most samples one payload carries, where the workload batches
    samples_per_query: int = 8  # multi-stream: the samples LoadGen issues as one query
    # server: the p99 latency LoadGen judges the run by (None: LoadGen's default, 100 ms)
    p99_bound_ms: float | None = None

    @property
    def by_loadgen(self) -> bool:
        return self.scenario != CLOSED_LOOP


@dataclass(frozen=True)
class RequestStream:
    """The requests a set was given: how many distinct ones, their checksum, how they arrived."""

    distinct_requests: int | None
    # One digest when every process was given the same inputs; several is a broken plugin.
    inputs_sha256: str | tuple[str, ...]
    arrival: str


@dataclass(frozen=True)
class Work:
    """The work a set was given: two sets compare only when their ``work_sha256`` match."""

    workload: str
    code_hash: str
    size: str
    seed: int
    workload_config: dict[str, Any]
    request_stream: RequestStream
    work_sha256: str  # the digest of all the above and of params
    params: dict[str, Any] = field(default_factory=dict)  # the values of work parameters

    @staticmethod
    def digest(
        workload: str,
        code_hash: str,
        size: str,
        seed: int,
        workload_config: dict[str, Any],
        request_stream: RequestStream,
        params: dict[str, Any] | None = None,
    ) -> str:
        """The digest two sets compare by: sha256 of the work's fields as sorted JSON."""
        fields = {
            "workload": workload,
            "code_hash": code_hash,
            "size": size,
            "seed": seed,
            "workload_config": workload_config,
            "request_stream": {
                "distinct_requests": request_stream.distinct_requests,
                "inputs_sha256": request_stream.inputs_sha256,
                "arrival": request_stream.arrival,
            },
        }
        if params:  # absent rather than empty: the digests of sets without parameters hold
            fields["params"] = params
        canonical = json.dumps(fields, sort_keys=True, default=str).encode()
        return hashlib.sha256(canonical).hexdigest()

    def fields_digest(self) -> str:
        """The digest of the fields as stored now, made as ``digest`` makes it."""
        return Work.digest(
            self.workload,
            self.code_hash,
            self.size,
            self.seed,
            self.workload_config,
            self.request_stream,
            self.params,
        )

    @property
    def digest_holds(self) -> bool:
        """The stored digest is that of the stored fields (the work was not edited since)."""
        return self.work_sha256 == self.fields_digest()


@dataclass(frozen=True)
class Execution:
    """How the work was executed: what a comparison varies."""

    device: str
    backend: str
    backend_config: dict[str, Any]  # the backend's own settings: providers, options, threads
    threads: int | None
    interop_threads: int | None
    timing_mode: str  # harness.record.gpu_timing: sets of different modes are not compared
    scenario: str
    virtual_speedup: str | None  # a set run with one is a check, not a benchmark
    repeat: int
    replicates_in: str
    measurement: RunLength
    thread_variables: dict[str, str]
    params: dict[str, Any] = field(default_factory=dict)  # the values of execution parameters
    load: Load | None = None  # None: gapbench's own loop, one request at a time


@dataclass(frozen=True)
class Config:
    work: Work
    execution: Execution


@dataclass(frozen=True)
class Agreement:
    """How a backend's outputs agree with the reference backend's on a fixed input set."""

    reference: str
    backend: str
    requests: int
    top_k_equal: float
    tokens_equal: float
    token_positions_equal: float  # positions generated alike before the first difference
    max_abs_logit_diff: float
    logit_tolerance: float
    logits_within_tolerance: bool
    max_abs_embedding_diff: float | None = None


@dataclass(frozen=True)
class ClockAnchor:
    """This process's probe clock read beside the wall clock, to put its intervals on one
    timeline with other processes'."""

    perf_counter_ns: int
    time_ns: int

    @property
    def offset_ns(self) -> int:
        """What to add to a recorded time to get Unix epoch ns."""
        return self.time_ns - self.perf_counter_ns


@dataclass(frozen=True)
class SamplerCost:
    """What the telemetry sampler itself cost the measured process."""

    samples: int
    cpu_s: float  # the sampler thread's CPU time, from its start to its end
    wall_s: float  # the span it watched, from start() to stop()
    cpu_fraction: float  # cpu_s / wall_s: the share of one CPU the sampler took
    mean_sample_us: float  # wall time of one sample, during which it competes for the GIL


@dataclass(frozen=True)
class LoadFacts:
    """What one process measured under load beside its requests (and, under LoadGen, the
    queries table, one row per query LoadGen scheduled)."""

    measured_s: float  # from the first issue (or send) to the last response
    worker_busy_s: float  # wall time the serving threads spent on requests, summed
    # Those threads' own CPU time meanwhile: less than their wall time by what they spent
    # waiting (for the interpreter lock, I/O, a sleep, or work on other threads)
    worker_cpu_s: float
    process_cpu_s: float  # the whole process's CPU time over the measured span
    # LoadGen's mlperf_log_summary.txt as it wrote it ("": not LoadGen's run), read with
    # harness.archive.loadgen_summary
    loadgen_summary: str = ""


@dataclass(frozen=True)
class ReplicateFacts:
    """What one process measured about itself, beside its intervals and requests."""

    replicate: int
    threads: int
    interop_threads: int
    # One full probe, measured in this process before the workload loads (None: not measured).
    probe_cost_ns: float | None
    model_load_s: float
    execution: dict[str, Any]  # the backend's settings as this process ran them
    agreement: Agreement | None
    work: dict[str, Any]  # the workload's config as this process set it up
    distinct_requests: int
    inputs_sha256: str
    telemetry_cost: SamplerCost | None  # None: no sampler ran
    telemetry_notes: tuple[str, ...]
    stage_threads: dict[str, int]  # intra-op threads each stage saw on its thread
    requests_measured: int
    requests_failed: int
    peak_rss_bytes: int | None
    pid: int
    clock_anchor: ClockAnchor
    setup_facts: dict[str, Any] = field(default_factory=dict)  # the workload's own
    # Unset when the run was interrupted before measuring.
    first_request_s: float | None = None
    hit_max_duration: bool = False
    hit_max_requests: bool = False  # stopped at the request cap before min_duration_s
    failed_fast: bool = False  # stopped because its first requests all failed
    measured_s: float = 0.0
    progress_s: float | None = None  # the progress bar's own time (None: not recorded)
    cpu_steal_fraction: float | None = None
    gpu_peak_bytes: int | None = None
    profile_error: str = ""
    teardown_error: str = ""  # the workload's teardown failed after measuring
    load: LoadFacts | None = None  # measured under a load (Execution.load)


@dataclass(frozen=True)
class GitState:
    commit: str
    dirty: bool


@dataclass(frozen=True)
class Manifest:
    """A result set's ``manifest.json``, written last as its commit marker."""

    id: str
    created_utc: str
    finished_utc: str
    complete: bool
    interrupted: bool
    stopped_by: str  # "" when complete; "interrupted", or the error that stopped a replicate
    gapbench_version: str
    git: GitState | None
    fingerprint: Fingerprint
    workload: str
    stages: tuple[Stage, ...]
    config: Config
    replicates: tuple[ReplicateFacts, ...]
    agreement: Agreement | None  # this backend's outputs beside the reference backend's
    tables: dict[str, str]  # table name -> its file (the store fills it in as it writes them)
    attachments: dict[str, str]  # e.g. profile.json -> its file (likewise)
    profile: ProfileRecord | None = None
    # file -> "sha256:<hex>" of every table and attachment, checked when the set loads
    checksums: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    migrated_from: int | None = None  # the version it was written with, if older

    @property
    def work(self) -> Work:
        return self.config.work

    @property
    def execution(self) -> Execution:
        return self.config.execution

    def replicate(self, index: int) -> ReplicateFacts | None:
        """The facts of replicate ``index``, None when it has none."""
        return next((r for r in self.replicates if r.replicate == index), None)


@dataclass(frozen=True)
class FailedRun:
    """A set folder's ``failed.json``: its workload failed before any replicate finished (it
    crashed, hung, ran out of memory or raised in setup), so there is no manifest to write,
    but the archive still says what was tried and why it failed."""

    id: str
    created_utc: str
    gapbench_version: str
    workload: str
    reason: str
    schema_version: int = FAILED_RUN_VERSION


@dataclass(frozen=True)
class KeptProjection:
    """A projection kept beside the set it was made from (``projections/*.json``)."""

    made_utc: str
    gapbench: str
    set_id: str
    claim: dict[str, Any]  # the claim as given: name, source, date, path, speedup, threads
    headline: str
    # model ("naive", "replay") -> percentile ("p50", "p99") -> projected speedup
    speedup: dict[str, dict[str, float]]
    schema_version: int = PROJECTION_VERSION

    @property
    def claim_name(self) -> str:
        return str(self.claim.get("name", ""))
