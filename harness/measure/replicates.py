"""`gapbench run` as a library call: measure a workload in K processes and archive a result set.

Requests inside one process share its caches, allocator and JIT state, so they are not
independent samples; ``repeat`` K > 1 runs K separate worker processes (as pyperf does) and
stores them in one set with a ``replicate`` column.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import psutil

from harness import __version__, plugins
from harness.archive.codec import to_dict
from harness.archive.names import new_id, this_host
from harness.archive.result_set import ResultSet
from harness.archive.schema import (
    Config,
    Execution,
    FailedRun,
    GitState,
    Manifest,
    ProfileRecord,
    ReplicateFacts,
    RequestStream,
    Work,
)
from harness.archive.store import Archive
from harness.archive.tables import Spooled
from harness.errors import ArchivedThenInterrupted, UserError, WorkloadFailed
from harness.machine.devices import resolve_device
from harness.machine.fingerprint import Fingerprint
from harness.machine.threads import thread_variables, threads
from harness.measure.calibrate import calibration, default_threads
from harness.measure.config import RunConfig, check_backend
from harness.measure.process import ProcessResult, measure_config
from harness.measure.worker import measure_in_child
from harness.params import resolve, split
from harness.plugins import code_hash
from harness.record.gpu_timing import HOST
from harness.workload import Workload

# A run's scratch folder: this, its process id, its host, a token (dash-separated). The host,
# because a temporary folder shared across containers holds folders of other process ids' runs.
SCRATCH = "gapbench-run-"


def run(config: RunConfig, archive: Archive, fingerprint: Fingerprint) -> ResultSet:
    """Measure ``config`` and archive it; an interrupted run is archived as incomplete.

    Replicates that finished are never lost: if a later one is interrupted or fails, the set is
    archived with what finished and marked incomplete. With nothing finished, nothing is written
    (KeyboardInterrupt or the worker's error propagates).
    """
    # Each replicate's intervals stay on disk here until the archive copies them into the set;
    # a thread count given reaches worker processes through the pools' variables (none given,
    # the variables the user set stand).
    given = threads(config.threads) if config.threads is not None else contextlib.nullcontext()
    clear_abandoned(Path(tempfile.gettempdir()))
    prefix = f"{SCRATCH}{os.getpid()}-{this_host()}-"
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch, given:
        set_id = _measure_and_write(config, archive, fingerprint, Path(scratch))
    return archive.load(set_id)


def clear_abandoned(folder: Path) -> list[Path]:
    """Remove the scratch folders of runs killed outright (kill -9, a power cut) in
    ``folder``: each is named by its run's process id, which no longer runs. Returns them."""
    cleared = []
    for scratch in folder.glob(f"{SCRATCH}*-*"):
        if abandoned(scratch):
            shutil.rmtree(scratch, ignore_errors=True)
            cleared.append(scratch)
    return cleared


def abandoned(scratch: Path) -> bool:
    """Whether a scratch folder is of a run on this host whose process no longer runs."""
    pid, _, rest = scratch.name.removeprefix(SCRATCH).partition("-")
    host = rest.rpartition("-")[0]  # tempfile's token has no dash; a host may
    return host == this_host() and pid.isdigit() and not psutil.pid_exists(int(pid))


def _measure_and_write(
    config: RunConfig, archive: Archive, fingerprint: Fingerprint, scratch: Path
) -> str:
    cls = plugins.load(config.workload)
    check_backend(cls, config.backend)
    device = resolve_device(config.device)
    created = datetime.now(timezone.utc)
    # A profile's operators are classed against the machine's peaks: the kept ones, or ones
    # measured now, before the timed requests, and kept for later runs.
    calibrated = None
    if config.profile:
        asked = (*default_threads(fingerprint), *([config.threads] if config.threads else []))
        found = calibration(archive.ensure(), fingerprint, threads=asked, rough_ok=True)
        calibrated = found.calibration
    results: list[ProcessResult] = []
    stopped = ""
    # A time limit needs a process to stop; replicates in one process share its state.
    in_worker = config.separate_processes and (config.repeat > 1 or config.timeout_s is not None)
    for replicate in range(config.repeat):
        label = f"{cls.name} {replicate + 1}/{config.repeat}" if config.repeat > 1 else cls.name
        # Only the first replicate profiles: one profile is the cross-check; more only cost time.
        this = config if replicate == 0 else replace(config, profile=0)
        folder = scratch / f"replicate-{replicate}"
        folder.mkdir()
        try:
            if in_worker:
                result = measure_in_child(this, device, label, replicate, folder)
            else:
                result = measure_config(this, device, label, replicate, folder)
        except WorkloadFailed as exc:
            if isinstance(exc.partial, ProcessResult):  # past its time limit: what it saved
                results.append(exc.partial)
            if not results:
                when, name = created.isoformat(), cls.name
                failed = FailedRun(new_id(name, created), when, __version__, name, exc.reason)
                exc.recorded_as = archive.record_failure(failed)
                raise
            stopped = exc.reason
            break
        except (KeyboardInterrupt, UserError) as exc:
            if not results:
                raise
            stopped = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
            break
        results.append(result)
        if result.interrupted:
            stopped = "interrupted"
            break
    facts = tuple(r.facts for r in results)
    profile = results[0].profile
    manifest = Manifest(
        id=new_id(cls.name, created),
        created_utc=created.isoformat(),
        finished_utc=datetime.now(timezone.utc).isoformat(),
        complete=not stopped,
        interrupted=stopped == "interrupted",
        stopped_by=stopped,
        gapbench_version=__version__,
        git=git_state(),
        fingerprint=fingerprint,
        workload=cls.name,
        stages=cls.stages,
        config=Config(_work(config, cls, facts), _execution(config, cls, device, facts)),
        replicates=facts,
        # Outputs of this backend beside the reference backend's on a fixed input set.
        agreement=facts[0].agreement,
        tables={},  # filled in by the store as it writes them
        attachments={},
        profile=(
            ProfileRecord(profile.tool, config.profile, profile.checks, calibrated)
            if profile
            else None
        ),
    )
    attachments = {"profile.json": profile.trace_json} if profile is not None else {}
    tables = _tables(results)
    with _held_interrupts(manifest.id):
        try:
            return archive.write(manifest, tables, attachments)
        except (UserError, OSError) as exc:  # a full disk, a store gone: minutes of measuring
            kept = _keep_elsewhere(manifest, tables, attachments)
            raise UserError(
                f"could not archive {manifest.id} in {archive.location}: {exc}; {kept}"
            ) from exc


@contextlib.contextmanager
def _held_interrupts(set_id: str) -> Iterator[None]:
    """Ctrl-C and SIGTERM wait while set ``set_id`` is written, then stop the run: one cut
    short would lose what was measured."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    held: list[int] = []
    kinds = (signal.SIGINT, signal.SIGTERM)
    before = {
        kind: signal.signal(kind, lambda signum, frame: held.append(signum)) for kind in kinds
    }
    try:
        yield
    finally:
        for kind, handler in before.items():
            signal.signal(kind, handler)
    if held:
        raise ArchivedThenInterrupted(set_id)


UNSAVED = "gapbench-unsaved"  # where a set goes when its archive fails as it is written


def _keep_elsewhere(
    manifest: Manifest,
    tables: dict[str, pd.DataFrame | Spooled],
    attachments: dict[str, bytes],
) -> str:
    """Write a set its archive refused into a local folder instead; says where, or that
    nowhere would take it."""
    for folder in (Path.cwd() / UNSAVED, Path(tempfile.gettempdir()) / UNSAVED):
        try:
            Archive(folder).ensure().write(manifest, tables, attachments)
        except (UserError, OSError):
            continue
        return f"it was kept in {folder} instead (move its folder into the archive)"
    return "no local folder would take it either"


def _tables(results: list[ProcessResult]) -> dict[str, pd.DataFrame | Spooled]:
    def stacked(frames: list[pd.DataFrame | None]) -> pd.DataFrame:
        tagged = zip(frames, (r.facts.replicate for r in results), strict=True)
        return pd.concat(
            [f.assign(replicate=i) for f, i in tagged if f is not None], ignore_index=True
        )

    tables: dict[str, pd.DataFrame | Spooled] = {
        "intervals": Spooled(tuple((r.intervals, r.facts.replicate) for r in results)),
        "requests": stacked([r.requests for r in results]),
        "telemetry": stacked([r.telemetry for r in results]),
    }
    if any(r.queries is not None for r in results):
        tables["queries"] = stacked([r.queries for r in results])
    operators = results[0].profile.operators if results[0].profile is not None else None
    if operators is not None and len(operators):
        tables["operators"] = operators.assign(replicate=results[0].facts.replicate)
    return tables


def _work(config: RunConfig, cls: type[Workload], facts: tuple[ReplicateFacts, ...]) -> Work:
    digests = sorted({f.inputs_sha256 for f in facts})
    # One digest when every process was given the same inputs; more is a broken plugin (the
    # verdict says so) rather than a reason to throw the measurements away.
    stream = RequestStream(
        distinct_requests=facts[0].distinct_requests,
        inputs_sha256=digests[0] if len(digests) == 1 else tuple(digests),
        arrival="closed loop, one request at a time",
    )
    work_params, _ = split(cls.params, resolve(cls.params, config.params))
    # The workload's own work() as it is stored (sets as lists, dataclasses as objects): the
    # digest a reader checks is taken of what it reads.
    stored = to_dict(facts[0].work)
    fields = (cls.name, code_hash(cls), config.size, config.seed, stored, stream)
    return Work(*fields, Work.digest(*fields, work_params), work_params)


def _execution(
    config: RunConfig, cls: type[Workload], device: str, facts: tuple[ReplicateFacts, ...]
) -> Execution:
    _, params = split(cls.params, resolve(cls.params, config.params))
    return Execution(
        device=device,
        backend=config.backend,
        # The backend's own settings: providers, session options, its threads, the stream.
        backend_config=facts[0].execution,
        threads=facts[0].threads,
        interop_threads=facts[0].interop_threads,
        # Sets of different timing modes measure different things (harness.record.gpu_timing).
        timing_mode=HOST if device == "cpu" else config.gpu_timing,
        scenario=config.load.scenario if config.load else "single-stream",
        # A virtual speedup stretches the other stages: such a set is a check, not a benchmark.
        virtual_speedup=config.virtual or None,
        repeat=config.repeat,
        replicates_in="separate processes" if config.separate_processes else "one process",
        measurement=config.measurement,
        thread_variables=thread_variables(os.environ),
        params=params,
        load=config.load,
    )


def git_state() -> GitState | None:
    """The commit of the gapbench checkout in use (None for an installed copy)."""
    checkout = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        command = ["git", "-C", str(checkout), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=5, check=True)
        return done.stdout.strip()

    try:
        # An installed gapbench inside someone else's repository is not that repository.
        if Path(git("rev-parse", "--show-toplevel")).resolve() != checkout:
            return None
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return GitState(commit=commit, dirty=bool(dirty))
