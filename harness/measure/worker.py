"""One replicate in a worker process of its own: how it is started, and what it runs.

The parent passes the config as JSON and a folder; the worker spools its intervals there as it
measures, then writes its other tables, its facts and a status to that folder, even when Ctrl-C
stopped it partway, so that what finished is never lost. ``BOOT`` is its entry (``python -c
BOOT SPEC FOLDER``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from harness.archive.codec import DecodeError, from_dict, to_dict
from harness.archive.profile_record import ScopeCheck
from harness.archive.schema import ReplicateFacts
from harness.archive.tables import arrow_on_the_system_allocator
from harness.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    UserError,
    WorkloadFailed,
    number,
    show_cause,
)
from harness.measure.config import RunConfig
from harness.measure.loadgen import loadgen_left_running
from harness.measure.process import SAVING, ProcessResult, measure_config
from harness.measure.profiling import Profile

STATUS = "status.json"
# A worker ignores Ctrl-C from its first instruction, before the imports that take seconds:
# Ctrl-C at a terminal reaches the whole process group, and the parent alone decides.
BOOT = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "from harness.measure.worker import main; sys.exit(main(sys.argv[1:]))"
)
GRACE_S = 10.0  # how long a worker past its time limit has to save what finished


def measure_in_child(
    config: RunConfig, device: str, label: str, replicate: int, scratch: Path
) -> ProcessResult:
    """Measure ``config`` in a fresh worker process that writes into the folder ``scratch``
    (which the caller removes); Ctrl-C reaches it too and it saves what it has.

    A worker that crashes, is killed, runs out of memory or outlives ``config.timeout_s`` is
    a ``WorkloadFailed`` saying which, holding what it saved before it was stopped."""
    spec = {"config": to_dict(config), "device": device, "label": label}
    spec["replicate"] = replicate
    command = [sys.executable, "-c", BOOT, json.dumps(spec), str(scratch)]
    process = subprocess.Popen(command)
    deadline = None if config.timeout_s is None else time.monotonic() + config.timeout_s
    interrupted = timed_out = False
    while process.poll() is None:
        try:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                if timed_out:  # past its grace too: stuck where no signal reaches Python
                    process.kill()
                    deadline = None
                else:  # SIGTERM first: it saves what finished, as on Ctrl-C
                    timed_out = True
                    process.terminate()
                    deadline = time.monotonic() + GRACE_S
                continue
            process.wait(left)
        except subprocess.TimeoutExpired:
            pass
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM, here, at any moment: told once
            if not interrupted:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
            interrupted = True  # keep waiting: the worker is writing what finished
    report = _report(scratch / STATUS)
    saved = _saved(report, scratch) if report.get("measured") else None
    if timed_out and not interrupted:  # stopped by the user first: an interruption
        limit = number(config.timeout_s or 0)
        raise WorkloadFailed(f"workload {label!r}: timed out, still running after {limit} s", saved)
    if report.get("error"):
        raise WorkloadFailed(report["error"])
    if saved is None:
        if interrupted or process.returncode == EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        raise WorkloadFailed(f"workload {label!r}: {ended(process.returncode)}")
    return replace(saved, interrupted=saved.interrupted or interrupted)


def _report(status: Path) -> dict[str, Any]:
    """The worker's report; none when it left none, or was killed as it wrote it."""
    try:
        body = json.loads(status.read_text())
    except (OSError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _say(status: Path, body: dict[str, Any]) -> None:
    """Write the report whole or not at all: the parent may read it after a SIGKILL."""
    partial = status.with_suffix(".tmp")
    partial.write_text(json.dumps(body, default=str))
    os.replace(partial, status)


def ended(returncode: int) -> str:
    """Why a worker that left no report ended, from its exit status."""
    if returncode >= 0:
        return f"its process exited with status {returncode} without a report"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    if -returncode == signal.SIGKILL:
        return f"its process was killed by {name} (the kernel's out-of-memory killer, or kill -9)"
    return f"its process crashed: killed by {name}"


def _saved(report: dict, scratch: Path) -> ProcessResult:
    """What a worker wrote to ``scratch`` and said in its ``report``."""
    try:
        facts = from_dict(ReplicateFacts, report["facts"], "facts")
        checks = [from_dict(ScopeCheck, c, "profile") for c in report.get("profile", [])]
    except DecodeError as exc:
        raise WorkloadFailed(f"its process reported garbled facts: {exc}") from None
    profile = None
    if "profile" in report:
        trace = (scratch / "profile.json").read_bytes()
        operators = scratch / "operators.parquet"
        found = pd.read_parquet(operators) if operators.exists() else None
        profile = Profile([], tuple(checks), trace, report["profile_tool"], found)
    queries = scratch / "queries.parquet"
    return ProcessResult(
        scratch / "intervals.parquet",  # the worker's spool
        pd.read_parquet(scratch / "requests.parquet"),
        facts,
        report["interrupted"],
        profile,
        pd.read_parquet(scratch / "telemetry.parquet"),
        queries=pd.read_parquet(queries) if queries.exists() else None,
    )


# The phase measuring has reached, as announced: "" while the worker starts (imports).
_PHASE = [""]


def _interrupted(signum: int, frame: object) -> None:
    """SIGTERM, from the parent (its Ctrl-C, its SIGTERM, its time limit): stop as Ctrl-C
    does and write what finished. Taken once: a second cannot cut the writing short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if not _PHASE[0]:
        # Importing, nothing set up or measured: an exception raised into native code (an
        # extension's import) aborts noisily, so leave at once instead.
        os._exit(EXIT_INTERRUPTED)
    if _PHASE[0] != SAVING:  # once saving, what was measured is written whole
        raise KeyboardInterrupt


def _phase(name: str) -> None:
    _PHASE[0] = name


def _exit_with_parent(scratch: Path) -> None:
    """A worker whose parent was killed cannot have its replicate archived: it stops, and
    takes the parent's scratch folder (which nothing else would remove) with it."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        shutil.rmtree(scratch, ignore_errors=True)
        os._exit(EXIT_INTERRUPTED)

    threading.Thread(target=watch, name="gapbench-parent-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    """Entry of a replicate's worker process: measure, then write raw tables to a folder."""
    status = _measure_and_save(argv)
    if loadgen_left_running():  # everything is saved: leave at once, LoadGen's thread and all
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _measure_and_save(argv: list[str]) -> int:
    arrow_on_the_system_allocator()
    signal.signal(signal.SIGTERM, _interrupted)
    # The parent tells this worker once (SIGTERM). A handler now, not SIG_IGN: a workload's
    # own child processes (a tool server) must still take Ctrl-C as usual.
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    spec, out = json.loads(argv[0]), Path(argv[1])
    _exit_with_parent(out.parent)
    status = out / STATUS
    try:
        config = from_dict(RunConfig, spec["config"], "config")
        replicate = spec["replicate"]
        result = measure_config(config, spec["device"], spec["label"], replicate, out, _phase)
    except KeyboardInterrupt:
        _say(status, {"measured": False})
        return EXIT_INTERRUPTED
    except (UserError, DecodeError) as exc:
        show_cause(exc)
        _say(status, {"measured": False, "error": str(exc)})
        return EXIT_BAD_INPUT
    except MemoryError:  # outside any hook: gapbench's own allocation was refused
        said = f"workload {spec['label']!r}: ran out of memory"
        _say(status, {"measured": False, "error": said})
        return EXIT_FAILED
    result.requests.to_parquet(out / "requests.parquet", index=False)
    if result.telemetry is not None:
        result.telemetry.to_parquet(out / "telemetry.parquet", index=False)
    if result.queries is not None:
        result.queries.to_parquet(out / "queries.parquet", index=False)
    body = {"measured": True, "facts": to_dict(result.facts), "interrupted": result.interrupted}
    if result.profile is not None:
        (out / "profile.json").write_bytes(result.profile.trace_json)
        body["profile"] = [to_dict(c) for c in result.profile.checks]
        body["profile_tool"] = result.profile.tool
        if result.profile.operators is not None:
            result.profile.operators.to_parquet(out / "operators.parquet", index=False)
    _say(status, body)
    return EXIT_INTERRUPTED if result.interrupted else 0
