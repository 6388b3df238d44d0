"""kill -9 at any moment of a run: nothing it leaves loads as complete, every earlier set still
loads, no worker runs on, and the next run clears its scratch folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from harness.archive.store import MANIFEST, Archive
from harness.errors import UserError
from harness.measure.replicates import SCRATCH, clear_abandoned

MANY = """
from harness.workload import Stage, Workload


class Many(Workload):
    name = "many"
    stages = (Stage("parse", layer="ingress"), Stage("only", layer="inference", after=("parse",)))

    def requests(self, ctx):
        return list(range(64))

    def parse(self, ctx, n):
        return n

    def only(self, ctx, n):
        with ctx.compute():
            return n * 2
"""


def _start(plugin: Path, results: str, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "harness", "run", f"{plugin}:Many", "--warmup", "0"]
    command += ["--min-duration", "0", "--no-progress", "--results", results, *extra]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _until(ready: Callable[[], bool], process: subprocess.Popen, seconds: float = 120) -> None:
    """Wait, polling as fast as Python can, until ``ready`` or the run ends by itself."""
    deadline = time.monotonic() + seconds
    while not ready():
        assert process.poll() is None, "the run ended before the point it was to be killed at"
        assert time.monotonic() < deadline, "the point never came"


def _new_folder(root: Path, before: set[str], parquet: bool) -> Callable[[], bool]:
    def ready() -> bool:
        fresh = [f for f in root.iterdir() if f.name not in before] if root.exists() else []
        return any(not parquet or any(f.glob("*.parquet")) for f in fresh)

    return ready


def _worker_measuring(process: subprocess.Popen) -> Callable[[], bool]:
    def ready() -> bool:
        children = psutil.Process(process.pid).children()
        # A worker three seconds old has imported what it needs and is measuring.
        return bool(children) and time.time() - children[0].create_time() > 3.0

    return ready


@pytest.mark.slow
def test_kill_9_at_any_point_leaves_nothing_complete_and_loses_nothing(tmp_path):
    plugin = tmp_path / "many.py"
    plugin.write_text(MANY)
    results = str(tmp_path / "results")
    root = Path(results)
    first = _start(plugin, results, "--min-requests", "20")
    assert first.wait(120) == 0, first.stderr.read() if first.stderr else ""
    (earlier,) = Archive(results).ids()
    # Many requests: a spooled intervals table big enough that the archive's writing of it
    # lasts a while, and a kill can land between the tables and the manifest.
    size = ["--min-requests", "60000", "--repeat", "2"]
    points: dict[str, Callable[[subprocess.Popen, set[str]], Callable[[], bool]]] = {
        "starting": lambda p, _: lambda: True,
        "measuring": lambda p, _: _worker_measuring(p),
        "writing the set": lambda p, before: _new_folder(root, before, parquet=False),
        "between tables": lambda p, before: _new_folder(root, before, parquet=True),
    }
    killed_mid_write = 0
    killed_parents = []
    for point, when in points.items():
        before = set(os.listdir(results))
        process = _start(plugin, results, *size)
        _until(when(process, before), process)
        workers = psutil.Process(process.pid).children(recursive=True)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
        killed_parents.append(process)
        _, alive = psutil.wait_procs(workers, timeout=20)
        assert not alive, f"killed while {point}: a worker ran on without its parent"
        archive = Archive(results)
        for set_id in set(archive.ids()) - before:  # what the killed run left, if anything
            committed = (root / set_id / MANIFEST).exists()
            if committed:  # the kill came after the commit: a whole set, intact
                assert archive.verify(set_id) == "" and archive.load(set_id).complete
                continue
            killed_mid_write += 1
            with pytest.raises(UserError, match="its run was killed before it finished"):
                archive.load(set_id)
            assert "killed before it finished" in archive.verify(set_id)
        assert archive.verify(earlier) == "" and archive.load(earlier).complete, point
        assert archive.resolve("latest") == earlier
    assert killed_mid_write >= 1, "no kill landed between a set's tables and its manifest"
    # The killed runs' scratch folders (their replicates' spools) go with the next run.
    killed = {str(p.pid) for p in killed_parents}
    left = [p for p in Path(tempfile.gettempdir()).glob(f"{SCRATCH}*") if _run_of(p) in killed]
    assert set(left) <= set(clear_abandoned(Path(tempfile.gettempdir())))
    assert not [p for p in left if p.exists()]


def _run_of(scratch: Path) -> str:
    """The process id a scratch folder is named by."""
    return scratch.name.removeprefix(SCRATCH).partition("-")[0]


def test_only_this_host_s_abandoned_scratch_is_cleared(tmp_path):
    from harness.archive.names import this_host

    ended = subprocess.Popen(["true"])
    ended.wait()  # a process id that no longer runs
    mine = tmp_path / f"{SCRATCH}{ended.pid}-{this_host()}-abcd"
    theirs = tmp_path / f"{SCRATCH}{ended.pid}-another-container-abcd"  # a /tmp shared with it
    longer = tmp_path / f"{SCRATCH}{ended.pid}-{this_host()}-2-abcd"  # host "vm-2" beside "vm"
    running = tmp_path / f"{SCRATCH}{os.getpid()}-{this_host()}-abcd"
    for folder in (mine, theirs, longer, running):
        folder.mkdir()
    assert clear_abandoned(tmp_path) == [mine]
    assert theirs.exists() and longer.exists() and running.exists() and not mine.exists()
