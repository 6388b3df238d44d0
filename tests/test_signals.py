"""SIGTERM is taken as Ctrl-C is, and a worker whose parent was killed does not run on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.archive.store import Archive

SLOW = """
import os
import time
from pathlib import Path

from harness.workload import Stage, Workload


class Slow(Workload):
    name = "slow"
    stages = (Stage("only", layer="inference"),)

    def setup(self, ctx):
        Path(os.environ["SLOW_MEASURING"] + ".setup").touch()  # for the test: setting up
        time.sleep(float(os.environ.get("SLOW_SETUP_S", "0")))

    def requests(self, ctx):
        return [1, 2, 3]

    def only(self, ctx, n):
        with ctx.compute():
            time.sleep(0.01)
        Path(os.environ["SLOW_MEASURING"]).touch()  # for the test: requests are being measured
        return n
"""


def _start(tmp_path: Path, *extra: str, setup_s: float = 0) -> tuple[subprocess.Popen, str]:
    plugin = tmp_path / "slow.py"
    plugin.write_text(SLOW)
    results = str(tmp_path / "results")
    command = [sys.executable, "-m", "harness", "run", f"{plugin}:Slow", "--warmup", "0"]
    command += ["--min-requests", "1", "--min-duration", "60", "--no-progress"]
    command += ["--results", results, *extra]
    env = {**os.environ, "SLOW_MEASURING": str(tmp_path / "measuring")}
    env["SLOW_SETUP_S"] = str(setup_s)
    # A session of its own: a terminal's Ctrl-C goes to the whole group, sent here by killpg.
    # SIGINT as a terminal leaves it, though this test may run where it is ignored (a shell's
    # background job), which a child inherits and Python then honours.
    process = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    return process, results


def _wait_for_measuring(
    process: subprocess.Popen, tmp_path: Path, seconds: float, marker: str = "measuring"
) -> None:
    """Until a request has been measured (starting takes seconds on a busy machine), or
    setup has begun (``marker`` "measuring.setup"), then ``seconds`` more."""
    deadline = time.monotonic() + 120
    while not (tmp_path / marker).exists() and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        time.sleep(0.1)
    time.sleep(seconds)
    assert process.poll() is None, process.stderr.read() if process.stderr else ""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("repeat", "signum"),  # one worker process, or two in turn; SIGINT to this process only
    [("1", signal.SIGTERM), ("2", signal.SIGTERM), ("2", signal.SIGINT)],
)
def test_sigterm_archives_what_finished_as_ctrl_c_does(tmp_path, repeat, signum):
    process, results = _start(tmp_path, "--repeat", repeat)
    _wait_for_measuring(process, tmp_path, 1.0)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)  # not the minute the run would take
    assert process.returncode == 130, err
    assert err.strip().endswith(
        f"interrupted: what finished is archived as {Archive(results).ids()[0]}"
    )
    loaded = Archive(results).load("latest")
    assert loaded.manifest.complete is False and loaded.manifest.interrupted
    assert len(loaded.requests) > 10  # the requests measured before it


@pytest.mark.slow
def test_ctrl_c_at_a_terminal_twice_or_in_setup_is_one_line_and_loses_nothing(tmp_path):
    for case in ("twice", "setup"):
        (tmp_path / case).mkdir()
    # Ctrl-C at a terminal: SIGINT to the whole process group, workers included, twice.
    process, results = _start(tmp_path / "twice", "--repeat", "2")
    _wait_for_measuring(process, tmp_path / "twice", 1.0)
    os.killpg(process.pid, signal.SIGINT)
    time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err, err
    (set_id,) = Archive(results).ids()
    assert err.strip().endswith(f"archived as {set_id}"), err
    assert len(Archive(results).load(set_id).requests) > 10
    # SIGTERM while the worker sets up: it stops at once, nothing measured, nothing archived.
    process, results = _start(tmp_path / "setup", "--repeat", "2", setup_s=60)
    _wait_for_measuring(process, tmp_path / "setup", 0.5, marker="measuring.setup")
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert (
        err.strip() == "gapbench: interrupted before slow measured a request: nothing of it "
        "was archived"
    ), err
    assert time.monotonic() - began < 30  # not the minute setup would take
    assert not Archive(results).ids()


@pytest.mark.slow
def test_a_worker_whose_parent_was_killed_stops_and_clears_its_scratch(tmp_path):
    process, results = _start(tmp_path, "--repeat", "2")
    _wait_for_measuring(process, tmp_path, 1.0)
    workers = psutil.Process(process.pid).children()
    assert workers, "no worker process"
    scratch = [Path(a) for w in workers for a in w.cmdline() if "gapbench-run-" in a]
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, "a worker ran on without its parent"
    assert scratch and not any(p.parent.exists() for p in scratch)
    assert not Archive(results).ids()  # nothing loads as complete: nothing was written


@pytest.mark.slow
@pytest.mark.parametrize(
    "load",
    [
        ("--scenario", "server", "--qps", "20", "--workers", "2"),
        ("--concurrency", "2"),
        ("--sweep", "20,20,20"),  # a sweep stops with the step Ctrl-C cut short
    ],
    ids=["server", "closed-loop", "sweep"],
)
def test_ctrl_c_under_load_archives_what_finished_and_stops(tmp_path, load):
    pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is not installed")
    process, results = _start(tmp_path, *load)
    _wait_for_measuring(process, tmp_path, 1.5)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)  # LoadGen's schedule would run a minute
    assert process.returncode == 130 and "Traceback" not in err, err
    (set_id,) = Archive(results).ids()  # one set: no step after the interrupted one
    assert set_id in err.strip().splitlines()[-1], err
    loaded = Archive(results).load(set_id)
    assert loaded.manifest.interrupted and len(loaded.requests) > 5
