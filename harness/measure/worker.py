"""One replicate in a worker process of its own: how it is started, and what it runs.

The parent passes the config as JSON and a folder; the worker spools its intervals there as it
measures, then writes its other tables, its facts and a status to that folder, even when Ctrl-C
stopped it partway, so that what finished is never lost. ``python -m harness.measure.worker SPEC
FOLDER`` is its entry.
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
from pathlib import Path

import pandas as pd

from harness.archive.codec import DecodeError, from_dict, to_dict
from harness.archive.schema import ReplicateFacts, ScopeCheck
from harness.archive.tables import arrow_on_the_system_allocator
from harness.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, UserError
from harness.measure.config import RunConfig
from harness.measure.process import ProcessResult, measure_config
from harness.measure.profiling import Profile

STATUS = "status.json"
_RUNNING: set[subprocess.Popen] = set()  # worker processes measuring now


def forward(signum: int) -> None:
    """Pass a signal this process was sent on to the workers measuring for it."""
    for process in list(_RUNNING):
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)


def measure_in_child(
    config: RunConfig, device: str, label: str, replicate: int, scratch: Path
) -> ProcessResult:
    """Measure ``config`` in a fresh worker process that writes into the folder ``scratch``
    (which the caller removes); Ctrl-C reaches it too and it saves what it has."""
    spec = {"config": to_dict(config), "device": device, "label": label}
    spec["replicate"] = replicate
    command = [sys.executable, "-m", "harness.measure.worker", json.dumps(spec), str(scratch)]
    process = subprocess.Popen(command)
    _RUNNING.add(process)
    interrupted = False
    try:
        while True:
            try:
                process.wait()
                break
            except KeyboardInterrupt:
                interrupted = True  # keep waiting: the worker is writing what finished
    finally:
        _RUNNING.discard(process)
    status = scratch / STATUS
    report = json.loads(status.read_text()) if status.exists() else {}
    if report.get("error"):
        raise UserError(report["error"])
    if not report.get("measured"):
        if interrupted or process.returncode == EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        raise UserError(f"a worker process died (exit status {process.returncode})")
    try:
        facts = from_dict(ReplicateFacts, report["facts"], "facts")
        checks = [from_dict(ScopeCheck, c, "profile") for c in report.get("profile", [])]
    except DecodeError as exc:
        raise UserError(f"a worker process reported garbled facts: {exc}") from None
    profile = None
    if "profile" in report:
        trace = (scratch / "profile.json").read_bytes()
        profile = Profile([], tuple(checks), trace, report["profile_tool"])
    return ProcessResult(
        scratch / "intervals.parquet",  # the worker's spool
        pd.read_parquet(scratch / "requests.parquet"),
        facts,
        report["interrupted"] or interrupted,
        profile,
        pd.read_parquet(scratch / "telemetry.parquet"),
    )


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM as Ctrl-C: what finished is written


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
    arrow_on_the_system_allocator()
    signal.signal(signal.SIGTERM, _interrupted)
    spec, out = json.loads(argv[0]), Path(argv[1])
    _exit_with_parent(out.parent)
    status = out / STATUS
    try:
        config = from_dict(RunConfig, spec["config"], "config")
        result = measure_config(config, spec["device"], spec["label"], spec["replicate"], out)
    except KeyboardInterrupt:
        status.write_text(json.dumps({"measured": False}))
        return EXIT_INTERRUPTED
    except (UserError, DecodeError) as exc:
        status.write_text(json.dumps({"measured": False, "error": str(exc)}))
        return EXIT_BAD_INPUT
    result.requests.to_parquet(out / "requests.parquet", index=False)
    if result.telemetry is not None:
        result.telemetry.to_parquet(out / "telemetry.parquet", index=False)
    body = {"measured": True, "facts": to_dict(result.facts), "interrupted": result.interrupted}
    if result.profile is not None:
        (out / "profile.json").write_bytes(result.profile.trace_json)
        body["profile"] = [to_dict(c) for c in result.profile.checks]
        body["profile_tool"] = result.profile.tool
    status.write_text(json.dumps(body, default=str))
    return EXIT_INTERRUPTED if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
