"""`gapbench run` as a library call: measure a workload in K processes and archive a result set.

Requests inside one process share its caches, allocator and JIT state, so they are not
independent samples; ``repeat`` K > 1 runs K separate worker processes (as pyperf does) and
stores them in one set with a ``replicate`` column.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from harness import __version__, plugins
from harness.analysis.attribution import split_request
from harness.analysis.breakdown import ok_requests
from harness.machine.devices import resolve_device
from harness.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, UserError
from harness.record.gpu_timing import HOST, MODES, SYNC
from harness.analysis.invariants import check_invariants
from harness.measure.profiling import Profile, ScopeCheck
from harness.measure.progress import ProgressBar
from harness.measure.process import Measurement, ProcessResult, measure
from harness.archive.store import Archive, ResultSet, new_id
from harness.record.virtual import Virtual
from harness.workload import BACKENDS, RunContext, Stage, Workload, code_hash

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
MAX_REPORTED_VIOLATIONS = 20


@dataclass(frozen=True)
class RunConfig:
    """One workload's run: the work (workload, size, seed) and how it is executed."""

    workload: str
    device: str = "auto"
    size: str = "default"
    seed: int = 0
    repeat: int = 1
    measurement: Measurement = field(default_factory=Measurement)
    gpu_timing: str = SYNC
    profile: int = 0  # requests of a profiling pass after the timed ones (first replicate)
    show_progress: bool = True
    backend: str = "torch"
    providers: tuple[str, ...] = ()  # onnxruntime execution providers, in order; () = default
    virtual: str = ""  # "STAGE=FACTOR": every other stage's probes stretched (harness.record.virtual)
    # Replicates in their own processes (independent: pyperf's rule), or one after another in
    # this one (faster; caches and allocator state carry over).
    separate_processes: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "providers", tuple(self.providers))  # a list from JSON too
        if self.backend not in BACKENDS:
            raise UserError(f"unknown backend {self.backend!r} (one of {', '.join(BACKENDS)})")
        if self.virtual:
            try:
                Virtual.parse(self.virtual)
            except ValueError as exc:
                raise UserError(str(exc)) from None
        if self.providers and self.backend != "onnxruntime":
            raise UserError("--providers applies to --backend onnxruntime only")
        if self.repeat < 1:
            raise UserError(f"--repeat must be 1 or more, not {self.repeat}")
        if self.profile < 0:
            raise UserError(f"--profile must be 0 or more requests, not {self.profile}")
        if self.gpu_timing not in MODES:
            raise UserError(f"unknown GPU timing {self.gpu_timing!r} (one of {', '.join(MODES)})")


def run(config: RunConfig, archive: Archive, fingerprint: dict[str, Any]) -> ResultSet:
    """Measure ``config`` and archive it; an interrupted run is archived as incomplete.

    Replicates that finished are never lost: if a later one is interrupted or fails, the set is
    archived with what finished and marked incomplete. With nothing finished, nothing is written
    (KeyboardInterrupt or the worker's error propagates).
    """
    cls = plugins.load(config.workload)
    check_backend(cls, config.backend)
    device = resolve_device(config.device)
    created = datetime.now(timezone.utc)
    results: list[ProcessResult] = []
    stopped = ""
    for replicate in range(config.repeat):
        label = f"{cls.name} {replicate + 1}/{config.repeat}" if config.repeat > 1 else cls.name
        # Only the first replicate profiles: one profile is the cross-check; more only cost time.
        this = config if replicate == 0 else replace(config, profile=0)
        try:
            if config.repeat == 1 or not config.separate_processes:
                result = measure_here(this, device, label)
            else:
                result = _measure_in_child(this, device, label)
        except (KeyboardInterrupt, UserError) as exc:
            if not results:
                raise
            stopped = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
            break
        results.append(result)
        if result.interrupted:
            stopped = "interrupted"
            break
    intervals, requests, telemetry = _merge(results)
    stages = [s.to_dict() for s in cls.stages]
    facts = [{"replicate": i, **r.facts} for i, r in enumerate(results)]
    manifest = {
        "created_utc": created.isoformat(),
        "finished_utc": datetime.now(timezone.utc).isoformat(),
        "complete": not stopped,
        "interrupted": stopped == "interrupted",
        "stopped_by": stopped,
        "gapbench_version": __version__,
        "git": git_state(),
        "fingerprint": fingerprint,
        "workload": cls.name,
        "stages": stages,
        "config": {
            "work": _work(config, cls, facts),
            "execution": _execution(config, device, facts),
        },
        "replicates": facts,
        "invariants": _invariants(intervals, requests, stages),
        # Outputs of this backend beside the reference backend's on a fixed input set.
        "agreement": (facts[0].get("agreement") or None) if facts else None,
    }
    tables = {"intervals": intervals, "requests": requests, "telemetry": telemetry}
    attachments = {}
    profile = results[0].profile if results else None
    if profile is not None:
        manifest["profile"] = {
            "tool": profile.tool,
            "requests": config.profile,
            "agrees": profile.agrees,
            "checks": [c.to_dict() for c in profile.checks],
        }
        attachments["profile.json"] = profile.trace_json
    set_id = archive.write(new_id(cls.name, created), manifest, tables, attachments)
    return archive.load(set_id)


def check_backend(cls: type[Workload], backend: str) -> None:
    """Refuse a backend the workload cannot run its model stages on."""
    if backend not in cls.backends:
        raise UserError(
            f"workload {cls.name!r} runs on {', '.join(cls.backends)}, not on {backend}"
        )


def measure_here(config: RunConfig, device: str, label: str) -> ProcessResult:
    """Measure in this process, with a progress bar on stderr when asked."""
    cls = plugins.load(config.workload)
    run_ctx = RunContext(
        device=device,
        size=config.size,
        seed=config.seed,
        backend=config.backend,
        providers=config.providers,
    )
    anchor = {"perf_counter_ns": time.perf_counter_ns(), "time_ns": time.time_ns()}
    virtual = Virtual.parse(config.virtual) if config.virtual else None
    m = config.measurement
    if config.show_progress:
        with ProgressBar(label, m.min_requests, m.min_duration_s) as bar:
            result = measure(
                cls(),
                run_ctx,
                m,
                progress=bar.update,
                phase=bar.phase,
                timing=config.gpu_timing,
                profile=config.profile,
                virtual=virtual,
            )
    else:
        result = measure(
            cls(), run_ctx, m, timing=config.gpu_timing, profile=config.profile, virtual=virtual
        )
    # The anchor pairs this process's probe clock with the wall clock, so intervals from several
    # processes (or machines) can be put on one timeline.
    result.facts.update(pid=os.getpid(), clock_anchor=anchor)
    return result


def _measure_in_child(config: RunConfig, device: str, label: str) -> ProcessResult:
    """One replicate in a fresh worker process; Ctrl-C reaches it too and it saves what it has."""
    with tempfile.TemporaryDirectory(prefix="gapbench-") as out:
        spec = {"config": _config_dict(config), "device": device, "label": label}
        process = subprocess.Popen([sys.executable, "-m", "harness.measure.replicates", json.dumps(spec), out])
        interrupted = False
        while True:
            try:
                process.wait()
                break
            except KeyboardInterrupt:
                interrupted = True  # keep waiting: the worker is writing what finished
        folder = Path(out)
        status = folder / "status.json"
        report = json.loads(status.read_text()) if status.exists() else {}
        if report.get("error"):
            raise UserError(report["error"])
        if not report.get("measured"):
            if interrupted or process.returncode == EXIT_INTERRUPTED:
                raise KeyboardInterrupt
            raise UserError(f"a worker process died (exit status {process.returncode})")
        profile = None
        if "profile" in report:
            checks = tuple(ScopeCheck(**c) for c in report["profile"])
            trace = (folder / "profile.json").read_bytes()
            profile = Profile([], checks, trace, report["profile_tool"])
        return ProcessResult(
            pd.read_parquet(folder / "intervals.parquet"),
            pd.read_parquet(folder / "requests.parquet"),
            report["facts"],
            report["interrupted"] or interrupted,
            profile,
            pd.read_parquet(folder / "telemetry.parquet"),
        )


def _config_dict(config: RunConfig) -> dict[str, Any]:
    return {**asdict(config), "measurement": asdict(config.measurement)}


def worker_main(argv: list[str]) -> int:
    """Entry of a replicate's worker process: measure, then write raw tables to a folder."""
    spec, out = json.loads(argv[0]), Path(argv[1])
    raw = spec["config"]
    config = RunConfig(**{**raw, "measurement": Measurement(**raw["measurement"])})
    status = out / "status.json"
    try:
        result = measure_here(config, spec["device"], spec["label"])
    except KeyboardInterrupt:
        status.write_text(json.dumps({"measured": False}))
        return EXIT_INTERRUPTED
    except UserError as exc:
        status.write_text(json.dumps({"measured": False, "error": str(exc)}))
        return EXIT_BAD_INPUT
    result.intervals.to_parquet(out / "intervals.parquet", index=False)
    result.requests.to_parquet(out / "requests.parquet", index=False)
    result.telemetry.to_parquet(out / "telemetry.parquet", index=False)
    body = {"measured": True, "facts": result.facts, "interrupted": result.interrupted}
    if result.profile is not None:
        (out / "profile.json").write_bytes(result.profile.trace_json)
        body["profile"] = [asdict(c) for c in result.profile.checks]
        body["profile_tool"] = result.profile.tool
    status.write_text(json.dumps(body, default=str))
    return EXIT_INTERRUPTED if result.interrupted else 0


def _merge(results: list[ProcessResult]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    def stacked(name: str) -> pd.DataFrame:
        frames = [getattr(r, name).assign(replicate=i) for i, r in enumerate(results)]
        return pd.concat(frames, ignore_index=True)

    return stacked("intervals"), stacked("requests"), stacked("telemetry")


def _work(config: RunConfig, cls: type, facts: list[dict[str, Any]]) -> dict[str, Any]:
    digests = sorted({f["inputs_sha256"] for f in facts if "inputs_sha256" in f})
    workload_config = facts[0].get("work", {}) if facts else {}
    work = {
        "workload": cls.name,
        "code_hash": code_hash(cls),
        "size": config.size,
        "seed": config.seed,
        "workload_config": workload_config,
        "request_stream": {
            "distinct_requests": facts[0].get("distinct_requests") if facts else None,
            # One digest when every process was given the same inputs; more is a broken plugin
            # (the verdict says so) rather than a reason to throw the measurements away.
            "inputs_sha256": digests[0] if len(digests) == 1 else digests,
            "arrival": "closed loop, one request at a time",
        },
    }
    canonical = json.dumps(work, sort_keys=True, default=str).encode()
    return {**work, "work_sha256": hashlib.sha256(canonical).hexdigest()}


def _execution(config: RunConfig, device: str, facts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "device": device,
        "backend": config.backend,
        # The backend's own settings: providers, session options, its threads, the stream.
        "backend_config": facts[0].get("execution", {}) if facts else {},
        "threads": facts[0].get("threads"),
        "interop_threads": facts[0].get("interop_threads"),
        # Sets of different timing modes measure different things (harness.record.gpu_timing).
        "timing_mode": HOST if device == "cpu" else config.gpu_timing,
        "scenario": "single-stream",
        # A virtual speedup stretches the other stages: such a set is a check, not a benchmark.
        "virtual_speedup": config.virtual or None,
        "repeat": config.repeat,
        "replicates_in": "separate processes" if config.separate_processes else "one process",
        "measurement": asdict(config.measurement),
        "thread_variables": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
    }


def _invariants(
    intervals: pd.DataFrame, requests: pd.DataFrame, stages: list[dict[str, Any]]
) -> dict[str, Any]:
    dag = [Stage.from_dict(s) for s in stages]
    problems: list[str] = []
    checked = 0
    for _, rows in ok_requests(intervals, requests):
        problems += check_invariants(rows, split_request(rows, dag))
        checked += 1
    return {
        "requests_checked": checked,
        "violation_count": len(problems),
        "violations": problems[:MAX_REPORTED_VIOLATIONS],
    }


def git_state() -> dict[str, Any] | None:
    """The commit of the gapbench checkout in use (None for an installed copy)."""
    checkout = Path(__file__).resolve().parents[1]

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
    return {"commit": commit, "dirty": bool(dirty)}


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
