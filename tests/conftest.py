"""Shared test helpers: a fake clock, hand-built intervals, and a private export cache."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.archive.names import load
from harness.archive.result_set import ResultSet
from harness.archive.schema import Load, Manifest, RunLength
from harness.archive.store import Archive
from harness.machine.fingerprint import Fingerprint, detect
from harness.record.probes import Interval
from harness.words import Kind
from harness.workload import Stage

SETS = Path(__file__).parent / "fixtures" / "sets"
RAG_SET = SETS / "20261201T215455Z-vm-rag-c709d037"  # torch, two replicates, schema 2
ORT_SET = SETS / "20261201T215505Z-vm-rag-1bc331af"  # onnxruntime, one replicate
CALIBRATION_SET = SETS / "20261201T215528Z-vm-calibration-38fa5490"
FIRST_V2_SET = SETS / "20261201T224847Z-vm-rag-a99df2bf"  # version 2 before it gained facts
LAST_V1_SET = SETS / "20261201T224811Z-vm-rag-15385168"
LAST_V4_SET = SETS / "20261206T072941Z-vm-rag-fba66d64"  # each written by its version's last commit
LAST_V5_SET = SETS / "20261206T072949Z-vm-rag-e3941bad"
EARLY_V6_SET = SETS / "20261206T203025Z-vm-rag-57174e19"  # before checksums were kept
LAST_V6_SET = SETS / "20261206T073002Z-vm-rag-d4dac73e"  # with its checksums
FIRST_V7_SET = SETS / "20261206T203736Z-vm-rag-7164dee6"
# A server run under LoadGen, with its queries table.
FIRST_V8_SET = SETS / "20261206T231356Z-vm-rag-14591d9c"
# The current version, kept for the next: a profiled run with its operators and calibration.
FIRST_V9_SET = SETS / "20261207T020747Z-vm-batch-inference-e99aef5f"


class FakeClock:
    """A clock that moves only when told to, so every split has an exact expected value."""

    def __init__(self, start: int = 0) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, ns: int) -> None:
        self.now += ns


@pytest.fixture(scope="session", autouse=True)
def export_cache(tmp_path_factory: pytest.TempPathFactory):
    """One ONNX export cache for the whole session (worker processes inherit it), never the
    user's own: a graph exported by one test is a cache hit for the next."""
    folder = tmp_path_factory.mktemp("gapbench-cache")
    before = os.environ.get("GAPBENCH_CACHE")
    os.environ["GAPBENCH_CACHE"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("GAPBENCH_CACHE", None)
    else:
        os.environ["GAPBENCH_CACHE"] = before


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000)


def interval(
    kind: Kind,
    start: int,
    end: int,
    *,
    stage: str = "",
    category: str = "",
    resource: str = "",
    label: str = "",
    span: int = 0,
    parent: int = -1,
    thread: int = 1,
    nbytes: int = 0,
) -> Interval:
    """An interval of request 0, written out by hand."""
    return Interval(
        request=0,
        span=span,
        parent=parent,
        kind=kind.value,
        stage=stage,
        category=category,
        resource=resource,
        label=label,
        start_ns=start,
        end_ns=end,
        nbytes=nbytes,
        thread=thread,
        task="",
    )


@functools.cache
def _fixture_manifest() -> Manifest:
    return load(str(RAG_SET)).manifest


def make_manifest(
    stages: tuple[Stage, ...] | None = None,
    *,
    set_id: str = "hand-built",
    device: str = "cpu",
    cores: float = 4.0,
    stage_threads: dict[str, int] | None = None,
    replicates: int = 1,
    execution: dict[str, Any] | None = None,
    work: dict[str, Any] | None = None,
    **fields: Any,
) -> Manifest:
    """A manifest for hand-built intervals: a real one (the fixture rag set, read through the
    store) with what the test states replaced; ``execution`` and ``work`` replace those
    config fields, ``fields`` the manifest's own."""
    base = _fixture_manifest()
    facts = replace(base.replicates[0], stage_threads=stage_threads or {}, agreement=None)
    config = replace(
        base.config,
        execution=replace(base.execution, device=device, **(execution or {})),
        work=_sealed(replace(base.work, **(work or {}))),
    )
    own = {
        "id": set_id,
        "stages": base.stages if stages is None else tuple(stages),
        "config": config,
        "fingerprint": replace(base.fingerprint, usable_cores=float(cores)),
        "replicates": tuple(replace(facts, replicate=i) for i in range(replicates)),
        "agreement": None,
        "profile": None,
    }
    return replace(base, **{**own, **fields})


@functools.cache
def live_fingerprint() -> Fingerprint:
    """This machine's fingerprint, taken once per session."""
    return detect()


def measured_set(
    results: Path, workload: str, length: RunLength, load: Load | None = None, **params: Any
) -> ResultSet:
    """A small set of ``workload`` measured for real into the archive at ``results``, checked
    first as `gapbench run` checks it, and loaded back."""
    from harness.measure.config import RunConfig, plan
    from harness.measure.replicates import run

    config = RunConfig(
        workload,
        device="cpu",
        size="quick",
        measurement=length,
        show_progress=False,
        params=params,
        load=load,
    )
    plan([workload], config)
    archive = Archive(results)
    return archive.load(run(config, archive, live_fingerprint()).id)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small orders file for the tool server's lookup tool, built once per module."""
    from workloads.tool_server import build_database

    path = tmp_path_factory.mktemp("tools") / "orders.sqlite"
    build_database(path, seed=0, rows=20_000)
    return path


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto's, from the fleet extras) on a free loopback port, in
    a process group of its own, stopped whatever happens."""
    pytest.importorskip("s3fs", reason="the fleet extra (s3fs) is not installed")
    if importlib.util.find_spec("moto") is None:
        pytest.skip("moto (the S3-compatible test server) is not installed")
    for _ in range(3):  # a port found free may be taken before the server binds it
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        server = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            if _serving(server, port):
                yield f"http://127.0.0.1:{port}"
                return
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    pytest.fail("the S3-compatible server did not start")


def _serving(server: subprocess.Popen, port: int, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and server.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def s3_url(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """An ``s3://`` archive URL in a fresh bucket of the test server, reached as a user would
    (``AWS_ENDPOINT_URL`` and the usual credential variables)."""
    import s3fs

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "gapbench")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "gapbench")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3fs.S3FileSystem.clear_instance_cache()  # one made for another endpoint is not reused
    bucket = f"gapbench-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem().mkdir(bucket)
    return f"s3://{bucket}/archive"


def _sealed(work):
    """``work`` with the digest of its fields, as the writer gives it."""
    return replace(work, work_sha256=work.fields_digest())


@pytest.fixture(scope="session")
def quick_calibration():
    """This machine's peaks measured roughly, once: kept in an archive before a profiled run
    there, it spares the run measuring them properly (tens of seconds)."""
    from harness.machine.cores import whole
    from harness.machine.microbench import calibrate

    fingerprint = detect(probe_gpus=False, probe_software=False)
    return calibrate(fingerprint, {1, whole(fingerprint.cores)}, quick=True)


@pytest.fixture
def calibrated_archive(tmp_path, quick_calibration):
    """A fresh archive holding this machine's (quick) calibration."""
    from harness.archive.calibrations import keep

    keep(Archive(tmp_path), quick_calibration)
    return tmp_path
