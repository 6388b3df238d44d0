"""A suite's workloads each in a process of their own: one that crashes, is killed, runs out of
memory or hangs is recorded as failed, with why, and the others are archived."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.archive.store import Archive
from harness.cli import main
from harness.errors import EXIT_FAILED
from harness.measure import worker

BAD = '''
import os
import resource
import signal
import time

from harness.workload import Stage, Workload


class Good(Workload):
    name = "good"
    stages = (Stage("only", layer="inference"),)

    def requests(self, ctx):
        return [1, 2, 3]

    def only(self, ctx, n):
        with ctx.compute():
            return n


class Crashes(Good):
    name = "crashes"

    def setup(self, ctx):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file left behind
        os.kill(os.getpid(), signal.SIGSEGV)


class Killed(Good):
    name = "killed"

    def only(self, ctx, n):
        os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's out-of-memory killer sends


class OutOfMemory(Good):
    name = "out-of-memory"

    def setup(self, ctx):
        # The worker's own address space, and 256 MB more: then ask for 8 GB.
        with open("/proc/self/status") as status:
            kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize"))
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        resource.setrlimit(resource.RLIMIT_AS, (kb * 1024 + (256 << 20), hard))
        self.hog = bytearray(8 << 30)


class Hangs(Good):
    """Hangs after a few requests where SIGTERM cannot reach it (as a stuck native call)."""

    name = "hangs"
    calls = 0

    def only(self, ctx, n):
        self.calls += 1
        if self.calls > 3:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                time.sleep(0.1)
        return n


class HangsInPython(Hangs):
    """Hangs where SIGTERM reaches it: it saves the requests that finished."""

    name = "hangs-in-python"

    def only(self, ctx, n):
        self.calls += 1
        while self.calls > 3:
            time.sleep(0.1)
        return n
'''
FAST = ["--quick", "--min-requests", "50", "--min-duration", "0", "--warmup", "0", "--no-progress"]


@pytest.mark.slow
def test_a_suite_records_each_failure_and_archives_the_rest(tmp_path, capsys, monkeypatch):
    plugin = tmp_path / "bad.py"
    plugin.write_text(BAD)
    monkeypatch.setattr(worker, "GRACE_S", 1.0)  # SIGKILL sooner for the one ignoring SIGTERM
    names = ("Crashes", "Good", "Killed", "OutOfMemory", "Hangs", "HangsInPython")
    results = str(tmp_path / "results")
    # Long enough for a worker to start on a busy machine, short enough to wait for twice.
    argv = [f"{plugin}:{n}" for n in names] + [*FAST, "--timeout", "12", "--json"]
    status = main(["run", *argv, "--results", results])
    out, err = capsys.readouterr()
    assert status == EXIT_FAILED, err
    assert "Traceback" not in err and err.count("\n") == 5, err  # one line each
    reports = json.loads(out)
    assert len(reports) == 6
    archive = Archive(results)
    listed = {e.id.split("-", 2)[2].rsplit("-", 1)[0]: e for e in archive.listings()}
    good = archive.load(listed["good"].id)
    assert good.complete and len(good.requests) == 50
    reasons = {
        "crashes": "crashed: killed by SIGSEGV",
        "killed": "killed by SIGKILL (the kernel's out-of-memory killer",
        "out-of-memory": "setup: ran out of memory (MemoryError)",
        "hangs": "timed out, still running after 12 s",
    }
    for name, reason in reasons.items():
        entry = listed[name]
        assert entry.manifest is None and entry.failed is not None, entry
        assert entry.failed.workload == name and reason in entry.failed.reason
        assert reason in err and entry.id in err
        with pytest.raises(Exception, match="failed before any replicate finished"):
            archive.load(entry.id)
        assert archive.verify(entry.id) == ""  # an intact record, not a damaged set
    # SIGTERM reached it: the three requests that finished are archived, marked as stopped.
    saved = archive.load(listed["hangs-in-python"].id)
    assert not saved.complete and len(saved.requests) == 3
    assert "timed out, still running after 12 s" in saved.manifest.stopped_by
    assert archive.resolve("latest") == saved.id  # a failure record is never the latest set


def test_a_worker_that_left_no_report_is_named_by_how_it_ended():
    assert worker.ended(-9).startswith("its process was killed by SIGKILL")
    assert worker.ended(-11) == "its process crashed: killed by SIGSEGV"
    assert worker.ended(3) == "its process exited with status 3 without a report"
    assert "signal 77" in worker.ended(-77)


def test_a_report_cut_short_by_a_kill_is_no_report(tmp_path):
    status = tmp_path / worker.STATUS
    status.write_text('{"measured": true, "facts": {"repl')  # killed as it wrote, by hand
    assert worker._report(status) == {}
    worker._say(status, {"measured": False, "error": "x"})  # written whole, or not at all
    assert worker._report(status) == {"measured": False, "error": "x"}
    assert [p.name for p in tmp_path.iterdir()] == [worker.STATUS]


def test_a_timeout_has_a_range(tmp_path, capsys):
    for bad in ("0", "nan", "1e9", "-5"):
        status = main(["run", "calibration", "--timeout", bad, "--results", str(tmp_path)])
        _, err = capsys.readouterr()
        assert status == 2 and "--timeout must be" in err and err.count("\n") == 1


def test_an_unreadable_failure_record_is_said(tmp_path):
    archive = Archive(tmp_path)
    folder = Path(tmp_path) / "20260101T000000Z-h-w-0001"
    folder.mkdir()
    (folder / "failed.json").write_text('{"schema_version": 99}')
    with pytest.raises(Exception, match="newer than this gapbench"):
        archive.failure(folder.name)
    (entry,) = archive.listings()
    assert entry.failed is None and "newer than this gapbench" in entry.problem
